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
from pydicom.sr.coding import Code

from pipelines.dicom_out import codes
from pipelines.dicom_out._sources import Sources
from pipelines.dicom_out.graphics import Graphic, keypoint_graphics, measurement_graphic, sites_graphic
from pipelines.dicom_out.identity import RESEARCH_STATEMENT, SERIES_DESCRIPTIONS, Provenance, new_uid
from pipelines.dicom_out.sr_compare import comparison_remarks
from pipelines.dicom_out.sr_content import Group, ImageRef, Num, Region, measurement_report
from pipelines.patient.compare import Comparison
from pipelines.results import Finding, ImageResult, Measurement, StudyResult

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


def _image(sources: Sources, uid: str, frame: int | None = None) -> ImageRef:
    src = sources[uid]
    frames = sources.frames(uid, frame) if frame is not None else None
    return ImageRef(str(src.SOPClassUID), str(src.SOPInstanceUID), tuple(frames) if frames else None)


def _region(g: Graphic, sources: Sources) -> Region:
    src = sources[g.image_uid]
    data = g.dicom_points(int(src.Rows), int(src.Columns))
    return Region(g.kind, tuple(data.ravel().tolist()), _image(sources, g.image_uid, g.frame))


def _sites(site: str) -> tuple[Code, ...]:
    return tuple(codes.site_codes(site))


def _images_for(uids: tuple[str, ...], view: object, result: StudyResult) -> list[ImageResult]:
    """Images a measurement or finding may be drawn on, most specific first."""
    exact = [i for i in result.images if i.image_uid in uids]
    by_view = [i for i in result.images if view is not None and i.view == view]
    return exact + [i for i in by_view if i not in exact] + [i for i in result.images if i not in exact and i not in by_view]


def _label(m: Measurement, result: StudyResult) -> str:
    view = f" [{m.view.value}]" if m.view is not None else " [flexion-extension]" if m.image_uids and len(m.image_uids) > 1 else ""
    site = "" if m.site in m.name else f" {m.site}"
    return f"{m.name}{site}{view}"


def _measurement_num(m: Measurement, sources: Sources) -> Num:
    """TID 300 of one value: the 95 % interval as +/- uncertainty in the measurement's own unit."""
    assert m.value is not None
    upper = lower = None
    if m.interval is not None:
        lo, hi = m.interval
        upper, lower = float(max(hi - m.value, 0.0)), float(max(m.value - lo, 0.0))
    unit = codes.unit_code(m.unit)
    return Num(
        name=codes.measurement_code(m.key, m.name),
        value=float(m.value),
        unit=unit,
        method=codes.METHOD_CODES.get(m.key),
        derivation=codes.DERIVED_ACROSS_VIEWS if m.view is None and len(set(m.image_uids)) > 1 else None,
        finding_sites=_sites(m.site),
        upper_uncertainty=upper,
        lower_uncertainty=lower,
        uncertainty_unit=unit,
        images=tuple(_image(sources, u) for u in dict.fromkeys(m.image_uids)),
    )


def _measurement_group(m: Measurement, result: StudyResult, prov: Provenance, sources: Sources) -> Group | None:
    candidates = _images_for(m.image_uids, m.view, result)
    graphics = (measurement_graphic(m, image) for image in candidates)
    fallback = (sites_graphic([m.site], image) for image in candidates)  # e.g. a flexion-extension difference
    for g in (*graphics, *fallback):
        if g is not None:
            return Group(identifier=_label(m, result)[:64], uid=new_uid(), algorithm=_algorithm(prov),
                         region=_region(g, sources), measurements=(_measurement_num(m, sources),))
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


def _finding_group(f: Finding, result: StudyResult, prov: Provenance, sources: Sources) -> Group | None:
    g = _finding_graphic(f, result)
    if g is None:
        return None
    finding = codes.finding_code(f.key, f.name)
    probability = () if f.probability is None else (
        Num(name=codes.PROBABILITY, value=float(f.probability), unit=codes.unit_code("1")),)
    return Group(identifier=f"{f.name} {f.site}: {f.value}"[:64], uid=new_uid(), algorithm=_algorithm(prov),
                 region=_region(g, sources), finding_type=finding, finding_sites=_sites(f.site),
                 measurements=probability, evaluations=((finding, codes.value_code(f.value)),))


def _algorithm(prov: Provenance) -> tuple[str, str]:
    return prov.model_name, prov.software_version


def _remarks(result: StudyResult, texts: list[str]) -> list[str]:
    """The free-text remarks of TID 1500 row 12: research statement, algorithm, model card, then ``texts``."""
    items = [RESEARCH_STATEMENT, f"Algorithm: {result.algorithm.name} {result.algorithm.version}"]
    if result.algorithm.model_card:
        items.append(f"Model card: {result.algorithm.model_card}")
    return items + texts


def sr_groups(result: StudyResult, sources: Sources, prov: Provenance) -> tuple[list[Group], list[str]]:
    """The measurement groups of ``result`` (keypoints, measurements, findings; see the module docstring) and the
    remarks for what has no figure (values not measurable, finding evidence, warnings)."""
    groups: list[Group] = []
    texts: list[str] = []
    for i, image in enumerate(result.images):
        for label, site, g in keypoint_graphics(image):
            groups.append(Group(identifier=f"{label} [{view_label(image, i)}]"[:64], uid=new_uid(),
                                algorithm=_algorithm(prov), region=_region(g, sources), finding_sites=_sites(site)))
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
    return groups, _remarks(result, texts)


def build_sr(
    result: StudyResult,
    sources: Sources,
    prov: Provenance,
    *,
    series_uid: str,
    series_number: int,
    previous: list[Dataset] | None = None,
    comparison: Comparison | None = None,
) -> Dataset:
    """The TID 1500 SR of ``result`` (see module docstring for the tree). The measurement groups are encoded by
    ``sr_content`` (read the returned dataset's Content Sequence, or the written file with ``hd.sr.srread``).
    ``comparison`` (the prior study) adds its remarks (``sr_compare``)."""
    groups, remarks = sr_groups(result, sources, prov)
    remarks += comparison_remarks(comparison)
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
    sr = measurement_report(
        evidence=evidence,
        library=library_images(evidence),
        observer=observer,
        procedures=[codes.PROCEDURE_BY_PIPELINE.get(result.pipeline, codes.PROCEDURE_XRAY)],
        groups=groups,
        remarks=remarks,
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

