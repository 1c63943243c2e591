"""Read the annotations of a TID 1500 SR: what OHIF (Cornerstone3D tools via dcmjs) or another viewer saved.

What OHIF 3.13.2 writes when a radiologist saves measurements ("Create SR"; recorded in
``tests/fixtures/ohif_saved_sr.dcm`` by ``tests/integration/record_ohif_sr.py``): an **Enhanced SR**
(1.2.840.10008.5.1.4.1.1.88.22) in the image's study, Content Template TID 1500, "Imaging Measurements" (DCM 126010)
holding one "Measurement Group" (DCM 125007) per annotation with

* a Tracking Identifier (DCM 112039) TEXT ``Cornerstone3DTools@^0.1.0:<Tool>`` (``Length``, ``Probe``,
  ``ArrowAnnotate``, ``CobbAngle``, ...) and a Tracking Unique Identifier (DCM 112040);
* a NUM (Length in mm, Probe "Center", ArrowAnnotate "label" ...) whose child SCOORD (INFERRED FROM) holds the
  points: ``POLYLINE`` with two points for a Length and for an arrow (its tip first, where the mouse went down),
  ``POINT`` for a Probe, and whose grandchild IMAGE (SELECTED FROM) names the image (Referenced SOP Instance UID, and
  the frame for multi-frame images);
* the text typed for an arrow as a TEXT "Comment" (DCM 121106) in the group. Also read as a label: a Finding
  (DCM 121071) CODE of the ``CORNERSTONEJS``/``99dcmjs`` schemes (``CORNERSTONEFREETEXT``: free text as meaning).

The reader does not depend on that exact nesting: every 2D SCOORD anywhere below a measurement group counts, with
the IMAGE item below it (or, failing that, the group's only referenced image). A viewer that is not OHIF (no
``Cornerstone3DTools`` identifier) is read the same way, by graphic type. Coordinates come back in the project's
convention (``pipelines.results``: pixel centres, so DICOM's graphic coordinates minus 0.5).

``read_annotations`` raises ``UnreadableSR`` (a ``ValueError``) for a data set that is not a usable SR; it never
returns patient identifiers.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from io import BytesIO

import numpy as np
import pydicom
from pydicom.dataset import Dataset

__all__ = ["SR_SOP_CLASSES", "Annotation", "SrAnnotations", "UnreadableSR", "read_annotations", "read_annotations_bytes"]

SR_SOP_CLASSES: dict[str, str] = {
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
}
"""The SR storage SOP classes whose content a correction can be read from (OHIF writes Enhanced SR)."""

MEASUREMENT_GROUP = ("125007", "DCM")
TRACKING_IDENTIFIER = ("112039", "DCM")
TRACKING_UID = ("112040", "DCM")
FINDING = ("121071", "DCM")
COMMENT = ("121106", "DCM")
OHIF_PREFIX = "Cornerstone3DTools@"
OWN_MANUFACTURER_PREFIX = "cspine-node"
OWN_CODING_SCHEME = "99CSPINE"


class UnreadableSR(ValueError):
    """The data set is not an SR whose annotations can be read (the message says why)."""


@dataclass(frozen=True)
class Annotation:
    """One measurement group's geometry on one image."""

    tool: str
    """The Cornerstone3D tool (``Length``, ``Probe``, ``ArrowAnnotate`` ...) or ``""`` when not an OHIF group."""
    graphic_type: str
    """``POINT``, ``MULTIPOINT``, ``POLYLINE``, ``CIRCLE``, ``ELLIPSE``."""
    points: np.ndarray
    """(n, 2) x, y in pixel-centre image coordinates (``pipelines.results``)."""
    image_uid: str
    """Referenced SOP Instance UID ("" when the group names none)."""
    frame: int = 1
    label: str = ""
    """What the user typed (OHIF's free-text finding), or ``""``."""
    tracking_uid: str = ""
    tracking_identifier: str = ""


@dataclass
class SrAnnotations:
    """Everything a correction needs from one SR, and nothing about the patient."""

    sop_instance_uid: str
    sop_class_uid: str
    study_uid: str
    series_uid: str
    content_datetime: str
    """ContentDate + ContentTime as written (``YYYYMMDDHHMMSS...``), or ``""``."""
    manufacturer: str
    own: bool
    """Written by this node (its manufacturer name or coding scheme): not a correction."""
    referenced_images: tuple[str, ...]
    """Every image UID the SR references (evidence, image library, SCOORD sources), first-seen order."""
    annotations: list[Annotation] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    """What was skipped while reading (3D coordinates, a SCOORD without an image ...)."""

    @property
    def from_ohif(self) -> bool:
        return any(a.tracking_identifier.startswith(OHIF_PREFIX) for a in self.annotations)


def _code(item: Dataset, attr: str = "ConceptNameCodeSequence") -> tuple[str, str]:
    seq = item.get(attr)
    if not seq:
        return ("", "")
    c = seq[0]
    return (str(c.get("CodeValue", "") or c.get("LongCodeValue", "") or c.get("URNCodeValue", "")),
            str(c.get("CodingSchemeDesignator", "")))


def _meaning(item: Dataset, attr: str) -> str:
    seq = item.get(attr)
    return str(seq[0].get("CodeMeaning", "")) if seq else ""


def _children(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence", []) or [])


def _walk(items: list[Dataset]):  # noqa: ANN202 - generator of datasets
    for it in items:
        yield it
        yield from _walk(_children(it))


def _image_ref(item: Dataset) -> tuple[str, int] | None:
    for ref in item.get("ReferencedSOPSequence", []) or []:
        uid = str(ref.get("ReferencedSOPInstanceUID", ""))
        if uid:
            frames = ref.get("ReferencedFrameNumber")
            if isinstance(frames, list | tuple | pydicom.multival.MultiValue):
                frames = frames[0] if len(frames) else None
            return uid, int(frames) if frames not in (None, "") else 1
    return None


def _text(item: Dataset) -> str:
    return str(item.get("TextValue", "") or "").strip()


def _group_annotations(group: Dataset, notes: list[str]) -> list[Annotation]:
    tracking, tracking_uid, label = "", "", ""
    for it in _children(group):
        code = _code(it)
        if code == TRACKING_IDENTIFIER:
            tracking = _text(it)
        elif code == TRACKING_UID:
            tracking_uid = str(it.get("UID", ""))
        elif code == FINDING and it.get("ValueType") == "CODE":
            concept = _code(it, "ConceptCodeSequence")
            if concept[0] == "CORNERSTONEFREETEXT" or concept[1] in ("CORNERSTONEJS", "99dcmjs"):
                label = label or _meaning(it, "ConceptCodeSequence").strip()
        elif code == COMMENT and it.get("ValueType") == "TEXT":
            label = _text(it) or label
    tool = tracking.split(":", 1)[1].strip() if tracking.startswith(OHIF_PREFIX) and ":" in tracking else ""
    group_images = [r for it in _walk(_children(group)) if it.get("ValueType") == "IMAGE" and (r := _image_ref(it))]
    out: list[Annotation] = []
    for it in _walk(_children(group)):
        vt = it.get("ValueType")
        if vt == "SCOORD3D":
            notes.append(f"group {tracking or '(no tracking identifier)'}: 3D coordinates skipped (no image plane)")
            continue
        if vt != "SCOORD":
            continue
        gtype = str(it.get("GraphicType", "")).upper()
        data = np.asarray([float(v) for v in (it.get("GraphicData") or [])], dtype=float)
        if data.size < 2 or data.size % 2 or not np.isfinite(data).all():
            notes.append(f"group {tracking or '(no tracking identifier)'}: SCOORD without usable points skipped")
            continue
        refs = [r for c in _children(it) if c.get("ValueType") == "IMAGE" and (r := _image_ref(c))]
        ref = refs[0] if refs else (group_images[0] if len({g[0] for g in group_images}) == 1 else None)
        if ref is None:
            notes.append(f"group {tracking or '(no tracking identifier)'}: SCOORD names no image, skipped")
            continue
        out.append(Annotation(tool=tool, graphic_type=gtype, points=data.reshape(-1, 2) - 0.5, image_uid=ref[0],
                              frame=ref[1], label=label, tracking_uid=tracking_uid, tracking_identifier=tracking))
    return out


def _is_own(ds: Dataset) -> bool:
    if str(ds.get("Manufacturer", "")).lower().startswith(OWN_MANUFACTURER_PREFIX):
        return True
    schemes = {str(c.get("CodingSchemeDesignator", "")) for c in ds.get("CodingSchemeIdentificationSequence", []) or []}
    return OWN_CODING_SCHEME in schemes


def read_annotations(ds: Dataset) -> SrAnnotations:
    """The annotations of an SR data set; ``UnreadableSR`` when it is no SR or has no content tree."""
    sop_class = str(ds.get("SOPClassUID", ""))
    if sop_class not in SR_SOP_CLASSES:
        raise UnreadableSR(f"not an SR storage SOP class ({sop_class or 'none'})")
    for attr in ("SOPInstanceUID", "StudyInstanceUID"):
        if not ds.get(attr):
            raise UnreadableSR(f"SR without {attr}")
    content = _children(ds)
    if not content:
        raise UnreadableSR("SR without a Content Sequence")
    refs: list[str] = []
    for ev in list(ds.get("CurrentRequestedProcedureEvidenceSequence", []) or []) + list(
            ds.get("PertinentOtherEvidenceSequence", []) or []):
        for series in ev.get("ReferencedSeriesSequence", []) or []:
            for sop in series.get("ReferencedSOPSequence", []) or []:
                refs.append(str(sop.get("ReferencedSOPInstanceUID", "")))
    notes: list[str] = []
    annotations: list[Annotation] = []
    try:
        for it in _walk(content):
            if it.get("ValueType") == "IMAGE" and (r := _image_ref(it)):
                refs.append(r[0])
            if it.get("ValueType") == "CONTAINER" and _code(it) == MEASUREMENT_GROUP:
                annotations += _group_annotations(it, notes)
    except (AttributeError, TypeError, ValueError, KeyError) as e:
        raise UnreadableSR(f"malformed content tree ({type(e).__name__}: {e})") from e
    refs += [a.image_uid for a in annotations]
    date, time = str(ds.get("ContentDate", "") or ""), str(ds.get("ContentTime", "") or "")
    return SrAnnotations(
        sop_instance_uid=str(ds.SOPInstanceUID), sop_class_uid=sop_class, study_uid=str(ds.StudyInstanceUID),
        series_uid=str(ds.get("SeriesInstanceUID", "")), content_datetime=date + time,
        manufacturer=str(ds.get("Manufacturer", "") or ""), own=_is_own(ds),
        referenced_images=tuple(dict.fromkeys(u for u in refs if u)), annotations=annotations, notes=notes)


def read_annotations_bytes(data: bytes) -> SrAnnotations:
    """``read_annotations`` of a Part 10 byte string (or a bare data set); ``UnreadableSR`` when it is not DICOM."""
    try:
        ds = pydicom.dcmread(BytesIO(data), force=True)
    except Exception as e:  # noqa: BLE001 - any parse error of foreign bytes
        raise UnreadableSR(f"not a parsable DICOM data set ({type(e).__name__})") from e
    return read_annotations(ds)
