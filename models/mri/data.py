"""Training samples from MR phantoms: localiser inputs/targets and per-level crops with labels."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from pipelines.mri.preprocessing import (
    FORAMEN_LATERAL_MM,
    LOCALISER_SIZE,
    LocaliserGrid,
    disc_tangents,
    level_crop,
    localiser_input,
    normalise,
)
from pipelines.phantoms.mri import MriPhantom, generate_series
from pipelines.vocabulary import LEVELS

HEATMAP_SIGMA = 1.5
"""Gaussian sigma of the heatmap targets, in localiser pixels."""


@dataclass
class PhantomSamples:
    """Everything one phantom contributes to training."""

    loc_image: np.ndarray
    """(128, 128) float32 localiser input."""
    loc_centres: np.ndarray
    """(5, 2) disc centres in localiser pixels (x, y)."""
    loc_masks: np.ndarray
    """(2, 128, 128) uint8: any graded disc, canal."""
    mid_crops: np.ndarray
    """(k, 5, 3, 32, 64) float16 mid-sagittal crops at k jittered centres."""
    side_crops: np.ndarray
    """(k, 5, 2, 3, 32, 64) float16 foraminal crops, side 0 = left, 1 = right."""
    labels: np.ndarray
    """(5, 4) uint8: disc herniation, canal stenosis, left foraminal, right foraminal."""


def heatmaps(centres: np.ndarray, size: int = LOCALISER_SIZE, sigma: float = HEATMAP_SIGMA) -> np.ndarray:
    """(n, 2) centres (x, y) -> (n, size, size) Gaussian heatmaps with peak 1."""
    g = np.arange(size, dtype=np.float32)
    out = np.empty((len(centres), size, size), np.float32)
    for i, (x, y) in enumerate(centres):
        out[i] = np.exp(-((g[None, :] - x) ** 2 + (g[:, None] - y) ** 2) / (2 * sigma**2))
    return out


def phantom_samples(ph: MriPhantom, rng: np.random.Generator, jitters_mm: tuple[float, ...] = (0.8, 2.0)) -> PhantomSamples:
    """Turn one phantom into samples; crops are taken at the truth centres jittered by N(0, j) mm."""
    vol = normalise(ph.volume.astype(np.float32))
    mid = ph.mid_slice
    lat = np.asarray(ph.slice_positions_mm) - ph.slice_positions_mm[mid]
    left = int(np.argmin(np.abs(lat - FORAMEN_LATERAL_MM)))
    right = int(np.argmin(np.abs(lat + FORAMEN_LATERAL_MM)))
    grid = LocaliserGrid.for_image(*vol.shape[1:], ph.pixel_spacing_mm)
    centres = np.array([t.disc_centre_px for t in ph.levels])
    loc_c = np.array([grid.to_localiser(x, y) for x, y in centres], np.float32)
    masks = np.stack([ph.disc_mask > 0, ph.canal_mask]).astype(np.float32)
    yy, xx = grid.sample_points()
    loc_masks = np.stack([ndimage.map_coordinates(z, [yy, xx], order=1) > 0.5 for z in masks]).astype(np.uint8)
    ps = ph.pixel_spacing_mm
    mids, sides = [], []
    for j in jitters_mm:
        c = centres + rng.normal(0, j, centres.shape) / ps[0]
        tang = disc_tangents(c)
        rot = rng.normal(0, np.radians(3 * j), len(c))
        tang = np.stack([tang[:, 0] * np.cos(rot) - tang[:, 1] * np.sin(rot),
                         tang[:, 0] * np.sin(rot) + tang[:, 1] * np.cos(rot)], 1)
        m = [level_crop(vol, (mid - 1, mid, mid + 1), ci, ti, ps) for ci, ti in zip(c, tang, strict=True)]
        s = [[level_crop(vol, (left - 1, left, left + 1), ci, ti, ps),
              level_crop(vol, (right + 1, right, right - 1), ci, ti, ps)] for ci, ti in zip(c, tang, strict=True)]
        mids.append(np.stack(m))
        sides.append(np.stack([np.stack(x) for x in s]))
    labels = np.array([[t.disc_herniation, t.canal_stenosis, t.foraminal_stenosis_left, t.foraminal_stenosis_right]
                       for t in ph.levels], np.uint8)
    return PhantomSamples(localiser_input(vol[mid], ph.pixel_spacing_mm), loc_c, loc_masks, np.stack(mids).astype(np.float16),
                          np.stack(sides).astype(np.float16), labels)


def make_dataset(seeds: range | list[int], *, weighting: str = "T2", log_every: int = 50) -> dict[str, np.ndarray]:
    """Generate phantoms for ``seeds`` and stack their samples into arrays (see ``PhantomSamples``)."""
    parts: list[PhantomSamples] = []
    for n, seed in enumerate(seeds):
        rng = np.random.default_rng([seed, 99])
        parts.append(phantom_samples(generate_series(seed, weighting=weighting), rng))
        if log_every and (n + 1) % log_every == 0:
            print(f"  phantoms {n + 1}/{len(seeds)}", flush=True)
    assert len(LEVELS) == parts[0].labels.shape[0]
    return {
        "loc_image": np.stack([p.loc_image for p in parts]),
        "loc_centres": np.stack([p.loc_centres for p in parts]),
        "loc_masks": np.stack([p.loc_masks for p in parts]),
        "mid_crops": np.stack([p.mid_crops for p in parts]),
        "side_crops": np.stack([p.side_crops for p in parts]),
        "labels": np.stack([p.labels for p in parts]),
    }
