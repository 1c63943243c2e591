"""The X-ray pipeline: lateral cervical radiographs -> keypoints, measurements, findings (paper 002).

For every radiograph: read pixels (MONOCHROME1 inverted, VOI LUT / window), predict the 30 keypoints with
their spread (an ``interfaces.KeypointModel``; the shipped one is a global stage for the spine, then an
oriented crop per vertebra for its corners), in the original pixels, derive the vertebral-body masks
C2..C7 from the corner quadrilaterals, and measure per view (``geometry.measure_view``) with Monte-Carlo 95 % intervals from the keypoint spread. When flexion and
extension are both present, the dynamic measurements (``geometry.measure_dynamic``) follow. Findings come
from ``findings.findings_from_measurements``. The whole-image classifiers of seeds 003 (curvature class,
neutral view) and 001 (six upper-cervical abnormalities, all three views) run on the same images
(``pipelines.xray.classifiers``); their findings and algorithms join the result. On the neutral view, when
its keypoints passed the uncertainty gate, the per-segment cord-compression model of seed 004 runs on crops
located by those keypoints: one finding per segment C2-C3..C6-C7 and Grad-CAM heat maps on that image.
Each of these models reports "not assessable" with the reason instead of a class when its input is unlike its
training data (its out-of-distribution gate), and the curvature class also when the neutral view's measured C2-C7
Cobb angle contradicts it (``classifiers.check_curvature_geometry``); the reasons also become warnings. The
upper-cervical model's own gate does not catch unlike images, so (``upper_cervical_curvature_check``) its six
findings are also not assessable when the curvature model's gate refuses any of its three views
(``classifiers.check_upper_cervical_input``).

Plausibility gate (``pipelines.xray.plausibility``): before anything is measured, each view's keypoints must look
like a cervical spine (six bodies in order, no overlap, plausible sizes, discs and chain). A view that fails has
every measurement (and the dynamic ones when it is the flexion or extension view) reported as "not measurable:
implausible anatomy: <check>"; the findings from them follow. Such a view (or one failing the uncertainty gate
below) is marked ``ImageResult.rejected`` with the reason and gets no body masks: the DICOM outputs draw no outlines,
measurement figures or segments on it, only the reason; and the seed classifiers skip it (cord compression also
needs the neutral view's canal checks). A view that fails only the canal checks is marked ``canal_rejected``: its
spinolaminar points are not drawn (no spinolaminar line, no canal segment).

Intervals: Monte-Carlo 95 % intervals from the keypoint spread, each side then multiplied by the keypoint model's
calibration factor for that measurement (``KeypointPrediction.interval_scale``, fitted so that the intervals hold the
truth at their stated rate on images unlike the training data; see the model card).

Uncertainty gate: an image whose median keypoint spread exceeds ``max_median_sigma_mm`` is not measured
("not measurable", with the reason); a measurement whose (calibrated) 95 % interval is wider than ``max_interval``
for its unit is reported as not measurable with the interval in the reason.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import ClassVar

import numpy as np
from pydicom.dataset import Dataset

from pipelines.interfaces import ImageClassifier, ImageInputCheck, KeypointModel, ModelSet, SegmentClassifier
from pipelines.raster import fill_polygon
from pipelines.results import AlgorithmInfo, ImageResult, Keypoint, Mask, Measurement, StudyResult
from pipelines.study import Instance, Study
from pipelines.vocabulary import KEYPOINT_NAMES, VERTEBRAE, PipelineName, View
from pipelines.xray.calibration import CalibrationError, measurement_spacing
from pipelines.xray.classifiers import (
    ClassifierOutput,
    check_against_geometry,
    classify_segments,
    classify_views,
)
from pipelines.xray.plausibility import Plausibility, check_view
from pipelines.xray.preprocessing import image_from_dataset, view_of

log = logging.getLogger(__name__)


@dataclass
class _Analysed:
    image: ImageResult
    points: np.ndarray
    sigma_px: np.ndarray
    spacing: tuple[float, float]
    median_sigma_mm: float
    calibrated: bool = True
    pixels: np.ndarray | None = None
    """The radiograph as the models see it (float, [0, 1], bone bright, original pixels)."""
    plausibility: Plausibility = Plausibility()
    """The anatomical plausibility gate's verdict on the predicted keypoints."""
    interval_scale: dict[str, float] = field(default_factory=dict)
    """The keypoint model's interval calibration (``KeypointPrediction.interval_scale``)."""


def corner_quadrilateral(points: np.ndarray, vertebra: int) -> np.ndarray:
    """The vertebral body outline (4, 2) of vertebra index ``vertebra`` (0 = C2) in drawing order
    antero-superior, antero-inferior, postero-inferior, postero-superior."""
    a_s, a_i, p_s, p_i = points[4 * vertebra : 4 * vertebra + 4]
    return np.array([a_s, a_i, p_i, p_s])


def body_masks(points: np.ndarray, rows: int, cols: int, image_uid: str) -> list[Mask]:
    """Vertebral body masks C2..C7 (bool rows x cols) filled from the predicted corner quadrilaterals."""
    return [Mask(f"{name} vertebral body", image_uid, fill_polygon(corner_quadrilateral(points, v), rows, cols))
            for v, name in enumerate(VERTEBRAE)]


def calibrated_interval(m: Measurement, scale: dict[str, float]) -> Measurement:
    """``m`` with each side of its interval (value - low, high - value) multiplied by the factor ``scale`` gives its
    key, else its unit (1 when neither is there): the keypoint model's empirical interval calibration."""
    factor = scale.get(m.key, scale.get(m.unit, 1.0))
    if m.value is None or m.interval is None or factor == 1.0:
        return m
    lo, hi = m.interval
    return replace(m, interval=(m.value - factor * max(m.value - lo, 0.0), m.value + factor * max(hi - m.value, 0.0)))


def _first_reason(why: str, m: Measurement) -> str:
    """"not measurable: <why>", followed by the reason ``m`` was already not measurable for, if any."""
    before = m.reason.removeprefix("not measurable: ") if m.value is None and m.reason else ""
    return f"not measurable: {why}" + (f"; {before}" if before else "")


class XrayPipeline:
    """Lateral cervical radiographs -> ``StudyResult`` (``name = "xray"``), with the models it is handed."""

    name = PipelineName.XRAY
    max_median_sigma_mm: float = 0.3
    """Images whose median keypoint spread (1 sigma, calibrated) is above this are not measured. With the cascade
    (1.1.0) held-out phantoms give 0.17-0.21 mm (mean corner error 0.2 mm); most inputs without a recognisable
    spine (upside-down or rotated radiographs, noise) give 0.3-2.6 mm, but some stay below: the gate is a
    plausibility check, the interval gate (``max_interval``) the second one; see MODEL_CARD.md."""
    max_interval: dict[str, float] = {"deg": 20.0, "mm": 8.0, "1": 0.5}  # noqa: RUF012
    """Widest acceptable 95 % interval per unit."""
    n_samples: int = 400
    upper_cervical_curvature_check: bool = True
    """Withhold the upper-cervical findings ("not assessable", with the reason) when the input gate of the curvature
    model (the first image classifier with an ``input_check``) refuses any of the three views: the upper-cervical
    model's own gate lets renderer-B images through and it calls an abnormality in ~97 % of them. Its pre-registered
    test and cost on renderer A: models/upper_cervical/MODEL_CARD.md."""

    view_threads: int = 3
    """Radiographs of a study read and run through the keypoint model at once (threads; torch and NumPy release
    the GIL in their kernels, and each forward uses the worker's ``torch_threads``); above 1, the seed classifiers
    also run beside the measurements. On this 2-core CPU the X-ray pipeline of a 3-view study takes ~0.65 of the
    time one after another (``bench/analyze_latency.py``); on a busy CPU the threads share the cores. The views' crops
    and activations are then in memory together: peak RSS of the bench study 627 MB against 529 MB one after another.
    1: one after another."""

    warm: ClassVar[bool] = False
    """Whether this process has run the pipeline through, or its models once (a worker sets it after
    ``models.warmup``): until then ``run`` uses no threads, because the first use of a model may import modules and
    Python's imports are not safe from several threads at once."""

    def __init__(self, keypoints: KeypointModel, image_classifiers: Sequence[ImageClassifier] = (),
                 cord_compression: SegmentClassifier | None = None) -> None:
        """``keypoints``: the keypoint model (its ``algorithm`` names the result); ``image_classifiers`` (seeds 003,
        001) and ``cord_compression`` (seed 004) run on the views that passed the gates."""
        self.keypoints = keypoints
        self.image_classifiers = tuple(image_classifiers)
        self.cord_compression = cord_compression

    @classmethod
    def from_models(cls, models: ModelSet) -> XrayPipeline:
        if models.keypoints is None:
            raise ValueError("the X-ray keypoint model is not configured")
        return cls(models.keypoints, models.image_classifiers, models.cord_compression)

    def algorithm(self) -> AlgorithmInfo:
        return self.keypoints.algorithm

    def run(self, study: Study, instances: tuple[Instance, ...]) -> StudyResult:
        from pipelines.xray import findings as findings_mod

        result = StudyResult(study.study_uid, self.name, self.algorithm())
        analysed: list[_Analysed] = []
        threaded = self.view_threads > 1 and XrayPipeline.warm
        for a, warnings in self._analyse_all(instances, threaded):
            result.warnings.extend(warnings)
            if a is not None:
                result.images.append(a.image)
                analysed.append(a)
        if not analysed:
            result.warnings.append("no lateral radiograph could be analysed")
            return result

        by_view: dict[View, list[_Analysed]] = {}
        for a in analysed:
            by_view.setdefault(a.image.view, []).append(a)
        for view, items in by_view.items():
            if len(items) > 1:
                result.warnings.append(
                    f"{len(items)} radiographs labelled {view.value}: each is measured; the dynamic comparison uses "
                    f"the one with the lowest keypoint spread")
        best = {v: min(items, key=lambda a: (not a.plausibility.passed, a.median_sigma_mm))
                for v, items in by_view.items()}
        # the seed classifiers need only the views and their gates: they run beside the measurements (threads)
        if threaded:
            with ThreadPoolExecutor(2, thread_name_prefix="xray-cls") as pool:
                classified_f = pool.submit(self._classify, best)
                cord_f = pool.submit(self._cord_compression, best.get(View.NEUTRAL))
                primary = self._measure(analysed, best, by_view, result)
                classified, cord = classified_f.result(), cord_f.result()
        else:
            primary = self._measure(analysed, best, by_view, result)
            classified, cord = self._classify(best), self._cord_compression(best.get(View.NEUTRAL))
        # findings from one image per view (the best), so that duplicates cannot contradict each other
        result.findings.extend(findings_mod.findings_from_measurements(primary))
        if self.image_classifiers:
            result.warnings.extend(f"seed classifiers skip the {v.value} view: {a.image.rejected}"
                                   for v, a in best.items() if a.image.rejected)
        check_against_geometry(classified, [m for m in primary if m.view == View.NEUTRAL])
        for out in (classified, cord):
            result.findings.extend(out.findings)
            result.contributors.extend(out.algorithms)
            result.warnings.extend(out.warnings)
        if cord.heatmaps:
            best[View.NEUTRAL].image.heatmaps.extend(cord.heatmaps)
        XrayPipeline.warm = True
        return result

    def _measure(self, analysed: list[_Analysed], best: dict[View, _Analysed], by_view: dict[View, list[_Analysed]],
                 result: StudyResult) -> list[Measurement]:
        """Measure every image and the flexion-extension pair into ``result``; returns the measurements of the best
        image per view (and the dynamic ones), from which the findings come."""
        from pipelines.xray import geometry

        rng = np.random.default_rng(0)
        primary: list[Measurement] = []
        for a in analysed:
            ms = self._measure_image(a, geometry, rng)
            result.measurements.extend(ms)
            if best[a.image.view] is a:
                primary.extend(ms)
        flex, ext = best.get(View.FLEXION), best.get(View.EXTENSION)
        if flex is not None and ext is not None:
            try:
                dyn = geometry.measure_dynamic(
                    flex.points, ext.points, flex.spacing, ext.spacing,
                    image_uids=(flex.image.image_uid, ext.image.image_uid),
                    sigma_px=(flex.sigma_px, ext.sigma_px), rng=rng, n_samples=self.n_samples)
            except geometry.GeometryError as exc:
                dyn = []
                result.warnings.append(f"flexion-extension comparison not measurable: {exc}")
            dyn = [calibrated_interval(m, {**ext.interval_scale, **flex.interval_scale}) for m in dyn]
            spread = max(flex.median_sigma_mm, ext.median_sigma_mm)
            if spread > self.max_median_sigma_mm:
                reason = (f"not measurable: keypoint uncertainty too high (median spread {spread:.2f} mm > "
                          f"{self.max_median_sigma_mm:.2f} mm)")
                dyn = [replace(m, value=None, interval=None, reason=reason) for m in dyn]
            elif not (flex.calibrated and ext.calibrated):
                dyn = [m if m.unit != "mm" else replace(m, value=None, interval=None,
                                                        reason="not measurable: no pixel spacing") for m in dyn]
            implausible = [f"{a.image.view.value} view: {a.plausibility.reason}" for a in (flex, ext)
                           if not a.plausibility.passed]
            if implausible:
                dyn = [replace(m, value=None, interval=None, reason="not measurable: " + "; ".join(implausible))
                       for m in dyn]
            dyn = [self._gate(m) for m in dyn]
            result.measurements.extend(dyn)
            primary.extend(dyn)
        elif by_view.keys() & {View.FLEXION, View.EXTENSION}:
            missing = View.EXTENSION if flex is not None else View.FLEXION
            result.warnings.append(f"no {missing.value} radiograph: dynamic instability (flexion-extension) not assessed")
        return primary

    def _classify(self, best: dict[View, _Analysed]) -> ClassifierOutput:
        """The whole-image classifiers of seeds 003 (curvature class) and 001 (upper cervical) on the views that
        passed the gates (plausibility and keypoint uncertainty: not rejected)."""
        plausible = {v: a for v, a in best.items() if not a.image.rejected}
        check = next((m for m in self.image_classifiers if isinstance(m, ImageInputCheck)), None)
        return classify_views(self.image_classifiers,
                              {v: a.pixels for v, a in plausible.items() if a.pixels is not None},
                              {v: a.spacing if a.calibrated else None for v, a in plausible.items()},
                              input_check=check if self.upper_cervical_curvature_check else None)

    def _cord_compression(self, neutral: _Analysed | None) -> ClassifierOutput:
        """Seed 004: cord compression per segment on the neutral view, when its keypoints passed the gate (else only
        the warning why not)."""
        if neutral is None or neutral.pixels is None:
            return ClassifierOutput(warnings=["cord compression model: no neutral view"])
        if neutral.median_sigma_mm > self.max_median_sigma_mm:
            return ClassifierOutput(warnings=[
                f"cord compression model did not run: keypoint uncertainty too high on the neutral view (median "
                f"spread {neutral.median_sigma_mm:.2f} mm > {self.max_median_sigma_mm:.2f} mm)"])
        if not neutral.plausibility.canal_passed:
            return ClassifierOutput(warnings=[f"cord compression model did not run: {neutral.plausibility.canal_reason} "
                                              "(neutral view)"])
        return classify_segments(self.cord_compression, neutral.pixels, neutral.points, neutral.image.image_uid)

    def _analyse_all(self, instances: Sequence[Instance], threaded: bool) -> list[tuple[_Analysed | None, list[str]]]:
        """``_analyse`` of every instance with its own warnings, in the order of ``instances``: the files are read
        and decoded here, one after another (a decoder's first use imports its plugin, and Python's imports are not
        safe from several threads at once), then, if ``threaded``, up to ``view_threads`` radiographs go through the
        keypoint model at once."""
        read: list[tuple[Instance, Dataset | None, np.ndarray | None, list[str]]] = []
        for inst in instances:
            warnings: list[str] = []
            try:
                ds = inst.read()
                read.append((inst, ds, image_from_dataset(ds), warnings))
            except Exception as exc:  # a broken file must not stop the other images
                warnings.append(f"image {inst.sop_instance_uid}: not analysed ({exc})")
                read.append((inst, None, None, warnings))

        def one(item: tuple[Instance, Dataset | None, np.ndarray | None, list[str]]
                ) -> tuple[_Analysed | None, list[str]]:
            inst, ds, image, warnings = item
            return (self._analyse(inst, ds, image, warnings) if ds is not None and image is not None else None), warnings

        n = min(self.view_threads, len(read)) if threaded else 1
        if n <= 1:
            return [one(item) for item in read]
        with ThreadPoolExecutor(n, thread_name_prefix="xray-view") as pool:
            return list(pool.map(one, read))

    def _analyse(self, inst: Instance, ds: Dataset, image: np.ndarray, warnings: list[str]) -> _Analysed:
        uid = inst.sop_instance_uid
        pred = self.keypoints.predict(image)
        view = view_of(ds)
        if view is None:
            view = pred.view
            warnings.append(f"image {uid}: no view in the DICOM attributes; predicted {view.value} "
                            f"(p={pred.view_probs[view]:.2f})")
        try:
            spacing, source = measurement_spacing(ds)
            spacing = (float(spacing[0]), float(spacing[1]))
            if "WARNING" in source:
                warnings.append(f"image {uid}: pixel spacing from {source}")
            calibrated = True
        except CalibrationError as exc:
            warnings.append(f"image {uid}: {exc}; distances not measurable, angles given")
            spacing, calibrated = (1.0, 1.0), False
        rows, cols = image.shape
        kps = [Keypoint(n, float(x), float(y), float(s), uid)
               for n, (x, y), s in zip(KEYPOINT_NAMES, pred.keypoints, pred.sigma_px, strict=True)]
        img = ImageResult(uid, inst.series_uid, view, rows, cols, spacing if calibrated else None, kps)
        outside = [n for n, (x, y) in zip(KEYPOINT_NAMES, pred.keypoints, strict=True)
                   if not (-0.5 <= x <= cols - 0.5 and -0.5 <= y <= rows - 0.5)]
        if outside:
            warnings.append(f"image {uid}: keypoints predicted outside the image: {', '.join(outside)}")
        gate = check_view(pred.keypoints, spacing if calibrated else None, shape=(rows, cols))
        if not gate.canal_passed:
            what = "its measurements are" if not gate.passed else "its canal measurements are"
            warnings.append(f"image {uid} ({view.value}): {gate.canal_reason}; {what} not measurable")
        median_px = float(np.median(pred.sigma_px))
        # without a spacing, gate as if the pixels were 0.15 mm (a typical DX detector pixel)
        median_mm = median_px * float(np.sqrt(spacing[0] * spacing[1])) if calibrated else median_px * 0.15
        # a view rejected as a whole is measured nowhere: the outputs draw nothing from its keypoints
        img.rejected = gate.reason or (self._spread_reason(median_mm) if median_mm > self.max_median_sigma_mm else "")
        if not img.rejected:
            img.masks = body_masks(pred.keypoints, rows, cols, uid)
            img.canal_rejected = gate.canal_reason if not gate.canal_passed else ""
        return _Analysed(img, pred.keypoints, pred.sigma_px, spacing, median_mm, calibrated, image, gate,
                         dict(getattr(pred, "interval_scale", {}) or {}))

    def _measure_image(self, a: _Analysed, geometry, rng: np.random.Generator) -> list[Measurement]:
        uid = a.image.image_uid
        try:
            ms = geometry.measure_view(a.points, a.spacing, view=a.image.view, image_uid=uid, sigma_px=a.sigma_px,
                                       rng=rng, n_samples=self.n_samples)
        except geometry.GeometryError as exc:
            return [Measurement("keypoints", "Keypoint geometry", None, "1", "C2-C7", a.image.view,
                                image_uids=(uid,), reason=str(exc))]
        ms = [calibrated_interval(m, a.interval_scale) for m in ms]
        if not a.calibrated:
            ms = [m if m.unit != "mm" else replace(m, value=None, interval=None,
                                                    reason="not measurable: the image has no pixel spacing")
                  for m in ms]
        if a.median_sigma_mm > self.max_median_sigma_mm:
            reason = f"not measurable: {self._spread_reason(a.median_sigma_mm)}"
            ms = [replace(m, value=None, interval=None, reason=reason) for m in ms]
        gate = a.plausibility  # implausible anatomy is the more telling reason: it comes first
        if not gate.canal_passed:
            ms = [replace(m, value=None, interval=None, reason=_first_reason(why, m)) if (why := gate.reason_for(m.key))
                  else m for m in ms]
        return [self._gate(m) for m in ms]

    def _spread_reason(self, median_sigma_mm: float) -> str:
        return (f"keypoint uncertainty too high (median spread {median_sigma_mm:.2f} mm > "
                f"{self.max_median_sigma_mm:.2f} mm)")

    def _gate(self, m: Measurement) -> Measurement:
        limit = self.max_interval.get(m.unit)
        if m.value is None or m.interval is None or limit is None:
            return m
        width = m.interval[1] - m.interval[0]
        if width > limit:
            return replace(m, value=None, reason=(f"not measurable: 95% interval {m.interval[0]:.1f}..{m.interval[1]:.1f} "
                                                  f"{m.unit} wider than {limit:g} {m.unit}"))
        return m
