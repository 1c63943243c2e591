"""The input of every pipeline: the instances of one study, already on disk.

``node`` builds a ``Study`` from its spool; ``cspine-node analyze`` builds one from files on disk.
Only header attributes needed for routing are read here (without pixel data); pipelines read pixels
themselves with ``Instance.read()``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pydicom
from pydicom.dataset import Dataset


@dataclass(frozen=True)
class Instance:
    """One stored DICOM instance (a file on disk) with the header fields used for routing."""

    path: Path
    sop_instance_uid: str
    sop_class_uid: str
    series_uid: str
    modality: str
    body_part: str = ""
    view_position: str = ""
    series_description: str = ""
    image_orientation: tuple[float, ...] = ()

    def read(self, *, pixels: bool = True) -> Dataset:
        """Read the dataset (with pixel data unless ``pixels`` is False)."""
        return pydicom.dcmread(self.path, stop_before_pixels=not pixels)

    @classmethod
    def from_dataset(cls, path: Path, ds: Dataset) -> Instance:
        iop = ds.get("ImageOrientationPatient")
        if iop is None and "SharedFunctionalGroupsSequence" in ds:
            try:
                iop = ds.SharedFunctionalGroupsSequence[0].PlaneOrientationSequence[0].ImageOrientationPatient
            except (AttributeError, IndexError):
                iop = None
        return cls(
            path=Path(path),
            sop_instance_uid=str(ds.SOPInstanceUID),
            sop_class_uid=str(ds.SOPClassUID),
            series_uid=str(ds.get("SeriesInstanceUID", "")),
            modality=str(ds.get("Modality", "")),
            body_part=str(ds.get("BodyPartExamined", "")),
            view_position=str(ds.get("ViewPosition", "")),
            series_description=str(ds.get("SeriesDescription", "")),
            image_orientation=tuple(float(v) for v in iop) if iop is not None else (),
        )

    @classmethod
    def from_path(cls, path: Path) -> Instance:
        return cls.from_dataset(path, pydicom.dcmread(path, stop_before_pixels=True))


@dataclass(frozen=True)
class Study:
    """The instances of one study (StudyInstanceUID)."""

    study_uid: str
    instances: tuple[Instance, ...]

    @property
    def series_uids(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(i.series_uid for i in self.instances))

    def series(self, series_uid: str) -> tuple[Instance, ...]:
        return tuple(i for i in self.instances if i.series_uid == series_uid)

    @classmethod
    def from_paths(cls, paths: Iterable[Path]) -> list[Study]:
        """Group DICOM files into studies (files that are not DICOM raise ``pydicom.errors.InvalidDicomError``)."""
        by_study: dict[str, list[Instance]] = {}
        for p in paths:
            ds = pydicom.dcmread(p, stop_before_pixels=True)
            by_study.setdefault(str(ds.StudyInstanceUID), []).append(Instance.from_dataset(Path(p), ds))
        return [cls(uid, tuple(sorted(insts, key=lambda i: (i.series_uid, str(i.path))))) for uid, insts in by_study.items()]
