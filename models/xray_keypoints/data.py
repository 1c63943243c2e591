"""Training data: phantom studies generated on the fly, COCO-keypoint folders, labelme folders.

Every source yields :class:`RawSample` (an image in [0, 1] with bone bright, 30 keypoints in its pixels,
their visibility, pixel spacing in mm and the view). :class:`KeypointDataset` turns a raw sample into a
network example with the same :class:`~pipelines.xray.preprocessing.AffineTransform` resampling as inference:
either the whole image letterboxed (first pass) or a square box around the cervical spine (second, refining
pass), with random scale / shift / rotation and intensity augmentation.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import Dataset

from models.xray_keypoints.inputs import VIEW_ORDER, AugmentConfig, spine_box
from pipelines.results import KEYPOINT_NAMES, View
from pipelines.xray.preprocessing import AffineTransform, model_input, to_unit_range


@dataclass
class RawSample:
    """One annotated radiograph, at any resolution."""

    image: np.ndarray
    """float32 or float16 (rows, cols) in [0, 1], bone bright."""
    keypoints: np.ndarray
    """(30, 2) x, y in pixels of ``image``, ``KEYPOINT_NAMES`` order."""
    visible: np.ndarray
    """(30,) bool."""
    spacing_mm: tuple[float, float]
    """(row, col) mm per pixel of ``image`` (at the measurement plane)."""
    view: int = -1
    """Index into ``VIEW_ORDER``; -1 when unknown."""


def shrink(sample: RawSample, max_side: int) -> RawSample:
    """Block-average ``sample`` by an integer factor so that its longer side is at most ``max_side``."""
    rows, cols = sample.image.shape
    f = int(np.ceil(max(rows, cols) / max_side))
    if f <= 1:
        return sample
    r, c = (rows // f) * f, (cols // f) * f
    img = sample.image[:r, :c].reshape(r // f, f, c // f, f).mean(axis=(1, 3)).astype(np.float32)
    kp = (sample.keypoints - (f - 1) / 2) / f
    return RawSample(img, kp, sample.visible, (sample.spacing_mm[0] * f, sample.spacing_mm[1] * f), sample.view)


def phantom_view_samples(seed: int, *, shape: tuple[int, int] | str | None = None, difficulty: str = "realistic",
                         max_side: int | None = None) -> list[RawSample]:
    """The views of phantom study ``seed`` as raw samples. ``shape="random"`` draws rows 560-720 and cols
    420-660 from the seed (varied aspect ratios); ``difficulty="mix"`` makes every 6th study ``hard``."""
    from pipelines.phantoms.xray import generate_study

    rng = np.random.default_rng([seed, 99])
    if shape == "random":
        shape = (int(rng.integers(560, 721)), int(rng.integers(420, 661)))
    if difficulty == "mix":
        difficulty = "hard" if seed % 6 == 5 else "realistic"
    study = generate_study(seed, shape=shape, difficulty=difficulty)  # type: ignore[arg-type]
    out = []
    for view, pv in study.views.items():
        img = to_unit_range(pv.pixels, monochrome1=str(pv.photometric).upper() == "MONOCHROME1")
        raw = RawSample(img, np.asarray(pv.keypoints, dtype=np.float64), np.asarray(pv.visible, dtype=bool),
                        tuple(float(v) for v in pv.pixel_spacing_mm), VIEW_ORDER.index(View(view)))
        raw = shrink(raw, max_side) if max_side else raw
        raw.image = raw.image.astype(np.float16)
        out.append(raw)
    return out


def phantom_samples(seed: int, count: int, *, shape: tuple[int, int] | str | None = None, difficulty: str = "realistic",
                    max_side: int | None = None, processes: int = 1) -> Iterator[RawSample]:
    """The views of ``count`` phantom studies with seeds ``seed, seed + 1, ...`` (optionally in processes)."""
    from functools import partial

    fn = partial(phantom_view_samples, shape=shape, difficulty=difficulty, max_side=max_side)
    if processes <= 1:
        for s in range(seed, seed + count):
            yield from fn(s)
        return
    import multiprocessing as mp

    with mp.get_context("fork").Pool(processes) as pool:
        for samples in pool.imap(fn, range(seed, seed + count), chunksize=4):
            yield from samples


def coco_samples(json_path: Path, image_root: Path | None = None) -> list[RawSample]:
    """Samples from a COCO-keypoints JSON (via ``pipelines.xray.annotations.read_coco``); images are DICOM or PNG."""
    from pipelines.xray.annotations import read_coco

    out = []
    for a in read_coco(Path(json_path)):
        kp = np.asarray(a.keypoints, float)
        vis = np.asarray(a.visible, bool) & np.isfinite(kp).all(axis=1)
        path = Path(a.image_path)
        if image_root is not None and not path.is_file():
            path = Path(image_root) / path.name
        out.append(_sample_from_file(path, np.nan_to_num(kp), vis, a.pixel_spacing_mm, a.view))
    return out


def labelme_samples(folder: Path, label_map: dict[str, str] | None = None) -> list[RawSample]:
    """Samples from a folder of labelme JSON files and their images."""
    from models.xray_keypoints.labelme import read_labelme_folder

    return [_sample_from_file(r.image_path, r.keypoints, r.visible, None, None) for r in read_labelme_folder(folder, label_map)]


def _sample_from_file(path: Path, kp: np.ndarray, vis: np.ndarray, spacing: tuple[float, float] | None,
                      view: View | str | None) -> RawSample:
    if path.suffix.lower() in (".dcm", "") or path.suffix.lower() not in (".png", ".jpg", ".jpeg", ".tif", ".tiff"):
        import pydicom

        from pipelines.xray.preprocessing import image_from_dataset

        ds = pydicom.dcmread(path)
        img = image_from_dataset(ds)
        if spacing is None:
            sp = ds.get("PixelSpacing") or ds.get("ImagerPixelSpacing")
            spacing = (float(sp[0]), float(sp[1])) if sp else (0.1, 0.1)
    else:
        import matplotlib.image as mpimg

        arr = np.asarray(mpimg.imread(path), dtype=np.float32)
        if arr.ndim == 3:
            arr = arr[..., :3].mean(axis=-1)
        img = to_unit_range(arr, monochrome1=False)
        spacing = spacing or (0.1, 0.1)
    v = VIEW_ORDER.index(View(view)) if view else -1
    return RawSample(img, kp, vis, (float(spacing[0]), float(spacing[1])), v)


def example_transform(raw: RawSample, cfg: AugmentConfig, rng: np.random.Generator | None, full: bool) -> AffineTransform:
    """The resampling of ``raw`` for one example (deterministic when ``rng`` is None)."""
    rows, cols = raw.image.shape
    if full:
        t = AffineTransform.letterbox(rows, cols, cfg.size)
        if rng is None:
            return t
        s = rng.uniform(*cfg.full_scale)
        side = t.scale * cfg.size / s
        cx = (cols - 1) / 2 + rng.uniform(-0.05, 0.05) * side
        cy = (rows - 1) / 2 + rng.uniform(-0.05, 0.05) * side
        return AffineTransform.box(cx, cy, side, cfg.size, rng.uniform(-cfg.rotation_deg, cfg.rotation_deg) / 2)
    if rng is None:
        cx, cy, side = spine_box(raw.keypoints, raw.visible, cfg.refine_margin)
        return AffineTransform.box(cx, cy, side, cfg.size)
    cx, cy, side = spine_box(raw.keypoints, raw.visible, rng.uniform(*cfg.box_margin))
    cx += rng.uniform(-cfg.box_shift, cfg.box_shift) * side
    cy += rng.uniform(-cfg.box_shift, cfg.box_shift) * side
    return AffineTransform.box(cx, cy, side, cfg.size, rng.uniform(-cfg.rotation_deg, cfg.rotation_deg))


def make_example(raw: RawSample, cfg: AugmentConfig, rng: np.random.Generator | None, full: bool) -> dict[str, torch.Tensor]:
    """Network example: ``image`` (1, S, S) in [-1, 1], ``keypoints`` (30, 2) model px, ``valid`` (30,),
    ``mm_per_px`` (scalar, mm per model pixel), ``view`` (long, -1 unknown)."""
    t = example_transform(raw, cfg, rng, full)
    img = raw.image
    if rng is not None:
        img = np.clip(img, 0, 1) ** rng.uniform(*cfg.gamma)
        img = img * rng.uniform(0.8, 1.2) + rng.uniform(-0.1, 0.1)
    x = model_input(img.astype(np.float32), t)
    if rng is not None and cfg.noise > 0:
        x = x + rng.normal(0, rng.uniform(0, cfg.noise), x.shape).astype(np.float32)
    kp = t.to_model(raw.keypoints)
    inside = (kp[:, 0] >= 0) & (kp[:, 0] <= cfg.size - 1) & (kp[:, 1] >= 0) & (kp[:, 1] <= cfg.size - 1)
    mm = float(np.sqrt(raw.spacing_mm[0] * raw.spacing_mm[1])) * t.scale
    return {
        "image": torch.from_numpy(np.ascontiguousarray(x, dtype=np.float32))[None],
        "keypoints": torch.from_numpy(kp.astype(np.float32)),
        "valid": torch.from_numpy(raw.visible & inside),
        "mm_per_px": torch.tensor(mm, dtype=torch.float32),
        "view": torch.tensor(raw.view, dtype=torch.long),
    }


class KeypointDataset(Dataset):
    """Random augmented examples from a fixed list of raw samples; ``epoch`` reseeds the augmentation."""

    def __init__(self, samples: Sequence[RawSample], cfg: AugmentConfig, *, seed: int = 0, augment: bool = True) -> None:
        self.samples = list(samples)
        self.cfg = cfg
        self.seed = seed
        self.augment = augment
        self.epoch = 0

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        if not self.augment:
            return make_example(self.samples[i], self.cfg, None, full=i % 2 == 0)
        rng = np.random.default_rng([self.seed, self.epoch, i])
        return make_example(self.samples[i], self.cfg, rng, full=bool(rng.random() < self.cfg.p_full))


assert len(KEYPOINT_NAMES) == 30
