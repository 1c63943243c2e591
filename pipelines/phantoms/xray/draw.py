"""Drawing the X-ray phantom: attenuation canvases and the structures drawn on them (anatomical mm in, pixels out).

Every ``draw_*`` function takes ``to_w``, the map from anatomical mm to working pixels (see
:class:`pipelines.phantoms.xray.render.Projection`), and ``mm_w``, the millimetres per working pixel. They are the
public rendering API that :mod:`pipelines.phantoms.xray.upper_cervical` reuses; each draws from ``rng`` in a
fixed order, also for a structure it is asked to leave out, so that the other structures stay the same.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw
from scipy import ndimage

from pipelines.phantoms.xray.anatomy import Chain, ImageParams, PatientParams, unit_vector

ToPixels = Callable[[np.ndarray], np.ndarray]
"""Anatomical mm (..., 2) -> pixels (..., 2)."""

BONE_PARTS: frozenset[str] = frozenset({"C2 body", "C1 arches", "clivus"})
"""What :func:`draw_bones` can leave out (``omit``): the upper cervical phantom draws its own."""


class Canvas:
    """An attenuation map at working resolution with polygon filling in bounding-box crops."""

    def __init__(self, shape: tuple[int, int]):
        self.a = np.zeros(shape, dtype=np.float32)

    def poly(self, pts: np.ndarray, density: float) -> None:
        if density == 0 or len(pts) < 3 or not np.all(np.isfinite(pts)):
            return
        h, w = self.a.shape
        x0 = max(int(math.floor(pts[:, 0].min())), 0)
        y0 = max(int(math.floor(pts[:, 1].min())), 0)
        x1 = min(int(math.ceil(pts[:, 0].max())) + 1, w)
        y1 = min(int(math.ceil(pts[:, 1].max())) + 1, h)
        if x1 <= x0 or y1 <= y0:
            return
        img = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(img).polygon([(float(x - x0), float(y - y0)) for x, y in pts], fill=255)
        self.a[y0:y1, x0:x1] += np.asarray(img, dtype=np.float32) * (density / 255.0)

    def rimmed(self, pts: np.ndarray, rim_px: float, cortical: float, trabecular: float) -> None:
        """Fill with ``trabecular`` density and a cortical rim (``rim_px`` wide, inside the outline)."""
        if len(pts) < 3 or not np.all(np.isfinite(pts)):
            return
        h, w = self.a.shape
        x0 = max(int(math.floor(pts[:, 0].min())) - 1, 0)
        y0 = max(int(math.floor(pts[:, 1].min())) - 1, 0)
        x1 = min(int(math.ceil(pts[:, 0].max())) + 2, w)
        y1 = min(int(math.ceil(pts[:, 1].max())) + 2, h)
        if x1 <= x0 or y1 <= y0:
            return
        xy = [(float(x - x0), float(y - y0)) for x, y in pts]
        fill = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(fill).polygon(xy, fill=255)
        edge = Image.new("L", (x1 - x0, y1 - y0), 0)
        ImageDraw.Draw(edge).line(xy + [xy[0]], fill=255, width=max(1, int(round(2 * rim_px))), joint="curve")
        f = np.asarray(fill, dtype=np.float32) * (1.0 / 255.0)
        e = np.asarray(edge, dtype=np.float32) * (1.0 / 255.0)
        self.a[y0:y1, x0:x1] += f * (trabecular + e * (cortical - trabecular))


def body_outline(corners: np.ndarray, osteophyte: bool, rng: np.random.Generator, is_c2: bool) -> np.ndarray:
    """A vertebral-body outline (anatomical mm) through its 4 corners with concave walls and endplates."""
    as_, ai, ps, pi = corners
    pts: list[np.ndarray] = []

    def mid(p0: np.ndarray, p1: np.ndarray, inward: float) -> np.ndarray:
        c = corners.mean(axis=0)
        m = 0.5 * (p0 + p1)
        d = c - m
        return m + inward * d / max(float(np.hypot(*d)), 1e-9)

    pts += [pi, mid(pi, ai, 0.4 * rng.uniform(0.5, 1.5)), ai]
    if osteophyte:  # antero-inferior spur pointing caudally and anteriorly
        u = (ai - pi) / np.hypot(*(ai - pi))
        n = np.array([u[1], -u[0]])  # caudal for an upright vertebra (a right, c up)
        pts.insert(2, ai - 0.6 * u + 1.2 * n)
        pts.insert(3, ai + 2.2 * u + 1.0 * n)
    pts += [mid(ai, as_, 0.7 * rng.uniform(0.6, 1.4))]
    if osteophyte:
        u = (as_ - ps) / np.hypot(*(as_ - ps))
        n = np.array([-u[1], u[0]])
        pts += [as_ + 2.0 * u - 0.8 * n, as_ - 0.5 * u + 1.0 * n]
    pts += [as_]
    if is_c2:  # dens rises from the top margin, slightly posterior of centre
        u = (as_ - ps) / np.hypot(*(as_ - ps))
        n = np.array([-u[1], u[0]])
        base0 = ps + 0.62 * (as_ - ps)
        base1 = ps + 0.12 * (as_ - ps)
        tip = ps + 0.4 * (as_ - ps) + 14.0 * n - 1.5 * u
        pts += [base0, base0 + 9.0 * n + 0.3 * u, tip + 1.5 * u - 1.2 * n, tip, tip - 2.2 * u - 1.5 * n,
                base1 + 8.5 * n - 0.4 * u, base1]
    else:
        pts += [mid(as_, ps, 0.5 * rng.uniform(0.5, 1.5))]
    pts += [ps, mid(ps, pi, 0.3)]
    return chamfer(np.array(pts), corners, 0.6 if not is_c2 else 0.5)


def chamfer(pts: np.ndarray, corners: np.ndarray, r: float) -> np.ndarray:
    """Round the outline at the 4 body corners (cut ``r`` mm along both edges): real corners are rounded."""
    out: list[np.ndarray] = []
    n = len(pts)
    for i, q in enumerate(pts):
        if np.min(np.hypot(*(corners - q).T)) < 1e-9:
            for nb in (pts[i - 1], pts[(i + 1) % n]):
                d = nb - q
                length = float(np.hypot(*d))
                out.append(q + d * min(r / max(length, 1e-9), 0.4))
        else:
            out.append(q)
    return np.array(out)


def resize_linear(img: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Bilinear resize (pixel centres aligned, like ``align_corners=False``) by two vectorised gathers."""

    def axis(n_out: int, n_in: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        src = np.clip((np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5, 0, n_in - 1)
        i0 = np.floor(src).astype(np.intp)
        return i0, np.minimum(i0 + 1, n_in - 1), (src - i0).astype(np.float32)

    r0, r1, rw = axis(shape[0], img.shape[0])
    c0, c1, cw = axis(shape[1], img.shape[1])
    a = img.astype(np.float32, copy=False)
    tmp = a[:, c0]
    tmp += (a[:, c1] - tmp) * cw
    out = tmp[r0]
    out += (tmp[r1] - out) * rw[:, None]
    return out


def draw_soft_tissue(canvas: Canvas, p: PatientParams, ch: Chain, to_w: ToPixels, mm_w: float, ip: ImageParams,
                     rng: np.random.Generator, img_up: np.ndarray) -> None:
    """Neck, head and shoulder soft tissue plus the airway, rendered coarse and upsampled (smooth); ``img_up`` is
    the image's "up" in the anatomical frame (the shoulders hang by gravity)."""
    h, w = canvas.a.shape
    cf = max(1, int(round(1.5 / mm_w)))  # coarse grid of ~1.5 mm
    coarse = Canvas((h // cf + 2, w // cf + 2))

    def to_c(q: np.ndarray) -> np.ndarray:
        return (to_w(q) + 0.5) / cf - 0.5

    axis_up = unit_vector(ch.phi[0] + 90.0) * 0.5 + unit_vector(ch.phi[5] + 90.0) * 0.5
    axis_up /= np.hypot(*axis_up)
    ant_dir = np.array([axis_up[1], -axis_up[0]])  # rotate -90 deg: anterior
    ant_pts = ch.corners[:, :2].mean(axis=1)
    post_pts = ch.spinolaminar
    ant_off = np.array([38, 40, 44, 48, 54, 62.0]) * rng.uniform(0.85, 1.2)
    post_off = np.array([60, 55, 55, 58, 62, 70.0]) * rng.uniform(0.8, 1.25)
    ant_line = ant_pts + ant_dir * ant_off[:, None]
    post_line = post_pts - ant_dir * post_off[:, None]
    far = 400.0
    neck = np.concatenate([
        [ant_line[0] + axis_up * far * 0.3 + ant_dir * 120], ant_line,
        [ant_line[-1] - axis_up * far + ant_dir * 60], [post_line[-1] - axis_up * far - ant_dir * 80],
        post_line[::-1], [post_line[0] + axis_up * far - ant_dir * 60]])
    coarse.poly(to_c(neck), 1.0)
    # head (above C1): wide soft tissue block
    c1 = ch.corners[0, 0] + axis_up * 22
    head = np.array([c1 + ant_dir * 110, c1 + ant_dir * 110 + axis_up * 300, c1 - ant_dir * 130 + axis_up * 300,
                     c1 - ant_dir * 130 - axis_up * 5])
    coarse.poly(to_c(head), 0.8)
    coarse.a = ndimage.gaussian_filter(coarse.a, 12.0 / (mm_w * cf))
    # airway: dark band ahead of the prevertebral soft tissue
    prev = np.array([4.0, 4.5, 5.5, 12.0, 15.0, 16.0]) * rng.uniform(0.8, 1.3)
    width = rng.uniform(10, 17)
    front = ch.corners[:, :2].mean(axis=1)
    a0 = front + ant_dir * prev[:, None]
    a1 = a0 + ant_dir * width
    airway = np.concatenate([[a0[0] + axis_up * 35 + ant_dir * 2], a0, [a0[-1] - axis_up * 60],
                             [a1[-1] - axis_up * 60], a1[::-1], [a1[0] + axis_up * 35 + ant_dir * 6]])
    air = Canvas(coarse.a.shape)
    air.poly(to_c(airway), -rng.uniform(0.25, 0.45))
    coarse.a += ndimage.gaussian_filter(air.a, 1.2 / (mm_w * cf))
    # shoulders: dense, smooth, over the lower neck
    top = ch.corners[5, 3] + img_up * ip.shoulder_top_mm
    horiz = np.array([img_up[1], -img_up[0]])
    horiz *= np.sign(horiz @ ant_dir)
    xs = np.linspace(-160, 160, 17) + rng.uniform(-30, 30)
    arc = top + xs[:, None] * horiz - (xs**2 / (2 * rng.uniform(150, 260)))[:, None] * img_up
    sh = np.concatenate([arc, [arc[-1] - img_up * 400, arc[0] - img_up * 400]])
    shc = Canvas(coarse.a.shape)
    shc.poly(to_c(sh), ip.shoulder_density)
    coarse.a += ndimage.gaussian_filter(shc.a, 6.0 / (mm_w * cf))
    # coarse pixel j covers working pixels [j*cf, (j+1)*cf): resize the matching part of the coarse grid
    canvas.a += resize_linear(coarse.a[: -(-h // cf), : -(-w // cf)], (h, w))


def draw_bones(canvas: Canvas, p: PatientParams, ch: Chain, to_w: ToPixels, mm_w: float,
               rng: np.random.Generator, *, omit: frozenset[str] = frozenset()) -> None:
    """Vertebral bodies with cortical rims and endplates, posterior elements, C1, skull base, mandible, T1.

    ``omit``: parts of :data:`BONE_PARTS` not to draw (their random draws are still made)."""
    if not omit <= BONE_PARTS:
        raise ValueError(f"omit must be a subset of {sorted(BONE_PARTS)}, got {sorted(omit)}")
    px = 1.0 / mm_w  # working pixels per mm
    cort, trab = 1.25, 0.55
    ds = rng.uniform(0.8, 1.15)
    rim = 1.0 * px
    for i in range(6):
        outline = body_outline(ch.corners[i], p.osteophytes[i], rng, i == 0)
        if not (i == 0 and "C2 body" in omit):
            canvas.rimmed(to_w(outline), rim, cort * ds, trab * ds)
        if p.osteophytes[i]:  # endplate sclerosis
            as_, ai, ps, pi = ch.corners[i]
            canvas.poly(to_w(np.array([pi, ai, ai + 0.18 * (as_ - ai), pi + 0.18 * (ps - pi)])), 0.25)
            canvas.poly(to_w(np.array([ps, as_, as_ + 0.18 * (ai - as_), ps + 0.18 * (pi - ps)])), 0.25)
    if p.posterior_osteophyte_mm or p.calcified_herniation_mm:
        draw_canal_encroachment(canvas, p, ch, to_w, px, ds)
    as_, ai, ps, pi = ch.t1
    canvas.rimmed(to_w(np.array([ps, as_, ai, pi])), rim, cort * ds, trab * ds)
    # posterior elements (anatomical frame: `up` along the posterior wall, `post` posterior)
    for i in range(6):
        as_, ai, ps, pi = ch.corners[i]
        up = (ps - pi) / np.hypot(*(ps - pi))
        post = np.array([-up[1], up[0]])  # rotate +90 deg from cranial (a->c frame): posterior
        sl = ch.spinolaminar[i]
        h = float(np.hypot(*(ps - pi)))
        pm = 0.5 * (ps + pi)
        canal = float(np.hypot(*(sl - pm)))
        # articular pillar (lateral mass) over the posterior canal, facet surfaces sloping ~40 deg
        c0 = pm + post * canal * 0.3
        c1 = pm + post * canal * 0.95
        drop = 0.35 * (c1 - c0) @ post
        pil = np.array([c0 + up * (0.5 * h + 1.0), c1 + up * (0.5 * h + 1.0 - drop),
                        c1 - up * (0.5 * h + 1.5 + drop), c0 - up * (0.5 * h + 1.5)])
        canvas.rimmed(to_w(pil), 0.8 * px, 0.7 * ds, 0.35 * ds)
        # lamina joining the pillar to the spinolaminar junction
        lam = np.array([pm + post * canal * 0.7 + up * 0.25 * h, sl + up * 0.3 * h, sl - up * 0.35 * h,
                        pm + post * canal * 0.65 - up * 0.45 * h])
        canvas.poly(to_w(lam), 0.3 * ds)
        # spinous process from the spinolaminar junction, posteriorly and caudally; its anterior cortex is
        # the spinolaminar line
        length = p.spinous_length_mm[i]
        tilt = 20.0 + 4.0 * i
        d = post * math.cos(math.radians(tilt)) - up * math.sin(math.radians(tilt))
        nrm = np.array([-d[1], d[0]])
        if nrm @ up < 0:
            nrm = -nrm
        tip = sl + d * length
        wt = 4.0 if i in (0, 5) else 2.6
        spn = np.array([sl + up * 0.3 * h, tip + nrm * wt, tip + d * 1.5, tip - nrm * wt * 0.9,
                        sl - up * 0.38 * h])
        canvas.rimmed(to_w(spn), 0.8 * px, 0.9 * ds, 0.4 * ds)
    # C1: anterior arch ahead of the dens, posterior arch behind the canal
    as2, _, ps2, _ = ch.corners[0]
    up2 = unit_vector(ch.phi[0] + 90.0 + p.wall_tilt_deg[0])
    ant2 = unit_vector(ch.phi[0] + p.wedge_deg[0])
    c1_level = ps2 + 0.4 * (as2 - ps2) + up2 * 10.5
    aa = c1_level + ant2 * 7.5
    ring = np.array([aa + up2 * 5, aa + ant2 * 5 + up2 * 3, aa + ant2 * 5.5 - up2 * 3, aa - up2 * 5,
                     aa - ant2 * 0.5])
    pa = ch.spinolaminar[0] + up2 * 11 - ant2 * 2
    parch = np.array([pa + ant2 * 6 + up2 * 3, pa - ant2 * 14 + up2 * 3, pa - ant2 * 22 + up2 * 1,
                      pa - ant2 * 22 - up2 * 5, pa - ant2 * 12 - up2 * 4, pa + ant2 * 6 - up2 * 3])
    if "C1 arches" not in omit:
        canvas.rimmed(to_w(ring), 1.0 * px, 1.0 * ds, 0.5 * ds)
        canvas.rimmed(to_w(parch), 1.0 * px, 0.9 * ds, 0.45 * ds)
    # skull: an elliptical calvarium above C1 (thick cortical outline), the clivus pointing at the dens tip
    pitch = rng.uniform(-8, 12)  # head pitch relative to C2
    h_up = unit_vector(ch.phi[0] + 90.0 + pitch)
    h_ant = unit_vector(ch.phi[0] + pitch)
    rx, ry = rng.uniform(85, 100), rng.uniform(70, 85)
    centre = pa + h_up * (ry + rng.uniform(8, 14)) + h_ant * rng.uniform(15, 30)
    t = np.radians(np.linspace(0, 360, 40, endpoint=False))
    skull = centre + np.cos(t)[:, None] * h_ant * rx + np.sin(t)[:, None] * h_up * ry
    canvas.rimmed(to_w(skull), 5.0 * px, 1.9, 0.9)
    mastoid = pa + h_up * 14 + h_ant * rng.uniform(8, 16)
    canvas.rimmed(to_w(mastoid + np.cos(t)[:, None] * h_ant * 9 + np.sin(t)[:, None] * h_up * 12), 1.5 * px, 0.9, 0.5)
    tip = ps2 + 0.4 * (as2 - ps2) + up2 * 18
    clivus = np.array([tip + h_up * 2, tip + h_up * 40 + h_ant * 28, tip + h_up * 50 + h_ant * 16,
                       tip + h_up * 5 - h_ant * 4])
    if "clivus" not in omit:
        canvas.rimmed(to_w(clivus), 1.5 * px, 1.1, 0.7)
    # mandible (head frame): angle, lower border to the chin, alveolar part, ramus with coronoid and condyle
    a0 = as2 + ant2 * rng.uniform(18, 30) - up2 * rng.uniform(0, 12)
    m_up = unit_vector(ch.phi[0] + 90.0 + pitch + 15.0)
    m_ant = unit_vector(ch.phi[0] + pitch + 15.0)
    mand = np.array([a0, a0 + m_ant * 40 - m_up * 2, a0 + m_ant * 76 + m_up * 4, a0 + m_ant * 80 + m_up * 28,
                     a0 + m_ant * 36 + m_up * 24, a0 + m_ant * 32 + m_up * 54, a0 + m_ant * 20 + m_up * 40,
                     a0 + m_ant * 4 + m_up * 60, a0 - m_ant * 4 + m_up * 55, a0 - m_ant * 3 + m_up * 20])
    canvas.rimmed(to_w(mand), 2.0 * px, 1.1, 0.35)
    # hyoid
    hy = ch.corners[2, 1] + ant2 * rng.uniform(30, 40)
    hyoid = np.array([hy, hy + ant2 * 12 + up2 * 3, hy + ant2 * 12 + up2 * 0.5, hy - up2 * 3])
    canvas.poly(to_w(hyoid), 0.6)


def draw_canal_encroachment(canvas: Canvas, p: PatientParams, ch: Chain, to_w: ToPixels, px: float,
                            ds: float) -> None:
    """Opt-in signs of the degeneration that narrows the canal (what a lateral radiograph can show of it).

    Per segment: posterior endplate spurs at the upper vertebra's postero-inferior and the lower vertebra's
    postero-superior corner, reaching ``posterior_osteophyte_mm`` behind the posterior wall line; and a faint
    calcified disc herniation (disc-osteophyte complex) reaching ``calcified_herniation_mm`` behind the disc.
    Soft herniations and ligamentum flavum thickening are not drawn: radiographs do not show them.
    """
    for j in range(5):
        up_i, lo_i = j, j + 1
        pi_u, ai_u = ch.corners[up_i, 3], ch.corners[up_i, 1]
        ps_l, as_l = ch.corners[lo_i, 2], ch.corners[lo_i, 0]
        up = ch.corners[up_i, 2] - pi_u
        up /= np.hypot(*up)
        post = np.array([-up[1], up[0]])  # +90 deg from cranial in the (a, c) frame: posterior
        ost = p.posterior_osteophyte_mm[j] if p.posterior_osteophyte_mm else 0.0
        if ost > 0.3:
            e_u = (ai_u - pi_u) / np.hypot(*(ai_u - pi_u))
            spur_u = np.array([pi_u + up * 2.5, pi_u + post * ost - up * min(1.6, 0.4 + 0.3 * ost),
                               pi_u + e_u * 2.0])
            e_l = (as_l - ps_l) / np.hypot(*(as_l - ps_l))
            spur_l = np.array([ps_l - up * 2.5, ps_l + post * ost + up * min(1.6, 0.4 + 0.3 * ost),
                               ps_l + e_l * 2.0])
            for spur in (spur_u, spur_l):
                canvas.rimmed(to_w(spur), 0.6 * px, 1.15 * ds, 0.7 * ds)
        hern = p.calcified_herniation_mm[j] if p.calcified_herniation_mm else 0.0
        if hern > 0.3:
            top, bottom = pi_u - post * 0.5, ps_l - post * 0.5
            mid = 0.5 * (top + bottom)
            half = 0.5 * float(np.hypot(*(top - bottom))) + 1.2
            cap = np.array([mid + up * half, mid + up * 0.5 * half + post * 0.85 * hern, mid + post * hern,
                            mid - up * 0.5 * half + post * 0.85 * hern, mid - up * half])
            canvas.rimmed(to_w(cap), 0.5 * px, 0.75 * ds, 0.35 * ds)

