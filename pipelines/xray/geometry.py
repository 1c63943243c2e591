"""Measurement geometry on lateral cervical radiographs (pure numpy: no torch, no DICOM).

Input: the 30 keypoints of :data:`pipelines.results.KEYPOINT_NAMES` as a ``(30, 2)`` array of ``(x, y)``
pixels (x right, y down), NaN where a point is missing, and the pixel spacing ``(row, col)`` in mm/px.

**Which spacing.** Pass the spacing *at the patient plane*: ``PixelSpacing`` when the image is calibrated,
otherwise ``ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor`` (see
:func:`pipelines.xray.calibration.measurement_spacing`). Detector-plane spacing overstates anatomical
distances by the magnification (typically 10-20 %). Angles and the Pavlov ratio do not depend on an
isotropic scale, but all geometry is done in mm so that anisotropic spacing is handled correctly.

**Frame.** The image may face either way and be rotated: *anterior* is taken from the keypoints (mean of
anterior-wall midpoint minus posterior-wall midpoint), *cranial* from the vertebral walls (caudal to cranial
corner). An angle is **positive when it turns the anterior end towards cranial**, i.e. *lordosis positive,
kyphosis negative* (paper 002's convention, Cobb < -13 deg = kyphosis over 13 deg).

**Definitions** (paper 002, eq. 9-30, with the clinical definitions where the printed formulas are garbled):

* ``cobb_c2_c7``: angle between the C2 and C7 inferior endplates (AI-PI corners), eq. 11-12. Eq. 12 prints
  ``(k1-k2)/(1-k1 k2)``; the angle between two lines is ``atan((k1-k2)/(1+k1 k2))``. Here it is computed
  from vectors (no slopes, no delta), which also works for vertical endplates. If C7 is missing,
  ``cobb_c2_c6`` is given instead (paper 002: C6 may replace an unclear C7).
* ``sva_c2_c7`` (mm): horizontal (image x) distance from C2's centre - the intersection of the diagonals
  AS-PI and AI-PS of the C2 corners (eq. 16 is garbled; this is the text's definition) - to C7's
  postero-superior corner, **positive when C2 is anterior**; paper 002 reports ``|.|`` (eq. 17). It
  assumes the image vertical is the true vertical, so unlike the others it changes when the image is rotated.
* ``segmental_angle`` per segment ``"C3-C4"``: angle between the upper vertebra's inferior endplate and
  the lower vertebra's superior endplate (disc angle), lordosis positive.
* ``listhesis_distance`` per segment (mm): signed distance of the lower vertebra's postero-superior corner
  from the line extending the upper vertebra's posterior wall (PS-PI), **positive when the upper vertebra
  lies anterior** (anterolisthesis). Eq. 20 prints a wrong ``C``; the line through p1, p2 is
  ``A = y2 - y1, B = x1 - x2, C = x2 y1 - x1 y2``.
* ``listhesis_angle`` per segment: angle between the posterior walls of the two vertebrae (eq. 22-23; eq.
  22 has typos ``p10y``, ``p15z``, ``p18x`` for the upper wall's corners), lordosis positive.
  The flexion-extension differences (:func:`measure_dynamic`) are ``|flexion - extension|`` (paper 002).
* ``sdvb`` per vertebra: distance between the anterior-wall midpoint (AS+AI)/2 and the posterior-wall
  midpoint (PS+PI)/2 (eq. 25-29).
* ``sdvc`` per vertebra: distance from the posterior-wall midpoint to the vertebra's **spinolaminar point**.
  Eq. 30 takes the minimum distance to the spinolaminar line from a segmentation; with keypoints, the
  spinolaminar point is annotated as the point of that vertebra's spinolaminar line nearest to the
  posterior-wall midpoint (Pavlov's definition), so the minimum is that point.
* ``pavlov_ratio`` per vertebra = SDVC / SDVB (eq. 24). Given for C3..C7 (as in paper 002, Fig. 5).
* ``curvature_offset`` per vertebra C3..C6 (mm) and ``curvature_index`` (%): Ishihara's index, the
  distances of the posterior-inferior corners of C3-C6 from the chord C2 PI - C7 PI (anterior positive)
  summed and divided by the chord length, x 100.

Degenerate input raises :class:`GeometryError` (a ``ValueError``); no function returns NaN.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.results import Measurement
from pipelines.vocabulary import KEYPOINT_NAMES, SEGMENTS, VERTEBRAE, View
from pipelines.xray import kernels as k
from pipelines.xray.kernels import GeometryError

__all__ = [
    "GeometryError",
    "MEASUREMENT_NAMES",
    "CONVENTIONS",
    "CANAL_LEVELS",
    "cobb_angle",
    "sva",
    "segmental_angle",
    "segmental_angles",
    "listhesis",
    "sdvb",
    "sdvc",
    "pavlov",
    "curvature_offsets",
    "curvature_index",
    "measure_view",
    "measure_dynamic",
]

MEASUREMENT_NAMES: dict[str, str] = {
    "cobb_c2_c7": "C2-C7 Cobb angle",
    "cobb_c2_c6": "C2-C6 Cobb angle",
    "sva_c2_c7": "C2-C7 sagittal vertical axis",
    "segmental_angle": "Segmental (disc) angle",
    "listhesis_distance": "Spondylolisthesis distance (translation)",
    "listhesis_angle": "Spondylolisthesis angle (posterior wall angulation)",
    "sdvb": "Sagittal diameter of vertebral body",
    "sdvc": "Sagittal diameter of vertebral canal",
    "pavlov_ratio": "Pavlov ratio",
    "curvature_index": "Cervical curvature index (Ishihara)",
    "curvature_offset": "Offset of the posterior-inferior corner from the C2-C7 chord (Ishihara)",
}
"""Human-readable names of the measurement keys (shared with the phantom's ground truth)."""

CANAL_LEVELS: tuple[str, ...] = ("C3", "C4", "C5", "C6", "C7")
"""Vertebrae at which SDVB, SDVC and the Pavlov ratio are measured."""

CONVENTIONS: dict[str, str] = {
    "cobb_c2_c7": "C2 vs C7 inferior endplates; lordosis positive, kyphosis negative (paper 002)",
    "cobb_c2_c6": "C2 vs C6 inferior endplates (C7 not available); lordosis positive, kyphosis negative",
    "sva_c2_c7": "horizontal distance C2 centre (diagonal intersection) to C7 postero-superior corner; "
                 "positive when C2 is anterior",
    "segmental_angle": "upper inferior vs lower superior endplate; lordosis positive",
    "listhesis_distance": "lower postero-superior corner to the upper posterior-wall line; positive when the "
                          "upper vertebra is anterior (anterolisthesis)",
    "listhesis_angle": "upper vs lower posterior wall; lordosis positive",
    "sdvb": "anterior-wall midpoint to posterior-wall midpoint",
    "sdvc": "posterior-wall midpoint to the spinolaminar point",
    "pavlov_ratio": "SDVC / SDVB",
    "curvature_offset": "posterior-inferior corner to the C2-C7 posterior-inferior chord; anterior positive",
    "curvature_index": "Ishihara: sum of the C3-C6 offsets / chord length x 100; lordosis positive",
}
"""How each measurement is defined and signed (for reports and the SR); copied into ``Measurement.reason``."""

# --------------------------------------------------------------------------------- measurement specs
@dataclass(frozen=True)
class _Spec:
    key: str
    site: str
    unit: str
    needed: tuple[int, ...]
    kernel: Callable[[np.ndarray, bool], np.ndarray]


def _all_corners(vertebrae: Sequence[str] = VERTEBRAE) -> tuple[int, ...]:
    return tuple(4 * VERTEBRAE.index(v) + r for v in vertebrae for r in range(4))


def _specs() -> list[_Spec]:
    specs: list[_Spec] = [
        _Spec("cobb_c2_c7", "C2-C7", "deg", _all_corners(("C2", "C7")), lambda p, s: k.cobb(p, "C2", "C7", s)),
        _Spec("sva_c2_c7", "C2-C7", "mm", _all_corners(("C2",)) + (k.idx("C7", "PS"),), lambda p, s: k.sva(p, s)),
    ]
    for seg in SEGMENTS:
        up, lo = seg.split("-")
        both = _all_corners((up, lo))
        specs.append(_Spec("segmental_angle", seg, "deg", both, lambda p, s, g=seg: k.segmental(p, g, s)))
        specs.append(_Spec("listhesis_distance", seg, "mm", both, lambda p, s, g=seg: k.translation(p, g, s)))
        specs.append(_Spec("listhesis_angle", seg, "deg", both, lambda p, s, g=seg: k.wall_angle(p, g, s)))
    for v in CANAL_LEVELS:
        c = _all_corners((v,))
        specs.append(_Spec("sdvb", v, "mm", c, lambda p, s, v=v: k.sdvb(p, v, s)))
        specs.append(_Spec("sdvc", v, "mm", c + (k.sl(v),), lambda p, s, v=v: k.sdvc(p, v, s)))
        specs.append(_Spec("pavlov_ratio", v, "1", c + (k.sl(v),), lambda p, s, v=v: k.pavlov(p, v, s)))
    pis = tuple(k.idx(v, "PI") for v in VERTEBRAE) + _all_corners()
    for j, v in enumerate(("C3", "C4", "C5", "C6")):
        specs.append(_Spec("curvature_offset", v, "mm", pis, lambda p, s, j=j: k.offsets(p, s)[:, j]))
    specs.append(_Spec("curvature_index", "C2-C7", "%", pis, lambda p, s: k.curvature_index(p, s)))
    return specs


_SPECS = _specs()
_SPEC_BY_KEY = {(s.key, s.site): s for s in _SPECS}


def _keypoint_names(spec: _Spec) -> tuple[str, ...]:
    if spec.key.startswith("curvature"):
        return tuple(KEYPOINT_NAMES[k.idx(v, "PI")] for v in VERTEBRAE)
    return tuple(KEYPOINT_NAMES[i] for i in spec.needed)


def _single(points: np.ndarray, spacing_mm: Sequence[float], spec: _Spec) -> float:
    p = k.to_mm(k.as_points(points), k.as_spacing(spacing_mm))[None]
    k.require(p[0], spec.needed, f"{spec.key} {spec.site}")
    value = float(spec.kernel(p, True)[0])
    if not np.isfinite(value):
        raise GeometryError(f"{spec.key} {spec.site}: degenerate keypoints (result not finite)")
    return value


# ------------------------------------------------------------------------------------ public scalars
def cobb_angle(points: np.ndarray, spacing_mm: Sequence[float], upper: str = "C2", lower: str = "C7") -> float:
    """Cobb angle (deg) between the inferior endplates of ``upper`` and ``lower``; lordosis positive."""
    if upper not in VERTEBRAE or lower not in VERTEBRAE or upper == lower:
        raise GeometryError(f"bad vertebrae for a Cobb angle: {upper}, {lower}")
    spec = _Spec(f"cobb_{upper}_{lower}".lower(), f"{upper}-{lower}", "deg", _all_corners((upper, lower)),
                 lambda p, s: k.cobb(p, upper, lower, s))
    return _single(points, spacing_mm, spec)


def sva(points: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """C2-C7 SVA (mm): C2 centre to C7 postero-superior corner along image x; C2 anterior positive."""
    return _single(points, spacing_mm, _SPEC_BY_KEY[("sva_c2_c7", "C2-C7")])


def segmental_angle(points: np.ndarray, spacing_mm: Sequence[float], segment: str) -> float:
    """Disc angle (deg) of ``segment`` (e.g. ``"C4-C5"``); lordosis positive."""
    return _single(points, spacing_mm, _spec("segmental_angle", segment))


def segmental_angles(points: np.ndarray, spacing_mm: Sequence[float]) -> dict[str, float]:
    """Disc angles (deg) of all segments C2-C3..C6-C7 (raises if any is not measurable)."""
    return {seg: segmental_angle(points, spacing_mm, seg) for seg in SEGMENTS}


def listhesis(points: np.ndarray, spacing_mm: Sequence[float], segment: str) -> tuple[float, float]:
    """(translation mm, angulation deg) of ``segment`` on one view: anterolisthesis and lordosis positive."""
    return (_single(points, spacing_mm, _spec("listhesis_distance", segment)),
            _single(points, spacing_mm, _spec("listhesis_angle", segment)))


def sdvb(points: np.ndarray, spacing_mm: Sequence[float], vertebra: str) -> float:
    """Sagittal diameter of the vertebral body (mm)."""
    return _single(points, spacing_mm, _spec("sdvb", vertebra))


def sdvc(points: np.ndarray, spacing_mm: Sequence[float], vertebra: str) -> float:
    """Sagittal diameter of the canal (mm): posterior-wall midpoint to the spinolaminar point."""
    return _single(points, spacing_mm, _spec("sdvc", vertebra))


def pavlov(points: np.ndarray, spacing_mm: Sequence[float], vertebra: str) -> float:
    """Pavlov (Torg-Pavlov) ratio SDVC / SDVB (unitless)."""
    return _single(points, spacing_mm, _spec("pavlov_ratio", vertebra))


def curvature_offsets(points: np.ndarray, spacing_mm: Sequence[float]) -> dict[str, float]:
    """Ishihara offsets (mm, anterior positive) of the C3..C6 posterior-inferior corners from the C2-C7 chord."""
    return {v: _single(points, spacing_mm, _spec("curvature_offset", v)) for v in ("C3", "C4", "C5", "C6")}


def curvature_index(points: np.ndarray, spacing_mm: Sequence[float]) -> float:
    """Ishihara cervical curvature index (%): sum of the C3-C6 offsets / chord length x 100; lordosis positive."""
    return _single(points, spacing_mm, _SPEC_BY_KEY[("curvature_index", "C2-C7")])


def _spec(key: str, site: str) -> _Spec:
    try:
        return _SPEC_BY_KEY[(key, site)]
    except KeyError:
        raise GeometryError(f"no measurement {key!r} at {site!r}") from None


# ------------------------------------------------------------------------------------ whole views
def _samples(points_px: np.ndarray, sigma_px: np.ndarray | None, rng: np.random.Generator | None,
             n: int) -> np.ndarray | None:
    if sigma_px is None:
        return None
    s = np.asarray(sigma_px, dtype=float)
    if s.shape != (len(KEYPOINT_NAMES),) or np.any(s < 0):
        raise GeometryError(f"sigma_px must be (30,) non-negative, got shape {s.shape}")
    rng = rng if rng is not None else np.random.default_rng(0)
    s = np.where(np.isfinite(s), s, 0.0)
    return points_px[None] + rng.standard_normal((n, len(KEYPOINT_NAMES), 2)) * s[None, :, None]


def _interval(values: np.ndarray) -> tuple[float, float] | None:
    v = values[np.isfinite(values)]
    if v.size < max(8, values.size // 2):
        return None
    lo, hi = np.percentile(v, [2.5, 97.5])
    return (float(lo), float(hi))


def _mask_points(points: np.ndarray, visible: np.ndarray | None) -> np.ndarray:
    p = k.as_points(points).copy()
    if visible is not None:
        vis = np.asarray(visible, dtype=bool)
        if vis.shape != (len(KEYPOINT_NAMES),):
            raise GeometryError(f"visible must be (30,) bool, got shape {vis.shape}")
        p[~vis] = np.nan
    return p


def measure_view(points: np.ndarray, spacing_mm: tuple[float, float], *, view: View | None = None,
                 image_uid: str = "", sigma_px: np.ndarray | None = None, rng: np.random.Generator | None = None,
                 n_samples: int = 256, visible: np.ndarray | None = None) -> list[Measurement]:
    """All per-view measurements of one radiograph.

    ``points`` (30, 2) px with NaN for missing points (``visible`` False also counts as missing);
    ``spacing_mm`` (row, col) at the patient plane. A measurement that cannot be made is returned with
    ``value=None`` and the reason. With ``sigma_px`` (30,), each value gets a Monte-Carlo 95 % interval
    from ``n_samples`` perturbations of the keypoints (isotropic Gaussian, sigma in px).
    """
    p_px = _mask_points(points, visible)
    spacing = k.as_spacing(spacing_mm)
    p = k.to_mm(p_px, spacing)[None]
    samples_px = _samples(p_px, sigma_px, rng, n_samples)
    samples = k.to_mm(samples_px, spacing) if samples_px is not None else None
    uids = (image_uid,) if image_uid else ()
    out: list[Measurement] = []
    for spec in _SPECS:
        out.append(_measure(spec, p, samples, view, uids))
    cobb = out[0]
    if cobb.value is None and not np.all(np.isfinite(p[0, list(_all_corners(("C7",)))])):
        sub = _Spec("cobb_c2_c6", "C2-C6", "deg", _all_corners(("C2", "C6")), lambda q, s: k.cobb(q, "C2", "C6", s))
        m = _measure(sub, p, samples, view, uids)
        out.insert(1, Measurement(**{**m.__dict__, "reason": "C7 not available: C6 used instead (paper 002)"}))
    return out


def _measure(spec: _Spec, p: np.ndarray, samples: np.ndarray | None, view: View | None,
             uids: tuple[str, ...]) -> Measurement:
    name = MEASUREMENT_NAMES[spec.key]
    try:
        k.require(p[0], spec.needed, f"{spec.key} {spec.site}")
        value = float(spec.kernel(p, True)[0])
        if not np.isfinite(value):
            raise GeometryError(f"{spec.key} {spec.site}: degenerate keypoints (result not finite)")
    except GeometryError as exc:
        return Measurement(key=spec.key, name=name, value=None, unit=spec.unit, site=spec.site, view=view,
                           image_uids=uids, keypoints=_keypoint_names(spec), reason=str(exc))
    interval = None
    if samples is not None:
        with np.errstate(all="ignore"):
            interval = _interval(spec.kernel(samples, False))
    return Measurement(key=spec.key, name=name, value=value, unit=spec.unit, site=spec.site, view=view,
                       interval=interval, image_uids=uids, keypoints=_keypoint_names(spec),
                       reason=CONVENTIONS[spec.key])


def measure_dynamic(flexion: np.ndarray, extension: np.ndarray, spacing_flexion: tuple[float, float],
                    spacing_extension: tuple[float, float], *, image_uids: tuple[str, str] = ("", ""),
                    sigma_px: tuple[np.ndarray | None, np.ndarray | None] = (None, None),
                    rng: np.random.Generator | None = None, n_samples: int = 256,
                    visible: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> list[Measurement]:
    """Flexion-extension differences per segment: ``|flexion - extension|`` of translation (mm) and of
    posterior-wall angulation (deg), ``view=None`` (paper 002; White & Panjabi's instability measures)."""
    pf = k.to_mm(_mask_points(flexion, visible[0]), k.as_spacing(spacing_flexion))[None]
    pe = k.to_mm(_mask_points(extension, visible[1]), k.as_spacing(spacing_extension))[None]
    rng = rng if rng is not None else np.random.default_rng(0)
    sf = _samples(pf[0] / np.array([spacing_flexion[1], spacing_flexion[0]]), sigma_px[0], rng, n_samples)
    se = _samples(pe[0] / np.array([spacing_extension[1], spacing_extension[0]]), sigma_px[1], rng, n_samples)
    if sf is not None and se is None:
        se = np.repeat(pe / np.array([spacing_extension[1], spacing_extension[0]]), n_samples, axis=0)
    if se is not None and sf is None:
        sf = np.repeat(pf / np.array([spacing_flexion[1], spacing_flexion[0]]), n_samples, axis=0)
    if sf is not None and se is not None:
        sf, se = k.to_mm(sf, k.as_spacing(spacing_flexion)), k.to_mm(se, k.as_spacing(spacing_extension))
    uids = tuple(u for u in image_uids if u)
    out: list[Measurement] = []
    for key in ("listhesis_distance", "listhesis_angle"):
        for seg in SEGMENTS:
            spec = _SPEC_BY_KEY[(key, seg)]
            name = MEASUREMENT_NAMES[key] + " change (flexion - extension)"
            try:
                vals = []
                for p, label in ((pf, "flexion"), (pe, "extension")):
                    try:
                        k.require(p[0], spec.needed, f"{key} {seg}")
                        v = float(spec.kernel(p, True)[0])
                    except GeometryError as exc:
                        raise GeometryError(f"{label}: {exc}") from None
                    vals.append(v)
                value = abs(vals[0] - vals[1])
            except GeometryError as exc:
                out.append(Measurement(key=key, name=name, value=None, unit=spec.unit, site=seg, view=None,
                                       image_uids=uids, keypoints=_keypoint_names(spec), reason=str(exc)))
                continue
            interval = None
            if sf is not None and se is not None:
                with np.errstate(all="ignore"):
                    interval = _interval(np.abs(spec.kernel(sf, False) - spec.kernel(se, False)))
            out.append(Measurement(key=key, name=name, value=value, unit=spec.unit, site=seg, view=None,
                                   interval=interval, image_uids=uids, keypoints=_keypoint_names(spec),
                                   reason=f"|flexion - extension| of: {CONVENTIONS[key]}"))
    return out
