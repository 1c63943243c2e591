"""Decide which pipeline applies to a study, from DICOM header attributes only.

A study may hold lateral cervical radiographs (DX/CR, or their Secondary Capture copies) and/or
cervical sagittal MR series. Anything else is not analysed, and the reason is returned so that the node
can log it. Results produced by this node (SR, SEG, PR, our own SC/PDF reports) are never routed.
"""

from __future__ import annotations

from dataclasses import dataclass

from pipelines.study import Instance, Study
from pipelines.vocabulary import PipelineName

XRAY_MODALITIES = frozenset({"DX", "CR", "RF"})
CSPINE_BODY_PARTS = frozenset({"CSPINE", "NECK", "SPINE", "CERVICAL SPINE", "C-SPINE", ""})
LATERAL_VIEWS = frozenset({"LL", "RL", "LATERAL", "LAT", "LLD", "RLD", ""})
# SOP classes that are results, never inputs (SR, SEG, presentation states, encapsulated PDF).
RESULT_SOP_PREFIXES = ("1.2.840.10008.5.1.4.1.1.88.", "1.2.840.10008.5.1.4.1.1.66.", "1.2.840.10008.5.1.4.1.1.11.",
                       "1.2.840.10008.5.1.4.1.1.104.")
SECONDARY_CAPTURE_PREFIX = "1.2.840.10008.5.1.4.1.1.7"


@dataclass(frozen=True)
class Route:
    """The routing decision for one study: which pipeline gets which instances, or why none."""

    pipeline: PipelineName | None
    """The pipeline, or None when none applies (``reason`` says why)."""
    instances: tuple[Instance, ...] = ()
    reason: str = ""


def _is_result(inst: Instance) -> bool:
    return inst.sop_class_uid.startswith(RESULT_SOP_PREFIXES)


def is_lateral_cspine_radiograph(inst: Instance) -> tuple[bool, str]:
    """True when the header says: projection radiograph, cervical spine (or unspecified), lateral view."""
    if inst.modality not in XRAY_MODALITIES and not inst.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX):
        return False, f"modality {inst.modality or '?'} is not DX/CR"
    if inst.sop_class_uid.startswith(SECONDARY_CAPTURE_PREFIX) and inst.modality not in XRAY_MODALITIES:
        return False, "secondary capture without DX/CR modality"
    bp = inst.body_part.upper().strip()
    if bp not in CSPINE_BODY_PARTS:
        return False, f"body part {bp} is not the cervical spine"
    vp = inst.view_position.upper().strip()
    if vp not in LATERAL_VIEWS:
        return False, f"view position {vp} is not lateral"
    return True, ""


def is_cervical_sagittal_mr(inst: Instance) -> tuple[bool, str]:
    """True for an MR image of the cervical spine whose plane is sagittal (normal mostly along patient x)."""
    if inst.modality != "MR":
        return False, f"modality {inst.modality or '?'} is not MR"
    bp = inst.body_part.upper().strip()
    if bp not in CSPINE_BODY_PARTS:
        return False, f"body part {bp} is not the cervical spine"
    if len(inst.image_orientation) != 6:
        return False, "no ImageOrientationPatient"
    r, c = inst.image_orientation[:3], inst.image_orientation[3:]
    normal_x = abs(r[1] * c[2] - r[2] * c[1])
    if normal_x < 0.8:
        return False, "plane is not sagittal"
    return True, ""


def route(study: Study) -> list[Route]:
    """Return one ``Route`` per applicable pipeline (X-ray, MRI), or a single ``Route(None, reason)``."""
    inputs = [i for i in study.instances if not _is_result(i)]
    if not inputs:
        return [Route(None, reason="study holds only result objects (SR/SEG/PR/PDF)")]
    xray, mri, reasons = [], [], {}
    for inst in inputs:
        ok_x, why_x = is_lateral_cspine_radiograph(inst)
        ok_m, why_m = is_cervical_sagittal_mr(inst)
        if ok_x:
            xray.append(inst)
        elif ok_m:
            mri.append(inst)
        else:
            why = why_m if inst.modality == "MR" else why_x
            reasons[why] = reasons.get(why, 0) + 1
    routes = []
    if xray:
        routes.append(Route(PipelineName.XRAY, tuple(xray)))
    if mri:
        routes.append(Route(PipelineName.MRI, tuple(mri)))
    if routes:
        return routes
    why = "; ".join(f"{n} instance(s): {r}" for r, n in reasons.items())
    return [Route(None, reason=f"no lateral cervical radiograph or cervical sagittal MR: {why}")]
