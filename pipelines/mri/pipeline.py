"""``MriPipeline``: a cervical sagittal MR study -> level localisation, masks and per-level findings.

Steps: choose the series (T2 preferred), read it into a canonical volume (anterior left, head up),
localise the five disc centres C2-C3..C6-C7 on the mid-sagittal slice (heatmaps) with disc and canal
masks, classify spine-aligned crops per level (mid-sagittal slices for disc and canal, the slices about
14 mm to each side for the foramina), check that the level chain is anatomically plausible (``plausibility``:
confidence, order, spacing, canal continuity, C2 in view; a level that fails is "not assessable" with the
reason, not graded), and turn probabilities into findings (``grading``).

Every keypoint and mask is returned in the stored pixel grid of the slice it belongs to (x right,
y down). The disc-centre keypoints are also placed on the two foraminal slices, at the same in-plane
position (the level localisation projected laterally; the foramina themselves are not localised).
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from pipelines.interfaces import ModelSet, MriModel, VolumeAnalysis
from pipelines.mri.grading import study_findings
from pipelines.mri.plausibility import check_chain
from pipelines.mri.preprocessing import SeriesVolume, choose_series, load_series
from pipelines.results import ImageResult, Keypoint, Mask, StudyResult
from pipelines.study import Instance, Study
from pipelines.vocabulary import FORAMEN_LATERAL_MM, LEVELS, PipelineName


class MriPipeline:
    """Analyse the cervical sagittal MR series of one study (see module docstring)."""

    name = PipelineName.MRI

    def __init__(self, model: MriModel) -> None:
        """``model``: disc-level localisation and per-level grading (``interfaces.MriModel``)."""
        self.model = model

    @classmethod
    def from_models(cls, models: ModelSet) -> MriPipeline:
        if models.mri is None:
            raise ValueError("the MRI model is not configured")
        return cls(models.mri)

    def run(self, study: Study, instances: tuple[Instance, ...]) -> StudyResult:
        if not instances:
            raise ValueError("MriPipeline.run needs at least one MR instance")
        chosen, warnings = choose_series(instances)
        sv = load_series(chosen)
        mid, left, right = sv.mid_slice, sv.lateral_slice("left"), sv.lateral_slice("right")
        for side, k in (("left", left), ("right", right)):
            off = abs(sv.lateral_mm[k] - sv.lateral_mm[mid])
            if abs(off - FORAMEN_LATERAL_MM) > 4.0:
                warnings.append(f"{side} foraminal findings read from a slice {off:.1f} mm from the mid-sagittal "
                                f"slice (expected about {FORAMEN_LATERAL_MM:g} mm): less reliable")
        va = self.model.analyse(sv.volume, sv.pixel_spacing_mm, mid, left, right)
        result = StudyResult(
            study_uid=study.study_uid, pipeline=self.name,
            algorithm=self.model.algorithm,
            warnings=warnings,
        )
        check = check_chain(va.centres_px, sv.pixel_spacing_mm, va.peak, va.sigma_px, va.canal_mask,
                            second_peak=va.second_peak, view_top_px=va.view_top_px, moved_mm=va.moved_mm)
        skip = {level: check.reason(level) for level in check.failed}
        if skip:
            result.warnings.append(f"{', '.join(skip)} not assessable (level localisation failed the plausibility "
                                   f"check): " + "; ".join(f"{lv}: {r}" for lv, r in skip.items()))
        for k, role in ((mid, "mid"), (left, "left"), (right, "right")):
            if role != "mid" and k == mid:
                continue
            if role == "right" and k == left:
                continue
            img = self._image_result(sv, k, va)
            if role == "mid":
                img.masks = self._masks(sv, k, va)
            result.images.append(img)
        result.findings = study_findings(va.probabilities, skip)
        return result

    @staticmethod
    def _image_result(sv: SeriesVolume, k: int, va: VolumeAnalysis) -> ImageResult:
        uid = sv.sop_uids[k]
        kps = []
        for j, level in enumerate(LEVELS):
            x, y = sv.to_stored(float(va.centres_px[j, 0]), float(va.centres_px[j, 1]))
            kps.append(Keypoint(name=f"{level} disc", x=round(x, 2), y=round(y, 2),
                                sigma_px=round(float(va.sigma_px[j]), 3), image_uid=uid))
        return ImageResult(image_uid=uid, series_uid=sv.series_uid, view=None, rows=sv.rows, columns=sv.columns,
                           pixel_spacing_mm=sv.pixel_spacing_mm, keypoints=kps)

    @staticmethod
    def _masks(sv: SeriesVolume, k: int, va: VolumeAnalysis) -> list[Mask]:
        """Per-level disc masks (components assigned to the nearest disc centre) and the canal mask."""
        uid = sv.sop_uids[k]
        lab, n = ndimage.label(va.disc_mask)
        per_level = [np.zeros_like(va.disc_mask) for _ in LEVELS]
        if n:
            com = np.array(ndimage.center_of_mass(va.disc_mask, lab, range(1, n + 1)))  # (y, x)
            sizes = ndimage.sum(va.disc_mask, lab, range(1, n + 1))
            for i in range(n):
                d = np.hypot(va.centres_px[:, 0] - com[i, 1], va.centres_px[:, 1] - com[i, 0])
                j = int(np.argmin(d))
                if d[j] * sv.pixel_spacing_mm[0] < 8.0 and sizes[i] >= 4:
                    per_level[j] |= lab == i + 1
        masks = [Mask(label=f"{level} disc", image_uid=uid, array=sv.stored_array(m).copy())
                 for level, m in zip(LEVELS, per_level, strict=True) if m.any()]
        if va.canal_mask.any():
            masks.append(Mask(label="spinal canal", image_uid=uid, array=sv.stored_array(va.canal_mask).copy()))
        return masks
