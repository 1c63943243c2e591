"""highdicom's "is this attribute part of this IOD?" answered once per question.

``highdicom._standard_utils.is_attribute_in_iod`` walks every attribute of every module of the IOD in the
standard's tables (highdicom's own copy) on each call: ~3 ms here, asked for every object built (ContentDate,
ContentTime) and for every image region of the SR (NumberOfFrames of the source image), 60 times per 3-view study:
0.18 s of a 0.9 s encoding. The answer depends only on its arguments and on those bundled tables, so ``install``
puts a memoised version in the highdicom modules that call it (the same answers: ``tests/pipelines/dicom_out``).
"""

from __future__ import annotations

import functools
from collections.abc import Sequence

import highdicom._standard_utils as _standard_utils
import highdicom.base
import highdicom.sr.content

_ORIGINAL = _standard_utils.is_attribute_in_iod
_CALLERS = (_standard_utils, highdicom.base, highdicom.sr.content)


@functools.lru_cache(maxsize=4096)
def _answer(attribute: str, sop_class_uid: str, exclude: tuple[str, ...] | None) -> bool:
    return _ORIGINAL(attribute, sop_class_uid, list(exclude) if exclude is not None else None)


def is_attribute_in_iod(attribute: str, sop_class_uid: str, exclude_path_elements: Sequence[str] | None = None) -> bool:
    """``highdicom._standard_utils.is_attribute_in_iod``, memoised (an unknown SOP class still raises KeyError)."""
    exclude = tuple(exclude_path_elements) if exclude_path_elements is not None else None
    return _answer(str(attribute), str(sop_class_uid), exclude)


def install() -> None:
    """Use the memoised lookup in the highdicom modules that call it (idempotent)."""
    for module in _CALLERS:
        if getattr(module, "is_attribute_in_iod", None) is _ORIGINAL:
            module.is_attribute_in_iod = is_attribute_in_iod
