"""SR content items encoded straight to bytes (Explicit VR Little Endian), each built once.

highdicom builds every content item as a validated ``Dataset``, deep-copies templates when it nests them and copies
the whole tree again when it makes the document; pydicom then encodes its ~20 000 elements one by one (a TID 1500 SR
of 160 measurement groups cost 2-11 s here). This module writes the repeated part of an SR, the measurement groups,
directly as encoded items: every item is encoded once, bottom up, and repeated items (coded concepts, finding
sites, the algorithm identification) are encoded once per document. ``content_sequence`` joins them with the few
items highdicom still builds (language, observer context, procedure, image library) into one raw Content Sequence
element that pydicom writes as it is and parses on access.

The items are exactly highdicom's: same templates (TID 1410 planar ROI group or TID 1501 group, TID 300
measurement with its properties, TID 1411 image region), same element order and values;
``tests/pipelines/dicom_out/test_dicom_out_sr_content.py`` compares the bytes with pydicom's encoding of
highdicom's own items.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import highdicom as hd
from highdicom.sr.templates import DEFAULT_LANGUAGE
from pydicom.charset import convert_encodings, encode_string
from pydicom.dataelem import RawDataElement
from pydicom.dataset import Dataset
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code
from pydicom.tag import Tag
from pydicom.valuerep import DS

from pipelines.dicom_out.codes import COMMENT, QUALITATIVE_EVALUATIONS

__all__ = ["ContentEncoder", "Group", "ImageRef", "Num", "Region", "content_sequence", "measurement_report"]

# tags (group << 16 | element)
_CODE_VALUE, _SCHEME, _SCHEME_VERSION, _MEANING = 0x00080100, 0x00080102, 0x00080103, 0x00080104
_LONG_CODE_VALUE, _URN_CODE_VALUE = 0x00080119, 0x00080120
_REF_SOP_CLASS, _REF_SOP_INSTANCE, _REF_FRAME, _REF_SOP_SEQ = 0x00081150, 0x00081155, 0x00081160, 0x00081199
_MAPPING_RESOURCE, _TEMPLATE_ID, _TEMPLATE_SEQ = 0x00080105, 0x0040DB00, 0x0040A504
_RELATIONSHIP, _VALUE_TYPE, _CONCEPT_NAME, _CONTINUITY = 0x0040A010, 0x0040A040, 0x0040A043, 0x0040A050
_UID, _TEXT_VALUE, _FLOAT_VALUE, _CONCEPT_CODE = 0x0040A124, 0x0040A160, 0x0040A161, 0x0040A168
_MEASURED_VALUE_SEQ, _NUMERIC_VALUE, _UNITS_SEQ = 0x0040A300, 0x0040A30A, 0x004008EA
_CONTENT_SEQ, _GRAPHIC_DATA, _GRAPHIC_TYPE = 0x0040A730, 0x00700022, 0x00700023

_LONG_VRS = frozenset({"OB", "OD", "OF", "OL", "OV", "OW", "SQ", "SV", "UC", "UN", "UR", "UT", "UV"})
_ITEM_TAG = struct.pack("<HH", 0xFFFE, 0xE000)
_SHORT = struct.Struct("<HH2sH")
_LONG = struct.Struct("<HH2sHI")


def _element(tag: int, vr: str, value: bytes) -> bytes:
    """One data element: tag, VR, length, value (padded to even length as pydicom pads it)."""
    if len(value) & 1:
        value += b"\0" if vr in ("UI", "OB", "UN") else b" "
    if vr in _LONG_VRS:
        return _LONG.pack(tag >> 16, tag & 0xFFFF, vr.encode(), 0, len(value)) + value
    if len(value) > 0xFFFF:
        raise ValueError(f"value of ({tag >> 16:04X},{tag & 0xFFFF:04X}) {vr} is too long ({len(value)} bytes)")
    return _SHORT.pack(tag >> 16, tag & 0xFFFF, vr.encode(), len(value)) + value


def _item(elements: dict[int, bytes]) -> bytes:
    """One sequence item from its encoded elements, in ascending tag order."""
    body = b"".join(elements[t] for t in sorted(elements))
    return _ITEM_TAG + struct.pack("<I", len(body)) + body


def _sequence(tag: int, items: Iterable[bytes]) -> bytes:
    return _element(tag, "SQ", b"".join(items))


def _key(code: Code) -> tuple[str, str, str, str | None]:
    """A cache key of a code (``Code`` equality ignores the meaning and is slow)."""
    return (code.value, code.scheme_designator, code.meaning, code.scheme_version)


def _ascii(value: str) -> bytes:
    return value.encode("iso8859")  # pydicom's default encoding for CS, UI, DS, IS


def _decimal_string(value: float) -> str:
    """A NUM's Numeric Value as highdicom sets it (``DS(value, auto_format=True)``) and pydicom writes it."""
    ds = DS(value, auto_format=True)
    return getattr(ds, "original_string", None) or str(ds)


_VALUE_TYPES = {v: _element(_VALUE_TYPE, "CS", _ascii(v)) for v in (
    "CODE", "CONTAINER", "IMAGE", "NUM", "SCOORD", "TEXT", "UIDREF")}
_RELATIONSHIPS: dict[str, bytes] = {}
_CONTINUOUS = _element(_CONTINUITY, "CS", b"CONTINUOUS")


@dataclass(frozen=True)
class ImageRef:
    """A referenced image (SOP class and instance; frame numbers for a multi-frame image)."""

    sop_class_uid: str
    sop_instance_uid: str
    frames: tuple[int, ...] | None = None


@dataclass(frozen=True)
class Region:
    """TID 1410 row 6: an image region (SCOORD ``graphic_type`` of flattened (x, y) DICOM pixel coordinates)."""

    graphic_type: str
    graphic_data: tuple[float, ...]
    image: ImageRef


@dataclass(frozen=True)
class Num:
    """TID 300 measurement: a NUM with its concept modifiers, uncertainty and source images."""

    name: Code
    value: float
    unit: Code
    method: Code | None = None
    derivation: Code | None = None
    finding_sites: tuple[Code, ...] = ()
    upper_uncertainty: float | None = None
    lower_uncertainty: float | None = None
    uncertainty_unit: Code | None = None
    """The unit of both uncertainties (highdicom writes UCUM "1"; a measurement's own unit is more exact)."""
    images: tuple[ImageRef, ...] = ()


@dataclass(frozen=True)
class Group:
    """A measurement group: TID 1410 (planar ROI, ``region`` given) or TID 1501 (``region`` None)."""

    identifier: str
    uid: str
    algorithm: tuple[str, str]
    """Algorithm name and version (TID 4019)."""
    region: Region | None = None
    finding_type: Code | None = None
    finding_sites: tuple[Code, ...] = ()
    measurements: tuple[Num, ...] = ()
    evaluations: tuple[tuple[Code, Code] | tuple[Code, Code, tuple[Code, ...]]
                       | tuple[Code, Code, tuple[Code, ...], Num | None], ...] = ()
    """Qualitative evaluations: (concept name, coded value[, finding sites[, probability]]); the sites are HAS CONCEPT
    MOD children of the evaluation, the probability (a NUM without children) its HAS PROPERTIES child: OHIF prints
    a group-level site as its code and labels a group with its NUMs ("Probability: 0.81 1")."""


_FINDING_SITE = Code("363698007", "SCT", "Finding Site")
_FINDING = Code("121071", "DCM", "Finding")
_METHOD = Code("370129005", "SCT", "Measurement Method")
_DERIVATION = Code("121401", "DCM", "Derivation")
_UPPER = Code("371886008", "SCT", "+, range of upper measurement uncertainty")
_LOWER = Code("371885007", "SCT", "-, range of lower measurement uncertainty")
_NO_UNITS = Code("1", "UCUM", "no units")
_SOURCE_OF_MEASUREMENT = Code("121112", "DCM", "Source of Measurement")
_SOURCE = Code("260753009", "SCT", "Source")
_IMAGE_REGION = Code("111030", "DCM", "Image Region")
_TRACKING_ID = Code("112039", "DCM", "Tracking Identifier")
_TRACKING_UID = Code("112040", "DCM", "Tracking Unique Identifier")
_ALGORITHM_NAME = Code("111001", "DCM", "Algorithm Name")
_ALGORITHM_VERSION = Code("111003", "DCM", "Algorithm Version")
_MEASUREMENT_GROUP = Code("125007", "DCM", "Measurement Group")
_IMAGING_MEASUREMENTS = Code("126010", "DCM", "Imaging Measurements")


class ContentEncoder:
    """Encodes SR content items for one document (its character set); caches what repeats."""

    def __init__(self, character_set: str | Sequence[str] | None = None):
        self._encodings = convert_encodings(character_set or "ISO_IR 6")
        self._codes: dict[tuple, bytes] = {}
        self._fixed: dict[tuple, bytes] = {}
        self._templates = {tid: _sequence(_TEMPLATE_SEQ, [_item({
            _MAPPING_RESOURCE: _element(_MAPPING_RESOURCE, "CS", b"DCMR"),
            _TEMPLATE_ID: _element(_TEMPLATE_ID, "CS", _ascii(tid))})]) for tid in ("1410", "1501")}

    # -- values ---------------------------------------------------------------------------------------
    def _text(self, value: str) -> bytes:
        return encode_string(value, self._encodings)

    def code(self, code: Code) -> bytes:
        """The one item of a code sequence (Code Value, or Long / URN Code Value past 16 characters)."""
        key = _key(code)
        item = self._codes.get(key)
        if item is None:
            value = str(code.value)
            if len(code.meaning) > 64:
                raise ValueError(f"code meaning longer than 64 characters: {code.meaning!r}")
            elements = {_SCHEME: _element(_SCHEME, "SH", self._text(code.scheme_designator)),
                        _MEANING: _element(_MEANING, "LO", self._text(code.meaning))}
            if len(value) <= 16:
                elements[_CODE_VALUE] = _element(_CODE_VALUE, "SH", self._text(value))
            elif value.startswith("urn") or "://" in value:
                elements[_URN_CODE_VALUE] = _element(_URN_CODE_VALUE, "UR", self._text(value))
            else:
                elements[_LONG_CODE_VALUE] = _element(_LONG_CODE_VALUE, "UC", self._text(value))
            if code.scheme_version:
                elements[_SCHEME_VERSION] = _element(_SCHEME_VERSION, "SH", self._text(code.scheme_version))
            item = self._codes[key] = _item(elements)
        return item

    def _head(self, name: Code, value_type: str, relationship: str) -> dict[int, bytes]:
        """Relationship type, value type and concept name of an item."""
        rel = _RELATIONSHIPS.get(relationship)
        if rel is None:
            rel = _RELATIONSHIPS[relationship] = _element(_RELATIONSHIP, "CS", _ascii(relationship))
        return {_RELATIONSHIP: rel, _VALUE_TYPE: _VALUE_TYPES[value_type], _CONCEPT_NAME: self._name_sequence(name)}

    def _name_sequence(self, name: Code) -> bytes:
        key = ("name", _key(name))
        seq = self._fixed.get(key)
        if seq is None:
            seq = self._fixed[key] = _sequence(_CONCEPT_NAME, [self.code(name)])
        return seq

    # -- content items --------------------------------------------------------------------------------
    def code_item(self, name: Code, value: Code, relationship: str, children: Sequence[bytes] = ()) -> bytes:
        key = ("code", _key(name), _key(value), relationship, tuple(children))
        item = self._fixed.get(key)
        if item is None:
            elements = self._head(name, "CODE", relationship)
            elements[_CONCEPT_CODE] = _sequence(_CONCEPT_CODE, [self.code(value)])
            if children:
                elements[_CONTENT_SEQ] = _sequence(_CONTENT_SEQ, children)
            item = self._fixed[key] = _item(elements)
        return item

    def text_item(self, name: Code, value: str, relationship: str) -> bytes:
        elements = self._head(name, "TEXT", relationship)
        elements[_TEXT_VALUE] = _element(_TEXT_VALUE, "UT", self._text(value))
        return _item(elements)

    def uidref_item(self, name: Code, uid: str, relationship: str) -> bytes:
        elements = self._head(name, "UIDREF", relationship)
        elements[_UID] = _element(_UID, "UI", _ascii(uid))
        return _item(elements)

    def image_item(self, name: Code, image: ImageRef, relationship: str) -> bytes:
        ref = {_REF_SOP_CLASS: _element(_REF_SOP_CLASS, "UI", _ascii(image.sop_class_uid)),
               _REF_SOP_INSTANCE: _element(_REF_SOP_INSTANCE, "UI", _ascii(image.sop_instance_uid))}
        if image.frames is not None:
            ref[_REF_FRAME] = _element(_REF_FRAME, "IS", _ascii("\\".join(str(int(f)) for f in image.frames)))
        elements = self._head(name, "IMAGE", relationship)
        elements[_REF_SOP_SEQ] = _sequence(_REF_SOP_SEQ, [_item(ref)])
        return _item(elements)

    def num_item(self, name: Code, value: float, unit: Code, relationship: str,
                 children: Sequence[bytes] = ()) -> bytes:
        if not isinstance(value, (int, float)):
            raise TypeError(f"a NUM value must be an int or a float, not {type(value).__name__}")
        measured = {_NUMERIC_VALUE: _element(_NUMERIC_VALUE, "DS", _ascii(_decimal_string(value))),
                    _UNITS_SEQ: _sequence(_UNITS_SEQ, [self.code(unit)])}
        if isinstance(value, float):
            measured[_FLOAT_VALUE] = _element(_FLOAT_VALUE, "FD", struct.pack("<d", value))
        elements = self._head(name, "NUM", relationship)
        elements[_MEASURED_VALUE_SEQ] = _sequence(_MEASURED_VALUE_SEQ, [_item(measured)])
        if children:
            elements[_CONTENT_SEQ] = _sequence(_CONTENT_SEQ, children)
        return _item(elements)

    def container_item(self, name: Code, relationship: str, children: Sequence[bytes],
                       template: str | None = None) -> bytes:
        elements = self._head(name, "CONTAINER", relationship)
        elements[_CONTINUITY] = _CONTINUOUS
        if template is not None:
            elements[_TEMPLATE_SEQ] = self._templates[template]
        if children:
            elements[_CONTENT_SEQ] = _sequence(_CONTENT_SEQ, children)
        return _item(elements)

    # -- templates ------------------------------------------------------------------------------------
    def _algorithm(self, name: str, version: str) -> bytes:
        """TID 4019 algorithm identification (name, version), both HAS CONCEPT MOD."""
        key = ("algorithm", name, version)
        items = self._fixed.get(key)
        if items is None:
            items = self._fixed[key] = (self.text_item(_ALGORITHM_NAME, name, "HAS CONCEPT MOD")
                                        + self.text_item(_ALGORITHM_VERSION, version, "HAS CONCEPT MOD"))
        return items

    def _site(self, site: Code) -> bytes:
        return self.code_item(_FINDING_SITE, site, "HAS CONCEPT MOD")

    def measurement(self, m: Num) -> bytes:
        """TID 300: the NUM (CONTAINS) with method, derivation, finding sites, uncertainty, source images."""
        children: list[bytes] = []
        if m.method is not None:
            children.append(self.code_item(_METHOD, m.method, "HAS CONCEPT MOD"))
        if m.derivation is not None:
            children.append(self.code_item(_DERIVATION, m.derivation, "HAS CONCEPT MOD"))
        children += [self._site(s) for s in m.finding_sites]
        unit = m.uncertainty_unit or _NO_UNITS
        if m.upper_uncertainty is not None:
            children.append(self.num_item(_UPPER, float(m.upper_uncertainty), unit, "HAS PROPERTIES"))
        if m.lower_uncertainty is not None:
            children.append(self.num_item(_LOWER, float(m.lower_uncertainty), unit, "HAS PROPERTIES"))
        children += [self.image_item(_SOURCE_OF_MEASUREMENT, i, "INFERRED FROM") for i in m.images]
        return self.num_item(m.name, m.value, m.unit, "CONTAINS", children)

    def region(self, r: Region) -> bytes:
        """TID 1410 row 6: SCOORD "Image Region" (CONTAINS) SELECTED FROM its source image."""
        n = len(r.graphic_data)
        if n < 2 or n % 2 or (r.graphic_type == "POINT" and n != 2) or (r.graphic_type != "POINT" and n < 4):
            raise ValueError(f"{n // 2} point(s) are not a valid {r.graphic_type} region")
        if r.graphic_type == "MULTIPOINT":
            raise ValueError('Graphic type "MULTIPOINT" is not valid for region.')
        elements = self._head(_IMAGE_REGION, "SCOORD", "CONTAINS")
        elements[_CONTENT_SEQ] = _sequence(_CONTENT_SEQ, [self.image_item(_SOURCE, r.image, "SELECTED FROM")])
        elements[_GRAPHIC_DATA] = _element(_GRAPHIC_DATA, "FL", struct.pack(f"<{n}f", *r.graphic_data))
        elements[_GRAPHIC_TYPE] = _element(_GRAPHIC_TYPE, "CS", _ascii(r.graphic_type))
        return _item(elements)

    def group(self, g: Group) -> bytes:
        """One measurement group (TID 1410 with a region, else TID 1501), in highdicom's order: tracking
        identifier and UID, finding type, finding sites, algorithm, measurements, evaluations, region."""
        children = [self.text_item(_TRACKING_ID, g.identifier, "HAS OBS CONTEXT"),
                    self.uidref_item(_TRACKING_UID, g.uid, "HAS OBS CONTEXT")]
        if g.finding_type is not None:
            children.append(self.code_item(_FINDING, g.finding_type, "CONTAINS"))
        children += [self._site(s) for s in g.finding_sites]
        children.append(self._algorithm(*g.algorithm))
        children += [self.measurement(m) for m in g.measurements]
        for name, value, *rest in g.evaluations:
            sites, probability = (rest[0] if rest else ()), (rest[1] if len(rest) > 1 else None)
            kids = [self._site(c) for c in sites]
            if probability is not None:
                kids.append(self.num_item(probability.name, probability.value, probability.unit, "HAS PROPERTIES"))
            children.append(self.code_item(name, value, "CONTAINS", kids))
        if g.region is not None:
            children.append(self.region(g.region))
        return self.container_item(_MEASUREMENT_GROUP, "CONTAINS", children,
                                   template="1410" if g.region is not None else "1501")

    def imaging_measurements(self, groups: Iterable[Group]) -> bytes:
        """TID 1500 row 6: the Imaging Measurements container of the groups."""
        return self.container_item(_IMAGING_MEASUREMENTS, "CONTAINS", [self.group(g) for g in groups])

    def dataset(self, ds: Dataset) -> bytes:
        """An item built elsewhere (a highdicom content item) as encoded bytes, by pydicom's writer."""
        fp = DicomBytesIO()
        fp.is_little_endian, fp.is_implicit_VR = True, False
        write_dataset(fp, ds, self._encodings)
        body = fp.getvalue()
        return _ITEM_TAG + struct.pack("<I", len(body)) + body


def content_sequence(items: Sequence[bytes]) -> RawDataElement:
    """The Content Sequence (0040,A730) of already encoded items, as a raw element pydicom writes unchanged."""
    value = b"".join(items)
    return RawDataElement(Tag(_CONTENT_SEQ), "SQ", len(value), value, 0, False, True, True, False)


def measurement_report(*, evidence: Sequence[Dataset], library: Sequence[Dataset], observer: hd.sr.ObserverContext,
                       procedures: Sequence[Code], groups: Sequence[Group], remarks: Sequence[str],
                       **document: Any) -> Dataset:
    """A Comprehensive 3D SR rooted in TID 1500: language, device observer, procedures reported and the Image
    Library of ``library`` (highdicom's items, a handful), the Imaging Measurements of ``groups`` (encoded here),
    and a Qualitative Evaluations container of the ``remarks`` (TEXT "Comment" items, 1024 characters each).
    ``document``: the other ``hd.sr.Comprehensive3DSR`` arguments (series, instance, flags, equipment ...).

    highdicom makes the document from the small root (header modules, evidence, predecessors, contributing
    equipment); the full Content Sequence then replaces the root's as one raw element. The result is a plain
    ``Dataset``: highdicom's typed view of the content is not built (read the written file with
    ``hd.sr.srread`` for one)."""
    root = hd.sr.ContainerContentItem(name=dcm_codes.cid7021.ImagingMeasurementReport, template_id="1500")
    head = [*hd.sr.LanguageOfContentItemAndDescendants(DEFAULT_LANGUAGE),
            *hd.sr.ObservationContext(observer_device_context=observer),
            *(hd.sr.CodeContentItem(name=dcm_codes.DCM.ProcedureReported, value=procedure,
                                    relationship_type="HAS CONCEPT MOD") for procedure in procedures)]
    if library:
        head += [*hd.sr.ImageLibrary(library)]
    root.ContentSequence = hd.sr.ContentSequence(head)
    sr = hd.sr.Comprehensive3DSR(evidence=evidence, content=root, **document)
    enc = ContentEncoder(sr.get("SpecificCharacterSet"))
    items = [enc.dataset(item) for item in head]
    if groups:  # TID 1500: Imaging Measurements (row 6) may be absent when Qualitative Evaluations are present
        items.append(enc.imaging_measurements(groups))
    items.append(enc.container_item(QUALITATIVE_EVALUATIONS, "CONTAINS",
                                    [enc.text_item(COMMENT, t[:1024], "CONTAINS") for t in remarks]))
    doc = Dataset(sr)
    doc.file_meta = sr.file_meta
    doc[_CONTENT_SEQ] = content_sequence(items)
    # pydicom's documented way to write raw elements as they are: declare the encoding they are in (otherwise
    # it parses every raw sequence to re-encode it)
    doc.set_original_encoding(False, True, doc._character_set)
    return doc
