"""The header fields the spool index keeps for an instance, parsed from a DICOM data set."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from pipelines.study import Instance

REQUIRED_UIDS = ("SOPInstanceUID", "SOPClassUID", "StudyInstanceUID", "SeriesInstanceUID")


@dataclass(frozen=True)
class InstanceHeader:
    """The header fields the index keeps for one instance (no patient identifiers)."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    transfer_syntax: str = ""
    modality: str = ""
    body_part: str = ""
    view_position: str = ""
    series_description: str = ""
    image_orientation: tuple[float, ...] = ()


def header_from_dataset(ds) -> InstanceHeader:  # noqa: ANN001 - pydicom Dataset / FileDataset
    """The index fields of a dataset; raises ``ValueError`` when a required UID is missing."""
    missing = [k for k in REQUIRED_UIDS if not ds.get(k)]
    if missing:
        raise ValueError(f"missing {', '.join(missing)}")
    inst = Instance.from_dataset(Path("."), ds)
    meta = getattr(ds, "file_meta", None)
    ts = str(meta.get("TransferSyntaxUID", "")) if meta is not None else ""
    return InstanceHeader(
        sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=str(ds.SOPClassUID),
        study_uid=str(ds.StudyInstanceUID), series_uid=str(ds.SeriesInstanceUID), transfer_syntax=ts,
        modality=inst.modality, body_part=inst.body_part, view_position=inst.view_position,
        series_description=inst.series_description, image_orientation=inst.image_orientation,
    )
