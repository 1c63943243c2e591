"""Cord compression (seed 004), fast parts: segment crops from keypoints, labels from the MRI truth, the
radiographic signs of the phantom, a tiny training run, Grad-CAM back onto the image."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.cord_compression.data import patient_view, prepare
from models.cord_compression.network import SegmentCNN
from models.cord_compression.roi import CROP, crop_to_image, segment_frame, segment_transform
from models.cord_compression.train import train
from pipelines.phantoms.mri import cord_compression_truth, generate_series
from pipelines.phantoms.patient import virtual_patient, xray_anatomy
from pipelines.phantoms.xray import generate_study
from pipelines.results import View


@pytest.fixture(scope="module")
def view():
    return patient_view(3)


def test_crop_is_oriented_on_the_segment(view) -> None:
    _, _, pv = view
    kp = pv.keypoints
    rows, cols = CROP
    for j in range(5):
        t = segment_transform(kp, j)
        m = t.to_model(kp)
        up, lo = m[4 * j : 4 * j + 4], m[4 * j + 4 : 4 * j + 8]
        # model x runs anterior: the anterior corners (AS, AI) lie right of the posterior ones (PS, PI)
        assert up[:2, 0].mean() > up[2:, 0].mean() + 10 and lo[:2, 0].mean() > lo[2:, 0].mean() + 10
        # model y runs caudally: the upper vertebra is above the lower one; both centres inside the crop
        cu, cl = up.mean(axis=0), lo.mean(axis=0)
        assert cu[1] < rows / 2 < cl[1] and 0 < cu[1] and cl[1] < rows - 1
        # the canal behind the segment is in the crop: both spinolaminar points and the posterior corners
        for p in (m[24 + j], m[25 + j], up[3], lo[2]):
            assert 0 <= p[0] <= cols - 1 and 0 <= p[1] <= rows - 1
        # the scale is the body depth: the endplates span WIDTH_D^-1 of the crop width
        centre, down, ant, depth = segment_frame(kp, j)
        assert abs(float(np.hypot(*(up[1] - up[3]))) - depth * cols / (2.4 * depth)) < 0.25 * cols / 2.4
        assert abs(float(down @ ant)) < 1e-9


def test_crop_maps_back_to_the_image(view) -> None:
    _, _, pv = view
    t = segment_transform(pv.keypoints, 2)
    cam = np.zeros(CROP, np.float32)
    cam[20, 30] = 1.0
    patch, (y0, x0) = crop_to_image(cam, t, pv.shape)
    yy, xx = np.nonzero(patch == patch.max())
    peak = np.array([x0 + xx.mean(), y0 + yy.mean()])
    assert np.hypot(*(peak - t.to_original(np.array([30.0, 20.0])))) < 1.5
    # nothing outside the crop's footprint
    ys, xs = np.nonzero(patch > 0)
    m = t.to_model(np.stack([xs + x0, ys + y0], axis=1).astype(float))
    assert np.all((m > -1.0) & (m < np.array(CROP[::-1]) + 0.5))


@pytest.mark.parametrize("seed", [2, 11])
def test_labels_are_the_mri_truth_of_the_same_patient(seed: int) -> None:
    vp = virtual_patient(seed)
    mri = generate_series(seed, patient=vp, shape=(96, 96), n_slices=7)
    assert cord_compression_truth(vp) == tuple(t.cord_compression for t in mri.levels)


def test_signs_are_drawn_behind_the_segment_they_belong_to() -> None:
    seed = next(s for s in range(50) if max(lv.osteophyte_mm for lv in virtual_patient(s).levels) > 1.5)
    vp = virtual_patient(seed)
    j = int(np.argmax([lv.osteophyte_mm for lv in vp.levels]))
    anatomy = xray_anatomy(vp)
    assert anatomy["posterior_osteophyte_mm"][j] == vp.levels[j].osteophyte_mm
    plain = generate_study(seed, views=(View.NEUTRAL,), shape=(512, 448), anatomy=xray_anatomy(vp, signs=False))
    signs = generate_study(seed, views=(View.NEUTRAL,), shape=(512, 448), anatomy=anatomy)
    a, b = plain.views[View.NEUTRAL], signs.views[View.NEUTRAL]
    assert np.array_equal(a.keypoints, b.keypoints)
    diff = a.pixels.astype(int) != b.pixels.astype(int)
    assert diff.any()
    # the changed pixels of the largest spur lie in the crop of its segment, behind the posterior wall
    t = segment_transform(b.keypoints, j)
    ys, xs = np.nonzero(diff)
    m = t.to_model(np.stack([xs, ys], axis=1).astype(float))
    inside = (m[:, 0] >= 0) & (m[:, 0] < CROP[1]) & (m[:, 1] >= 0) & (m[:, 1] < CROP[0])
    assert inside.sum() > 0
    wall_x = t.to_model(b.keypoints[[4 * j + 3, 4 * j + 6]]).mean(axis=0)[0]
    assert np.median(m[inside, 0]) < wall_x + 3  # posterior of (or at) the posterior wall


def test_tiny_training_run_lowers_the_loss(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    data = tmp_path / "d.npz"
    info = prepare(data, range(500, 512), jittered=1)
    assert info["segments"] == 60
    meta = train(data, None, tmp_path / "w.pt", minutes=5, max_steps=120, batch=32, lr=3e-3)
    assert meta["steps"] == 120
    assert meta["loss_last"] < meta["loss_first"]


def test_gradcam_map_lies_inside_the_segment_crop(view) -> None:
    torch.manual_seed(0)
    net = SegmentCNN().eval()
    x = torch.randn(5, 1, *CROP)
    logits, cams = net.gradcam(x, torch.arange(5))
    assert logits.shape == (5,) and cams.shape == (5, *CROP)
    assert float(cams.min()) >= 0.0 and float(cams.max()) <= 1.0 + 1e-6
    _, _, pv = view
    t = segment_transform(pv.keypoints, 1)
    patch, (y0, x0) = crop_to_image(cams[1].numpy(), t, pv.shape)
    ys, xs = np.nonzero(patch > 0)
    m = t.to_model(np.stack([xs + x0, ys + y0], axis=1).astype(float))
    assert len(m) and np.all((m[:, 0] > -1) & (m[:, 0] < CROP[1]) & (m[:, 1] > -1) & (m[:, 1] < CROP[0]))


def test_crop_to_image_equals_sampling_at_every_pixel(view) -> None:
    """``crop_to_image`` (one affine resampling) gives what sampling the map at each image pixel's crop coordinates
    gives (``map_coordinates`` on ``to_model`` of every pixel, the definition), for every segment."""
    from scipy import ndimage

    _, _, pv = view
    rng = np.random.default_rng(4)
    for j in range(5):
        t = segment_transform(pv.keypoints, j)
        cam = rng.random(CROP).astype(np.float32)
        patch, (y0, x0) = crop_to_image(cam, t, pv.shape)
        yy, xx = np.mgrid[y0 : y0 + patch.shape[0], x0 : x0 + patch.shape[1]]
        m = t.to_model(np.stack([xx.ravel(), yy.ravel()], axis=1).astype(np.float64))
        want = ndimage.map_coordinates(cam, [m[:, 1], m[:, 0]], order=1, cval=0.0, mode="constant")
        h, w = t.size
        inside = (m[:, 0] >= -0.5) & (m[:, 0] <= w - 0.5) & (m[:, 1] >= -0.5) & (m[:, 1] <= h - 0.5)
        want = np.where(inside, want, 0.0).reshape(patch.shape)
        assert patch.dtype == np.float32 and np.abs(patch - want).max() < 1e-5
