"""The source images a result refers to, read once from the ``Study`` (private helper)."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset

from pipelines.results import StudyResult
from pipelines.study import Study


@dataclass
class Sources:
    """Source image headers by SOPInstanceUID (no pixel data: cheap to copy into SR/SEG/GSPS evidence);
    pixels are read on demand with ``full()``."""

    datasets: dict[str, Dataset]
    paths: dict[str, Path]
    _full: dict[str, Dataset] = field(default_factory=dict)

    def __getitem__(self, uid: str) -> Dataset:
        try:
            return self.datasets[uid]
        except KeyError:
            raise KeyError(f"image {uid} is referenced by the result but is not an instance of the study") from None

    def full(self, uid: str) -> Dataset:
        """The dataset with pixel data (read once)."""
        if uid not in self._full:
            self[uid]
            self._full[uid] = pydicom.dcmread(self.paths[uid])
        return self._full[uid]

    def is_multiframe(self, uid: str) -> bool:
        return int(self[uid].get("NumberOfFrames", 1) or 1) > 1

    def frames(self, uid: str, frame: int) -> list[int] | None:
        """``referenced_frame_numbers`` argument for a reference to ``frame`` of ``uid``."""
        return [frame] if self.is_multiframe(uid) else None


def load_sources(study: Study, result: StudyResult) -> Sources:
    """Read every image the result refers to (images, keypoints, masks, measurements)."""
    if result.study_uid != study.study_uid:
        raise ValueError(f"result is for study {result.study_uid}, not for {study.study_uid}")
    wanted: list[str] = []
    for img in result.images:
        wanted.append(img.image_uid)
        wanted += [k.image_uid for k in img.keypoints] + [m.image_uid for m in img.masks]
    for m in result.measurements:
        wanted += list(m.image_uids)
    wanted = list(dict.fromkeys(wanted))
    by_uid = {i.sop_instance_uid: i for i in study.instances}
    missing = [u for u in wanted if u not in by_uid]
    if missing:
        raise ValueError(f"{len(missing)} image(s) referenced by the result are not in study {study.study_uid}: {missing[:3]}")
    return Sources({u: by_uid[u].read(pixels=False) for u in wanted}, {u: by_uid[u].path for u in wanted})


def previous_results(study: Study, series_uid: str) -> list[Dataset]:
    """Earlier result objects of one result series that the study already holds (headers only)."""
    return [i.read(pixels=False) for i in study.instances if i.series_uid == series_uid]
