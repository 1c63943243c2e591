"""Domain randomisation of the MRI training (``models.mri.augment``, ``train --dr``): shapes, dtypes, determinism
with a seed, the geometry of each option, and that without ``--dr`` the training batches are those of before."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.mri import augment
from models.mri.data import heatmaps
from models.mri.train import (
    _augment_bias,
    _augment_intensity,
    _shift,
    classifier_batch,
    cli,
    localiser_batch,
)

N, S = 6, 128


def _batch(seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Windows with a bright dot at each of five disc centres down the middle, centres (x, y) and masks."""
    r = np.random.default_rng(seed)
    c = np.zeros((N, 5, 2), np.float32)
    c[:, :, 0] = 60 + r.uniform(-5, 5, (N, 1))
    c[:, :, 1] = r.uniform(30, 45, (N, 1)) + 13.0 * np.arange(5)
    x = np.full((N, 1, S, S), 0.2, np.float32) + 0.05 * r.random((N, 1, S, S)).astype(np.float32)
    m = np.zeros((N, 2, S, S), np.float32)
    for i in range(N):
        for cx, cy in c[i]:
            x[i, 0, int(round(cy)) - 1:int(round(cy)) + 2, int(round(cx)) - 1:int(round(cx)) + 2] = 1.0
            m[i, 0, int(round(cy)) - 2:int(round(cy)) + 3, int(round(cx)) - 4:int(round(cx)) + 5] = 1.0
    return torch.from_numpy(x), torch.from_numpy(c), torch.from_numpy(m)


def test_parse_names():
    assert augment.parse(None) == ()
    assert augment.parse(["all"]) == augment.ALL == ("fov", "topcut", "distractors", "blur", "remap")
    assert augment.parse(["all", "local"]) == augment.NAMES
    assert augment.parse(["remap", "fov"]) == ("fov", "remap")
    with pytest.raises(ValueError, match="unknown"):
        augment.parse(["rotate"])
    with pytest.raises(SystemExit):
        cli(["--dr", "rotate", "--data-only"])


@pytest.mark.parametrize("name", augment.NAMES)
def test_each_option_keeps_shape_dtype_and_is_deterministic(name):
    x, c, m = _batch()
    a = augment.localiser_batch(x, c, m, torch.Generator().manual_seed(5), (name,))
    b = augment.localiser_batch(x, c, m, torch.Generator().manual_seed(5), (name,))
    d = augment.localiser_batch(x, c, m, torch.Generator().manual_seed(6), (name,))
    assert a[0].shape == x.shape and a[0].dtype == torch.float32
    assert a[1].shape == (N, 5, S, S) and a[1].dtype == torch.float32
    assert a[2].shape == m.shape and a[2].dtype == m.dtype
    for u, v in zip(a, b, strict=True):
        assert torch.equal(u, v)
    assert not torch.equal(a[0], d[0])
    assert torch.isfinite(a[0]).all()
    assert torch.equal(x, _batch()[0])  # the input is not modified in place


def test_fov_moves_image_masks_and_targets_together():
    x, c, m = _batch()
    xo, hm, mo = augment.localiser_batch(x, c, m, torch.Generator().manual_seed(1), ("fov",))
    for i in range(N):
        for k in range(5):
            y, xx = np.unravel_index(int(hm[i, k].argmax()), (S, S))
            assert hm[i, k, y, xx] > 0.5
            assert augment.MARGIN_PX - 1 <= xx <= S - augment.MARGIN_PX and augment.MARGIN_PX - 1 <= y <= S - augment.MARGIN_PX
            patch = xo[i, 0, max(y - 3, 0):y + 4, max(xx - 3, 0):xx + 4]
            assert patch.max() > 0.6, (i, k)  # the bright dot moved with its target
            assert mo[i, 0, max(y - 2, 0):y + 3, max(xx - 2, 0):xx + 3].any()
    assert not torch.equal(xo, x)


def test_topcut_and_distractors_leave_c2_and_below_alone():
    x, c, m = _batch()
    cut = augment.top_cut(x, c, torch.Generator().manual_seed(2), p=1.0)
    dis = augment.distractors(x, c, torch.Generator().manual_seed(2), p=1.0)
    for i in range(N):
        y_c23 = float(c[i, 0, 1])
        keep = int(np.ceil(y_c23 - augment.MID_C2_PX))
        assert torch.equal(cut[i, :, keep:], x[i, :, keep:])
        keep = int(np.floor(y_c23 - augment.ABOVE_C2_PX)) + 1
        assert torch.equal(dis[i, :, keep:], x[i, :, keep:])
    assert (cut == 0).sum() > (x == 0).sum()  # something above was blanked
    assert not torch.equal(dis, x)


def test_remap_monotone_keeps_the_order_of_intensities():
    x = torch.linspace(0, 1.2, 200).view(2, 1, 10, 10)
    y = augment.remap(x, torch.Generator().manual_seed(0), invert_p=0.0, noise=0.0)
    assert (torch.diff(y.flatten(1), dim=1) >= -1e-6).all()
    y2 = augment.remap(x, torch.Generator().manual_seed(0), invert_p=1.0, noise=0.0)
    assert y2.shape == x.shape and (torch.diff(y2.flatten(1), dim=1) < 0).any()


def test_local_remap_varies_across_the_image():
    x = torch.full((3, 1, 64, 64), 0.5)
    y = augment.local_remap(x, torch.Generator().manual_seed(0), noise=0.0)
    assert y.shape == x.shape and y.dtype == x.dtype
    assert float(y.flatten(1).std(1).min()) > 1e-3  # one intensity maps to different values in different places
    assert torch.equal(y, augment.local_remap(x, torch.Generator().manual_seed(0), noise=0.0))


def test_blur_smooths():
    x, _, _ = _batch()
    y = augment.blur(x, torch.Generator().manual_seed(0), p=1.0)
    assert y.shape == x.shape and y.max() < x.max()
    crops = torch.rand(4, 3, 32, 64)
    for names in (("blur", "remap"), ("local",)):
        z = classifier_batch(crops, torch.Generator().manual_seed(0), names)
        assert z.shape == crops.shape and z.dtype == crops.dtype


def test_default_off_reproduces_the_old_batches():
    x, c, m = _batch()
    hm = torch.from_numpy(np.stack([heatmaps(ci) for ci in c.numpy()]))
    idx = torch.tensor([4, 1, 3])
    new = localiser_batch(x, hm, m, c, idx, torch.Generator().manual_seed(9), 12)
    g = torch.Generator().manual_seed(9)
    xb, hb, mb = _shift([x[idx], hm[idx], m[idx]], g, 12)
    old = (_augment_intensity(_augment_bias(xb, g), g), hb, mb)
    for u, v in zip(new, old, strict=True):
        assert torch.equal(u, v)
    crops = torch.rand(5, 3, 32, 64)
    g = torch.Generator().manual_seed(3)
    old_c = _augment_intensity(_augment_bias(crops, g, 0.3), g)
    assert torch.equal(classifier_batch(crops, torch.Generator().manual_seed(3)), old_c)
    # with --dr, the heatmap targets of unmoved centres are the data module's
    _, hd, _ = localiser_batch(x, hm, m, c, idx, torch.Generator().manual_seed(9), 0, ("remap",))
    assert torch.allclose(hd, hm[idx], atol=1e-5)
