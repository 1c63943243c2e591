"""TID 1500 Comprehensive 3D SR of one ``StudyResult`` (IHE AI Results).

Tree::

    Imaging Measurement Report (126000, TID 1500)
      language, device observer (the algorithm), procedure reported (the imaging procedure)
      Image Library: every source image highdicom can describe (see ``library_images``)
      Imaging Measurements
        per image: one group per vertebral body (closed POLYLINE of its 4 corners) and one group of
                   the spinolaminar points (POLYLINE) - the raw keypoints
        per measurement: one TID 1410 group (algorithm), SCOORD of the figure it came from on its image,
                   one NUM (UCUM unit, finding sites, method/derivation, +/- uncertainty of the 95 %
                   interval, source images). The sites sit on the NUM, not the group: OHIF prints every
                   group-level finding site next to the figure, which buries the values.
        per finding: one TID 1410 group with a coded qualitative evaluation (+ probability NUM)
      Qualitative Evaluations: research-use statement, warnings, values not measurable, finding evidence

Every group has its own Tracking Identifier text and a new Tracking UID (OHIF merges groups sharing a
UID) and a SCOORD (OHIF v3.13 fails on a group without one), so things without geometry go to the
text container instead.
"""

from __future__ import annotations

import highdicom as hd
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes

from pipelines.dicom_out import codes
from pipelines.dicom_out._sources import Sources
from pipelines.dicom_out.graphics import Graphic, keypoint_graphics, measurement_graphic, sites_graphic
from pipelines.dicom_out.identity import RESEARCH_STATEMENT, SERIES_DESCRIPTIONS, Provenance, new_uid
from pipelines.results import Finding, ImageResult, Measurement, StudyResult

_Group = hd.sr.PlanarROIMeasurementsAndQualitativeEvaluations
_UNCERTAINTY_CODES = ("371886008", "371885007")  # SCT +, range of upper / -, range of lower uncertainty


_PROJECTION_MODALITIES = {"CR", "DX", "IO", "MG", "PX", "RF", "RG", "XA"}  # highdicom's TID 1603 modalities


def library_images(evidence: list[Dataset]) -> list[Dataset]:
    """The source images the Image Library can describe. highdicom describes a radiograph (TID 1603) by its two
    Patient Orientation values and its Imager Pixel Spacing, and fails on an image without them (a DX or CR that
    omits or empties them); such an image is left out of the library but stays in the SR's evidence and under its
    coordinates, so its results are still reported."""
    def describable(ds: Dataset) -> bool:
        if str(ds.get("Modality", "")) not in _PROJECTION_MODALITIES:
            return True
        orientation = list(ds.get("PatientOrientation") or [])
        spacing = list(ds.get("ImagerPixelSpacing") or [])
        return len(orientation) == 2 and all(str(v) for v in orientation) and len(spacing) == 2

    return [ds for ds in evidence if describable(ds)]


def view_label(image: ImageResult, index: int) -> str:
    return image.view.value if image.view is not None else f"image {index + 1}"


def _region(g: Graphic, sources: Sources) -> hd.sr.ImageRegion:
    src = sources[g.image_uid]
    return hd.sr.ImageRegion(
        graphic_type=g.kind,
        graphic_data=g.dicom_points(int(src.Rows), int(src.Columns)),
        source_image=hd.sr.SourceImageForRegion(src.SOPClassUID, src.SOPInstanceUID, sources.frames(g.image_uid, g.frame)),
    )


def _sites(site: str) -> list[hd.sr.FindingSite]:
    return [hd.sr.FindingSite(c) for c in codes.site_codes(site)]


def _tracking(text: str) -> hd.sr.TrackingIdentifier:
    return hd.sr.TrackingIdentifier(uid=new_uid(), identifier=text[:64])


def _images_for(uids: tuple[str, ...], view: object, result: StudyResult) -> list[ImageResult]:
    """Images a measurement or finding may be drawn on, most specific first."""
    exact = [i for i in result.images if i.image_uid in uids]
    by_view = [i for i in result.images if view is not None and i.view == view]
    return exact + [i for i in by_view if i not in exact] + [i for i in result.images if i not in exact and i not in by_view]


def _label(m: Measurement, result: StudyResult) -> str:
    view = f" [{m.view.value}]" if m.view is not None else " [flexion-extension]" if m.image_uids and len(m.image_uids) > 1 else ""
    site = "" if m.site in m.name else f" {m.site}"
    return f"{m.name}{site}{view}"


def _measurement_item(m: Measurement, prov: Provenance, sources: Sources) -> hd.sr.Measurement:
    assert m.value is not None
    props = None
    if m.interval is not None:
        lo, hi = m.interval
        props = hd.sr.MeasurementProperties(
            upper_measurement_uncertainty=float(max(hi - m.value, 0.0)),
            lower_measurement_uncertainty=float(max(m.value - lo, 0.0)),
        )
    refs = [hd.sr.SourceImageForMeasurement(sources[u].SOPClassUID, u) for u in dict.fromkeys(m.image_uids)]
    item = hd.sr.Measurement(
        name=codes.measurement_code(m.key, m.name),
        value=float(m.value),
        unit=codes.unit_code(m.unit),
        derivation=codes.DERIVED_ACROSS_VIEWS if m.view is None and len(set(m.image_uids)) > 1 else None,
        method=codes.METHOD_CODES.get(m.key),
        finding_sites=_sites(m.site),
        properties=props,
        referenced_images=refs or None,
    )
    # highdicom writes the +/- uncertainty with unit "1"; it is in the measurement's own unit
    for child in item[0].ContentSequence:
        if child.ValueType == "NUM" and child.ConceptNameCodeSequence[0].CodeValue in _UNCERTAINTY_CODES:
            child.MeasuredValueSequence[0].MeasurementUnitsCodeSequence = [hd.sr.CodedConcept.from_code(codes.unit_code(m.unit))]
    return item


def _measurement_group(m: Measurement, result: StudyResult, prov: Provenance, sources: Sources) -> _Group | None:
    candidates = _images_for(m.image_uids, m.view, result)
    graphics = (measurement_graphic(m, image) for image in candidates)
    fallback = (sites_graphic([m.site], image) for image in candidates)  # e.g. a flexion-extension difference
    for g in (*graphics, *fallback):
        if g is not None:
            return _Group(
                tracking_identifier=_tracking(_label(m, result)),
                referenced_region=_region(g, sources),
                algorithm_id=hd.sr.AlgorithmIdentification(prov.model_name, prov.software_version),
                measurements=[_measurement_item(m, prov, sources)],
            )
    return None


def _finding_graphic(f: Finding, result: StudyResult) -> Graphic | None:
    for key, site in f.measurement_keys:
        for m in result.measurements:
            if m.key == key and m.site == site:
                for image in _images_for(m.image_uids, m.view, result):
                    g = measurement_graphic(m, image)
                    if g is not None:
                        return g
    for image in _images_for((), None, result):
        g = sites_graphic([f.site], image)
        if g is not None:
            return g
    return None


def _finding_group(f: Finding, result: StudyResult, prov: Provenance, sources: Sources) -> _Group | None:
    g = _finding_graphic(f, result)
    if g is None:
        return None
    extra: list[hd.sr.Measurement] = []
    if f.probability is not None:
        extra.append(
            hd.sr.Measurement(name=codes.PROBABILITY, value=float(f.probability), unit=codes.unit_code("1"))
        )
    return _Group(
        tracking_identifier=_tracking(f"{f.name} {f.site}: {f.value}"),
        referenced_region=_region(g, sources),
        finding_type=codes.finding_code(f.key, f.name),
        finding_sites=_sites(f.site),
        algorithm_id=hd.sr.AlgorithmIdentification(prov.model_name, prov.software_version),
        measurements=extra or None,
        qualitative_evaluations=[hd.sr.QualitativeEvaluation(codes.finding_code(f.key, f.name), codes.value_code(f.value))],
    )


def _remarks(result: StudyResult, texts: list[str]) -> hd.sr.ContainerContentItem:
    """TID 1500 row 12 container holding free-text remarks (TEXT, CONTAINS)."""
    box = hd.sr.ContainerContentItem(name=codes.QUALITATIVE_EVALUATIONS, relationship_type="CONTAINS")
    items = [RESEARCH_STATEMENT, f"Algorithm: {result.algorithm.name} {result.algorithm.version}"]
    if result.algorithm.model_card:
        items.append(f"Model card: {result.algorithm.model_card}")
    items += texts
    box.ContentSequence = hd.sr.ContentSequence(
        [hd.sr.TextContentItem(name=codes.COMMENT, value=t[:1024], relationship_type="CONTAINS") for t in items]
    )
    return box


def build_sr(
    result: StudyResult,
    sources: Sources,
    prov: Provenance,
    *,
    series_uid: str,
    series_number: int,
    previous: list[Dataset] | None = None,
) -> hd.sr.Comprehensive3DSR:
    """The TID 1500 SR of ``result`` (see module docstring for the tree)."""
    groups: list[_Group] = []
    texts: list[str] = []
    for i, image in enumerate(result.images):
        for label, site, g in keypoint_graphics(image):
            groups.append(
                _Group(
                    tracking_identifier=_tracking(f"{label} [{view_label(image, i)}]"),
                    referenced_region=_region(g, sources),
                    finding_sites=_sites(site),
                    algorithm_id=hd.sr.AlgorithmIdentification(prov.model_name, prov.software_version),
                )
            )
    for m in result.measurements:
        if m.value is None:
            texts.append(f"{_label(m, result)}: not measurable ({m.reason or 'no reason given'})")
            continue
        grp = _measurement_group(m, result, prov, sources)
        if grp is None:
            ci = f" (95% {m.interval[0]:.2f}..{m.interval[1]:.2f})" if m.interval else ""
            texts.append(f"{_label(m, result)}: {m.value:.2f} {m.unit}{ci} (no figure on any image)")
        else:
            groups.append(grp)
    for f in result.findings:
        grp = _finding_group(f, result, prov, sources)
        if grp is not None:
            groups.append(grp)
        detail = "; ".join(f.evidence)
        rule = f" [rule: {f.threshold}]" if f.threshold else ""
        prob = f" p={f.probability:.2f}" if f.probability is not None else ""
        texts.append(f"{f.name} {f.site}: {f.value}{prob}" + (f" - {detail}" if detail else "") + rule)
    texts += [f"Warning: {w}" for w in result.warnings]
    if not groups:
        raise ValueError("nothing to report: the result has no keypoint, measurement or finding with geometry")

    observer = hd.sr.ObserverContext(
        observer_type=dcm_codes.DCM.Device,
        observer_identifying_attributes=hd.sr.DeviceObserverIdentifyingAttributes(
            uid=prov.device_uid(),
            name=prov.model_name,
            manufacturer_name=result.algorithm.manufacturer[:64],
            model_name=prov.model_name,
        ),
    )
    evidence = [sources[i.image_uid] for i in result.images]
    report = hd.sr.MeasurementReport(
        observation_context=hd.sr.ObservationContext(observer_device_context=observer),
        procedure_reported=codes.PROCEDURE_BY_PIPELINE.get(result.pipeline, codes.PROCEDURE_XRAY),
        imaging_measurements=groups,
        referenced_images=library_images(evidence) or None,
    )
    report[0].ContentSequence.append(_remarks(result, texts))
    sr = hd.sr.Comprehensive3DSR(
        evidence=evidence,
        content=report[0],
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=new_uid(),
        instance_number=prov.instance_base,
        manufacturer=result.algorithm.manufacturer[:64],
        is_complete=True,
        is_final=False,
        is_verified=False,
        previous_versions=previous or None,
        contributing_equipment=prov.contributing_equipment(),
        series_description=SERIES_DESCRIPTIONS["sr"],
    )
    sr.CodingSchemeIdentificationSequence = [codes.coding_scheme_identification()]
    sr.ManufacturerModelName = prov.model_name
    sr.SoftwareVersions = prov.software_version
    return sr


def groups_of(sr: Dataset) -> list[Dataset]:
    """Measurement-group content items of an SR (a small reader used by tests and tools)."""
    out: list[Dataset] = []
    for item in sr.ContentSequence:
        if item.ConceptNameCodeSequence[0].CodeValue == "126010":
            out += [g for g in item.ContentSequence if g.ConceptNameCodeSequence[0].CodeValue == "125007"]
    return out

