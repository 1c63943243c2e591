"""Domain randomisation for the MRI localiser and classifier training (issue 14: train on one renderer, work on
another). All off unless ``models.mri.train`` is given ``--dr NAME ...``; every function draws from the
``torch.Generator`` it is given, so a seed fixes the batch.

Localiser windows (``(n, 1, 128, 128)`` images, disc centres ``(n, 5, 2)`` in localiser pixels, x right, y down,
masks ``(n, 2, 128, 128)``), in the order ``localiser_batch`` applies them:

* ``fov``: a random similarity map per window (zoom 0.7-1.3, rotation +-20 deg, translation) that keeps every disc
  centre inside; zero fill outside the image, like a smaller field of view;
* ``topcut``: blank everything above a random, slightly tilted line between the top of the window and about the
  middle of C2, so the top of the visible anatomy is not a fixed number of levels above C2-C3;
* ``distractors``: random bright or dark blobs, disc-like ovals on the upward continuation of the disc chain,
  box-like bodies and arch-like bands above C2 (above the C2-C3 centre by ``ABOVE_C2_PX``), so the network cannot
  name the first disc-like structure from the top C2-C3;
* ``blur``: Gaussian blur, sigma 0-1.5 pixels;
* ``remap``: a random intensity curve: piecewise linear and monotone (contrast, gamma-like), with probability
  ``INVERT_P`` an arbitrary (non-monotone) curve that can swap the order of fat, fluid and bone; plus extra noise;
* ``local`` (not in ``all``; replaces ``remap`` when both are named): two such curves blended by a smooth random
  field, so the contrast between tissues also changes across the image.

The classifier's crops (``(n, 3, 32, 64)``) take ``blur``, ``remap`` and ``local`` (``classifier_batch``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable

import torch
import torch.nn.functional as F

NAMES = ("fov", "topcut", "distractors", "blur", "remap", "local")
"""Options of ``--dr``."""
ALL = ("fov", "topcut", "distractors", "blur", "remap")
"""What ``--dr all`` means (fixed, so that recorded commands keep their meaning)."""
ZOOM = (0.7, 1.3)
ROTATION_DEG = 20.0
SHIFT_PX = 12.0
MARGIN_PX = 6.0
"""Disc centres must stay this far inside the 128-pixel window after the ``fov`` map."""
ABOVE_C2_PX = 10.0
"""Distractors go above the C2-C3 centre by at least this much (localiser pixels of 1.875 mm: about 19 mm)."""
MID_C2_PX = 5.0
"""The ``topcut`` line is at most this far above the C2-C3 centre (about mid-C2)."""
INVERT_P = 0.2
HEATMAP_SIGMA = 1.5


def parse(names: Iterable[str] | None) -> tuple[str, ...]:
    """``--dr`` values -> the ordered tuple of options (``all`` expands); ValueError on an unknown name."""
    out: set[str] = set()
    for n in names or ():
        if n == "all":
            out.update(ALL)
        elif n in NAMES:
            out.add(n)
        else:
            raise ValueError(f"unknown domain randomisation {n!r} (one of {', '.join(NAMES)}, all)")
    return tuple(n for n in NAMES if n in out)


def _u(g: torch.Generator, lo: float, hi: float) -> float:
    return lo + (hi - lo) * float(torch.rand((), generator=g))


def centre_heatmaps(centres: torch.Tensor, size: int, sigma: float = HEATMAP_SIGMA) -> torch.Tensor:
    """(n, k, 2) centres (x, y) -> (n, k, size, size) Gaussian heatmaps with peak 1 (as ``data.heatmaps``)."""
    ax = torch.arange(size, dtype=torch.float32)
    dx = (ax[None, None, None, :] - centres[..., 0, None, None]) ** 2
    dy = (ax[None, None, :, None] - centres[..., 1, None, None]) ** 2
    return torch.exp(-(dx + dy) / (2 * sigma**2))


def random_fov(x: torch.Tensor, centres: torch.Tensor, masks: torch.Tensor, g: torch.Generator,
               extra: torch.Tensor | None = None) -> tuple[torch.Tensor, ...]:
    """A random similarity map per window (zoom, rotation, translation) that keeps every centre ``MARGIN_PX``
    inside -> images, centres, masks (bilinear, masks thresholded at 0.5). ``extra`` ((n, m, 2) points, e.g. the
    anatomy anchors of ``--anchor``): moved by the same map (not kept inside, no extra random draws) and returned
    fourth; None (the default): the three of before."""
    n, _, h, w = x.shape
    c0 = torch.tensor([(w - 1) / 2, (h - 1) / 2])
    thetas, out_c, out_e = [], [], []
    for i in range(n):
        for attempt in range(12):
            f = 1.0 - attempt / 12
            s = math.exp(_u(g, math.log(ZOOM[0]), math.log(ZOOM[1])) * f)
            a = math.radians(_u(g, -ROTATION_DEG, ROTATION_DEG) * f)
            t = torch.tensor([_u(g, -SHIFT_PX, SHIFT_PX), _u(g, -SHIFT_PX, SHIFT_PX)]) * f
            rot = torch.tensor([[math.cos(a), -math.sin(a)], [math.sin(a), math.cos(a)]]) * s
            c = (centres[i] - c0) @ rot.T + c0 + t  # output = s R (input - c0) + c0 + t
            if float(c.min()) >= MARGIN_PX and float(c[:, 0].max()) <= w - 1 - MARGIN_PX \
                    and float(c[:, 1].max()) <= h - 1 - MARGIN_PX:
                break
        else:
            rot, t, c = torch.eye(2), torch.zeros(2), centres[i].clone()
        if extra is not None:
            out_e.append((extra[i] - c0) @ rot.T + c0 + t)
        inv = torch.linalg.inv(rot)
        # grid_sample (align_corners=True) maps output normalised coords to input ones: in = inv (out - c0 - t) + c0
        tn = -(inv @ (t / c0))  # translation in normalised units (c0 = half-size, square-ish windows)
        thetas.append(torch.cat([inv, tn[:, None]], 1))
        out_c.append(c)
    theta = torch.stack(thetas).to(x.dtype)
    grid = F.affine_grid(theta, list(x.shape), align_corners=True)
    xo = F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)
    mo = (F.grid_sample(masks.float(), grid, mode="bilinear", padding_mode="zeros", align_corners=True) > 0.5)
    if extra is not None:
        return xo, torch.stack(out_c).to(centres.dtype), mo.to(masks.dtype), torch.stack(out_e).to(extra.dtype)
    return xo, torch.stack(out_c).to(centres.dtype), mo.to(masks.dtype)


def top_cut(x: torch.Tensor, centres: torch.Tensor, g: torch.Generator, p: float = 0.6) -> torch.Tensor:
    """Blank (zero) everything above a random line tilted up to +-20 deg, between the top of the window and
    ``MID_C2_PX`` above the C2-C3 centre, in a fraction ``p`` of the windows."""
    n, _, h, w = x.shape
    yy = torch.arange(h, dtype=x.dtype)[:, None].expand(h, w)
    xx = torch.arange(w, dtype=x.dtype)[None, :].expand(h, w)
    out = x.clone()
    for i in range(n):
        if float(torch.rand((), generator=g)) >= p:
            continue
        cx, cy = float(centres[i, 0, 0]), float(centres[i, 0, 1])
        lo = cy - MID_C2_PX
        if lo <= 1:
            continue
        yc = _u(g, 0.0, lo)
        slope = math.tan(math.radians(_u(g, -20, 20)))
        line = yc + slope * (xx - cx)
        line = torch.minimum(line, cy - MID_C2_PX + 0 * line)  # never below mid-C2 at any column
        out[i, :, yy < line] = 0.0
    return out


def _ellipse(h: int, w: int, cx: float, cy: float, rx: float, ry: float, ang: float, soft: float = 0.7) -> torch.Tensor:
    yy = torch.arange(h, dtype=torch.float32)[:, None] - cy
    xx = torch.arange(w, dtype=torch.float32)[None, :] - cx
    ca, sa = math.cos(ang), math.sin(ang)
    u, v = (xx * ca + yy * sa) / rx, (-xx * sa + yy * ca) / ry
    r = torch.sqrt(u**2 + v**2)
    return torch.clamp((1.0 - r) * min(rx, ry) / soft + 0.5, 0.0, 1.0)


def distractors(x: torch.Tensor, centres: torch.Tensor, g: torch.Generator, p: float = 0.7) -> torch.Tensor:
    """Paint 1-4 random structures above C2 (see the module docstring) into a fraction ``p`` of the windows."""
    n, _, h, w = x.shape
    out = x.clone()
    for i in range(n):
        if float(torch.rand((), generator=g)) >= p:
            continue
        c = centres[i]
        ymax = float(c[0, 1]) - ABOVE_C2_PX
        if ymax <= 3:
            continue
        step = c[0] - c[1]  # one level up (x, y)
        above = (torch.arange(h, dtype=torch.float32)[:, None] <= ymax).float()  # nothing reaches C2's body
        for _ in range(int(torch.randint(1, 5, (), generator=g))):
            kind = int(torch.randint(0, 4, (), generator=g))
            val = _u(g, 0.0, 1.0)
            if kind == 0:  # blob
                a = _ellipse(h, w, _u(g, 0, w - 1), _u(g, 0, ymax), _u(g, 2, 9), _u(g, 2, 9), _u(g, 0, math.pi))
            elif kind == 1:  # disc-like oval on the upward continuation of the chain
                k = _u(g, 1.2, 3.0)
                px, py = float(c[0, 0] + k * step[0]) + _u(g, -4, 4), float(c[0, 1] + k * step[1]) + _u(g, -3, 3)
                py = min(py, ymax)
                ang = math.atan2(float(step[1]), float(step[0])) + math.pi / 2 + _u(g, -0.3, 0.3)
                a = _ellipse(h, w, px, py, _u(g, 3, 6), _u(g, 1.2, 2.5), ang)
                val = _u(g, 0.5, 1.0) if float(torch.rand((), generator=g)) < 0.7 else val
            elif kind == 2:  # box-like body with a rim
                bx, by = _u(g, 0, w - 1), _u(g, 0, ymax)
                ang = _u(g, -0.5, 0.5)
                rx, ry = _u(g, 4, 9), _u(g, 3, 7)
                outer = _ellipse(h, w, bx, by, rx, ry, ang, soft=0.3)
                inner = _ellipse(h, w, bx, by, rx - 1.2, ry - 1.2, ang, soft=0.3)
                rim = _u(g, 0.0, 1.0)
                outer = outer * above
                out[i, 0] = out[i, 0] * (1 - outer) + rim * outer
                a = inner
            else:  # arch: a band on a circle
                rad = _u(g, 10, 35)
                ax_, ay = _u(g, 0, w - 1), _u(g, -rad, ymax)
                thick = _u(g, 1.2, 3.5)
                yy = torch.arange(h, dtype=torch.float32)[:, None] - ay
                xx = torch.arange(w, dtype=torch.float32)[None, :] - ax_
                d = (torch.sqrt(xx**2 + yy**2) - rad).abs()
                a = torch.clamp(thick / 2 - d + 0.5, 0.0, 1.0)
            a = a * above
            out[i, 0] = out[i, 0] * (1 - a) + val * a
    return out


def blur(x: torch.Tensor, g: torch.Generator, max_sigma: float = 1.5, p: float = 0.5) -> torch.Tensor:
    """Separable Gaussian blur of random sigma (0-``max_sigma`` pixels) per image in a fraction ``p``."""
    out = x.clone()
    for i in range(x.shape[0]):
        if float(torch.rand((), generator=g)) >= p:
            continue
        s = _u(g, 0.3, max_sigma)
        r = int(math.ceil(2.5 * s))
        k = torch.exp(-(torch.arange(-r, r + 1, dtype=x.dtype) ** 2) / (2 * s * s))
        k = k / k.sum()
        c = x.shape[1]
        xi = x[i:i + 1]
        xi = F.conv2d(F.pad(xi, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1).expand(c, 1, 1, -1), groups=c)
        xi = F.conv2d(F.pad(xi, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1).expand(c, 1, -1, 1), groups=c)
        out[i] = xi[0]
    return out


def remap(x: torch.Tensor, g: torch.Generator, knots: int = 6, invert_p: float = INVERT_P,
          noise: float = 0.08) -> torch.Tensor:
    """A random intensity curve per image (piecewise linear on 0-1.2; monotone, or with probability
    ``invert_p`` arbitrary), then Gaussian noise of random sigma up to ``noise``."""
    n = x.shape[0]
    lo_, hi_ = 0.0, 1.2
    ys = []
    for _ in range(n):
        if float(torch.rand((), generator=g)) < invert_p:
            y = torch.rand(knots, generator=g)
            y[0] = 0.15 * float(torch.rand((), generator=g))
        else:
            inc = torch.rand(knots - 1, generator=g) + 0.05
            y = torch.cat([torch.zeros(1), torch.cumsum(inc, 0) / inc.sum()]) * _u(g, 0.7, 1.3)
            y = y + 0.1 * float(torch.rand((), generator=g))
        ys.append(y)
    yk = torch.stack(ys).to(x.dtype)  # (n, knots)
    t = (x.clamp(lo_, hi_) - lo_) / (hi_ - lo_) * (knots - 1)
    j = t.floor().clamp(0, knots - 2)
    f = t - j
    flat = j.long().flatten(1)
    y0 = torch.gather(yk, 1, flat).view_as(x)
    y1 = torch.gather(yk, 1, flat + 1).view_as(x)
    out = y0 + f * (y1 - y0)
    sigma = noise * torch.rand((n,) + (1,) * (x.ndim - 1), generator=g)
    return out + sigma * torch.randn(x.shape, generator=g)


def local_remap(x: torch.Tensor, g: torch.Generator, invert_p: float = INVERT_P, noise: float = 0.08) -> torch.Tensor:
    """Two ``remap`` curves per image blended by a smooth random weight (a 4 x 4 grid of uniform values, bilinear up
    to the image size), then noise as ``remap``."""
    n, _, h, w = x.shape
    a = remap(x, g, invert_p=invert_p, noise=0.0)
    b = remap(x, g, invert_p=invert_p, noise=0.0)
    wgt = F.interpolate(torch.rand((n, 1, 4, 4), generator=g), size=(h, w), mode="bilinear", align_corners=True)
    sigma = noise * torch.rand((n, 1, 1, 1), generator=g)
    return wgt * a + (1 - wgt) * b + sigma * torch.randn(x.shape, generator=g)


def localiser_batch(x: torch.Tensor, centres: torch.Tensor, masks: torch.Tensor, g: torch.Generator,
                    names: tuple[str, ...]) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Apply the ``names`` options (see module docstring) to a localiser batch -> images, heatmap targets (peak 1,
    from the moved centres), masks. Without ``fov`` the centres do not move."""
    return _localiser_batch(x, centres, masks, g, names, None)[:3]


def localiser_batch_anchors(x: torch.Tensor, centres: torch.Tensor, masks: torch.Tensor, anchors: torch.Tensor,
                            g: torch.Generator, names: tuple[str, ...]) -> tuple[torch.Tensor, ...]:
    """``localiser_batch`` (the same random draws) that also moves ``anchors`` ((n, m, 2) points, ``--anchor``: the C2
    body centre first, then every disc centre) with the ``fov`` map -> images, heatmaps, masks, moved anchors, and
    (n,) bool: the first anchor (C2) still visible after ``topcut`` and inside the window (its 3 x 3 patch not
    all zero)."""
    return _localiser_batch(x, centres, masks, g, names, anchors)


def _visible(x: torch.Tensor, pts: torch.Tensor) -> torch.Tensor:
    n, _, h, w = x.shape
    out = torch.zeros(n, dtype=torch.bool)
    for i in range(n):
        px, py = float(pts[i, 0]), float(pts[i, 1])
        if not (math.isfinite(px) and math.isfinite(py)) or not (1 <= px <= w - 2 and 1 <= py <= h - 2):
            continue
        xi, yi = int(round(px)), int(round(py))
        out[i] = bool((x[i, :, yi - 1:yi + 2, xi - 1:xi + 2] != 0).any())
    return out


def _localiser_batch(x: torch.Tensor, centres: torch.Tensor, masks: torch.Tensor, g: torch.Generator,
                     names: tuple[str, ...], anchors: torch.Tensor | None) -> tuple[torch.Tensor, ...]:
    if "fov" in names:
        if anchors is None:
            x, centres, masks = random_fov(x, centres, masks, g)
        else:
            x, centres, masks, anchors = random_fov(x, centres, masks, g, anchors)
    if "topcut" in names:
        x = top_cut(x, centres, g)
    seen = _visible(x, anchors[:, 0]) if anchors is not None else None
    if "distractors" in names:
        x = distractors(x, centres, g)
    if "blur" in names:
        x = blur(x, g)
    if "local" in names:
        x = local_remap(x, g)
    elif "remap" in names:
        x = remap(x, g)
    if anchors is not None:
        return x, centre_heatmaps(centres, x.shape[-1]), masks, anchors, seen
    return x, centre_heatmaps(centres, x.shape[-1]), masks


def classifier_batch(x: torch.Tensor, g: torch.Generator, names: tuple[str, ...]) -> torch.Tensor:
    """``blur`` and ``remap`` (when named) on a batch of level crops (n, 3, 32, 64)."""
    if "blur" in names:
        x = blur(x, g, max_sigma=1.2, p=0.3)
    if "local" in names:
        x = local_remap(x, g, invert_p=0.1, noise=0.05)
    elif "remap" in names:
        x = remap(x, g, invert_p=0.1, noise=0.05)
    return x
