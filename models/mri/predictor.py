"""Load the MRI weights and analyse one canonical sagittal volume.

:class:`MriPredictor` is the MRI pipeline's ``interfaces.MriModel``::

    model = MriPredictor.load(weights=None, device="cpu")     # None: the shipped mri_v2.pt
    analysis = model.analyse(volume, pixel_spacing_mm, mid, left, right)   # interfaces.VolumeAnalysis
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from models.common.checkpoint import Checkpoint
from models.common.predictor import Predictor, for_inference, resolve_device
from models.mri import DEFAULT_WEIGHTS, MODEL_CARD
from models.mri.network import DiscLocaliser, LevelClassifier
from pipelines.interfaces import VolumeAnalysis
from pipelines.mri.preprocessing import (
    LOCALISER_MM_PER_PX,
    LOCALISER_SIZE,
    LocaliserGrid,
    level_crops,
    localiser_input,
)
from pipelines.results import AlgorithmInfo
from pipelines.vocabulary import LEVELS, TASKS

ALGORITHM_NAME = "cspine-node MRI degeneration (paper 002 tasks)"

DISC_GAP_MM = (9.0, 35.0)
"""Allowed distance between neighbouring disc centres (mm) when decoding the heatmaps jointly."""
SECOND_PEAK_MM = 8.0
"""A level's heatmap mass farther than this from its chosen centre counts as a second peak (``second_peaks``)."""


def apply_calibration(logits: np.ndarray, cal: dict | None) -> np.ndarray:
    """``sigmoid(a * logits + b)`` in float64 (``cal``: ``{"a", "b"}``, fitted by ``models.mri.calibration``; None:
    the plain sigmoid)."""
    z = np.asarray(logits, np.float64)
    if cal:
        z = float(cal["a"]) * z + float(cal["b"])
    return 0.5 * (1.0 + np.tanh(0.5 * z))  # the logistic function, stable for any z


def spatial_softmax(logits: np.ndarray) -> np.ndarray:
    """(n, H, W) logits -> (n, H, W) probability maps, each summing to 1."""
    n = logits.shape[0]
    flat = logits.reshape(n, -1).astype(np.float64)
    flat = np.exp(flat - flat.max(1, keepdims=True))
    return (flat / flat.sum(1, keepdims=True)).reshape(logits.shape)


def decode_heatmaps(heat: np.ndarray, window: int = 3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(n, H, W) probability maps -> (n, 2) sub-pixel peaks (x, y), (n,) spreads (pixels), (n,) mass.

    Peak: the arg-max refined by the centroid of the map in a (2 window + 1)^2 patch; spread: the square
    root of the mean weighted variance in that patch; mass: the probability inside the patch (confidence).
    """
    n, h, w = heat.shape
    pts, spread, mass = np.zeros((n, 2)), np.zeros(n), np.zeros(n)
    for i in range(n):
        y0, x0 = np.unravel_index(int(np.argmax(heat[i])), (h, w))
        ys, xs = slice(max(y0 - window, 0), min(y0 + window + 1, h)), slice(max(x0 - window, 0), min(x0 + window + 1, w))
        patch = np.clip(heat[i][ys, xs], 0, None)
        gy, gx = np.mgrid[ys, xs]
        tot = patch.sum()
        mass[i] = tot
        if tot <= 1e-8:
            pts[i], spread[i] = (x0, y0), float(window)
            continue
        cx, cy = (patch * gx).sum() / tot, (patch * gy).sum() / tot
        pts[i] = (cx, cy)
        spread[i] = float(np.sqrt(((patch * ((gx - cx) ** 2 + (gy - cy) ** 2)).sum() / tot) / 2))
    return pts, spread, mass


def _window_mass(prob: np.ndarray, window: int) -> np.ndarray:
    size = 2 * window + 1
    return ndimage.uniform_filter(prob, (1, size, size), mode="constant") * size * size


def decode_levels(prob: np.ndarray, gap_px: tuple[float, float], k: int = 12, window: int = 3,
                  eps: float = 1e-3) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Decode the disc heatmaps jointly: the disc centres must follow each other cranio-caudally.

    Candidates are the ``k`` best local maxima of the summed maps (every disc-like place any map fires
    on). Each level takes one candidate; the chain maximises the summed log of each level's own mass at
    its candidate (floored at ``eps``) subject to each centre lying below the previous one at a distance
    within ``gap_px`` (min, max). This removes level shifts (a map firing on the neighbouring disc).
    Returns as ``decode_heatmaps`` (refined inside each chosen window).
    """
    n, h, w = prob.shape
    mass = _window_mass(prob, window)
    union = mass.sum(0)
    size = 2 * window + 1
    peaks = (ndimage.maximum_filter(union, size=size, mode="constant") == union) & (union > 1e-3)
    ys, xs = np.nonzero(peaks)
    order = np.argsort(-union[ys, xs])[:k]
    ys, xs = ys[order], xs[order]
    if len(ys) < n:
        return decode_heatmaps(prob, window)
    logm = np.log(np.maximum(mass[:, ys, xs], eps))  # (levels, candidates)
    d = np.hypot(ys[:, None] - ys[None, :], xs[:, None] - xs[None, :])
    ok = (ys[None, :] > ys[:, None]) & (d >= gap_px[0]) & (d <= gap_px[1])  # ok[prev, next]
    score = logm[0].copy()
    back = []
    for i in range(1, n):
        cand = np.where(ok, score[:, None], -np.inf)
        b = np.argmax(cand, 0)
        score = cand[b, np.arange(len(ys))] + logm[i]
        back.append(b)
    if not np.isfinite(score).any():
        return decode_heatmaps(prob, window)
    idx = [int(np.argmax(score))]
    for b in reversed(back):
        idx.append(int(b[idx[-1]]))
    idx.reverse()
    masked = np.zeros_like(prob)
    total = prob.sum(0)
    for i, j in enumerate(idx):
        y, x = int(ys[j]), int(xs[j])
        sy, sx = slice(max(y - window, 0), min(y + window + 1, h)), slice(max(x - window, 0), min(x + window + 1, w))
        masked[i][sy, sx] = total[sy, sx]  # refine on all maps: a level's own map may be weak there
    pts, spread, _ = decode_heatmaps(masked, window)
    return pts, spread, mass[np.arange(n), ys[idx], xs[idx]]


def chain_confidence(peak: np.ndarray) -> float:
    """Joint confidence of a decoded chain: the summed log of each level's heatmap mass at its centre (floored)."""
    return float(np.log(np.maximum(np.asarray(peak, float), 1e-3)).sum())


def second_peaks(prob: np.ndarray, pts: np.ndarray, radius: float, window: int = 3) -> np.ndarray:
    """(n,) the largest window mass of each map once the disk of ``radius`` (pixels) about its point ``pts[i]``
    ((x, y)) is removed: how much of a level's heatmap says it could be somewhere else."""
    h, w = prob.shape[1:]
    yy, xx = np.mgrid[:h, :w]
    rest = prob.copy()
    for i, (x, y) in enumerate(pts):
        rest[i][(xx - x) ** 2 + (yy - y) ** 2 <= radius**2] = 0.0
    return _window_mass(rest, window).reshape(len(prob), -1).max(1)


class MriPredictor(Predictor):
    """Both networks (an ``mri`` checkpoint, parts ``localiser`` and ``classifier``) on one device; ``analyse``
    runs localisation then per-level classification.

    ``calibration``: task -> ``{"a", "b"}`` from the checkpoint's meta (``models.mri.calibration``); each finding's
    probability is ``sigmoid(a * logit + b)``. Set it to ``{}`` for the raw probabilities.

    ``recentre`` (default True): the localiser runs a second time on a window centred on the chain found in the
    first (image-centred) window, and the pass whose chain is more confident (``chain_confidence``) is kept; a spine
    far from the image centre (a tall field of view, an off-centre or strongly curved neck) is then seen where the
    training windows put it."""

    recentre = True

    checkpoint_model = "mri"
    default_weights = DEFAULT_WEIGHTS
    model_card = MODEL_CARD

    def __init__(self, checkpoint: Checkpoint, device: torch.device | str = "cpu") -> None:
        self.device = resolve_device(device)
        self.version = checkpoint.version
        self.path = checkpoint.path
        self.metrics = dict(checkpoint.meta.get("metrics", {}))
        self.config = dict(checkpoint.meta.get("config", {}))
        self.localiser = DiscLocaliser(tuple(self.config.get("loc_channels", (16, 32, 64, 128))))
        self.localiser.load_state_dict(checkpoint.part("localiser"))
        self.classifier = LevelClassifier()
        self.classifier.load_state_dict(checkpoint.part("classifier"))
        self.calibration: dict[str, dict] = {t: dict(c) for t, c in
                                             checkpoint.meta.get("calibration", {}).get("tasks", {}).items()}
        self.localiser = for_inference(self.localiser, self.device)
        self.classifier = for_inference(self.classifier, self.device)

    @classmethod
    def load(cls, weights: Path | str | None = None, device: torch.device | str = "cpu") -> MriPredictor:
        """The model from ``weights`` (None: the shipped ``mri_v2.pt``; ``python -m models.mri.train`` writes
        others) on ``device``."""
        return cls(cls.read_checkpoint(weights), device)

    @property
    def algorithm(self) -> AlgorithmInfo:
        return AlgorithmInfo(name=ALGORITHM_NAME, version=self.version, model_card=self.card_text())

    def _localise(self, image: np.ndarray, pixel_spacing_mm: tuple[float, float], grid: LocaliserGrid) -> tuple:
        """One localiser pass on ``grid``'s window -> (logits, centres (5, 2) image px, spreads (localiser px), peak
        masses, second peaks)."""
        x = torch.from_numpy(localiser_input(image, pixel_spacing_mm, grid))[None, None].to(self.device)
        out = self.localiser(x)[0].cpu().numpy()
        prob = spatial_softmax(out[: len(LEVELS)])
        pts, spread, peak = decode_levels(prob, (DISC_GAP_MM[0] / LOCALISER_MM_PER_PX, DISC_GAP_MM[1] / LOCALISER_MM_PER_PX))
        second = second_peaks(prob, pts, SECOND_PEAK_MM / LOCALISER_MM_PER_PX)
        return out, np.array([grid.from_localiser(px, py) for px, py in pts]), spread, peak, second

    @torch.no_grad()
    def analyse(self, volume: np.ndarray, pixel_spacing_mm: tuple[float, float], mid: int, left: int,
                right: int) -> VolumeAnalysis:
        """``volume`` canonical and normalised ((slices, rows, columns), see ``preprocessing``)."""
        rows, cols = volume.shape[1:]
        grid = LocaliserGrid.for_image(rows, cols, pixel_spacing_mm)
        out, centres, spread, peak, second = self._localise(volume[mid], pixel_spacing_mm, grid)
        if self.recentre:
            c = centres.mean(0)
            g2 = LocaliserGrid(grid.fx, grid.fy, float(c[0]), float(c[1]))
            second_pass = self._localise(volume[mid], pixel_spacing_mm, g2)
            if chain_confidence(second_pass[3]) > chain_confidence(peak):
                grid, (out, centres, spread, peak, second) = g2, second_pass
        # masks back to the original grid (bilinear on the logits)
        c0 = (LOCALISER_SIZE - 1) / 2
        gy = c0 + (np.arange(rows) - grid.cy) / grid.fy
        gx = c0 + (np.arange(cols) - grid.cx) / grid.fx
        yy, xx = np.meshgrid(gy, gx, indexing="ij")
        masks = [ndimage.map_coordinates(out[len(LEVELS) + i], [yy, xx], order=1, mode="nearest") > 0 for i in range(2)]
        inside = (yy >= -0.5) & (yy <= LOCALISER_SIZE - 0.5) & (xx >= -0.5) & (xx <= LOCALISER_SIZE - 0.5)
        mids, lefts, rights = level_crops(volume, mid, left, right, centres, pixel_spacing_mm)
        zm = self.classifier(torch.from_numpy(mids).to(self.device)).cpu().numpy()
        side = self.classifier(torch.from_numpy(np.concatenate([lefts, rights])).to(self.device))[:, 2].cpu().numpy()
        n = len(LEVELS)
        logits = {TASKS[0]: zm[:, 0], TASKS[1]: zm[:, 1], TASKS[2]: side[:n], TASKS[3]: side[n:]}
        probs = {t: apply_calibration(z, self.calibration.get(t)) for t, z in logits.items()}
        top = max(0.0, grid.from_localiser(0.0, -0.5)[1])
        return VolumeAnalysis(centres, spread * grid.fx, peak, masks[0] & inside, masks[1] & inside, probs, mid, left, right,
                              second_peak=second, view_top_px=top)
