"""Anatomical plausibility of the disc-level chain found by the MRI model, before anything is graded on it.

Pure numpy, on the canonical mid-sagittal slice (x posterior, y inferior; see ``preprocessing``). A level that
fails a check is reported "not assessable" with the reason (``grading``), not graded. The checks:

* **confidence**: the level's heatmap mass near its peak (``peak``, about 1 when sure) and its spread;
* **stability**: the level stays within ``STABLE_MM`` when the localiser runs again on slightly changed inputs
  (``moved_mm``, from the model: contrast, window position and scale changed a little). A model that
  has learned the anatomy finds the same disc each time; on images unlike its training data a level that jumps
  under such changes is a guess, however confident each single pass is;
* **order**: the five discs strictly cranio-caudal (each below the one before along the chain);
* **spacing**: neighbouring disc centres ``SPACING_MM`` apart (one vertebra and a disc), and regular: no gap
  more than ``REGULARITY`` off the median gap (a missed or doubled level, a level on the wrong structure);
* **canal continuity**: the spinal canal (the model's canal mask) lies behind every disc and runs without a
  break between neighbouring discs;
* **anchor in view**: C2-C3 is counted from C2 above it, so at least ``ANCHOR_MM`` of the image (and of the
  localiser's window) must lie above it, or the whole count may be shifted by one;
* **counting**: levels are named by counting down from C2, so a broken link (order, spacing, canal) makes every
  level below it not assessable too, and so does a chain whose every level above failed a check: a level is named
  only below a level that passed (``UNVERIFIED_ABOVE``; C2-C3 rests on its own checks and the anchor).

What it cannot see: a chain that is regular, continuous and confident but shifted as a whole because the model
took C3-C4 for C2-C3 (no anchor other than the field of view is checked); the evaluation reports how often.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.vocabulary import LEVELS

MIN_PEAK = 0.3
"""Heatmap mass near the peak below which a level's localisation is uncertain."""
MAX_SPREAD_MM = 3.0
"""Heatmap spread (mm) above which a level's localisation is uncertain."""
SPACING_MM = (11.0, 28.0)
"""Plausible distance between neighbouring cervical disc centres (mm)."""
REGULARITY = 0.3
"""Largest relative deviation of a gap from the median gap."""
CANAL_BAND_MM = (1.0, 30.0)
"""Where the canal is looked for behind a disc centre (mm posterior along the disc's normal)."""
CANAL_COVERAGE = 0.8
"""Fraction of the chain between two discs that must have canal behind it."""
SECOND_PEAK = (0.3, 0.5)
"""A level is ambiguous when its heatmap holds more than ``SECOND_PEAK[0]`` of its mass elsewhere, or more than
``SECOND_PEAK[1]`` times its peak."""
STABLE_MM = 5.0
"""Largest move of a level's centre under any of the localiser's re-runs (``moved_mm``) for it to count as stable
(the evaluation's "level found" distance)."""
ANCHOR_MM = 35.0
"""Field needed above C2-C3 (mm) for C2 (body and dens) to be seen."""
UNVERIFIED_ABOVE = "counted from C2 below levels that all failed their checks"
"""The reason of a level that passed its own checks but has no level above it that passed: its name rests on a
count that nothing verified (a whole chain one level off can leave only its lowest level looking right)."""


@dataclass(frozen=True)
class ChainCheck:
    """Reasons per level (empty: plausible) and the reasons that concern the whole chain."""

    level_reasons: dict[str, tuple[str, ...]]
    chain_reasons: tuple[str, ...]

    def reason(self, level: str) -> str:
        """One text for the level: its own reasons and the chain's, '' when it passed."""
        return "; ".join((*self.level_reasons.get(level, ()), *self.chain_reasons))

    @property
    def failed(self) -> list[str]:
        return [lv for lv in LEVELS if self.reason(lv)]


def _tangents(c: np.ndarray) -> np.ndarray:
    t = np.gradient(c, axis=0)
    t /= np.maximum(np.hypot(*t.T), 1e-6)[:, None]
    t[t[:, 1] < 0] *= -1
    return t


def check_chain(centres_px: np.ndarray, pixel_spacing_mm: tuple[float, float], peak: np.ndarray,
                sigma_px: np.ndarray, canal_mask: np.ndarray | None = None, *, second_peak: np.ndarray | None = None,
                view_top_px: float = 0.0, moved_mm: np.ndarray | None = None) -> ChainCheck:
    """Check the chain (module docstring). ``centres_px`` (5, 2) canonical (x, y); ``sigma_px`` heatmap spread in
    pixels; ``second_peak`` (5,) heatmap mass elsewhere; ``view_top_px``: the first image row the localiser saw;
    ``moved_mm`` (5, k) the level's moves under the localiser's re-runs (``VolumeAnalysis.moved_mm``)."""
    c = np.asarray(centres_px, float)
    ps = np.array([pixel_spacing_mm[1], pixel_spacing_mm[0]], float)  # (x, y) mm per pixel
    mm = c * ps
    n = len(c)
    why: list[list[str]] = [[] for _ in range(n)]
    link: list[list[str]] = [[] for _ in range(n - 1)]
    chain: list[str] = []
    for j in range(n):
        if peak[j] < MIN_PEAK:
            why[j].append(f"localisation uncertain (heatmap peak {peak[j]:.2f} < {MIN_PEAK:g})")
        spread = float(sigma_px[j]) * float(ps.mean())
        if spread > MAX_SPREAD_MM:
            why[j].append(f"localisation uncertain (spread {spread:.1f} mm > {MAX_SPREAD_MM:g} mm)")
        if second_peak is not None and (second_peak[j] > SECOND_PEAK[0] or second_peak[j] > SECOND_PEAK[1] * peak[j]):
            why[j].append(f"localisation ambiguous (a second heatmap peak of {second_peak[j]:.2f})")
        if moved_mm is not None and np.size(moved_mm[j]) and float(np.max(moved_mm[j])) > STABLE_MM:
            n_moved = int(np.sum(np.asarray(moved_mm[j]) > STABLE_MM))
            why[j].append(f"localisation unstable (moved {float(np.max(moved_mm[j])):.0f} mm in {n_moved} of "
                          f"{np.size(moved_mm[j])} re-runs with slightly changed contrast, position or scale)")
    gaps = np.hypot(*np.diff(mm, axis=0).T)
    sane = (np.diff(mm[:, 1]) > 0) & (gaps >= SPACING_MM[0]) & (gaps <= SPACING_MM[1])
    med = float(np.median(gaps[sane] if sane.any() else gaps))  # the regular gap, from the links that look right
    for j in range(n - 1):
        pair = f"{LEVELS[j]} to {LEVELS[j + 1]}"
        if mm[j + 1, 1] <= mm[j, 1]:
            link[j].append(f"not cranio-caudal ({LEVELS[j + 1]} above {LEVELS[j]})")
        elif not SPACING_MM[0] <= gaps[j] <= SPACING_MM[1]:
            link[j].append(f"implausible disc spacing {pair} {gaps[j]:.1f} mm (expected {SPACING_MM[0]:g}-{SPACING_MM[1]:g})")
        elif abs(gaps[j] - med) > REGULARITY * med:
            link[j].append(f"irregular disc spacing {pair} {gaps[j]:.1f} mm (median {med:.1f} mm)")
    if canal_mask is not None:
        _canal(c, ps, canal_mask, why, link)
    for j in range(n - 1):  # a broken link: both ends, and every level counted below it
        if link[j]:
            why[j] += link[j]
            why[j + 1] += link[j]
            for k in range(j + 2, n):
                why[k].append(f"counted from C2 across a broken chain between {LEVELS[j]} and {LEVELS[j + 1]}")
    verified = False
    for j in range(n):
        if j and not verified and not why[j]:
            why[j].append(f"{UNVERIFIED_ABOVE} ({', '.join(LEVELS[:j])})")
        verified = verified or not why[j]
    top_mm = (c[0, 1] - max(view_top_px, 0.0)) * ps[1]
    if top_mm < ANCHOR_MM:
        chain.append(f"C2 not in view ({top_mm:.0f} mm above {LEVELS[0]}, {ANCHOR_MM:g} needed): the level count may be shifted")
    return ChainCheck({LEVELS[j]: tuple(dict.fromkeys(why[j])) for j in range(n)}, tuple(chain))


def _canal(c: np.ndarray, ps: np.ndarray, canal: np.ndarray, why: list[list[str]], link: list[list[str]]) -> None:
    """Canal behind each disc, and behind the chain between neighbouring discs."""
    t = _tangents(c)
    post = np.stack([t[:, 1], -t[:, 0]], 1)  # normal pointing posterior (+x when the spine is upright)
    post[post[:, 0] < 0] *= -1
    dist = np.arange(*CANAL_BAND_MM, 0.5)

    def behind(p: np.ndarray, nrm: np.ndarray) -> bool:
        pts = p[None, :] + dist[:, None] * nrm[None, :] / ps[None, :]
        v = ndimage.map_coordinates(canal.astype(np.float32), [pts[:, 1], pts[:, 0]], order=0, mode="constant")
        return bool(v.max() > 0.5)

    for j in range(len(c)):
        if not behind(c[j], post[j]):
            why[j].append("no spinal canal behind the disc")
    for j in range(len(c) - 1):
        f = np.linspace(0, 1, 9)[1:-1]
        pts = c[j][None, :] * (1 - f[:, None]) + c[j + 1][None, :] * f[:, None]
        nrm = post[j][None, :] * (1 - f[:, None]) + post[j + 1][None, :] * f[:, None]
        cover = np.mean([behind(p, q / max(np.hypot(*q), 1e-6)) for p, q in zip(pts, nrm, strict=True)])
        if cover < CANAL_COVERAGE:
            link[j].append(f"spinal canal not continuous between {LEVELS[j]} and {LEVELS[j + 1]} ({100 * cover:.0f} %)")
