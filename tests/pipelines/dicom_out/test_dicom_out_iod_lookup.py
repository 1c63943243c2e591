"""``pipelines.dicom_out.iod_lookup``: highdicom's IOD attribute lookup memoised, with the same answers."""

from __future__ import annotations

import highdicom.base
import highdicom.sr.content
import pytest

import pipelines.dicom_out  # noqa: F401 - installs the memoised lookup
from pipelines.dicom_out import iod_lookup

CLASSES = ["1.2.840.10008.5.1.4.1.1.1.1",  # DX for presentation
           "1.2.840.10008.5.1.4.1.1.4",  # MR
           "1.2.840.10008.5.1.4.1.1.66.4",  # Segmentation
           "1.2.840.10008.5.1.4.1.1.88.34",  # Comprehensive 3D SR
           "1.2.840.10008.5.1.4.1.1.11.1",  # Grayscale Softcopy Presentation State
           "1.2.840.10008.5.1.4.1.1.104.1"]  # Encapsulated PDF
ATTRIBUTES = ["ContentDate", "ContentTime", "NumberOfFrames", "TotalPixelMatrixRows", "PixelData", "Rows",
              "FloatPixelData", "NoSuchKeyword"]


def test_the_memoised_lookup_gives_highdicoms_answers() -> None:
    for sop_class in CLASSES:
        for attribute in ATTRIBUTES:
            for exclude in (None, ["IconImageSequence"]):
                expected = iod_lookup._ORIGINAL(attribute, sop_class, exclude)
                assert iod_lookup.is_attribute_in_iod(attribute, sop_class, exclude) is expected
                assert iod_lookup.is_attribute_in_iod(attribute, sop_class, exclude) is expected  # from the cache
    assert iod_lookup.is_attribute_in_iod("NumberOfFrames", CLASSES[2])  # a SEG is multi-frame
    assert not iod_lookup.is_attribute_in_iod("NoSuchKeyword", CLASSES[0])
    with pytest.raises(KeyError):
        iod_lookup.is_attribute_in_iod("ContentDate", "1.2.3.4")


def test_highdicom_uses_it_once_the_encoder_is_imported() -> None:
    iod_lookup.install()  # idempotent
    assert highdicom.base.is_attribute_in_iod is iod_lookup.is_attribute_in_iod
    assert highdicom.sr.content.is_attribute_in_iod is iod_lookup.is_attribute_in_iod
    assert iod_lookup._standard_utils.is_attribute_in_iod is iod_lookup.is_attribute_in_iod
