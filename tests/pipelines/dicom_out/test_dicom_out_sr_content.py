"""The SR content items encoded by ``pipelines.dicom_out.sr_content`` are byte for byte what pydicom writes for
highdicom's own items built from the same groups (highdicom is the reference, the encoder the fast path)."""

from __future__ import annotations

import highdicom as hd
import numpy as np
import pydicom
import pytest
from pydicom.filebase import DicomBytesIO
from pydicom.filewriter import write_dataset
from pydicom.sr.coding import Code

from pipelines.dicom_out._sources import load_sources
from pipelines.dicom_out.identity import provenance
from pipelines.dicom_out.sr import sr_groups
from pipelines.dicom_out.sr_content import ContentEncoder, Group, ImageRef, Num, Region
from pipelines.results import StudyResult
from pipelines.study import Study

_UNCERTAINTY = ("371886008", "371885007")
_CHARSET = "ISO_IR 100"


def _refs(image: ImageRef) -> list[int] | None:
    return list(image.frames) if image.frames is not None else None


def _hd_num(m: Num) -> hd.sr.Measurement:
    props = None
    if m.upper_uncertainty is not None or m.lower_uncertainty is not None:
        props = hd.sr.MeasurementProperties(upper_measurement_uncertainty=m.upper_uncertainty,
                                            lower_measurement_uncertainty=m.lower_uncertainty)
    item = hd.sr.Measurement(
        name=m.name, value=m.value, unit=m.unit, method=m.method, derivation=m.derivation,
        finding_sites=[hd.sr.FindingSite(c) for c in m.finding_sites] or None, properties=props,
        referenced_images=[hd.sr.SourceImageForMeasurement(i.sop_class_uid, i.sop_instance_uid, _refs(i))
                           for i in m.images] or None)
    if m.uncertainty_unit is not None:
        for child in item[0].ContentSequence:
            if child.ValueType == "NUM" and child.ConceptNameCodeSequence[0].CodeValue in _UNCERTAINTY:
                child.MeasuredValueSequence[0].MeasurementUnitsCodeSequence = [
                    hd.sr.CodedConcept.from_code(m.uncertainty_unit)]
    return item


def _hd_evaluation(name: Code, value: Code, sites: tuple[Code, ...] = (), probability: Num | None = None
                   ) -> hd.sr.QualitativeEvaluation:
    """highdicom's evaluation, its finding sites (HAS CONCEPT MOD) and probability (HAS PROPERTIES) as children
    (highdicom has no arguments for them)."""
    item = hd.sr.QualitativeEvaluation(name, value)
    kids: list = [hd.sr.FindingSite(c) for c in sites]
    if probability is not None:
        kids.append(hd.sr.NumContentItem(name=probability.name, value=probability.value, unit=probability.unit,
                                         relationship_type="HAS PROPERTIES"))
    if kids:
        item[0].ContentSequence = hd.sr.ContentSequence(kids)
    return item


def _hd_group(g: Group) -> hd.sr.Template:
    common = dict(
        tracking_identifier=hd.sr.TrackingIdentifier(uid=g.uid, identifier=g.identifier),
        finding_type=g.finding_type,
        finding_sites=[hd.sr.FindingSite(c) for c in g.finding_sites] or None,
        algorithm_id=hd.sr.AlgorithmIdentification(*g.algorithm),
        measurements=[_hd_num(m) for m in g.measurements] or None,
        qualitative_evaluations=[_hd_evaluation(*e) for e in g.evaluations] or None,
    )
    if g.region is None:
        return hd.sr.MeasurementsAndQualitativeEvaluations(**common)
    r = g.region
    region = hd.sr.ImageRegion(
        graphic_type=r.graphic_type, graphic_data=np.array(r.graphic_data).reshape(-1, 2),
        source_image=hd.sr.SourceImageForRegion(r.image.sop_class_uid, r.image.sop_instance_uid, _refs(r.image)))
    return hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations(referenced_region=region, **common)


def _pydicom_bytes(groups: list[Group]) -> bytes:
    """pydicom's encoding of highdicom's Imaging Measurements container holding the groups."""
    box = hd.sr.ContainerContentItem(name=Code("126010", "DCM", "Imaging Measurements"), relationship_type="CONTAINS")
    box.ContentSequence = hd.sr.ContentSequence([item for g in groups for item in _hd_group(g)])
    fp = DicomBytesIO()
    fp.is_little_endian, fp.is_implicit_VR = True, False
    write_dataset(fp, box, pydicom.charset.convert_encodings(_CHARSET))
    body = fp.getvalue()
    return b"\xfe\xff\x00\xe0" + len(body).to_bytes(4, "little") + body


def _sample(groups: list[Group]) -> list[Group]:
    """A few groups of every shape: keypoints, values (with uncertainty, derivation, several images), findings
    (the phantom's truth has no probabilities: ``test_rare_shapes_are_highdicoms_bytes`` has one)."""
    keypoints = [g for g in groups if not g.measurements and not g.evaluations][:3]
    values = [g for g in groups if g.measurements and not g.evaluations]
    derived = [g for g in values if any(m.derivation is not None for m in g.measurements)][:2]
    findings = [g for g in groups if g.evaluations]
    with_p = [g for g in findings if g.measurements][:2]
    without_p = [g for g in findings if not g.measurements][:2]
    assert keypoints and values and derived and without_p
    return keypoints + values[:2] + derived + with_p + without_p


def test_groups_are_highdicoms_bytes(xray_case: tuple[Study, StudyResult]) -> None:
    study, result = xray_case
    sources = load_sources(study, result)
    groups, _ = sr_groups(result, sources, provenance(result.algorithm, result.pipeline))
    sample = _sample(groups)
    assert ContentEncoder(_CHARSET).imaging_measurements(sample) == _pydicom_bytes(sample)


def test_rare_shapes_are_highdicoms_bytes() -> None:
    """Non-ASCII text, a multi-frame reference, a long code value, a POINT region, a TID 1501 group, an int NUM,
    a probability with a finding."""
    frame_ref = ImageRef("1.2.840.10008.5.1.4.1.1.4.1", "1.2.3.4", (2, 5))
    long_code = Code("a-code-value-longer-than-16", "99TEST", "Long code")
    groups = [
        Group("Höhe C3 [neutral]", "1.2.3.99.1", ("algo", "1.0"),
              region=Region("POINT", (10.5, 20.25), frame_ref),
              finding_type=long_code, finding_sites=(Code("5329002", "SCT", "C4 vertebra"),),
              measurements=(Num(Code("M-X", "99TEST", "Größe"), 3, Code("mm", "UCUM", "millimeter"),
                                images=(frame_ref,)),)),
        Group("no region", "1.2.3.99.2", ("algo", "1.0"),
              evaluations=((Code("F-X", "99TEST", "Finding x"), Code("52101004", "SCT", "Present")),
                           (Code("F-Y", "99TEST", "Finding y"), Code("272519000", "SCT", "Absent"),
                            (Code("5329002", "SCT", "C4 vertebra"), Code("36978003", "SCT", "C5 vertebra"))))),
        Group("with probability", "1.2.3.99.3", ("algo", "1.0"), region=Region("POLYLINE", (1, 2, 3, 4.5), frame_ref),
              measurements=(Num(Code("122157", "DCM", "Probability"), 0.25, Code("1", "UCUM", "no units")),),
              evaluations=((Code("F-X", "99TEST", "Finding x"), Code("272519000", "SCT", "Absent")),)),
        Group("probability under the evaluation", "1.2.3.99.4", ("algo", "1.0"),
              region=Region("POINT", (1.5, 2.5), frame_ref),
              evaluations=((Code("F-X", "99TEST", "Finding x"), Code("52101004", "SCT", "Present"),
                            (Code("5329002", "SCT", "C4 vertebra"),),
                            Num(Code("122157", "DCM", "Probability"), 0.875, Code("1", "UCUM", "no units"))),)),
    ]
    assert ContentEncoder(_CHARSET).imaging_measurements(groups) == _pydicom_bytes(groups)


def test_invalid_regions_are_refused() -> None:
    enc = ContentEncoder()
    ref = ImageRef("1.2.840.10008.5.1.4.1.1.1.1", "1.2.3")
    for kind, data in (("POINT", (1.0, 2.0, 3.0, 4.0)), ("POLYLINE", (1.0, 2.0)), ("MULTIPOINT", (1.0, 2.0, 3.0, 4.0))):
        with pytest.raises(ValueError):
            enc.region(Region(kind, data, ref))
