"""Two-encoder X-ray + MRI network with ABPDC and FPRAN (seed 000; only the abstract of the paper survives).

Our reading of the names:

* **Difference convolution** (central difference convolution, CDC; Yu et al. 2020): ``y = sum_k w_k x(p+k)
  - theta * x(p) sum_k w_k``; with ``theta = 1`` it sees only differences to the centre, so it is invariant to
  an additive grey-level offset and responds to texture (local contrast).
* **Bidirectional** — twice: (a) *cross-modal* difference convolutions in both directions, X-ray -> MRI
  ``sum_k w_k (m(p+k) - x(p))`` (MRI neighbourhood against the X-ray centre) and MRI -> X-ray ``sum_k w_k
  (x(p+k) - m(p))``, on MRI features already warped onto the X-ray grid by FPRAN; (b) a *bidirectional
  pyramid* (top-down then bottom-up passes over the three levels, as in BiFPN) whose convolutions are CDCs.
* **Adaptive**: every fusion is a learned, normalised, non-negative weighting of its inputs (BiFPN "fast
  normalised fusion"): per level over {CDC(x), CDC(m), x->m, m->x} and per pyramid node over its inputs.
* **FPRAN** (feature pyramid registration auxiliary network): coarse to fine over the pyramid, a small head
  looks at the X-ray features and the currently warped MRI features and predicts a residual affine; the
  composed affine warps the MRI features of that level (``grid_sample``). It is trained with an auxiliary
  loss against the true alignment (known in the phantom: ``data.py``), the mean squared displacement of a
  grid of points.

Ablations (``NeckPainNet(abpdc=False)`` etc.): without ABPDC the aligned feature maps of each level are
concatenated and fused by a plain 3x3 convolution (no pyramid passes); without FPRAN the MRI features are
used unwarped; ``clinical=False`` drops the clinical branch; ``images=False`` keeps only the clinical branch.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F  # noqa: N812
from torch import nn

N_CLINICAL = 5
WIDTHS = (16, 32, 48)
FUSED = 24


class CDC(nn.Conv2d):
    """Central difference convolution (3x3, padding 1): ``conv(x) - theta * x * sum(w)``."""

    def __init__(self, cin: int, cout: int, theta: float = 0.7, stride: int = 1) -> None:
        super().__init__(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.theta = theta

    def folded(self) -> torch.Tensor:
        """The equivalent plain 3x3 kernel (the centre term folded into the centre tap)."""
        return _fold(self.weight, self.theta * self.weight.sum((2, 3)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.conv2d(x, self.folded(), stride=self.stride, padding=1)


def _fold(weight: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
    """``weight`` (O, I, 3, 3) with ``centre`` (O, I) subtracted from its centre tap."""
    sub = torch.zeros_like(weight)
    sub[:, :, 1, 1] = centre
    return weight - sub


class CrossDiff(nn.Module):
    """Cross-modal difference convolution ``sum_k w_k (n(p+k) - c(p))``: neighbourhood of one modality
    against the centre of the other (grey-level offsets between the two cancel)."""

    def __init__(self, ch: int, cout: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(cout, ch, 3, 3) * (2.0 / (ch * 9)) ** 0.5)

    def forward(self, neighbours: torch.Tensor, centre: torch.Tensor) -> torch.Tensor:
        return F.conv2d(neighbours, self.weight, padding=1) - F.conv2d(centre, self.weight.sum((2, 3), keepdim=True))

    def kernels(self) -> tuple[torch.Tensor, torch.Tensor]:
        """(3x3 kernel on the neighbour modality, 1x1 kernel (O, I) subtracted on the centre modality)."""
        return self.weight, self.weight.sum((2, 3))


class Fuse(nn.Module):
    """Adaptive normalised fusion of ``n`` same-shape inputs: ``sum_i relu(a_i) x_i / (sum_i relu(a_i) + eps)``."""

    def __init__(self, n: int) -> None:
        super().__init__()
        self.a = nn.Parameter(torch.ones(n))

    def forward(self, xs: list[torch.Tensor]) -> torch.Tensor:
        w = F.relu(self.a)
        w = w / (w.sum() + 1e-4)
        return sum(wi * x for wi, x in zip(w, xs, strict=True))

    def weights(self) -> list[float]:
        w = F.relu(self.a)
        return (w / (w.sum() + 1e-4)).tolist()


def _block(cin: int, cout: int, stride: int) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True),
                         nn.Conv2d(cout, cout, 3, 1, 1, bias=False), nn.BatchNorm2d(cout), nn.ReLU(inplace=True))


class Encoder(nn.Module):
    """128 px -> pyramid at 32, 16, 8 px (``WIDTHS`` channels)."""

    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(1, 12, 5, 2, 2, bias=False), nn.BatchNorm2d(12), nn.ReLU(inplace=True))
        self.l1 = _block(12, WIDTHS[0], 2)
        self.l2 = _block(WIDTHS[0], WIDTHS[1], 2)
        self.l3 = _block(WIDTHS[1], WIDTHS[2], 2)

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        f1 = self.l1(self.stem(x))
        f2 = self.l2(f1)
        return [f1, f2, self.l3(f2)]


IDENTITY = torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def compose(outer: torch.Tensor, inner: torch.Tensor) -> torch.Tensor:
    """(B, 2, 3) affines: ``outer o inner`` (apply ``inner`` first)."""
    return torch.cat([outer[:, :, :2] @ inner[:, :, :2], outer[:, :, :2] @ inner[:, :, 2:] + outer[:, :, 2:]], 2)


def warp(features: torch.Tensor, theta: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Sample ``features`` (MRI grid) at ``theta`` (X-ray grid coords -> MRI grid coords)."""
    grid = F.affine_grid(theta, [features.shape[0], features.shape[1], *size], align_corners=False)
    return F.grid_sample(features, grid, align_corners=False, padding_mode="zeros")


class FPRAN(nn.Module):
    """Coarse-to-fine affine registration of MRI features onto X-ray features over the pyramid."""

    def __init__(self) -> None:
        super().__init__()
        self.heads = nn.ModuleList()
        for w in WIDTHS:
            head = nn.Sequential(nn.Conv2d(2 * w, 32, 3, 1, 1), nn.ReLU(inplace=True), nn.Conv2d(32, 32, 3, 2, 1),
                                 nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(512, 6))
            nn.init.zeros_(head[-1].weight)
            nn.init.zeros_(head[-1].bias)
            self.heads.append(head)

    def forward(self, fx: list[torch.Tensor], fm: list[torch.Tensor]) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        """Warped MRI features per level and the affine of every level (finest last in the returned order
        coarse -> fine is reversed back to the pyramid order)."""
        b = fx[0].shape[0]
        theta = IDENTITY.to(fx[0]).expand(b, 2, 3)
        thetas: list[torch.Tensor] = [theta] * len(fx)
        warped: list[torch.Tensor] = [fm[i] for i in range(len(fx))]
        for i in reversed(range(len(fx))):
            size = tuple(fx[i].shape[-2:])
            cur = warp(fm[i], theta, size)
            delta = self.heads[i](torch.cat([fx[i], cur], 1)).view(b, 2, 3) * 0.5
            theta = compose(theta, IDENTITY.to(delta) + delta)
            thetas[i] = theta
            warped[i] = warp(fm[i], theta, size)
        return warped, thetas


def alignment_loss(thetas: list[torch.Tensor], true: torch.Tensor, points: int = 5) -> torch.Tensor:
    """Mean squared displacement (normalised coords) between predicted and true mappings of a grid, over levels."""
    g = torch.linspace(-0.8, 0.8, points)
    yy, xx = torch.meshgrid(g, g, indexing="ij")
    pts = torch.stack([xx.ravel(), yy.ravel(), torch.ones(points * points)], 0).to(true)  # (3, P)
    ref = true @ pts
    return sum(((t @ pts - ref) ** 2).sum(1).mean() for t in thetas) / len(thetas)


class ABPDC(nn.Module):
    """Adaptive bidirectional pyramid difference convolution fusion of aligned X-ray / MRI pyramids."""

    def __init__(self) -> None:
        super().__init__()
        self.intra_x = nn.ModuleList(CDC(w, FUSED) for w in WIDTHS)
        self.intra_m = nn.ModuleList(CDC(w, FUSED) for w in WIDTHS)
        self.x2m = nn.ModuleList(CrossDiff(w, FUSED) for w in WIDTHS)
        self.m2x = nn.ModuleList(CrossDiff(w, FUSED) for w in WIDTHS)
        self.level_fuse = nn.ModuleList(Fuse(4) for _ in WIDTHS)
        self.norm = nn.ModuleList(nn.Sequential(nn.BatchNorm2d(FUSED), nn.ReLU(inplace=True)) for _ in WIDTHS)
        n = len(WIDTHS)
        self.td_fuse = nn.ModuleList(Fuse(2) for _ in range(n - 1))
        self.td_conv = nn.ModuleList(_cdc_bn(FUSED) for _ in range(n - 1))
        self.bu_fuse = nn.ModuleList(Fuse(3 if i < n - 1 else 2) for i in range(1, n))
        self.bu_conv = nn.ModuleList(_cdc_bn(FUSED) for _ in range(1, n))

    def level_kernel(self, i: int) -> torch.Tensor:
        """The four branches of level ``i`` (CDC on X-ray, CDC on MRI, X-ray -> MRI and MRI -> X-ray cross
        differences), weighted by the adaptive fusion, are linear in (x, m): one 3x3 kernel on ``cat(x, m)``
        computes ``sum_b a_b branch_b`` exactly (and runs as fast as the plain concatenation)."""
        a = F.relu(self.level_fuse[i].a)
        a = a / (a.sum() + 1e-4)
        ix, im = self.intra_x[i], self.intra_m[i]
        w_x2m, c_x2m = self.x2m[i].kernels()  # neighbours m, centre x
        w_m2x, c_m2x = self.m2x[i].kernels()  # neighbours x, centre m
        kx = _fold(a[0] * ix.weight + a[3] * w_m2x, a[0] * ix.theta * ix.weight.sum((2, 3)) + a[2] * c_x2m)
        km = _fold(a[1] * im.weight + a[2] * w_x2m, a[1] * im.theta * im.weight.sum((2, 3)) + a[3] * c_m2x)
        return torch.cat([kx, km], 1)

    def branches(self, i: int, x: torch.Tensor, m: torch.Tensor) -> list[torch.Tensor]:
        """The four branches of level ``i`` computed one by one (reference for ``level_kernel``)."""
        return [self.intra_x[i](x), self.intra_m[i](m), self.x2m[i](m, x), self.m2x[i](x, m)]

    def forward(self, fx: list[torch.Tensor], fm: list[torch.Tensor]) -> list[torch.Tensor]:
        lv = []
        for i, (x, m) in enumerate(zip(fx, fm, strict=True)):
            lv.append(self.norm[i](F.conv2d(torch.cat([x, m], 1), self.level_kernel(i), padding=1)))
        n = len(lv)
        td = [None] * n
        td[-1] = lv[-1]
        for i in reversed(range(n - 1)):  # top-down: coarse context into fine levels
            up = F.interpolate(td[i + 1], size=lv[i].shape[-2:], mode="nearest")
            td[i] = self.td_conv[i](self.td_fuse[i]([lv[i], up]))
        out = [td[0]]
        for i in range(1, n):  # bottom-up: fine detail into coarse levels
            down = F.max_pool2d(out[-1], 2)
            inputs = [lv[i], td[i], down] if i < n - 1 else [lv[i], down]
            out.append(self.bu_conv[i - 1](self.bu_fuse[i - 1](inputs)))
        return out


def _cdc_bn(ch: int) -> nn.Sequential:
    return nn.Sequential(CDC(ch, ch), nn.BatchNorm2d(ch), nn.ReLU(inplace=True))


class ConcatFusion(nn.Module):
    """The ablation without ABPDC: per level ``relu(bn(conv3x3(cat(x, m))))``."""

    def __init__(self) -> None:
        super().__init__()
        self.convs = nn.ModuleList(nn.Sequential(nn.Conv2d(2 * w, FUSED, 3, 1, 1, bias=False), nn.BatchNorm2d(FUSED),
                                                 nn.ReLU(inplace=True)) for w in WIDTHS)

    def forward(self, fx: list[torch.Tensor], fm: list[torch.Tensor]) -> list[torch.Tensor]:
        return [c(torch.cat([x, m], 1)) for c, x, m in zip(self.convs, fx, fm, strict=True)]


class NeckPainNet(nn.Module):
    """``forward(xray, mri, clinical, clinical_mask)`` -> (logit (B,), affines per level or None).

    ``xray``, ``mri``: (B, 1, 128, 128) in [0, 1]; ``clinical``: (B, 5) standardised, ``clinical_mask``: (B, 5)
    1 where the variable is known (``inputs.clinical_vector``)."""

    def __init__(self, *, abpdc: bool = True, fpran: bool = True, clinical: bool = True, images: bool = True) -> None:
        super().__init__()
        if not (images or clinical):
            raise ValueError("needs images or clinical variables")
        self.config = {"abpdc": abpdc, "fpran": fpran, "clinical": clinical, "images": images}
        feat = 0
        if images:
            self.enc_x, self.enc_m = Encoder(), Encoder()
            self.fpran = FPRAN() if fpran else None
            self.fusion = ABPDC() if abpdc else ConcatFusion()
            feat += 2 * FUSED * len(WIDTHS)
        if clinical:
            self.clin = nn.Sequential(nn.Linear(2 * N_CLINICAL, 32), nn.ReLU(inplace=True), nn.Linear(32, 16), nn.ReLU(inplace=True))
            feat += 16
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(feat, 48), nn.ReLU(inplace=True), nn.Linear(48, 1))

    def forward(self, xray: torch.Tensor, mri: torch.Tensor, clinical: torch.Tensor,
                clinical_mask: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor] | None]:
        parts, thetas = [], None
        if self.config["images"]:
            fx, fm = self.enc_x(xray), self.enc_m(mri)
            if self.fpran is not None:
                fm, thetas = self.fpran(fx, fm)
            for f in self.fusion(fx, fm):
                parts += [f.mean((2, 3)), f.amax((2, 3))]
        if self.config["clinical"]:
            parts.append(self.clin(torch.cat([clinical * clinical_mask, clinical_mask], 1)))
        return self.head(torch.cat(parts, 1)).squeeze(1), thetas


VARIANTS: dict[str, dict[str, bool]] = {
    "full": {}, "no-abpdc": {"abpdc": False}, "no-fpran": {"fpran": False}, "image-only": {"clinical": False},
    "clinical-only": {"images": False},
}
"""The shipped network (``full``) and its ablations, by name (``meta["variant"]`` of a checkpoint)."""


def make_net(variant: str) -> NeckPainNet:
    if variant not in VARIANTS:
        raise ValueError(f"variant must be one of {sorted(VARIANTS)}")
    return NeckPainNet(**VARIANTS[variant])


def count_parameters(net: nn.Module) -> int:
    return sum(p.numel() for p in net.parameters())
