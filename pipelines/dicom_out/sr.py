"""TID 1500 Comprehensive 3D SR of one ``StudyResult`` (IHE AI Results), laid out for a reading room.

Tree::

    Imaging Measurement Report (126000, TID 1500)
      language, device observer (the algorithm), procedure reported (the imaging procedure)
      Image Library: every source image highdicom can describe (see ``library_images``)
      Imaging Measurements (all TID 1410 groups, each with one SCOORD on its image)
        findings first: one group per finding - coded Finding, coded evaluation with the finding sites
                   (HAS CONCEPT MOD) and a classifier's probability NUM (HAS PROPERTIES) as its children - on the
                   figure of the first measurement it rests on, without a label
        per radiograph with vertebral corners:
          "Vertebral corners C2-C7 [view]": the 24 corner keypoints as one open POLYLINE (per vertebra C2..C7:
                   AS, PS, PI, AI; ``graphics.corner_graphic``) holding every value of that view as a NUM
                   (UCUM unit, finding sites, method/derivation, +/- uncertainty of the 95 % interval, source
                   images): Cobb angle, SVA, curvature index, segmental angles, canal, Pavlov, body, the
                   listheses of normal levels, curvature offsets; the first view of a
                   flexion-extension pair also holds the differences (the identifier then names both views)
          figures without a NUM: Cobb lines (C2 and C7 inferior endplates), SVA plumb line, the spinolaminar
                   line (its six points); any other keypoint as a POINT
          the two posterior walls of a level whose listhesis is abnormal (``LISTHESIS_SHOWN_MM``) holding that
                   listhesis distance as their one NUM, so its label sits beside the level
        per image without corners (MRI ...): each keypoint as a POINT, each value its own group on its figure
        nothing on a rejected radiograph (``ImageResult.rejected``: it failed the plausibility or uncertainty
                   gate); the reason is a remark. A finding resting on it lands on another view's figure, like
                   any "not measurable" finding whose own figure is missing; with every view rejected there
                   are no groups and the Imaging Measurements container is left out
      Qualitative Evaluations: research-use statement, algorithm, findings (evidence, rule), values not
                   measurable, values without a figure, warnings, the prior comparison

What OHIF 3.13.2 does with it (extensions/cornerstone-dicom-sr): it draws every group's first SCOORD on its
image and labels the group with "<concept meaning>: <value> <unit code>" for at most five of its NUMs, then
"363698007: <meaning>" for a group-level SCT finding site (so no site sits on a group). Only the corner group
and an abnormal level's walls have NUMs, so each view gets one label box: Cobb angle, SVA, curvature index, ...,
and a "Spondylolisthesis distance" label beside each abnormal level (the
other values stay in the SR and the report; OHIF lists values only for measurements it can hydrate, and it
cannot hydrate a NUM whose SCOORD is not inside the NUM). It merges groups that share a Tracking UID and fails
on a group without a SCOORD, so every group has its own UID and a SCOORD, and what has no geometry is a remark.
"""

from __future__ import annotations

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset
from pydicom.sr.codedict import codes as dcm_codes
from pydicom.sr.coding import Code

from pipelines.dicom_out import codes
from pipelines.dicom_out._sources import Sources
from pipelines.dicom_out.graphics import (
    CORNER_ORDER,
    Graphic,
    corner_graphic,
    keypoint_graphics,
    measurement_graphic,
    sites_graphic,
    spinolaminar_graphic,
)
from pipelines.dicom_out.identity import RESEARCH_STATEMENT, SERIES_DESCRIPTIONS, Provenance, new_uid
from pipelines.dicom_out.sr_compare import comparison_remarks
from pipelines.dicom_out.sr_content import Group, ImageRef, Num, Region, measurement_report
from pipelines.patient.compare import Comparison
from pipelines.results import VERTEBRAE, Finding, ImageResult, Measurement, StudyResult

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


def _figure(g: Graphic) -> Graphic:
    """A figure as the SR draws it: a polyline of 4 or 5 points (a Cobb bracket, two posterior walls, a closed
    quadrilateral) gets the midpoints of its first and last segments - the same line - because OHIF 3.13.2
    takes every 4- or 5-point "Image Region" polyline for its RectangleROI tool and offers to "restore" the SR
    as rectangles; with no such group it marks the SR as not loadable instead (the keypoint groups keep their
    points as they are)."""
    pts = g.closed_points()
    if g.kind != "POLYLINE" or len(pts) not in (4, 5):
        return g
    mid = [pts[0], (pts[0] + pts[1]) / 2, *pts[1:-1], (pts[-2] + pts[-1]) / 2, pts[-1]]
    return Graphic(g.kind, np.array(mid), g.image_uid, g.frame)


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
                         region=_region(_figure(g), sources), measurements=(_measurement_num(m, sources),))
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
    """A finding: its coded type and evaluation, the sites and a classifier's probability (NUM, HAS PROPERTIES)
    under the evaluation, not on the group - OHIF prints a group-level site as "363698007: <site>" and labels a
    group with its NUMs ("Probability: 0.81 1", four at each MRI disc) - drawn without a label on the figure of
    the first measurement it rests on."""
    g = _finding_graphic(f, result)
    if g is None:
        return None
    finding = codes.finding_code(f.key, f.name)
    probability = None if f.probability is None else Num(
        name=codes.PROBABILITY, value=float(f.probability), unit=codes.unit_code("1"))
    return Group(identifier=f"{f.name} {f.site}: {f.value}"[:64], uid=new_uid(), algorithm=_algorithm(prov),
                 region=_region(_figure(g), sources), finding_type=finding,
                 evaluations=((finding, codes.value_code(f.value), _sites(f.site), probability),))


def _algorithm(prov: Provenance) -> tuple[str, str]:
    return prov.model_name, prov.software_version


def _remarks(result: StudyResult, texts: list[str]) -> list[str]:
    """The free-text remarks of TID 1500 row 12: research statement, algorithm, model card, then ``texts``."""
    items = [RESEARCH_STATEMENT, f"Algorithm: {result.algorithm.name} {result.algorithm.version}"]
    if result.algorithm.model_card:
        items.append(f"Model card: {result.algorithm.model_card}")
    return items + texts


LISTHESIS_SHOWN_MM = 3.5
"""A view's listhesis at a level is drawn from this translation on, or when an instability finding is present at
the level (White & Panjabi's 3.5 mm, the pipeline's instability threshold)."""
_VALUE_ORDER = ("cobb", "sva", "curvature_index", "segmental_angle", "sdvc", "pavlov_ratio", "sdvb",
                "listhesis_distance", "listhesis_angle", "curvature_offset")
"""Order of the values a view's corner group holds (by key prefix): OHIF labels a group with its first five NUMs."""


def _shown(m: Measurement, result: StudyResult) -> bool:
    """A single-view value whose figure is drawn: the C2-C7 Cobb angle (C2-C6 when C7 is hidden), the SVA, and
    the listhesis of an abnormal level."""
    if m.key == "cobb_c2_c6":
        return not any(k.key == "cobb_c2_c7" and k.value is not None and k.image_uids == m.image_uids
                       for k in result.measurements)
    if m.key.startswith("cobb") or m.key.startswith("sva"):
        return True
    if m.key == "listhesis_distance":
        unstable = any(f.key == "instability" and f.site == m.site and f.value == "present" for f in result.findings)
        return unstable or abs(float(m.value or 0.0)) >= LISTHESIS_SHOWN_MM
    return False


def _value_key(m: Measurement, result: StudyResult) -> tuple[bool, int, int]:
    """Sort key of a corner group's values: drawn ones first, then by ``_VALUE_ORDER``, then cranio-caudally."""
    order = next((i for i, k in enumerate(_VALUE_ORDER) if m.key.startswith(k)), len(_VALUE_ORDER))
    level = m.site.split()[0].split("-")[0] if m.site else ""
    across = m.view is None and len(set(m.image_uids)) > 1
    return across or not _shown(m, result), order, VERTEBRAE.index(level) if level in VERTEBRAE else -1


def _view_groups(image: ImageResult, index: int, result: StudyResult, values: list[Measurement],
                 prov: Provenance, sources: Sources) -> list[Group]:
    """The groups drawn on one radiograph: the corner polyline (the keypoints) holding ``values`` (this view's,
    and on the first view of a flexion-extension pair the differences), the figures of the drawn values without
    NUMs (Cobb lines, SVA plumb line, listhesis of an abnormal level), the spinolaminar line, and any other
    keypoint as a point. Only the corner group and an abnormal level's walls (its listhesis) have NUMs, so OHIF
    draws one label box on the view and one beside each abnormal level."""
    view = view_label(image, index)
    corners = corner_graphic(image)
    if corners is None:
        return []
    held, g = corners
    used = {f"{v} {r}" for v in held for r in CORNER_ORDER}
    span = held[0] if len(held) == 1 else f"{held[0]}-{held[-1]}"
    across = any(m.view is None and len(set(m.image_uids)) > 1 for m in values)
    ident = f"Vertebral corners {span} [{view}]" + (" + flexion-extension changes" if across else "")
    values = sorted(values, key=lambda m: _value_key(m, result))
    figures = {id(m): f for m in values
               if m.view is not None and _shown(m, result) and (f := measurement_graphic(m, image)) is not None}
    # an abnormal level's listhesis is labelled on its own figure, beside the level (a label box line has no level)
    at_level = {id(m) for m in values if id(m) in figures and m.key.startswith("listhesis")}
    out = [Group(identifier=ident[:64], uid=new_uid(), algorithm=_algorithm(prov), region=_region(g, sources),
                 measurements=tuple(_measurement_num(m, sources) for m in values if id(m) not in at_level))]
    for m in values:
        if id(m) in figures:
            nums = (_measurement_num(m, sources),) if id(m) in at_level else ()
            out.append(Group(identifier=_label(m, result)[:64], uid=new_uid(), algorithm=_algorithm(prov),
                             region=_region(_figure(figures[id(m)]), sources), measurements=nums))
    lam = spinolaminar_graphic(image)
    if lam is not None:
        used.update(f"{v} spinolaminar" for v in VERTEBRAE)
        out.append(Group(identifier=f"Spinolaminar line [{view}]", uid=new_uid(), algorithm=_algorithm(prov),
                         region=_region(lam, sources)))
    for label, _, g in keypoint_graphics(image):
        if g.kind == "POINT" and label not in used:
            out.append(Group(identifier=f"{label} [{view}]"[:64], uid=new_uid(), algorithm=_algorithm(prov),
                             region=_region(g, sources)))
    return out


def _home(m: Measurement, result: StudyResult, with_corners: set[str]) -> str | None:
    """The radiograph whose corner group holds ``m``: its own image, or the first image of a flexion-extension
    difference; None when that image has no corner group."""
    uid = next((i.image_uid for i in _images_for(m.image_uids, m.view, result)), None)
    return uid if uid in with_corners else None


def _point_groups(image: ImageResult, index: int, prov: Provenance, sources: Sources) -> list[Group]:
    """The keypoints of an image without vertebral corners (MRI levels ...), one point each."""
    return [Group(identifier=f"{label} [{view_label(image, index)}]"[:64], uid=new_uid(), algorithm=_algorithm(prov),
                  region=_region(g, sources)) for label, _, g in keypoint_graphics(image)]


def sr_groups(result: StudyResult, sources: Sources, prov: Provenance) -> tuple[list[Group], list[str]]:
    """The measurement groups of ``result`` (see the module docstring) and the remarks: findings first, then
    values not measurable or without a figure, then warnings."""
    groups: list[Group] = []
    texts: list[str] = []
    for f in result.findings:
        grp = _finding_group(f, result, prov, sources)
        if grp is not None:
            groups.append(grp)
        detail = "; ".join(f.evidence)
        rule = f" [rule: {f.threshold}]" if f.threshold else ""
        prob = f" p={f.probability:.2f}" if f.probability is not None else ""
        texts.append(f"{f.name} {f.site}: {f.value}{prob}" + (f" - {detail}" if detail else "") + rule)
    texts += [f"{view_label(image, i)} view not measurable ({image.rejected}): nothing is drawn from its keypoints"
              for i, image in enumerate(result.images) if image.rejected]
    texts += [f"{view_label(image, i)} view canal not measurable ({image.canal_rejected}): its spinolaminar points "
              "are not drawn" for i, image in enumerate(result.images) if image.canal_rejected]
    texts += [f"{_label(m, result)}: {m.not_measurable_text}"
              for m in result.measurements if m.value is None]
    with_corners = {i.image_uid for i in result.images if corner_graphic(i) is not None}
    held: dict[str, list[Measurement]] = {u: [] for u in with_corners}
    own: list[Measurement] = []
    for m in result.measurements:
        if m.value is not None:
            home = _home(m, result, with_corners)
            (held[home] if home is not None else own).append(m)
    for i, image in enumerate(result.images):
        if image.image_uid in with_corners:
            groups += _view_groups(image, i, result, held[image.image_uid], prov, sources)
        else:
            groups += _point_groups(image, i, prov, sources)
    for m in own:
        grp = _measurement_group(m, result, prov, sources)
        if grp is None:
            ci = f" (95% {m.interval[0]:.2f}..{m.interval[1]:.2f})" if m.interval else ""
            texts.append(f"{_label(m, result)}: {m.value:.2f} {m.unit}{ci} (no figure on any image)")
        else:
            groups.append(grp)
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
    groups, remarks = sr_groups(result, sources, prov)  # none when every view was rejected: remarks only
    remarks += comparison_remarks(comparison)
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

