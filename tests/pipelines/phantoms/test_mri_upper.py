"""Renderer A's optional anatomy above C2 (``generate_series(..., upper=True)``, ``pipelines.phantoms.mri.upper``)."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from scipy.spatial import cKDTree

from pipelines.phantoms.mri import generate_series
from pipelines.phantoms.mri.anatomy import BRAIN, CORD, CORTEX, CSF, MARROW, SpineGeometry, spine_curve
from pipelines.phantoms.mri.upper import UpperAnatomy
from pipelines.phantoms.patient import virtual_patient

# sha256 (first 16 hex) of volume + canal mask + disc mask of generate_series(seed, weighting) before the option
# existed: the default stays bit for bit what it was
BEFORE = {(11, "T2"): "dd8f1ea4e359b141", (11, "T1"): "a54f5f8c0b20bfd5", (900100, "T2"): "2b3485a0de812293"}


def _digest(ph) -> str:
    return hashlib.sha256(ph.volume.tobytes() + ph.canal_mask.tobytes() + ph.disc_mask.tobytes()).hexdigest()[:16]


@pytest.mark.parametrize(("seed", "weighting"), sorted(BEFORE))
def test_default_off_is_bit_for_bit_unchanged(seed, weighting):
    ph = generate_series(seed, weighting=weighting)
    assert _digest(ph) == BEFORE[(seed, weighting)]
    assert _digest(generate_series(seed, weighting=weighting, upper=False)) == BEFORE[(seed, weighting)]
    assert "upper" not in ph.extra


def _labels(seed: int, w: float = 0.0):
    """Mid-plane labels of the upper phantom and the frame (t above the C2 body top) on a 256 x 256, 240 mm grid."""
    p, up = virtual_patient(seed), UpperAnatomy.draw(seed)
    ps = 240 / 256
    v0 = 48.0 + up.extra_mm
    curve = spine_curve(p, 240 * 0.47, v0, top=-(v0 + 80))
    uu, vv = np.meshgrid(np.arange(256) * ps, np.arange(256) * ps)
    _, idx = cKDTree(np.stack([curve["u"], curve["v"]], 1)).query(np.stack([uu.ravel(), vv.ravel()], 1))
    idx = idx.reshape(256, 256)
    th = curve["tilt"][idx]
    a = (uu - curve["u"][idx]) * np.cos(th) - (vv - curve["v"][idx]) * np.sin(th)
    geo = SpineGeometry(p, curve, curve["s"][idx], a, upper=up)
    return geo.labels(w), up.frame(geo), up


@pytest.mark.parametrize("seed", [3, 17, 42])
def test_upper_structures_present_above_c2(seed):
    lab, f, up = _labels(seed)
    above = f["t"] > 0
    inter = f["h_fm"] > 0
    # brain (cerebellum) and CSF above the foramen magnum, brainstem continuing the cord
    assert (lab[above & inter] == BRAIN).sum() > 200
    assert (lab[above & inter] == CSF).sum() > 50
    assert (lab[above & inter] == CORD).sum() > 50
    # bone above C2: dens, C1 arches, clivus, occipital bone (cortex and marrow)
    assert (lab[above] == CORTEX).sum() > 100
    assert (lab[above] == MARROW).sum() > 50
    # the clivus lies in front of the brainstem, the occipital bone behind the foramen magnum
    clivus = above & (f["d"] < 0) & (f["d"] > -up.clivus_th * 0.8) & (f["ell"] > 5) & (f["ell"] < up.clivus_len - 5)
    if clivus.any():
        assert np.isin(lab[clivus], (CORTEX, MARROW)).mean() > 0.9
    dens = above & (f["t"] < up.dens_h - 2) & (np.abs(f["a"] - up.dens_a) < up.dens_r - 1.5)
    assert np.isin(lab[dens], (CORTEX, MARROW)).mean() > 0.9


@pytest.mark.parametrize("seed", [3, 17, 42, 900100])
def test_upper_series_truth_inside_and_c2_off_the_top(seed):
    plain, up = generate_series(seed), generate_series(seed, upper=True)
    assert up.volume.shape == plain.volume.shape
    extra = up.extra["upper"]["extra_mm"]
    rows, cols = up.volume.shape[1:]
    for t0, t1 in zip(plain.levels, up.levels, strict=True):
        # same patient and grades; disc centres moved down by the extra field of view
        assert (t0.disc, t0.canal_grade, t0.foramen_narrowing_left) == (t1.disc, t1.canal_grade, t1.foramen_narrowing_left)
        x, y = t1.disc_centre_px
        assert 5 < x < cols - 5 and 5 < y < rows - 5
        assert abs((y - t0.disc_centre_px[1]) * up.pixel_spacing_mm[0] - extra) < 1.0
        assert abs(x - t0.disc_centre_px[0]) < 1.0
    # the C2-C3 disc lies at least ~20 mm below the top edge
    assert up.levels[0].disc_centre_px[1] * up.pixel_spacing_mm[0] > 20
    # disc centres in their masks; the canal mask stops at the foramen magnum (no brain CSF)
    for j, t in enumerate(up.levels):
        x, y = (int(round(v)) for v in t.disc_centre_px)
        assert up.disc_mask[y, x] == j + 1
    assert up.canal_mask.sum() < plain.canal_mask.sum() * 1.6
    assert not np.array_equal(up.volume, plain.volume)
    assert np.array_equal(up.volume, generate_series(seed, upper=True).volume)


def test_upper_draws_range_from_a_little_to_a_lot():
    extra = [UpperAnatomy.draw(s).extra_mm for s in range(200)]
    assert min(extra) < -15 and max(extra) > 55


def test_cli_upper_writes_series_with_truth(tmp_path):
    import json

    from pipelines.phantoms.mri.cli import cli

    assert cli(["--out", str(tmp_path), "--seed", "5", "--upper"]) == 0
    truth = json.loads((tmp_path / "mri_000005" / "truth.json").read_text())
    ph = generate_series(5, upper=True)
    assert truth["levels"][0]["disc_centre_px"] == list(ph.levels[0].disc_centre_px)
    assert len(list((tmp_path / "mri_000005").glob("*.dcm"))) == ph.volume.shape[0]
