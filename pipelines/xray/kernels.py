"""Batched geometry kernels behind ``pipelines.xray.geometry`` (pure numpy, mm, no DICOM).

Points are the 30 keypoints of ``vocabulary.KEYPOINT_NAMES`` in mm, shape ``(N, 30, 2)`` (x right, y down);
each kernel returns ``(N,)`` values, NaN for degenerate samples, or raises ``GeometryError`` when ``strict``. The
frame (anterior, cranial) is read from the keypoints, so the image may face either way and be rotated; angles
are positive when they turn the anterior end towards cranial (lordosis positive). ``geometry`` documents each
measurement's definition; this module holds only the vector arithmetic.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipelines.vocabulary import KEYPOINT_NAMES, VERTEBRAE

_ROLES = {"AS": 0, "AI": 1, "PS": 2, "PI": 3}
_MIN_MM = 0.05
"""Vectors shorter than this (mm) are treated as coincident points."""


class GeometryError(ValueError):
    """The keypoints do not allow the measurement (missing, non-finite, coincident or collinear points)."""


def idx(vertebra: str, role: str) -> int:
    return 4 * VERTEBRAE.index(vertebra) + _ROLES[role]


def sl(vertebra: str) -> int:
    return 24 + VERTEBRAE.index(vertebra)


# ------------------------------------------------------------------------------------- input handling
def as_points(points: np.ndarray) -> np.ndarray:
    p = np.asarray(points, dtype=np.float64)
    if p.shape != (len(KEYPOINT_NAMES), 2):
        raise GeometryError(f"expected keypoints of shape (30, 2), got {p.shape}")
    return p


def as_spacing(spacing_mm: Sequence[float]) -> tuple[float, float]:
    try:
        r, c = (float(v) for v in spacing_mm)
    except (TypeError, ValueError) as exc:
        raise GeometryError(f"pixel spacing must be (row, col) mm/px, got {spacing_mm!r}") from exc
    if not (np.isfinite(r) and np.isfinite(c) and r > 0 and c > 0):
        raise GeometryError(f"pixel spacing must be positive and finite, got {(r, c)}")
    return r, c


def to_mm(points_px: np.ndarray, spacing: tuple[float, float]) -> np.ndarray:
    """(..., 30, 2) px -> mm (x * col spacing, y * row spacing)."""
    return points_px * np.array([spacing[1], spacing[0]])


def require(p_mm: np.ndarray, needed: Sequence[int], what: str) -> None:
    bad = [KEYPOINT_NAMES[i] for i in needed if not np.all(np.isfinite(p_mm[..., i, :]))]
    if bad:
        raise GeometryError(f"{what}: missing or non-finite keypoint(s): {', '.join(bad)}")


# ------------------------------------------------------------------------------------- vector helpers
def _cross(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 1] - u[..., 1] * v[..., 0]


def _dot(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    return u[..., 0] * v[..., 0] + u[..., 1] * v[..., 1]


def _norm(u: np.ndarray) -> np.ndarray:
    return np.hypot(u[..., 0], u[..., 1])


def _nonzero(u: np.ndarray, what: str, strict: bool) -> np.ndarray:
    """``u`` with too-short vectors replaced by NaN; raises in strict mode."""
    n = _norm(u)
    short = ~(n >= _MIN_MM)
    if strict and np.any(short):
        raise GeometryError(f"{what}: the two points coincide (< {_MIN_MM} mm apart)")
    return np.where(short[..., None], np.nan, u)


def _signed_angle(u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Angle from u to v in degrees, positive in the sense of positive cross product (image frame)."""
    return np.degrees(np.arctan2(_cross(u, v), _dot(u, v)))


@dataclass(frozen=True)
class _Frame:
    anterior: np.ndarray
    """(N, 2) unit vectors pointing anterior (image mm)."""
    sense: np.ndarray
    """(N,) +1 or -1: sign that makes 'anterior towards cranial' a positive rotation."""


def _frame(p: np.ndarray, strict: bool) -> _Frame:
    """Anatomical directions from all available vertebrae (NaN-tolerant over vertebrae)."""
    c = p[..., :24, :].reshape(p.shape[:-2] + (6, 4, 2))
    ant = 0.5 * (c[..., 0, :] + c[..., 1, :]) - 0.5 * (c[..., 2, :] + c[..., 3, :])
    cran = (c[..., 0, :] - c[..., 1, :]) + (c[..., 2, :] - c[..., 3, :])
    ok = np.all(np.isfinite(ant), axis=-1) & np.all(np.isfinite(cran), axis=-1)
    if strict and not np.any(ok):
        raise GeometryError("no complete vertebra: cannot tell anterior from cranial")
    a = np.nansum(np.where(ok[..., None], ant, 0.0), axis=-2)
    k = np.nansum(np.where(ok[..., None], cran, 0.0), axis=-2)
    a_n, k_n = _norm(a), _norm(k)
    crs = _cross(a, k) / np.maximum(a_n * k_n, 1e-12)
    bad = ~(np.abs(crs) > 0.2) | ~(a_n > _MIN_MM) | ~(k_n > _MIN_MM)
    if strict and np.any(bad):
        raise GeometryError("keypoints are (nearly) collinear: anterior and cranial directions are not distinct")
    unit = a / np.maximum(a_n, 1e-12)[..., None]
    sense = np.where(bad, np.nan, np.sign(crs))
    return _Frame(np.where(bad[..., None], np.nan, unit), sense)


# --------------------------------------------------------------------------------- batched kernels
# Each kernel takes mm points of shape (N, 30, 2) and returns (N,) values (NaN for degenerate samples,
# or raises GeometryError when strict).


def cobb(p: np.ndarray, upper: str, lower: str, strict: bool) -> np.ndarray:
    f = _frame(p, strict)
    u = _nonzero(p[:, idx(upper, "AI")] - p[:, idx(upper, "PI")], f"{upper} inferior endplate", strict)
    v = _nonzero(p[:, idx(lower, "AI")] - p[:, idx(lower, "PI")], f"{lower} inferior endplate", strict)
    return f.sense * _signed_angle(v, u)


def _c2_centre(p: np.ndarray, strict: bool) -> np.ndarray:
    as_, ai, ps, pi = (p[:, idx("C2", r)] for r in ("AS", "AI", "PS", "PI"))
    d1, d2, r = pi - as_, ps - ai, ai - as_
    den = _cross(d1, d2)
    scale = np.maximum(_norm(d1) * _norm(d2), 1e-12)
    bad = ~(np.abs(den) / scale > 1e-3)
    if strict and np.any(bad):
        raise GeometryError("C2 corners are collinear: the diagonals AS-PI and AI-PS do not intersect")
    s = np.where(bad, np.nan, _cross(r, d2) / np.where(bad, 1.0, den))
    return as_ + s[:, None] * d1


def sva(p: np.ndarray, strict: bool) -> np.ndarray:
    f = _frame(p, strict)
    ax = f.anterior[:, 0]
    bad = ~(np.abs(ax) > 0.2)
    if strict and np.any(bad):
        raise GeometryError("anterior direction is (nearly) vertical in the image: SVA needs an upright image")
    c = _c2_centre(p, strict)
    return np.where(bad, np.nan, np.sign(ax) * (c[:, 0] - p[:, idx("C7", "PS"), 0]))


def segmental(p: np.ndarray, seg: str, strict: bool) -> np.ndarray:
    up, lo = seg.split("-")
    f = _frame(p, strict)
    u = _nonzero(p[:, idx(up, "AI")] - p[:, idx(up, "PI")], f"{up} inferior endplate", strict)
    v = _nonzero(p[:, idx(lo, "AS")] - p[:, idx(lo, "PS")], f"{lo} superior endplate", strict)
    return f.sense * _signed_angle(v, u)


def _wall_normal(p: np.ndarray, v: str, strict: bool) -> tuple[np.ndarray, np.ndarray]:
    """Posterior wall vector (PI -> PS) and its unit normal pointing anterior."""
    w = _nonzero(p[:, idx(v, "PS")] - p[:, idx(v, "PI")], f"{v} posterior wall", strict)
    n = np.stack([-w[:, 1], w[:, 0]], axis=-1) / _norm(w)[:, None]
    am = 0.5 * (p[:, idx(v, "AS")] + p[:, idx(v, "AI")])
    pm = 0.5 * (p[:, idx(v, "PS")] + p[:, idx(v, "PI")])
    side = np.sign(_dot(n, am - pm))
    if strict and np.any(side == 0):
        raise GeometryError(f"{v}: anterior wall lies on the posterior wall line")
    return w, n * np.where(side == 0, np.nan, side)[:, None]


def translation(p: np.ndarray, seg: str, strict: bool) -> np.ndarray:
    up, lo = seg.split("-")
    _, n = _wall_normal(p, up, strict)
    return -_dot(p[:, idx(lo, "PS")] - p[:, idx(up, "PI")], n)


def wall_angle(p: np.ndarray, seg: str, strict: bool) -> np.ndarray:
    up, lo = seg.split("-")
    f = _frame(p, strict)
    wu, _ = _wall_normal(p, up, strict)
    wl, _ = _wall_normal(p, lo, strict)
    return f.sense * _signed_angle(wl, wu)


def sdvb(p: np.ndarray, v: str, strict: bool) -> np.ndarray:
    am = 0.5 * (p[:, idx(v, "AS")] + p[:, idx(v, "AI")])
    pm = 0.5 * (p[:, idx(v, "PS")] + p[:, idx(v, "PI")])
    return _norm(_nonzero(am - pm, f"{v} anterior and posterior wall midpoints", strict))


def sdvc(p: np.ndarray, v: str, strict: bool) -> np.ndarray:
    pm = 0.5 * (p[:, idx(v, "PS")] + p[:, idx(v, "PI")])
    return _norm(_nonzero(p[:, sl(v)] - pm, f"{v} posterior wall midpoint and spinolaminar point", strict))


def pavlov(p: np.ndarray, v: str, strict: bool) -> np.ndarray:
    return sdvc(p, v, strict) / sdvb(p, v, strict)


def offsets(p: np.ndarray, strict: bool) -> np.ndarray:
    """(N, 4) Ishihara offsets of C3..C6 PI from the chord C2 PI - C7 PI, anterior positive (mm)."""
    f = _frame(p, strict)
    a, b = p[:, idx("C2", "PI")], p[:, idx("C7", "PI")]
    chord = _nonzero(b - a, "C2 and C7 posterior-inferior corners", strict)
    n = np.stack([-chord[:, 1], chord[:, 0]], axis=-1) / _norm(chord)[:, None]
    n = n * np.sign(_dot(n, f.anterior))[:, None]
    pts = np.stack([p[:, idx(v, "PI")] for v in ("C3", "C4", "C5", "C6")], axis=1)
    return _dot(pts - a[:, None, :], n[:, None, :])


def curvature_index(p: np.ndarray, strict: bool) -> np.ndarray:
    off = offsets(p, strict)
    chord = _norm(p[:, idx("C7", "PI")] - p[:, idx("C2", "PI")])
    return 100.0 * off.sum(axis=1) / chord
