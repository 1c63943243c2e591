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
RERUNS: tuple[tuple[float, tuple[float, float], float], ...] = (
    (0.7, (0, 0), 1.0), (1.5, (0, 0), 1.0), (1.0, (8, 8), 1.0), (1.0, (-8, -8), 1.0), (1.0, (10, -6), 1.0),
    (1.0, (0, 0), 1.08), (1.0, (0, 0), 0.92))
"""The localiser's re-runs for the stability check (``MriPredictor.stability``): (gamma of the normalised image,
window shift in localiser pixels, window scale). Shifts and scales lie within the training windows' range (offsets
up to ``data.VIEW_OFFSET_MM``, scale 0.9-1.1); the gammas 0.7 and 1.5 a little beyond the training augmentation's
0.8-1.2 (contrast changes a reader would ignore). On the shipped model's development series of renderers A and B
(96 series) 475 of 480 right levels stayed within ``STABLE_MM`` under all seven."""

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


ANCHOR_MIN_C2 = 0.2
"""C2-body heatmap mass near its peak below which the anatomy anchor gives no verdict (the chain is kept as is)."""
ANCHOR_MATCH = 0.4
"""A disc found below C2 matches a place of the chain when closer than this fraction of the median disc gap."""
ANCHOR_BELOW = (0.2, 1.6)
"""Where the first disc below C2 is looked for: this many median disc gaps below the C2-body centre along the
chain, and at most half a gap off the chain's line."""
ANCHOR_FLAG_PEAK = 0.2
"""Peak mass given to every level when the anchor moves or contradicts the chain: below
``pipelines.mri.plausibility.MIN_PEAK``, so the plausibility gate reports those levels not assessable."""


def _refined_peaks(score: np.ndarray, keep: np.ndarray, weights: np.ndarray, half: int, k: int) -> np.ndarray:
    """The ``k`` highest ``score`` pixels of ``keep``, each refined by the centroid of ``weights`` over its
    ``2 * half + 1`` square -> (m, 2) centres (x, y), top to bottom."""
    ys, xs = np.nonzero(keep)
    order = np.argsort(-score[ys, xs])[:k]
    h, w = weights.shape
    out = []
    for y, x in zip(ys[order], xs[order], strict=True):
        sy, sx = slice(max(y - half, 0), min(y + half + 1, h)), slice(max(x - half, 0), min(x + half + 1, w))
        patch = weights[sy, sx]
        gy, gx = np.mgrid[sy, sx]
        tot = patch.sum()
        out.append(((patch * gx).sum() / tot, (patch * gy).sum() / tot) if tot > 0 else (float(x), float(y)))
    pts = np.array(out, float).reshape(-1, 2)
    return pts[np.argsort(pts[:, 1])]


def disc_peaks(prob: np.ndarray, window: int = 3, rel: float = 0.15, k: int = 12) -> np.ndarray:
    """(H, W) "any disc" probability map -> (m, 2) disc centres (x, y): local maxima of the window mass above
    ``rel`` times the largest (at most ``k``), each refined by the centroid of its window, top to bottom."""
    mass = _window_mass(prob[None], window)[0]
    size = 2 * window + 1
    keep = (ndimage.maximum_filter(mass, size=size, mode="constant") == mass) & (mass >= rel * mass.max()) & (mass > 1e-6)
    return _refined_peaks(mass, keep, prob, window, k)


SIGMOID_PEAK = 0.3
"""``sigmoid_peaks``: a local maximum of a per-pixel sigmoid any-disc map (``train --anchor-focal``) is a disc when its
value is at least this."""


def sigmoid_peaks(p: np.ndarray, window: int = 3, k: int = 12) -> np.ndarray:
    """(H, W) per-pixel disc probabilities -> (m, 2) disc centres (x, y), top to bottom: local maxima (over a
    ``2 * window + 1`` square) of at least ``SIGMOID_PEAK`` (at most ``k``, the highest), each refined by the centroid
    of its 3 x 3 neighbourhood. Unlike ``disc_peaks`` no peak is measured against another."""
    keep = (ndimage.maximum_filter(p, size=2 * window + 1, mode="constant") == p) & (p >= SIGMOID_PEAK)
    return _refined_peaks(p, keep, p, 1, k)


def first_disc_below(c2: np.ndarray, discs: np.ndarray, t: np.ndarray, g: float) -> np.ndarray | None:
    """The disc (x, y) of ``discs`` nearest below the C2-body centre ``c2`` along the unit direction ``t`` (within
    ``ANCHOR_BELOW`` median gaps ``g`` along it and half a gap across), None when there is none: C2-C3."""
    discs = np.asarray(discs, float).reshape(-1, 2)
    rel = discs - np.asarray(c2, float)[None]
    along, across = rel @ t, np.abs(rel @ np.array([-t[1], t[0]]))
    ok = (along >= ANCHOR_BELOW[0] * g) & (along <= ANCHOR_BELOW[1] * g) & (across <= 0.5 * g)
    return discs[ok][int(np.argmin(along[ok]))] if ok.any() else None


def anchor_chain(pts: np.ndarray, c2: np.ndarray | None, c2_mass: float, discs: np.ndarray
                 ) -> tuple[np.ndarray, np.ndarray, str]:
    """Check the level chain ``pts`` ((5, 2) x, y; C2-C3 first) against the anatomy: the first disc below the C2
    body (``c2``, its heatmap mass ``c2_mass``) among ``discs`` ((m, 2), ``disc_peaks`` of the any-disc map) is
    C2-C3. Hypotheses for where that disc ``q`` lies: at the chain's C2-C3 (agree), at its C3-C4 (the chain is one
    level too high: every level moves down one, C6-C7 from the next disc below or extrapolated), one gap above its
    C2-C3 (one level too low: every level moves up, C2-C3 = ``q``), or where C2-C3 belongs given C3-C4 and C4-C5
    while the chain's C2-C3 is elsewhere (only C2-C3 is moved to ``q``). The nearest hypothesis within
    ``ANCHOR_MATCH`` median gaps wins.

    Returns the (5, 2) chain, the source index per level into ``pts`` (-1: taken from ``discs`` or extrapolated)
    and the verdict: ``"none"`` (no confident C2, or no disc below it: chain unchanged), ``"agree"``, ``"down"``,
    ``"up"``, ``"c2c3"`` (the chain moved as said) or ``"disagree"`` (no hypothesis matches: chain unchanged)."""
    pts = np.asarray(pts, float)
    n = len(pts)
    src = np.arange(n)
    if c2 is None or c2_mass < ANCHOR_MIN_C2 or len(discs) == 0:
        return pts, src, "none"
    gaps = np.hypot(*np.diff(pts, axis=0).T)
    g = float(np.median(gaps))
    if not g > 0:
        return pts, src, "none"
    t = pts[1] - pts[0]
    t = t / max(float(np.hypot(*t)), 1e-6)
    if t[1] < 0:
        t = -t
    q = first_disc_below(c2, discs, t, g)
    if q is None:
        return pts, src, "none"
    hyp = {"agree": pts[0], "down": pts[1], "up": 2 * pts[0] - pts[1], "c2c3": 2 * pts[1] - pts[2]}
    dist = {k: float(np.hypot(*(q - v))) / g for k, v in hyp.items()}
    best = min(dist, key=dist.get)
    if dist["agree"] <= ANCHOR_MATCH:
        return pts, src, "agree"
    if dist[best] > ANCHOR_MATCH:
        return pts, src, "disagree"
    out = pts.copy()
    if best == "down":
        out[:-1], src = pts[1:], np.r_[np.arange(1, n), -1]
        nxt = 2 * pts[-1] - pts[-2]
        d = np.hypot(*(np.asarray(discs, float) - nxt[None]).T)
        out[-1] = np.asarray(discs, float)[int(np.argmin(d))] if d.min() <= ANCHOR_MATCH * g else nxt
    elif best == "up":
        out[1:], out[0], src = pts[:-1], q, np.r_[-1, np.arange(n - 1)]
    else:
        out[0], src = q, np.r_[-1, np.arange(1, n)]
    return out, src, best


COUNT_MATCH = 0.4
"""``count_chain``: the next disc is taken when within this fraction of the last step (disc to disc) of where one
step on from the last disc puts it; a counted level agrees with the level chain when within this fraction of the
median disc gap."""


def count_chain(pts: np.ndarray, c2: np.ndarray | None, c2_mass: float, discs: np.ndarray, bridge: bool = False
                ) -> tuple[np.ndarray, np.ndarray, str]:
    """Identify the levels by counting discs down from C2 (``MriPredictor.anchor_decoder = "count"``): the first
    disc below the C2 body (found as in ``anchor_chain``; without a confident C2 peak, the any-disc peak at the level
    chain's own C2-C3) is C2-C3, and each next level is the any-disc peak one step on from the last (the first step:
    the chain's median gap along its C2-C3 -> C3-C4 direction; then the last step, so the count follows the curve and
    the gaps as they change). Where a counted level and the level chain ``pts`` disagree, the counted place is taken.

    Returns the (5, 2) chain, a bool per level "moved or not verified" (the caller flags those) and the verdict:
    ``"none"`` (no start: chain unchanged), ``"agree"`` (every level counted, all at the chain's places),
    ``"count"`` (every level counted, some moved), ``"partial"`` (the count lost the chain before the last level: the
    levels counted so far are taken; if any of them disagreed, the levels below are kept but marked).

    ``bridge`` (decoder ``"count-skip"``): where no peak lies one step on but one lies two steps on (within
    1.5 x ``COUNT_MATCH`` steps), the count goes on from it and the level between is the midpoint (a disc the
    any-disc map missed); a bridged level where the level chain has a centre (within ``COUNT_MATCH`` median gaps)
    takes the chain's centre, otherwise it is marked."""
    pts = np.asarray(pts, float)
    discs = np.asarray(discs, float).reshape(-1, 2)
    n = len(pts)
    mark = np.zeros(n, bool)
    g = float(np.median(np.hypot(*np.diff(pts, axis=0).T))) if n > 1 else 0.0
    if not g > 0 or len(discs) == 0:
        return pts, mark, "none"
    t = pts[1] - pts[0]
    t = t / max(float(np.hypot(*t)), 1e-6)
    if t[1] < 0:
        t = -t
    start = first_disc_below(c2, discs, t, g) if c2 is not None and c2_mass >= ANCHOR_MIN_C2 else None
    if start is None:
        d = np.hypot(*(discs - pts[0][None]).T)
        if d.min() > COUNT_MATCH * g:
            return pts, mark, "none"
        start = discs[int(np.argmin(d))]
    counted, bridged = [start], []
    step = g * t
    while len(counted) < n:
        size = float(np.hypot(*step))
        rel = discs - counted[-1][None]
        below = rel @ step > 0.5 * size**2  # only discs below the last one
        d = np.where(below, np.hypot(*(rel - step[None]).T), np.inf)
        j = int(np.argmin(d))
        if d[j] <= COUNT_MATCH * size:
            step = discs[j] - counted[-1]
            counted.append(discs[j])
            continue
        d2 = np.where(below, np.hypot(*(rel - 2 * step[None]).T), np.inf)
        j = int(np.argmin(d2))
        if not (bridge and d2[j] <= 1.5 * COUNT_MATCH * size):
            break
        step = (discs[j] - counted[-1]) / 2
        bridged.append(len(counted))
        counted += [counted[-1] + step, discs[j]]
    counted = counted[:n]
    k = len(counted)
    out = pts.copy()
    out[:k] = counted
    moved = np.hypot(*(out[:k] - pts[:k]).T) > COUNT_MATCH * g
    for i in bridged:
        if i < k and not moved[i]:
            out[i] = pts[i]  # the missed disc where the level chain has it
    mark[:k] = moved
    if k == n:
        return out, mark, "count" if moved.any() else "agree"
    if moved.any():
        mark[k:] = True
    return out, mark, "partial"


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
    stability = True
    """Run the localiser again on the chosen window with each change of ``RERUNS`` and report how far every level
    moved (``VolumeAnalysis.moved_mm``; the plausibility gate flags a level that moves more than ``STABLE_MM``)."""
    anchor_decoder = "count"
    """With the anchor channels (``train --anchor``; a checkpoint's config ``anchor_decoder`` overrides it):
    ``"count"`` (``count_chain``: the levels counted down the any-disc peaks from C2), ``"count-skip"`` (the count
    also bridges one disc the any-disc map missed), ``"chain"`` (``anchor_chain``: only the chain as found or moved
    by one level, candidate u2's decoding in the model card) or ``"off"`` (the level chain as decoded)."""

    checkpoint_model = "mri"
    default_weights = DEFAULT_WEIGHTS
    model_card = MODEL_CARD

    def __init__(self, checkpoint: Checkpoint, device: torch.device | str = "cpu") -> None:
        self.device = resolve_device(device)
        self.version = checkpoint.version
        self.path = checkpoint.path
        self.metrics = dict(checkpoint.meta.get("metrics", {}))
        self.config = dict(checkpoint.meta.get("config", {}))
        self.anchors = bool(self.config.get("anchor", False))  # train --anchor: C2-body and any-disc channels
        self.anchor_disc = self.config.get("anchor_disc", "softmax")  # train --anchor-focal: "focal"
        self.anchor_decoder = self.config.get("anchor_decoder", type(self).anchor_decoder)
        self.last_anchor: str | None = None
        self.localiser = DiscLocaliser(tuple(self.config.get("loc_channels", (16, 32, 64, 128))), anchors=self.anchors)
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
        if self.anchors:
            pts, spread, peak = self._anchor(out, pts, spread, peak)
        second = second_peaks(prob, pts, SECOND_PEAK_MM / LOCALISER_MM_PER_PX)
        return out, np.array([grid.from_localiser(px, py) for px, py in pts]), spread, peak, second

    def _anchor(self, out: np.ndarray, pts: np.ndarray, spread: np.ndarray, peak: np.ndarray) -> tuple:
        """``count_chain`` or ``anchor_chain`` (``anchor_decoder``) on the anchor channels of ``out``. Counting: each
        level moved or not verified gets its peak mass lowered to ``ANCHOR_FLAG_PEAK`` (the plausibility gate flags
        it); ``anchor_chain``: every level of a moved or contradicted chain. ``self.last_anchor``: the verdict."""
        k = len(LEVELS) + 2
        c2p = spatial_softmax(out[k:k + 1])
        c2, _, c2_mass = decode_heatmaps(c2p)
        if getattr(self, "anchor_disc", "softmax") == "focal":
            discs = sigmoid_peaks(1.0 / (1.0 + np.exp(-out[k + 1])))
        else:
            discs = disc_peaks(spatial_softmax(out[k + 1:k + 2])[0])
        if self.anchor_decoder == "off":
            self.last_anchor = "off"
            return pts, spread, peak
        if self.anchor_decoder in ("count", "count-skip"):
            new, mark, verdict = count_chain(pts, c2[0], float(c2_mass[0]), discs, self.anchor_decoder == "count-skip")
            self.last_anchor = verdict
            spread = np.where(mark, spread.max(), spread)  # a level the count agrees with keeps its own
            return new, spread, np.where(mark, np.minimum(peak, ANCHOR_FLAG_PEAK), peak)
        new, src, verdict = anchor_chain(pts, c2[0], float(c2_mass[0]), discs)
        self.last_anchor = verdict
        if verdict in ("none", "agree"):
            return pts, spread, peak
        spread = np.where(src >= 0, spread[np.maximum(src, 0)], spread.max())
        peak = np.minimum(np.where(src >= 0, peak[np.maximum(src, 0)], peak.min()), ANCHOR_FLAG_PEAK)
        return new, spread, peak

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
        moved = self._reruns(volume[mid], pixel_spacing_mm, grid, centres) if self.stability else None
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
                              second_peak=second, view_top_px=top, moved_mm=moved)

    def _reruns(self, image: np.ndarray, pixel_spacing_mm: tuple[float, float], grid: LocaliserGrid,
                centres: np.ndarray) -> np.ndarray:
        """(5, len(RERUNS)) distance (mm) from ``centres`` of each level found on each re-run of ``RERUNS``."""
        verdict, mm = self.last_anchor, np.array([pixel_spacing_mm[1], pixel_spacing_mm[0]])
        out = []
        for gamma, (dx, dy), zoom in RERUNS:
            img = image if gamma == 1.0 else np.clip(image, 0, None) ** gamma
            g = LocaliserGrid(grid.fx * zoom, grid.fy * zoom, grid.cx + dx * grid.fx, grid.cy + dy * grid.fy)
            out.append(np.hypot(*((self._localise(img, pixel_spacing_mm, g)[1] - centres) * mm).T))
        self.last_anchor = verdict  # the chosen pass's verdict, not a re-run's
        return np.stack(out, 1)
