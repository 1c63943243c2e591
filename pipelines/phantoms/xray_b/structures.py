"""Renderer B's structures: every outline drawn on a lateral view, in anatomical mm (``a`` anterior, ``c`` cranial).

Bodies with concave endplates and walls (the corners stay exact vertices), the dens and the atlas, articular
pillars, laminae and spinous processes, anterior osteophytes, the hyoid, and for a wide field the skull base,
occiput and mandible; the neck outline, the airway and the shoulders for the soft tissue.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from pipelines.phantoms.xray_b.anatomy import ChainB, SpineB


@dataclass(frozen=True)
class Part:
    """One bony outline with its attenuation: ``mu`` per mm of path, ``width`` the transverse path length (mm)."""

    name: str
    outline: np.ndarray
    """(K, 2) anatomical mm."""
    mu: float
    width: float
    cortex: float
    """Extra attenuation of the cortical shell (tangential path), dimensionless line integral at the edge."""


def _arc(p: np.ndarray, q: np.ndarray, sag: float, n: int = 6) -> np.ndarray:
    """Points from ``p`` to ``q`` (``p`` included, ``q`` excluded) bowed by ``sag`` mm to the left of p->q."""
    t = np.linspace(0.0, 1.0, n, endpoint=False)[:, None]
    d = q - p
    left = np.array([-d[1], d[0]]) / max(float(np.hypot(*d)), 1e-9)
    return p + t * d + sag * np.sin(np.pi * t) * left


def body_outline(ch: ChainB, i: int) -> np.ndarray:
    """Body ``i`` (0 = C2): AS -> AI -> PI -> PS with concave walls and endplates; the corners are vertices."""
    as_, ai, ps, pi = ch.corners[i]
    # going AS->AI->PI->PS is clockwise or counter-clockwise depending on nothing: bow towards the body centre
    centre = ch.corners[i].mean(axis=0)
    pts = []
    for p, q, sag in ((as_, ai, 0.5), (ai, pi, 0.7), (pi, ps, 0.3), (ps, as_, 0.4)):
        d = q - p
        left = np.array([-d[1], d[0]])
        sign = 1.0 if left @ (centre - p) > 0 else -1.0
        pts.append(_arc(p, q, sign * sag))
    return np.concatenate(pts)


def _frame(ch: ChainB, i: int) -> tuple[np.ndarray, np.ndarray]:
    """Body ``i``'s anterior and cranial unit vectors (world)."""
    return ch.frames[i, 1], ch.frames[i, 2]


def dens(ch: ChainB, s: SpineB) -> np.ndarray:
    """The odontoid process above C2's superior endplate, leaning slightly back, with a rounded tip."""
    as_, _, ps, _ = ch.corners[0]
    ex, ey = _frame(ch, 0)
    base0, base1 = ps + 0.12 * (as_ - ps), ps + 0.72 * (as_ - ps)
    h = s.dens_height_mm
    lean = -0.18 * h * ex
    waist = 0.1 * (base1 - base0)
    tip = 0.5 * (base0 + base1) + h * ey + lean
    left, right = base0 + 0.55 * h * ey + 0.4 * lean + waist, base1 + 0.55 * h * ey + 0.4 * lean - waist
    ang = np.linspace(0, np.pi, 7)[1:-1]
    r = 0.5 * float(np.hypot(*(right - left)))
    cap = [tip - ey * r * 0.9 + r * (math.cos(a) * ex + math.sin(a) * ey * 0.9) for a in ang]
    return np.array([base0, left, *cap[::-1], right, base1])


def _ellipse(c: np.ndarray, ex: np.ndarray, ey: np.ndarray, ra: float, rc: float, n: int = 18) -> np.ndarray:
    t = np.linspace(0, 2 * np.pi, n, endpoint=False)
    return c + np.outer(np.cos(t) * ra, ex) + np.outer(np.sin(t) * rc, ey)


def atlas(ch: ChainB, s: SpineB) -> list[np.ndarray]:
    """C1's anterior arch (in front of the dens) and posterior arch (behind the canal)."""
    as_, _, ps, _ = ch.corners[0]
    ex, ey = _frame(ch, 0)
    front = as_ + 0.62 * s.dens_height_mm * ey + 3.5 * ex
    back = ch.spinolaminar[0] + 0.75 * s.dens_height_mm * ey - 9.0 * ex
    return [_ellipse(front, ex, ey, 4.0, 5.5), _ellipse(back, ex, ey, 10.0, 4.0)]


def pillar(ch: ChainB, s: SpineB, i: int) -> np.ndarray:
    """Articular pillar (both sides superimposed) behind body ``i``: a parallelogram with sloped facet surfaces."""
    _, _, ps, pi = ch.corners[i]
    ex, ey = _frame(ch, i)
    c = s.canal_mm[i]
    f0, f1 = 0.3 * c, 0.95 * c
    up, down = 0.6 * s.disc_post_mm[min(i, 5)] + 1.5, 1.5  # overlapping the next pillar: the facet joint
    slope = 0.55  # facet surfaces drop posteriorly (about 30 deg)
    a0, a1 = pi - f0 * ex, pi - f1 * ex
    top0, top1 = ps - f0 * ex + up * ey, ps - f1 * ex + up * ey - slope * (f1 - f0) * ey
    return np.array([a0 - down * ey, top0, top1, a1 - down * ey - slope * (f1 - f0) * ey])


def spinous(ch: ChainB, s: SpineB, i: int) -> np.ndarray:
    """Lamina and spinous process of vertebra ``i`` from its spinolaminar point, tilted caudally, tapering."""
    ex, ey = _frame(ch, i)
    sl = ch.spinolaminar[i]
    t = math.radians(s.spinous_tilt_deg[i])
    d = -math.cos(t) * ex - math.sin(t) * ey  # posterior and caudal
    n = np.array([-d[1], d[0]])
    length = s.spinous_mm[i]
    w0, w1 = (9.0, 6.0) if i == 0 else (6.5, 3.5)
    base = sl + 0.5 * ey * (w0 - 3.0)
    tip = base + length * d
    ang = np.linspace(-np.pi / 2, np.pi / 2, 6)
    cap = [tip + 0.5 * w1 * (math.cos(a) * d + math.sin(a) * n) for a in ang]
    return np.array([base - 0.5 * w0 * n, *cap, base + 0.5 * w0 * n])


def osteophytes(ch: ChainB, s: SpineB) -> list[np.ndarray]:
    """Anterior spurs at degenerate discs: a beak from the upper body's AI and one from the lower body's AS."""
    out = []
    for i, length in enumerate(s.osteophytes_mm):
        if length <= 0:
            continue
        for j, corner, along in ((i, 1, -1.0), (i + 1, 0, 1.0)):
            ex, ey = _frame(ch, j)
            p = ch.corners[j, corner]
            out.append(np.array([p - 2.5 * ex + along * 0.4 * ey, p + 0.4 * length * ex + along * length * ey * 0.6,
                                 p + 0.9 * ex - along * 1.8 * ey, p - 1.5 * ex - along * 2.0 * ey]))
    return out


def bony_parts(ch: ChainB, s: SpineB, *, wide: bool) -> list[Part]:
    """Everything bony on the view, with attenuation per structure."""
    w, rho = s.lateral_width_mm, s.bone_density
    parts = [Part(f"body {i}", body_outline(ch, i), 0.030 * rho, w, 0.55 * rho) for i in range(7)]
    parts.append(Part("dens", dens(ch, s), 0.034 * rho, 10.0, 0.35 * rho))
    parts += [Part("atlas", o, 0.04 * rho, 9.0 if k == 0 else 14.0, 0.3 * rho) for k, o in enumerate(atlas(ch, s))]
    parts += [Part(f"pillar {i}", pillar(ch, s, i), 0.02 * rho, 16.0, 0.15 * rho) for i in range(7)]
    parts += [Part(f"spinous {i}", spinous(ch, s, i), 0.036 * rho, 8.0, 0.3 * rho) for i in range(7)]
    parts += [Part("osteophyte", o, 0.05 * rho, 8.0, 0.2 * rho) for o in osteophytes(ch, s)]
    ex, ey = _frame(ch, 2)
    hyoid = ch.corners[2, 0] + 38.0 * ex + 2.0 * ey
    parts.append(Part("hyoid", _ellipse(hyoid, ex, ey, 7.0, 2.2, 14), 0.04 * rho, 12.0, 0.2 * rho))
    if wide:
        parts += skull(ch, s)
    return parts


def skull(ch: ChainB, s: SpineB) -> list[Part]:
    """Skull base and occiput above-behind C1, the mandible in front of C2-C3 (wide field only)."""
    as_, _, ps, _ = ch.corners[0]
    ex, ey = _frame(ch, 0)
    top = ps + (s.dens_height_mm + 6.0) * ey
    occ = np.array([top - 8 * ex, top - 30 * ex - 3 * ey, top - 58 * ex + 12 * ey, top - 75 * ex + 45 * ey,
                    top - 62 * ex + 50 * ey, top - 45 * ex + 22 * ey, top - 20 * ex + 14 * ey, top + 5 * ex + 16 * ey,
                    top + 30 * ex + 30 * ey, top + 22 * ex + 8 * ey])
    ramus_base = as_ + 30.0 * ex - 8.0 * ey
    mand = np.array([ramus_base, ramus_base + 6 * ex - 12 * ey, ramus_base + 55 * ex - 16 * ey,
                     ramus_base + 60 * ex - 8 * ey, ramus_base + 14 * ex - 3 * ey, ramus_base + 12 * ex + 40 * ey,
                     ramus_base + 2 * ex + 42 * ey])
    return [Part("occiput", occ, 0.045, 25.0, 0.6), Part("mandible", mand, 0.045, 14.0, 0.5)]


# ------------------------------------------------------------------------------------------------ soft tissue
def neck_outline(ch: ChainB, s: SpineB, rng: np.random.Generator) -> np.ndarray:
    """The neck's skin line: anterior 38-55 mm in front of the bodies, posterior 18-35 mm behind the spinous tips,
    continued far above and below the field."""
    front, back = [], []
    ant_off = rng.uniform(38.0, 55.0) + rng.normal(0, 2.0, 7)
    back_off = rng.uniform(18.0, 35.0) + rng.normal(0, 2.0, 7)
    for i in range(7):
        ex, _ = _frame(ch, i)
        front.append(ch.corners[i, 0] + ant_off[i] * ex)
        tip = spinous(ch, s, i)[3]
        back.append(tip - back_off[i] * ex)
    ex, ey = _frame(ch, 0)
    ex6, ey6 = _frame(ch, 6)
    front = [front[0] + 70 * ey + 25 * ex, *front, front[-1] - 300 * ey6 + 20 * ex6]
    back = [back[0] + 70 * ey - 20 * ex, *back, back[-1] - 300 * ey6 - 60 * ex6]
    return np.array(front + back[::-1])


def airway(ch: ChainB, rng: np.random.Generator) -> np.ndarray:
    """Pharynx and trachea: a tube in front of the prevertebral soft tissue (thin at C2-C4, thicker at C5-C7)."""
    pre = np.array([4.0, 4.0, 5.0, 12.0, 15.0, 16.0, 16.0]) * rng.uniform(0.8, 1.25)
    width = rng.uniform(12.0, 19.0)
    post, ant = [], []
    for i in range(7):
        ex, _ = _frame(ch, i)
        mid = 0.5 * (ch.corners[i, 0] + ch.corners[i, 1])
        post.append(mid + pre[i] * ex)
        ant.append(mid + (pre[i] + width) * ex)
    ex, ey = _frame(ch, 0)
    post = [post[0] + 45 * ey + 2 * ex, *post, post[-1] - 200 * ey]
    ant = [ant[0] + 45 * ey + 6 * ex, *ant, ant[-1] - 200 * ey]
    return np.array(post + ant[::-1])


def shoulders(ch: ChainB, top_level: float, rng: np.random.Generator) -> np.ndarray:
    """The shoulder shadow: everything below a gently curved line at ``top_level`` (0 = C7 centre, 1 = one body
    higher, negative lower), across the whole field."""
    centres = ch.corners.mean(axis=1)
    k = int(np.clip(math.floor(5 - top_level), 0, 5))
    f = (5 - top_level) - k
    at = centres[k] + f * (centres[k + 1] - centres[k])
    ex, ey = _frame(ch, 5)
    tilt = math.radians(rng.uniform(-8, 8))
    along = math.cos(tilt) * ex + math.sin(tilt) * ey
    return np.array([at - 300 * along - 40 * ey, at - 120 * along + 5 * ey, at - 40 * along, at + 50 * along,
                     at + 150 * along + 10 * ey, at + 300 * along - 30 * ey, at + 300 * along - 500 * ey,
                     at - 300 * along - 500 * ey])
