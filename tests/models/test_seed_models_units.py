"""Units of the seed models: S-ResNet-34's weight matrix, the modified focal loss, training steps reduce the loss."""

from __future__ import annotations

import numpy as np
import torch

from models.curvature.network import ResNet34, build
from models.curvature.roi import SpineLocator
from models.upper_cervical.loss import LabelRelations, ModifiedFocalLoss, label_relations
from models.upper_cervical.network import CerviHFENet
from pipelines.phantoms.xray.upper_cervical import EXCLUSIVE_PAIRS, sample_anatomy
from pipelines.vocabulary import UPPER_CERVICAL_LABELS

torch.set_num_threads(1)
K = len(UPPER_CERVICAL_LABELS)
OS, FX, AAI = (UPPER_CERVICAL_LABELS.index(k) for k in ("os_odontoideum", "odontoid_fracture", "atlantoaxial_instability"))


def _relations() -> LabelRelations:
    return LabelRelations(prevalence=(0.2,) * K, exclusive=((OS, FX),), dependent=((OS, AAI),))


def test_s_resnet_is_resnet_plus_learnable_matrix() -> None:
    torch.manual_seed(0)
    s, plain = build("s_resnet34", input_size=64), build("resnet34", input_size=64)
    extra = {n for n, _ in s.named_parameters()} - {n for n, _ in plain.named_parameters()}
    assert len(extra) == 16 and all(n.endswith("weight_matrix") for n in extra)  # one per block, [3, 4, 6, 3]
    missing, unexpected = s.load_state_dict(plain.state_dict(), strict=False)
    assert set(missing) == extra and not unexpected
    s.eval(), plain.eval()
    x = torch.randn(2, 1, 64, 64)
    torch.testing.assert_close(s(x), plain(x))  # W = 0 at initialisation: a plain ResNet-34
    with torch.no_grad():
        for n, p in s.named_parameters():
            if n.endswith("weight_matrix"):
                p.normal_(0, 0.5)
    assert not torch.allclose(s(x), plain(x))
    assert s(torch.randn(1, 1, 96, 96)).shape == (1, 3)  # other input size: W resized


def test_exclusion_penalises_co_prediction_of_exclusive_labels_only() -> None:
    loss = ModifiedFocalLoss(_relations())
    target = torch.zeros(1, K)
    target[0, OS] = 1.0
    alone = torch.full((1, K), -4.0)
    alone[0, OS] = 4.0
    both_excl = alone.clone()
    both_excl[0, FX] = 4.0
    both_dep = alone.clone()
    both_dep[0, AAI] = 4.0
    assert float(loss.exclusion(alone, target)) < 0.05
    assert float(loss.exclusion(both_excl, target)) > 0.9
    assert float(loss.exclusion(both_dep, target)) < 0.05
    # same focal error (one false positive at logit 4) but the exclusive one costs more in total
    assert float(loss(both_excl, target)) > float(loss(both_dep, target)) + 0.5


def test_focal_term_down_weights_easy_examples_and_relation_signs() -> None:
    loss = ModifiedFocalLoss(_relations())
    target = torch.zeros(1, K)
    easy, hard = torch.full((1, K), -3.0), torch.full((1, K), 0.5)
    bce = torch.nn.functional.binary_cross_entropy_with_logits
    assert float(loss.focal(easy, target)) / float(bce(easy, target, reduction="sum")) < 0.01
    assert float(loss.focal(hard, target)) / float(bce(hard, target, reduction="sum")) > 0.2
    a = torch.zeros(K, K)
    a[AAI, OS] = -1.0  # os lowering instability contradicts the dependence
    a[FX, OS] = 1.0  # os raising fracture contradicts the exclusion
    assert float(loss.relation_penalty(a)) > float(loss.relation_penalty(torch.zeros(K, K))) + 1.0


def test_label_relations_found_in_phantom_labels() -> None:
    y = np.array([[sample_anatomy(np.random.default_rng([s, 1001])).labels[k] for k in UPPER_CERVICAL_LABELS]
                  for s in range(600)])
    rel = label_relations(y)
    expected = {tuple(sorted((UPPER_CERVICAL_LABELS.index(a), UPPER_CERVICAL_LABELS.index(b)))) for a, b in EXCLUSIVE_PAIRS}
    assert expected <= set(rel.exclusive)
    assert (OS, AAI) in rel.dependent


def _overfit(net: torch.nn.Module, x: torch.Tensor, loss_fn, steps: int = 6) -> tuple[float, float]:
    opt = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    losses = []
    for _ in range(steps):
        loss = loss_fn(net(x))
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss.detach()))
    return losses[0], losses[-1]


def test_training_steps_reduce_the_losses() -> None:
    torch.manual_seed(0)
    x = torch.randn(8, 1, 64, 64)
    y = torch.randint(0, 3, (8,))
    first, last = _overfit(ResNet34(3, input_size=64), x, lambda out: torch.nn.functional.cross_entropy(out, y))
    assert last < first
    xv = torch.randn(6, 3, 64, 64)
    yv = (torch.rand(6, K) < 0.3).float()
    yv[:, FX] *= 1 - yv[:, OS]
    loss = ModifiedFocalLoss(_relations())
    net = CerviHFENet()
    first, last = _overfit(net, xv, lambda out: loss(out, yv, net.relation.matrix))
    assert last < first
    pts = torch.rand(4, 3, 2) * 90
    first, last = _overfit(SpineLocator(8), torch.randn(4, 1, 96, 96),
                           lambda out: torch.nn.functional.smooth_l1_loss(out[0], pts), steps=8)
    assert last < first


def test_jitter_shares_flip_and_jitter_across_views() -> None:
    from models.curvature.augment import jitter_window

    g = torch.Generator().manual_seed(0)
    ramp = torch.linspace(-1, 1, 60).view(1, 1, 1, 60).expand(8, 3, 60, 60).contiguous()  # left-right asymmetric
    same = jitter_window(ramp, 48, 1.25, generator=g, gamma=0.0)
    torch.testing.assert_close(same[:, 0], same[:, 2])
    flips = torch.sign(same[:, 0, 24, -4] - same[:, 0, 24, 4])
    assert set(flips.tolist()) == {-1.0, 1.0}  # both facings occur
    indep = jitter_window(ramp, 48, 1.25, generator=g, gamma=0.0, per_channel=0.05)
    assert not torch.allclose(indep[:, 0], indep[:, 2])
    s = torch.sign(indep[:, :, 24, -4] - indep[:, :, 24, 4])
    assert torch.all(s == s[:, :1])  # one flip per patient, never per view


def test_decision_rule_keeps_one_of_an_exclusive_pair() -> None:
    from models.upper_cervical.predictor import decide

    th = np.full(K, 0.3)
    p = np.full((3, K), 0.1)
    p[0, [OS, FX]] = (0.9, 0.6)  # both above threshold: keep the larger margin
    p[1, [OS, AAI]] = (0.9, 0.6)  # dependent, not exclusive: both stay
    p[2, FX] = 0.5
    d = decide(p, th, [(OS, FX)])
    assert d[0, OS] and not d[0, FX]
    assert d[1, OS] and d[1, AAI]
    assert d[2, FX] and d.sum() == 4
