"""Training samples from MR phantoms: localiser inputs/targets and per-level crops with labels."""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import ndimage

from pipelines.mri.preprocessing import (
    FORAMEN_LATERAL_MM,
    LOCALISER_MM_PER_PX,
    LOCALISER_SIZE,
    LocaliserGrid,
    disc_tangents,
    level_crop,
    load_series,
    localiser_input,
    normalise,
    series_weighting,
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


# --- domain randomisation: renderer A and B, the shift suite, T1/STIR, random localiser windows -------------

MIX_SHIFTS_A = ("slices:10", "slices:16", "thickness:4", "gap:1.2", "pixel:0.44", "pixel:0.78", "matrix:448x320",
                "tilt:15", "tilt:-15", "tilt:8", "tilt:-8", "offcentre:6", "bias:1.0", "noise:0.09", "flip",
                "reverse", "upside")
"""Shifts drawn for renderer-A training cases (renderer B also gets ``oblique``; its own sampling varies the rest)."""
VIEW_OFFSET_MM = (35.0, 50.0)
"""Largest random offset (x, y) of a training localiser window from the image centre (mm)."""


def _localiser_points(grid: LocaliserGrid, pts: np.ndarray) -> np.ndarray:
    """(m, 2) image points -> localiser pixels of the inference window ``grid`` (float32)."""
    return np.array([grid.to_localiser(x, y) for x, y in pts], np.float32)


def _view(image: np.ndarray, ps: tuple[float, float], rng: np.random.Generator | None,
          centres: np.ndarray, masks: np.ndarray | None, extra: np.ndarray | None = None) -> tuple:
    """One localiser window on a canonical slice: the inference window (``rng`` None) or a random one (offset up
    to ``VIEW_OFFSET_MM``, scale 0.9-1.1, rotation +-10 deg) that keeps every disc centre inside -> image, centres
    (localiser px), masks. ``extra`` ((m, 2) image points, the anchors of ``--anchor``): also mapped to localiser
    pixels (not kept inside the window, no extra random draws) and returned fourth."""
    rows, cols = image.shape
    if rng is None:
        grid = LocaliserGrid.for_image(rows, cols, ps)
        c = np.array([grid.to_localiser(x, y) for x, y in centres], np.float32)
        m = None
        if masks is not None:
            yy, xx = grid.sample_points()
            m = np.stack([ndimage.map_coordinates(z, [yy, xx], order=1) > 0.5 for z in masks]).astype(np.uint8)
        if extra is not None:
            return localiser_input(image, ps), c, m, _localiser_points(grid, extra)
        return localiser_input(image, ps), c, m
    c0 = (LOCALISER_SIZE - 1) / 2
    for attempt in range(20):
        f = 1.0 - attempt / 20
        off = rng.uniform(-1, 1, 2) * np.array(VIEW_OFFSET_MM) * f
        s, a = rng.uniform(0.9, 1.1), np.radians(rng.uniform(-10, 10))
        rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
        mat = np.diag([1 / ps[1], 1 / ps[0]]) @ rot * (LOCALISER_MM_PER_PX * s)  # localiser (u, v) -> image (x, y)
        t = np.array([(cols - 1) / 2 + off[0] / ps[1], (rows - 1) / 2 + off[1] / ps[0]])
        c = (np.linalg.solve(mat, (np.asarray(centres, float) - t).T).T + c0).astype(np.float32)
        if c.min() >= 6 and c.max() <= LOCALISER_SIZE - 7:
            break
    g = np.arange(LOCALISER_SIZE) - c0
    uu, vv = np.meshgrid(g, g)
    xx = mat[0, 0] * uu + mat[0, 1] * vv + t[0]
    yy = mat[1, 0] * uu + mat[1, 1] * vv + t[1]
    fx = LOCALISER_MM_PER_PX * s / min(ps)
    sm = ndimage.gaussian_filter(image, 0.5 * fx) if fx > 1.2 else image
    img = ndimage.map_coordinates(sm, [yy, xx], order=1, mode="constant", cval=0.0).astype(np.float32)
    m = None
    if masks is not None:
        m = np.stack([ndimage.map_coordinates(z, [yy, xx], order=1) > 0.5 for z in masks]).astype(np.uint8)
    if extra is not None:
        e = (np.linalg.solve(mat, (np.asarray(extra, float) - t).T).T + c0).astype(np.float32)
        return img, c, m, e
    return img, c, m


def _crops(vol: np.ndarray, mid: int, left: int, right: int, centres: np.ndarray, ps: tuple[float, float],
           rng: np.random.Generator, jitters_mm: tuple[float, ...]) -> tuple[np.ndarray, np.ndarray]:
    """Mid and foraminal crops at the truth centres jittered by N(0, j) mm (as ``phantom_samples``)."""
    mids, sides = [], []
    for j in jitters_mm:
        c = centres + rng.normal(0, j, centres.shape) / ps[0]
        tang = disc_tangents(c)
        rot = rng.normal(0, np.radians(3 * j), len(c))
        tang = np.stack([tang[:, 0] * np.cos(rot) - tang[:, 1] * np.sin(rot),
                         tang[:, 0] * np.sin(rot) + tang[:, 1] * np.cos(rot)], 1)
        mids.append(np.stack([level_crop(vol, (mid - 1, mid, mid + 1), ci, ti, ps) for ci, ti in zip(c, tang, strict=True)]))
        sides.append(np.stack([np.stack([level_crop(vol, (left - 1, left, left + 1), ci, ti, ps),
                                         level_crop(vol, (right + 1, right, right - 1), ci, ti, ps)])
                               for ci, ti in zip(c, tang, strict=True)]))
    return np.stack(mids).astype(np.float16), np.stack(sides).astype(np.float16)


def case_samples(style: str, seed: int, shifts: list[str], weightings: tuple[str, ...], views: int,
                 rng: np.random.Generator, work: Path) -> list[dict]:
    """Render one shift-suite study, write it as DICOM, read each series of ``weightings`` back with the pipeline's
    own ``choose``/``load_series`` path (canonical orientation, normalisation, mid/left/right slices) and turn it
    into samples: ``views`` localiser windows (the first the inference window) and jittered crops. The truth is
    the disc centre (patient mm) projected on the mid slice's plane. Renderer A/B cases carry no masks."""
    from pipelines.phantoms.mri_shift import make_case, parse_shifts, write_case
    from pipelines.study import Study

    case = make_case(style, seed, parse_shifts(shifts))
    d = work / f"{style}_{seed}"
    write_case(case, d)
    study = Study.from_paths(sorted(d.glob("*.dcm")))[0]
    labels = np.array([[t.disc_herniation, t.canal_stenosis, t.foraminal_stenosis_left, t.foraminal_stenosis_right]
                       for t in case.levels], np.uint8)
    out = []
    for wt in weightings:
        insts = [i for i in study.instances if series_weighting(i.series_description) == wt]
        if not insts:
            continue
        sv = load_series(insts)
        mid, left, right = sv.mid_slice, sv.lateral_slice("left"), sv.lateral_slice("right")
        ds = next(i for i in insts if i.sop_instance_uid == sv.sop_uids[mid]).read(pixels=False)
        ipp = np.array([float(v) for v in ds.ImagePositionPatient])
        iop = np.array([float(v) for v in ds.ImageOrientationPatient])
        ps = (float(ds.PixelSpacing[0]), float(ds.PixelSpacing[1]))
        d3 = np.array([t.disc_centre_mm for t in case.levels]) - ipp
        x, y = d3 @ iop[:3] / ps[1], d3 @ iop[3:] / ps[0]
        centres = np.stack([sv.columns - 1 - x if sv.flip_x else x, sv.rows - 1 - y if sv.flip_y else y], 1)
        vs = [_view(sv.volume[mid], sv.pixel_spacing_mm, None if v == 0 else rng, centres, None) for v in range(views)]
        mc, sc = _crops(sv.volume, mid, left, right, centres, sv.pixel_spacing_mm, rng, (0.8, 2.0))
        out.append({"loc_image": np.stack([v[0] for v in vs]), "loc_centres": np.stack([v[1] for v in vs]),
                    "mid_crops": mc, "side_crops": sc, "labels": labels})
    shutil.rmtree(d, ignore_errors=True)
    return out


ANCHOR_POINTS = 9
"""``--anchor`` truth per localiser window: the C2 body centre, then up to 8 disc centres (C2-C3 down), NaN-padded."""


def anchor_points(ph: MriPhantom) -> np.ndarray:
    """(ANCHOR_POINTS, 2) image points of a renderer-A phantom: its C2 body centre, then every disc centre of its
    spine (``extra["anchors_px"]``), NaN where it has fewer discs."""
    a = ph.extra["anchors_px"]
    pts = np.full((ANCHOR_POINTS, 2), np.nan)
    d = np.asarray(a["discs"], float)[: ANCHOR_POINTS - 1]
    pts[0] = a["c2"]
    pts[1:1 + len(d)] = d
    return pts


def a_phantom_views(seed: int, views: int, rng: np.random.Generator, upper: bool = False,
                    anchors: bool = False) -> dict:
    """A plain renderer-A phantom (with its disc and canal masks) -> ``views`` localiser windows and crops.
    ``upper``: rendered with the anatomy above C2 (``generate_series(..., upper=True)``). ``anchors``: also
    ``loc_anchors`` ((views, ANCHOR_POINTS, 2) localiser px, ``anchor_points``); the same windows and crops."""
    ph = generate_series(seed, weighting="T2", upper=upper)
    s = phantom_samples(ph, rng)
    vol = normalise(ph.volume.astype(np.float32))
    centres = np.array([t.disc_centre_px for t in ph.levels])
    masks = np.stack([ph.disc_mask > 0, ph.canal_mask]).astype(np.float32)
    extra = anchor_points(ph) if anchors else None
    first: tuple = (s.loc_image, s.loc_centres, s.loc_masks)
    if extra is not None:
        first += (_localiser_points(LocaliserGrid.for_image(*vol.shape[1:], ph.pixel_spacing_mm), extra),)
    vs = [first] + [
        _view(vol[ph.mid_slice], ph.pixel_spacing_mm, rng, centres, masks, extra) for _ in range(views - 1)]
    out = {"loc_image": np.stack([v[0] for v in vs]), "loc_centres": np.stack([v[1] for v in vs]),
           "loc_masks": np.stack([v[2] for v in vs]), "mid_crops": s.mid_crops, "side_crops": s.side_crops,
           "labels": s.labels}
    if extra is not None:
        out["loc_anchors"] = np.stack([v[3] for v in vs])
    return out


def mixed_plan(a_seed: int, a_count: int, as_seed: int, as_count: int, b_seed: int, b_count: int,
               extra_fraction: float = 0.3, a_upper: float = 0.0, c_seed: int = 0,
               c_count: int = 0) -> list[tuple[str, int, list[str], tuple[str, ...]]]:
    """(style, seed, shifts, weightings) for every training study: ``a_count`` plain A phantoms (style ``"A"``,
    with masks), ``as_count`` shifted A studies (one random shift each), ``b_count`` B studies (half with one suite
    shift; ``extra_fraction`` of them also hold a T1 or STIR series, which is used as well).

    ``c_count`` renderer-C studies (``pipelines.phantoms.mri_c``; their T1 series too where a study has one).
    ``a_upper`` (default 0: the plan of before): each plain A phantom is drawn (``default_rng([seed, 43])``) to be
    rendered with the anatomy above C2 with this probability (style ``"AU"``; ``generate_series(upper=True)``)."""
    from pipelines.phantoms.mri_shift import SUITE

    plan: list[tuple[str, int, list[str], tuple[str, ...]]] = [
        ("AU" if a_upper > 0 and np.random.default_rng([s, 43]).random() < a_upper else "A", s, [], ("T2",))
        for s in range(a_seed, a_seed + a_count)]
    for s in range(as_seed, as_seed + as_count):
        r = np.random.default_rng([s, 7])
        plan.append(("a", s, [str(r.choice(MIX_SHIFTS_A))], ("T2",)))
    b_shifts = [x for x in SUITE if x not in ("t1", "stir")]
    for s in range(b_seed, b_seed + b_count):
        r = np.random.default_rng([s, 7])
        sh = [str(r.choice(b_shifts))] if r.random() < 0.5 else []
        wts: tuple[str, ...] = ("T2",)
        if r.random() < extra_fraction:
            extra = "T1" if r.random() < 0.5 else "STIR"
            sh.append(extra.lower())
            wts = ("T2", extra)
        plan.append(("b", s, sh, wts))
    plan += [("c", s, [], ("T2", "T1")) for s in range(c_seed, c_seed + c_count)]
    return plan


def make_mixed_dataset(plan: list[tuple[str, int, list[str], tuple[str, ...]]], views: int,
                       log_every: int = 20, anchors: bool = False) -> dict[str, np.ndarray]:
    """Samples for every study of ``plan`` (``mixed_plan``). Localiser arrays are per window (``loc_*``, with
    ``loc_has_mask``: masks only from plain A phantoms), classifier arrays per series. ``anchors``: also
    ``loc_anchors`` (``a_phantom_views``; NaN for the windows of written studies, which carry no such truth)."""
    import tempfile

    loc_i, loc_c, loc_m, has, mids, sides, labels, anc = [], [], [], [], [], [], [], []
    empty = np.zeros((views, 2, LOCALISER_SIZE, LOCALISER_SIZE), np.uint8)
    t0 = time.time()
    with tempfile.TemporaryDirectory(prefix="mri-train-") as tmp:
        for n, (style, seed, shifts, wts) in enumerate(plan):
            rng = np.random.default_rng([seed, 99])
            if style in ("A", "AU"):
                parts = [a_phantom_views(seed, views, rng, upper=style == "AU", anchors=anchors)]
            else:
                parts = case_samples(style, seed, shifts, wts, views, rng, Path(tmp))
            for p in parts:
                loc_i.append(p["loc_image"])
                loc_c.append(p["loc_centres"])
                loc_m.append(p.get("loc_masks", empty))
                has.append(np.full(views, "loc_masks" in p))
                if anchors:
                    anc.append(p.get("loc_anchors", np.full((len(p["loc_image"]), ANCHOR_POINTS, 2), np.nan, np.float32)))
                mids.append(p["mid_crops"])
                sides.append(p["side_crops"])
                labels.append(p["labels"])
            if log_every and (n + 1) % log_every == 0:
                print(f"  studies {n + 1}/{len(plan)} ({time.time() - t0:.0f}s)", flush=True)
    out = {"loc_image": np.concatenate(loc_i).astype(np.float32), "loc_centres": np.concatenate(loc_c),
           "loc_masks": np.concatenate(loc_m), "loc_has_mask": np.concatenate(has),
           "mid_crops": np.stack(mids), "side_crops": np.stack(sides), "labels": np.stack(labels)}
    if anchors:
        out["loc_anchors"] = np.concatenate(anc).astype(np.float32)
    return out
