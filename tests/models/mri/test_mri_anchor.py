"""Level identification by anatomy (``train --anchor``, issue 14): the anchor decoder (C2 body + any-disc peaks
decide between the level chain and the chain moved by one level), its truth in renderer A, and that everything is
opt-in (a localiser and checkpoint without the anchor channels behave as before)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.mri import augment
from models.mri.network import ANCHOR_OUT, LOCALISER_OUT, DiscLocaliser
from models.mri.predictor import (
    ANCHOR_FLAG_PEAK,
    MriPredictor,
    anchor_chain,
    count_chain,
    disc_peaks,
    sigmoid_peaks,
)
from models.mri.train import anchor_loss, anchor_targets, focal_heatmap_loss

GAP = 9.0  # localiser px between neighbouring discs
C2 = np.array([60.0, 20.0])
DISCS = np.array([[60.0, 20.0 + 5.0 + GAP * i] for i in range(8)])  # C2-C3 is 5 px below the C2 body centre


def _chain(first: int) -> np.ndarray:
    """Five consecutive discs starting at DISCS[first] (first = 0: right; 1: one level too low)."""
    return DISCS[first:first + 5].copy()


def test_agreeing_chain_is_kept() -> None:
    pts = _chain(0)
    out, src, verdict = anchor_chain(pts, C2, 0.9, DISCS)
    assert verdict == "agree"
    assert np.array_equal(out, pts) and list(src) == [0, 1, 2, 3, 4]


def test_chain_one_level_too_low_moves_up() -> None:
    pts = _chain(1)  # the model called C3-C4 "C2-C3"
    out, src, verdict = anchor_chain(pts, C2, 0.9, DISCS)
    assert verdict == "up"
    assert np.allclose(out, _chain(0))
    assert list(src) == [-1, 0, 1, 2, 3]


def test_chain_one_level_too_high_moves_down() -> None:
    above = np.array([[60.0, 20.0 + 5.0 - GAP]])  # the model's "C2-C3" on something above C2's disc
    pts = np.concatenate([above, DISCS[:4]])
    out, src, verdict = anchor_chain(pts, C2, 0.9, DISCS)
    assert verdict == "down"
    assert np.allclose(out, _chain(0))  # C6-C7 taken from the any-disc peaks
    assert list(src) == [1, 2, 3, 4, -1]
    # without a disc peak there: extrapolated one gap on
    out2, _, _ = anchor_chain(pts, C2, 0.9, DISCS[:4])
    assert np.allclose(out2[-1], DISCS[4])


def test_only_c2c3_off_is_repaired() -> None:
    pts = _chain(0)
    pts[0] = [75.0, 18.0]  # C2-C3 somewhere off the chain, the rest right
    out, src, verdict = anchor_chain(pts, C2, 0.9, DISCS)
    assert verdict == "c2c3"
    assert np.allclose(out, _chain(0)) and list(src) == [-1, 1, 2, 3, 4]


def test_no_confident_c2_or_no_disc_below_gives_no_verdict() -> None:
    pts = _chain(1)
    assert anchor_chain(pts, C2, 0.05, DISCS)[2] == "none"
    assert anchor_chain(pts, None, 0.9, DISCS)[2] == "none"
    assert anchor_chain(pts, C2, 0.9, np.zeros((0, 2)))[2] == "none"
    assert anchor_chain(pts, C2, 0.9, DISCS[:0] + 200.0)[2] == "none"
    out, _, verdict = anchor_chain(pts, C2 + [0.0, 60.0], 0.9, DISCS[:3])  # C2 below every disc
    assert verdict == "none" and np.array_equal(out, pts)


def test_first_disc_below_c2_matching_nothing_is_a_disagreement() -> None:
    pts = _chain(0)
    discs = DISCS.copy()
    discs[0] = [60.0, 20.0 + 5.0 + 0.5 * GAP]  # half a level off every hypothesis
    out, _, verdict = anchor_chain(pts, C2, 0.9, discs[:1])
    assert verdict == "disagree" and np.array_equal(out, pts)


def test_disc_peaks_finds_every_blob_top_to_bottom() -> None:
    pts = torch.tensor(DISCS[None, :6], dtype=torch.float32)
    m = augment.centre_heatmaps(pts, 128)[0].sum(0).numpy().astype(np.float64)
    found = disc_peaks(m / m.sum())
    assert found.shape == (6, 2)
    assert np.abs(found - DISCS[:6]).max() < 0.3
    assert np.all(np.diff(found[:, 1]) > 0)


def _anchor_out(c2: np.ndarray, discs: np.ndarray, chain: np.ndarray) -> np.ndarray:
    """Localiser logits whose heatmaps peak at ``chain`` (levels), ``c2`` and ``discs`` (anchor channels)."""
    def hm(p: np.ndarray) -> np.ndarray:
        return augment.centre_heatmaps(torch.tensor(p[None], dtype=torch.float32), 128)[0].numpy()

    out = np.full((LOCALISER_OUT + ANCHOR_OUT, 128, 128), -20.0)
    out[:5] = 20 * hm(chain) - 10
    out[LOCALISER_OUT] = 20 * hm(c2[None])[0] - 10
    out[LOCALISER_OUT + 1] = 20 * hm(discs).sum(0) - 10
    return out


def test_predictor_anchor_flags_a_moved_chain() -> None:
    pred = MriPredictor.__new__(MriPredictor)
    pred.anchor_decoder = "chain"
    pts = _chain(1)
    out = _anchor_out(C2, DISCS, pts)
    spread, peak = np.full(5, 0.7), np.full(5, 0.9)
    new, sp, pk = pred._anchor(out, pts, spread, peak)
    assert pred.last_anchor == "up"
    assert np.abs(new - _chain(0)).max() < 0.3
    assert np.all(pk <= ANCHOR_FLAG_PEAK) and sp.shape == (5,)
    ok = _chain(0)
    new, sp, pk = pred._anchor(_anchor_out(C2, DISCS, ok), ok, spread, peak)
    assert pred.last_anchor == "agree" and np.array_equal(new, ok) and np.array_equal(pk, peak)


def test_count_keeps_an_agreeing_chain() -> None:
    out, mark, verdict = count_chain(_chain(0), C2, 0.9, DISCS)
    assert verdict == "agree" and np.array_equal(out, _chain(0)) and not mark.any()


def test_count_repairs_a_chain_broken_inside() -> None:
    pts = _chain(0)
    pts[3:] = DISCS[4:6]  # C5-C6 and C6-C7 one level too low, the upper three right
    out, mark, verdict = count_chain(pts, C2, 0.9, DISCS)
    assert verdict == "count"
    assert np.allclose(out, _chain(0))
    assert mark.tolist() == [False, False, False, True, True]  # only the moved levels are marked


def test_count_moves_a_whole_chain_one_level_off() -> None:
    out, mark, verdict = count_chain(_chain(1), C2, 0.9, DISCS)  # the model called C3-C4 "C2-C3"
    assert verdict == "count" and np.allclose(out, _chain(0)) and mark.all()


def test_count_without_a_confident_c2_starts_at_the_chains_c2c3() -> None:
    pts = _chain(0)
    pts[2:] = DISCS[3:6]
    for c2, mass in ((C2, 0.05), (None, 0.9)):
        out, mark, verdict = count_chain(pts, c2, mass, DISCS)
        assert verdict == "count" and np.allclose(out, _chain(0))
        assert mark.tolist() == [False, False, True, True, True]
    assert count_chain(_chain(0) + [30.0, 0.0], None, 0.0, DISCS)[2] == "none"  # no disc at its C2-C3
    assert count_chain(_chain(0), C2, 0.9, np.zeros((0, 2)))[2] == "none"


def test_count_follows_a_curve_with_changing_gaps() -> None:
    ang = np.radians([0, 12, 24, 36, 48, 60, 70])  # a lordotic curve, 12 deg more per level
    gaps = GAP * np.array([1.0, 1.15, 1.3, 1.2, 1.05, 0.9, 0.8])
    steps = np.stack([np.sin(ang), np.cos(ang)], 1) * gaps[:, None]
    discs = np.concatenate([[[60.0, 25.0]], [60.0, 25.0] + np.cumsum(steps, 0)])  # C2-C3 first, 8 discs
    pts = discs[1:6].copy()  # the whole chain one level too low
    out, mark, verdict = count_chain(pts, C2, 0.9, discs)
    assert verdict == "count" and np.allclose(out, discs[:5]) and mark.all()


def test_count_that_loses_the_chain_is_partial() -> None:
    gone = np.delete(DISCS, 2, axis=0)  # no any-disc peak at C4-C5
    out, mark, verdict = count_chain(_chain(0), C2, 0.9, gone)
    assert verdict == "partial" and np.array_equal(out, _chain(0)) and not mark.any()  # counted part agreed
    out, mark, verdict = count_chain(_chain(1), C2, 0.9, gone)
    assert verdict == "partial" and np.allclose(out[:2], _chain(0)[:2])
    assert mark.all()  # the counted levels moved, so the rest is not trusted either


def test_count_skip_bridges_one_missed_disc() -> None:
    gone = np.delete(DISCS, 2, axis=0)  # the any-disc map missed C4-C5
    out, mark, verdict = count_chain(_chain(0), C2, 0.9, gone, bridge=True)
    assert verdict == "agree" and np.array_equal(out, _chain(0)) and not mark.any()  # the chain has it: kept
    pts = _chain(0)
    pts[2:] = DISCS[3:6]  # the level chain broken at C4-C5 as well
    out, mark, verdict = count_chain(pts, C2, 0.9, gone, bridge=True)
    assert verdict == "count" and np.allclose(out, _chain(0))
    assert mark.tolist() == [False, False, True, True, True]
    two_gone = np.delete(DISCS, [2, 3], axis=0)  # two missed in a row: not bridged
    assert count_chain(_chain(0), C2, 0.9, two_gone, bridge=True)[2] == "partial"


def test_sigmoid_peaks_find_every_disc_whatever_their_height() -> None:
    pts = torch.tensor(DISCS[None, :6], dtype=torch.float32)
    hm = augment.centre_heatmaps(pts, 128)[0].numpy().astype(np.float64)
    hm *= np.array([1.0, 0.9, 0.35, 1.0, 0.5, 0.8])[:, None, None]  # a weak disc is still a disc
    found = sigmoid_peaks(hm.max(0))
    assert found.shape == (6, 2) and np.abs(found - DISCS[:6]).max() < 0.3
    assert len(sigmoid_peaks(hm.max(0) * 0.2)) == 0


def test_focal_heatmap_loss_prefers_the_truth() -> None:
    pts = torch.tensor(DISCS[None, :6], dtype=torch.float32)
    target = augment.centre_heatmaps(pts, 128).amax(1)
    good = torch.logit(target.clamp(0.01, 0.99))
    shifted = torch.roll(good, 4, dims=-2)
    assert float(focal_heatmap_loss(good, target)) < float(focal_heatmap_loss(shifted, target))
    out = torch.zeros(2, LOCALISER_OUT + ANCHOR_OUT, 128, 128, requires_grad=True)
    a = torch.tensor(np.concatenate([C2[None], DISCS])[None], dtype=torch.float32).repeat(2, 1, 1)
    loss = anchor_loss(out, a, torch.tensor([True, False]), focal=True)
    loss.backward()
    assert torch.isfinite(loss) and out.grad[:, LOCALISER_OUT + 1].abs().sum() > 0


def test_predictor_reads_the_any_disc_kind_and_decoder_from_the_weights(tmp_path) -> None:  # noqa: ANN001
    from models.common.checkpoint import save_checkpoint

    loc = DiscLocaliser(anchors=True)
    cls = MriPredictor.load().classifier
    path = tmp_path / "w.pt"
    save_checkpoint(path, "mri", "t", {"localiser": loc.state_dict(), "classifier": cls.state_dict()},
                    {"config": {"anchor": True, "anchor_disc": "focal", "anchor_decoder": "count-skip"}})
    pred = MriPredictor.load(path)
    assert pred.anchors and pred.anchor_disc == "focal" and pred.anchor_decoder == "count-skip"
    pts = _chain(0)
    out = _anchor_out(C2, DISCS, pts)
    out[LOCALISER_OUT + 1] = 20 * augment.centre_heatmaps(torch.tensor(DISCS[None], dtype=torch.float32),
                                                          128)[0].amax(0).numpy() - 10  # sigmoid logits
    new, _, pk = pred._anchor(out, pts, np.full(5, 0.7), np.full(5, 0.9))
    assert pred.last_anchor == "agree" and np.array_equal(pk, np.full(5, 0.9))


def test_predictor_count_flags_only_moved_levels() -> None:
    pred = MriPredictor.__new__(MriPredictor)
    assert pred.anchor_decoder == "count"
    pts = _chain(0)
    pts[3:] = DISCS[4:6]
    spread, peak = np.array([0.7, 0.6, 0.5, 0.8, 0.9]), np.full(5, 0.9)
    new, sp, pk = pred._anchor(_anchor_out(C2, DISCS, pts), pts, spread, peak)
    assert pred.last_anchor == "count"
    assert np.abs(new - _chain(0)).max() < 0.3
    assert np.array_equal(pk[:3], peak[:3]) and np.all(pk[3:] <= ANCHOR_FLAG_PEAK)
    assert np.array_equal(sp[:3], spread[:3]) and np.all(sp[3:] == 0.9)  # agreeing levels keep their own spread
    pred.anchor_decoder = "off"
    new, sp, pk = pred._anchor(_anchor_out(C2, DISCS, pts), pts, spread, peak)
    assert pred.last_anchor == "off" and np.array_equal(new, pts) and np.array_equal(pk, peak)


def test_localiser_without_anchors_is_the_network_of_before() -> None:
    torch.manual_seed(0)
    a = DiscLocaliser()
    torch.manual_seed(0)
    b = DiscLocaliser(anchors=False)
    assert {k: v.shape for k, v in a.state_dict().items()} == {k: v.shape for k, v in b.state_dict().items()}
    assert all(torch.equal(a.state_dict()[k], b.state_dict()[k]) for k in a.state_dict())
    c = DiscLocaliser(anchors=True)
    x = torch.zeros(1, 1, 128, 128)
    assert a(x).shape[1] == LOCALISER_OUT and c(x).shape[1] == LOCALISER_OUT + ANCHOR_OUT


def test_shipped_weights_do_not_anchor() -> None:
    pred = MriPredictor.load()
    assert pred.anchors is False
    assert not hasattr(pred.localiser, "anchor")


def test_fov_moves_anchors_with_the_same_draws() -> None:
    g1, g2 = torch.Generator().manual_seed(3), torch.Generator().manual_seed(3)
    x = torch.rand(4, 1, 128, 128)
    c = torch.tensor(np.tile(_chain(0)[None], (4, 1, 1)), dtype=torch.float32)
    m = torch.zeros(4, 2, 128, 128)
    anchors = torch.cat([c[:, :1] - torch.tensor([0.0, 5.0]), c], 1)
    x1, h1, m1 = augment.localiser_batch(x, c, m, g1, augment.ALL)
    x2, h2, m2, a2, seen = augment.localiser_batch_anchors(x, c, m, anchors, g2, augment.ALL)
    assert torch.equal(x1, x2) and torch.equal(h1, h2) and torch.equal(m1, m2)
    # the moved disc anchors are the moved level centres (the same map)
    moved = torch.stack([torch.stack([h[i].flatten().argmax() for i in range(5)]) for h in h1])
    yx = torch.stack([moved // 128, moved % 128], -1).flip(-1).float()
    assert (a2[:, 1:6] - yx).abs().max() <= 1.0
    assert seen.dtype == torch.bool and seen.shape == (4,)


def test_anchor_targets_and_loss() -> None:
    pts = torch.tensor(np.concatenate([C2[None], DISCS])[None], dtype=torch.float32)
    none = torch.full_like(pts, float("nan"))
    c2, discs, ok = anchor_targets(torch.cat([pts, none]), 128)
    assert ok.tolist() == [True, False]
    assert float(c2[0].max()) == pytest.approx(1.0) and float(c2[1].max()) == 0.0
    assert float(discs[0].sum()) > 8 * float(c2[0].sum()) * 0.9
    out = torch.zeros(2, LOCALISER_OUT + ANCHOR_OUT, 128, 128, requires_grad=True)
    loss = anchor_loss(out, torch.cat([pts, none]), torch.tensor([True, True]))
    loss.backward()
    assert torch.isfinite(loss) and out.grad[1].abs().sum() == 0


def test_renderer_a_anchor_truth() -> None:
    from models.mri.data import ANCHOR_POINTS, anchor_points
    from pipelines.phantoms.mri import generate_series

    ph = generate_series(100000, shape=(128, 128), fov_mm=240.0, n_slices=7)
    a = anchor_points(ph)
    assert a.shape == (ANCHOR_POINTS, 2)
    truth = np.array([t.disc_centre_px for t in ph.levels])
    assert np.allclose(a[1:6], truth)  # the first five discs are the graded ones
    gap = np.hypot(*(truth[1] - truth[0]))
    assert 0.3 * gap < np.hypot(*(a[0] - truth[0])) < 0.9 * gap and a[0, 1] < truth[0, 1]  # C2 body above C2-C3
