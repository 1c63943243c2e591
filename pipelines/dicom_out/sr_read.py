"""Read this node's own TID 1500 SR back into a ``StudyResult`` (the earlier study of a prior comparison).

The reader relies only on what stays stable in the SRs this node writes (``pipelines.dicom_out.sr``), not on how
they are displayed:

* the document: a Comprehensive 3D SR whose Content Template is TID 1500 (``ContentTemplateSequence``), made by
  this node (``Manufacturer`` ``cspine-node ...`` or the ``99CSPINE`` coding scheme declared), its pipeline from
  the Procedure Reported code(s) (a patient-level SR reports two procedures and is not a study prior);
* measurements: every NUM in a measurement group, by concept name code + finding site codes + UCUM unit (the
  key and site are recovered from ``pipelines.dicom_out.codes``; ``known_keys``/``known_sites`` of the current
  result resolve generated private codes exactly), its value, its +/- uncertainty and its source images; the
  flexion-extension derivation code marks a difference across views;
* findings: the coded Finding of a group and the coded value of its evaluation, with the finding sites and the
  probability of the group or of that evaluation.

The radiograph view (neutral/flexion/extension) of a NUM is not coded in the SR; it is taken from the view word in
the Tracking Identifiers of the groups drawn on the same source image, when they name exactly one view
(``view_hints``), and left unknown otherwise (such a measurement is then not compared with a per-view one).
Values not measurable in the prior (written as remarks, not NUMs) read as absent.

``prior_from_dataset`` / ``prior_from_bytes`` never raise: an SR that is missing content, corrupt or from another
vendor gives a ``PriorStudy`` with a note instead of a result.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset
from pydicom.errors import InvalidDicomError

from pipelines.dicom_out import codes
from pipelines.dicom_out.sr_raw import Node as _Node
from pipelines.dicom_out.sr_raw import content_nodes
from pipelines.patient.compare import PriorStudy
from pipelines.results import AlgorithmInfo, Finding, Measurement, StudyResult
from pipelines.vocabulary import View

__all__ = ["PatientLevelSR", "PriorSRError", "root_nodes", "is_own_sr", "prior_from_bytes", "prior_from_dataset", "read_result", "sr_pipeline",
           "sr_pipelines"]

SR_CLASSES = {
    "1.2.840.10008.5.1.4.1.1.88.34": "Comprehensive 3D SR",
    "1.2.840.10008.5.1.4.1.1.88.33": "Comprehensive SR",
    "1.2.840.10008.5.1.4.1.1.88.22": "Enhanced SR",
    "1.2.840.10008.5.1.4.1.1.88.11": "Basic Text SR",
}
_MEASUREMENT_GROUP, _IMAGING_MEASUREMENTS = "125007", "126010"
_PROCEDURE_REPORTED, _FINDING, _FINDING_SITE = "121058", "121071", "363698007"
_TRACKING_ID, _DERIVATION = "112039", "121401"
_UPPER, _LOWER = "371886008", "371885007"
_ALGORITHM_NAME, _ALGORITHM_VERSION = "111001", "111003"
_VIEW_WORDS = {v.value: v for v in View}
OWN_MANUFACTURER = "cspine-node"
"""How the Manufacturer of this node's objects begins (``identity.MANUFACTURER``)."""


class PriorSRError(ValueError):
    """The SR cannot be compared; the message is the note a reader sees."""


class PatientLevelSR(PriorSRError):
    """This node's patient-level SR (X-ray + MRI): not a prior of one study."""


def _code(item: Dataset, attr: str = "ConceptNameCodeSequence") -> tuple[str, str, str] | None:
    seq = item.get(attr)
    if not seq:
        return None
    c = seq[0]
    value = c.get("CodeValue") or c.get("LongCodeValue") or c.get("URNCodeValue") or ""
    return str(value), str(c.get("CodingSchemeDesignator", "")), str(c.get("CodeMeaning", ""))


def _children(item: Dataset) -> list[Dataset]:
    return list(item.get("ContentSequence") or [])


def _template(ds: Dataset) -> str:
    seq = ds.get("ContentTemplateSequence")
    return str(seq[0].get("TemplateIdentifier", "")) if seq else ""


def is_own_sr(ds: Dataset) -> bool:
    """A TID 1500 SR written by this node (Manufacturer, or its private coding scheme declared)."""
    if str(ds.get("SOPClassUID", "")) not in SR_CLASSES or _template(ds) != "1500":
        return False
    manufacturer = str(ds.get("Manufacturer", "") or "")
    schemes = {str(i.get("CodingSchemeDesignator", "")) for i in ds.get("CodingSchemeIdentificationSequence") or []}
    return manufacturer.startswith(OWN_MANUFACTURER) or codes.PRIVATE_SCHEME in schemes


def root_nodes(ds: Dataset) -> list[_Node]:
    """The SR's content items, each read once (from the raw bytes when possible: ``sr_raw``; else by pydicom)."""
    nodes = content_nodes(ds)
    return nodes if nodes is not None else [_node(i) for i in _children(ds)]


def sr_pipelines(ds: Dataset, nodes: list[_Node] | None = None) -> list[str]:
    """The pipelines (``xray``, ``mri``) whose procedure the SR reports (both: a patient-level SR)."""
    procedures = {(n.code or ("",))[0] for n in (nodes if nodes is not None else root_nodes(ds))
                  if n.concept == _PROCEDURE_REPORTED}
    return [p for p, c in codes.PROCEDURE_BY_PIPELINE.items() if c.value in procedures]


def sr_pipeline(ds: Dataset, nodes: list[_Node] | None = None) -> str | None:
    """``xray`` or ``mri`` from the SR's Procedure Reported code; None for none or both (a patient-level SR)."""
    found = sr_pipelines(ds, nodes)
    return found[0] if len(found) == 1 else None


def _site_text(site_codes: list[tuple[str, str, str]], known: dict[tuple[str, ...], str]) -> str:
    """The site text the encoder turned into these finding-site codes (``codes.site_codes`` inverted)."""
    values = tuple(sorted(c[0] for c in site_codes))
    if values in known:
        return known[values]
    if not site_codes:
        return ""
    by_value = {c.value: name for name, c in codes.VERTEBRA_CODES.items()}
    discs = {c.value: name for name, c in codes.DISC_CODES.items()}
    if len(site_codes) == 1:
        v, scheme, meaning = site_codes[0]
        if v == codes.CERVICAL_SPINE.value:
            return "C2-C7"
        if v == codes.SPINAL_CANAL.value:
            return "spinal canal"
        if v == codes.SPINAL_CORD.value:
            return "spinal cord"
        if v in discs:
            return f"{discs[v]} disc"
        if v in by_value:
            return by_value[v]
        return meaning
    order = [by_value[c[0]] for c in site_codes if c[0] in by_value]
    if len(order) == len(site_codes):
        order.sort(key=lambda n: int(n[1:]))
        return f"{order[0]}-{order[-1]}"
    return "+".join(c[2] for c in site_codes)


def _known_sites(sites: Iterable[str]) -> dict[tuple[str, ...], str]:
    return {tuple(sorted(c.value for c in codes.site_codes(s))): s for s in sites}


def _measurement_key(code: tuple[str, str, str], site: str, known: dict[tuple[str, str], str]) -> str:
    value, scheme = code[0], code[1]
    if value == codes.COBB_ANGLE.value and scheme == codes.COBB_ANGLE.scheme_designator:
        return "cobb_" + site.lower().replace("-", "_") if re.fullmatch(r"C\d-C\d", site) else "cobb_c2_c7"
    if (value, scheme) in known:
        return known[(value, scheme)]
    for key, c in codes.MEASUREMENT_CODES.items():
        if c.value == value and c.scheme_designator == scheme and key != "cobb":
            return key
    if scheme == codes.PRIVATE_SCHEME and value.startswith("M-"):
        return value[2:].lower()
    return f"{scheme}:{value}"


def _vocabulary_findings() -> dict[tuple[str, str], str]:
    """Code -> key of every finding the pipelines name (a generated private code cuts a long key to 14 letters)."""
    from pipelines.vocabulary import FINDING_NAMES, UPPER_CERVICAL_NAMES

    return {(c.value, c.scheme_designator): k for k, n in {**FINDING_NAMES, **UPPER_CERVICAL_NAMES}.items()
            for c in (codes.finding_code(k, n),)}


def _finding_key(code: tuple[str, str, str], known: dict[tuple[str, str], str]) -> str:
    value, scheme = code[0], code[1]
    if (value, scheme) in known:
        return known[(value, scheme)]
    vocabulary = _vocabulary_findings()
    if (value, scheme) in vocabulary:
        return vocabulary[(value, scheme)]
    for key, c in codes.FINDING_CODES.items():
        if c.value == value and c.scheme_designator == scheme:
            return key
    if scheme == codes.PRIVATE_SCHEME and value.startswith("F-"):
        return value[2:].lower()
    return f"{scheme}:{value}"


def _finding_value(code: tuple[str, str, str]) -> str:
    value, scheme, meaning = code
    for text in ("present", "absent", "normal", "abnormal", "lordotic", "indeterminate"):
        c = codes.VALUE_CODES[text]
        if c.value == value and c.scheme_designator == scheme:
            return text
    return meaning.strip().lower() if scheme == codes.PRIVATE_SCHEME else meaning


def _node(item: Dataset) -> _Node:
    vt = str(item.get("ValueType", ""))
    node = _Node(vt, _code(item))
    if vt == "CODE":
        node.code = _code(item, "ConceptCodeSequence")
    elif vt == "TEXT":
        node.text = str(item.get("TextValue", ""))
    elif vt == "NUM":
        node.number = _number(item)
        seq = item.get("MeasuredValueSequence")
        node.unit = (_code(seq[0], "MeasurementUnitsCodeSequence") or ("1",))[0] if seq else "1"
    elif vt == "IMAGE":
        node.images = tuple(str(r.ReferencedSOPInstanceUID) for r in item.get("ReferencedSOPSequence") or [])
    node.children = [_node(c) for c in item.get("ContentSequence") or []]
    return node


def _images(node: _Node) -> list[str]:
    """SOP Instance UIDs of the IMAGE children of a content item (source of measurement / selected from)."""
    out: list[str] = []
    for child in node.children:
        if child.value_type == "IMAGE":
            out += child.images
        elif child.value_type == "SCOORD":
            out += _images(child)
    return out


def view_hints(groups: list[_Node]) -> dict[str, View]:
    """Source image -> view, from the view words in the Tracking Identifiers of the groups drawn on it (an image
    whose groups name more than one view, or none, gets no view)."""
    votes: dict[str, Counter] = {}
    for g in groups:
        ident = next((c.text for c in g.children if c.concept == _TRACKING_ID), "")
        words = {w for w in _VIEW_WORDS if re.search(rf"\b{w}\b", ident.lower())}
        if len(words) != 1:
            continue
        (word,) = words
        for uid in _images(g):
            votes.setdefault(uid, Counter())[word] += 1
    return {uid: _VIEW_WORDS[c.most_common(1)[0][0]] for uid, c in votes.items() if len(c) == 1}


def _groups(nodes: list[_Node]) -> list[_Node]:
    return [g for n in nodes if n.concept == _IMAGING_MEASUREMENTS for g in n.children if g.concept == _MEASUREMENT_GROUP]


def _number(item: Dataset) -> float | None:
    seq = item.get("MeasuredValueSequence")
    if not seq:
        return None
    mv = seq[0]
    if "FloatingPointValue" in mv:
        return float(mv.FloatingPointValue)
    return float(mv.NumericValue) if mv.get("NumericValue") not in (None, "") else None


def _num(kids: list[_Node], concept: str) -> float | None:
    return next((k.number for k in kids if k.concept == concept), None)


def read_result(ds: Dataset, *, known_keys: Iterable[tuple[str, str]] = (), known_sites: Iterable[str] = (),
                known_findings: Iterable[tuple[str, str]] = ()) -> StudyResult:
    """The measurements and findings of one of this node's SRs as a ``StudyResult`` (no images). ``known_keys`` /
    ``known_findings``: (key, name) of the current result's measurements / findings, ``known_sites`` its sites
    (they resolve generated codes exactly). Raises ``PriorSRError`` when it is not such an SR."""
    if not is_own_sr(ds):
        raise PriorSRError(f"prior SR from another vendor ({str(ds.get('Manufacturer', '') or 'no manufacturer')[:64]}, "
                           f"template {_template(ds) or 'none'}): not compared")
    nodes = root_nodes(ds)
    found = sr_pipelines(ds, nodes)
    if len(found) > 1:
        raise PatientLevelSR("this node's patient-level SR: not a study prior")
    if not found:
        raise PriorSRError("prior SR reports no single pipeline (content missing?): not compared")
    pipeline = found[0]
    mkeys = {(c.value, c.scheme_designator): k for k, n in known_keys for c in (codes.measurement_code(k, n),)}
    fkeys = {(c.value, c.scheme_designator): k for k, n in known_findings for c in (codes.finding_code(k, n),)}
    sites = _known_sites(known_sites)
    groups = _groups(nodes)
    views = view_hints(groups)
    algorithm = AlgorithmInfo(str(ds.get("ManufacturerModelName", "") or ""), str(ds.get("SoftwareVersions", "") or ""),
                              str(ds.get("Manufacturer", "") or ""))
    result = StudyResult(str(ds.get("StudyInstanceUID", "")), pipeline, algorithm)
    for g in groups:
        items = g.children
        group_sites = [i.code for i in items if i.concept == _FINDING_SITE and i.code]
        group_images = _images(g)
        finding = next((i.code for i in items if i.concept == _FINDING), None)
        for item in items:
            if item.value_type != "NUM" or item.name is None or item.number is None:
                continue
            if item.concept == codes.PROBABILITY.value:
                continue
            kids = item.children
            num_sites = [k.code for k in kids if k.concept == _FINDING_SITE and k.code]
            site = _site_text(num_sites or group_sites, sites)
            across = any(k.concept == _DERIVATION and (k.code or ("",))[0] == codes.DERIVED_ACROSS_VIEWS.value
                         for k in kids)
            upper, lower, value = _num(kids, _UPPER), _num(kids, _LOWER), item.number
            images = tuple(dict.fromkeys(_images(item) or group_images))
            found_views = {views[u] for u in images if u in views}
            view = None if across or len(found_views) != 1 else next(iter(found_views))
            interval = (value - (lower or 0.0), value + (upper or 0.0)) if upper is not None or lower is not None else None
            result.measurements.append(Measurement(
                key=_measurement_key(item.name, site, mkeys), name=item.name[2], value=value, unit=item.unit, site=site,
                view=view, interval=interval, image_uids=images if across or view is not None else images[:1]))
        if finding is not None:
            value_item = next((i for i in items if i.value_type == "CODE" and i.name and i.name[:2] == finding[:2]), None)
            if value_item is None:
                continue
            prob = next((i.number for i in (*items, *value_item.children)  # on the group or on its evaluation
                         if i.value_type == "NUM" and i.concept == codes.PROBABILITY.value), None)
            value_sites = [k.code for k in value_item.children if k.concept == _FINDING_SITE and k.code]
            result.findings.append(Finding(_finding_key(finding, fkeys), finding[2],
                                           _finding_value(value_item.code or ("", "", "")),
                                           _site_text(group_sites or value_sites, sites), probability=prob))
    if not result.measurements and not result.findings:
        raise PriorSRError("prior SR holds no measurement or finding this node can read: not compared")
    return result


def prior_from_dataset(ds: Dataset, source: str, **known: Iterable) -> PriorStudy | None:
    """A ``PriorStudy`` of one SR data set (a note instead of a result when it cannot be compared; None for this node's
    patient-level SR, which is no study's prior); never raises."""
    uid, date = str(ds.get("StudyInstanceUID", "")), str(ds.get("StudyDate", "") or "")
    try:
        return PriorStudy(uid, date, read_result(ds, **known), source)
    except PatientLevelSR:
        return None
    except PriorSRError as exc:
        return PriorStudy(uid, date, None, source, str(exc))
    except Exception as exc:  # noqa: BLE001 - a malformed content tree is a corrupt prior, not a failed study
        return PriorStudy(uid, date, None, source, f"prior SR unreadable ({type(exc).__name__}): not compared")


def prior_from_bytes(data: bytes, source: str, *, study_uid: str = "", study_date: str = "",
                     **known: Iterable) -> PriorStudy | None:
    """``prior_from_dataset`` of a Part 10 file's bytes; a file that is not DICOM is a corrupt prior."""
    try:
        ds = pydicom.dcmread(BytesIO(data), force=False)
    except (InvalidDicomError, EOFError, ValueError, OSError, KeyError, TypeError) as exc:
        return PriorStudy(study_uid, study_date, None, source, f"prior SR unreadable ({type(exc).__name__}): not compared")
    return prior_from_dataset(ds, source, **known)
