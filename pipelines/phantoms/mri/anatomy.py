"""The MRI phantom's anatomy: the virtual patient's spine in sagittal planes, as tissue labels, and its canal.

Conventions. In-plane phantom coordinates are ``u`` (mm, image x, towards posterior) and ``v`` (mm, image y,
towards inferior); anterior is on the image left. ``w`` (mm) is the lateral position, positive towards the
patient's left (DICOM LPS +x). ``s`` (mm) is the arc length along the spinal curve (downwards), ``a`` (mm) the
signed distance from it (posterior positive).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np

from pipelines.phantoms.patient import VirtualPatient
from pipelines.vocabulary import FORAMEN_LATERAL_MM, LEVELS

if TYPE_CHECKING:
    from pipelines.phantoms.mri.upper import UpperAnatomy

# tissue labels (``SpineGeometry.labels``), the index into the signal table of ``pipelines.phantoms.mri.series``
(AIR, FAT, MUSCLE, MARROW, CORTEX, NUCLEUS, ANNULUS, NUCLEUS_DEG, HERNIATION, CSF, CORD, MYELO, LIGAMENT,
 FORAMEN_FAT, ROOT, FACET, BRAIN, AIRWAY, SOFT, VESSEL) = range(20)

CANAL_GRADE_NAMES = ("none", "mild (CSF partly effaced)", "moderate (cord contact/deformity)",
                     "severe (cord compression, T2 signal change)")
"""Canal grades 0..3 (:func:`canal_grade`)."""


def spine_curve(p: VirtualPatient, u0: float, v0: float, ds: float = 0.2, top: float = -90.0) -> dict:
    """Vertebra/disc positions along the arc and the dense curve (u, v, tilt) sampled every ``ds`` mm, from
    ``top`` mm (arc length, negative: above the C2 centre) to 90 mm below C7."""
    h, dh = np.array(p.body_height_mm), np.array(p.disc_height_mm)
    centres = [0.0]
    for i in range(1, len(h)):
        centres.append(centres[-1] + h[i - 1] / 2 + dh[i - 1] + h[i] / 2)
    centres = np.array(centres)
    bottom = centres[-1] + h[-1] / 2 + 90.0
    s = np.arange(top, bottom, ds)
    tilt = np.radians(np.interp(s, centres, p.tilt_deg))
    du, dv = np.sin(tilt) * ds, np.cos(tilt) * ds
    i0 = int(np.argmin(np.abs(s)))
    u = np.cumsum(du) - np.cumsum(du)[i0] + u0
    v = np.cumsum(dv) - np.cumsum(dv)[i0] + v0
    disc_centres = np.array([centres[i] + h[i] / 2 + dh[i] / 2 for i in range(len(h) - 1)])
    return {"s": s, "u": u, "v": v, "tilt": tilt, "centres": centres, "disc_centres": disc_centres}


def _profile(x: np.ndarray, centre: float, half: float) -> np.ndarray:
    """Smooth bump 1 at ``centre`` falling to 0 at ``centre +- half``."""
    t = np.clip(1 - ((x - centre) / half) ** 2, 0, None)
    return t


def residual_canal_mm(p: VirtualPatient, w_mm: float = 0.0) -> tuple[float, ...]:
    """Residual canal AP (mm) at each disc level C2-C3..C6-C7 in the sagittal plane at lateral position ``w_mm``
    (0: the midline, where the phantom paints the cord signal), as rendered."""
    curve = spine_curve(p, 0.0, 0.0)
    geo = SpineGeometry(p, curve, np.zeros((1, 1)), np.zeros((1, 1)))
    return tuple(geo.residual_canal(float(sd), w_mm) for sd in curve["disc_centres"][: len(LEVELS)])


def canal_grade(residual_mm: float, cord_ap_mm: float) -> int:
    """Canal grade 0..3 of a residual canal (mm): 0 none, 1 mild, 2 cord contact/deformity, 3 cord compressed
    with T2 cord signal change (``CANAL_GRADE_NAMES``)."""
    if residual_mm >= cord_ap_mm + 2.5:
        return 0
    if residual_mm >= cord_ap_mm + 1.0:
        return 1
    if residual_mm >= 0.72 * cord_ap_mm:
        return 2
    return 3


class SpineGeometry:
    """Paints tissue labels of one sagittal plane at lateral position ``w`` in spine coordinates ``(s, a)`` of
    the pixels; also the residual canal as rendered."""

    def __init__(self, p: VirtualPatient, curve: dict, s: np.ndarray, a: np.ndarray,
                 upper: UpperAnatomy | None = None) -> None:
        self.p, self.s, self.a = p, s.astype(np.float32), a.astype(np.float32)
        self.upper = upper
        self.centres = curve["centres"]
        self.disc_centres = curve["disc_centres"]
        h, dh = np.array(p.body_height_mm), np.array(p.disc_height_mm)
        self.h, self.dh = h, dh
        d = np.array(p.body_depth_mm)
        self.d = d
        # 1D profiles along s (grid) for continuous structures
        self.sg = np.arange(-120.0, self.centres[-1] + 120.0, 0.25)
        self.depth_s = np.interp(self.sg, self.centres, d)
        # encroachment profiles at the graded levels
        self.front = np.zeros_like(self.sg)  # anterior encroachment (mm) at w = 0 (osteophyte part)
        self.back = np.zeros_like(self.sg)  # flavum
        for j, st in enumerate(p.levels):
            sd = self.disc_centres[j]
            self.front = np.maximum(self.front, st.osteophyte_mm * _profile(self.sg, sd, dh[j] / 2 + 2.0))
            self.back = np.maximum(self.back, st.flavum_mm * _profile(self.sg, sd + 1.0, dh[j] / 2 + 4.0))
        self.canal_front = self.depth_s / 2 + 1.0  # PLL + epidural fat
        near = (self.a > -30) & (self.a < 75)
        self.vbox = [self._box(near & (np.abs(self.s - c) < h[i] / 2 + 16)) for i, c in enumerate(self.centres)]
        self.pbox = [self._box((self.a > 0) & (self.a < 75) & (np.abs(self.s - c) < h[i] / 2 + 22))
                     for i, c in enumerate(self.centres)]
        self.grade3 = [j for j in range(len(LEVELS))
                       if canal_grade(self.residual_canal(self.disc_centres[j], 0.0), p.cord_ap_mm) == 3]
        self.dbox = [self._box(near & (np.abs(self.s - c) < dh[j] / 2 + 12)) for j, c in enumerate(self.disc_centres)]

    @staticmethod
    def _box(m: np.ndarray) -> tuple[slice, slice]:
        r, c = np.nonzero(m.any(1))[0], np.nonzero(m.any(0))[0]
        if len(r) == 0:
            return (slice(0, 0), slice(0, 0))
        return (slice(r[0], r[-1] + 1), slice(c[0], c[-1] + 1))

    # herniation depth at (s, w) beyond the posterior vertebral line (mm)
    def herniation(self, s: np.ndarray, w: float) -> np.ndarray:
        out = np.zeros_like(s)
        for j, st in enumerate(self.p.levels):
            if st.herniation_mm <= 0:
                continue
            sd, dh = self.disc_centres[j], self.dh[j]
            lat = max(0.0, 1 - ((w - st.herniation_w_mm) / st.herniation_halfwidth_mm) ** 2)
            if lat <= 0:
                continue
            if st.disc == "bulge":
                prof = _profile(s, sd, dh / 2 + 0.8) ** 0.5
            elif st.disc == "protrusion":
                prof = _profile(s, sd, dh / 2 + 1.2) ** 0.7
            else:
                prof = np.maximum(_profile(s, sd, dh / 2 + 1.0) ** 0.7,
                                  _profile(s, sd + st.migration_mm, dh / 2 + 2.0) ** 0.6 * 0.95)
            out = np.maximum(out, st.herniation_mm * prof * lat**0.5)
        return out

    def residual_canal(self, sd: float, w: float) -> float:
        """Residual canal AP (mm) at arc position ``sd`` on the plane ``w``."""
        i = int(np.argmin(np.abs(self.sg - sd)))
        hern = float(self.herniation(np.array([sd]), w)[0])
        front = max(hern, self.front[i])
        return float(self.p.canal_ap_mm - 1.0 - front - self.back[i])

    def disc_level_map(self) -> np.ndarray:
        lvl = np.zeros(self.s.shape, np.int8)
        for j in range(len(LEVELS)):
            sd = self.disc_centres[j]
            lvl[np.abs(self.s - sd) <= self.dh[j] / 2 + 8.0] = j + 1
        return lvl

    def labels(self, w: float) -> np.ndarray:
        p, s, a = self.p, self.s, self.a
        aw = abs(w)
        depth = np.interp(s, self.sg, self.depth_s)
        half_d = depth / 2
        lab = np.full(s.shape, AIR, np.uint8)
        canal_ap = p.canal_ap_mm
        c_front = half_d + 1.0
        c_back = c_front + canal_ap
        # neck outline
        neck_half = 58.0
        if aw < neck_half:
            shrink = np.sqrt(1 - (aw / neck_half) ** 2)
            ant_skin = -half_d - 42.0 * shrink
            post_skin = c_back + 68.0 * shrink
            inside = (a > ant_skin) & (a < post_skin)
            lab[inside] = MUSCLE
            lab[inside & ((a < ant_skin + 5) | (a > post_skin - 6))] = FAT
            # anterior compartment soft tissue + airway
            lab[inside & (a < -half_d) & (a > ant_skin + 5)] = SOFT
            if aw < 9:
                lab[inside & (a < -half_d - 7) & (a > -half_d - 23) & (s > self.centres[0] - 25)] = AIRWAY
            # posterior fat planes between muscle layers
            lab[inside & (np.abs(a - (c_back + 28)) < 1.5)] = FAT
            lab[inside & (np.abs(a - (c_back + 45)) < 1.2)] = FAT
            # skull base / brain above C2 (the plain block of before; ``upper`` paints the craniocervical junction)
            if self.upper is None:
                skull = self.centres[0] - self.h[0] / 2 - 22.0
                lab[inside & (s < skull) & (a > -half_d - 8)] = BRAIN
                lab[inside & (s < skull) & (s > skull - 6) & (a > c_back + 2) & (a < c_back + 40)] = CORTEX
        # vertebral artery flow void (transverse foramina)
        if 13.0 < aw < 18.0:
            lab[(np.abs(a - 0.5) < 2.2) & (s > self.centres[0]) & (s < self.centres[6])] = VESSEL
        # vertebral bodies
        bw = p.body_halfwidth_mm
        if aw < bw:
            wf = (aw / bw) ** 4
            for i, c in enumerate(self.centres):
                bb = self.vbox[i]
                sb, ab, lb = s[bb], a[bb], lab[bb]
                hh, dd = self.h[i] / 2, self.d[i] / 2
                r = (np.abs(sb - c) / hh) ** 8 + (np.abs(ab) / dd) ** 4 + wf
                if i == 0 and self.upper is None:  # dens of C2 (``upper`` draws its own)
                    r = np.minimum(r, (np.abs(sb - (c - hh - 6)) / 8.0) ** 2 + (np.abs(ab) / (dd * 0.55)) ** 2 + wf)
                lb[r <= 1] = CORTEX
                lb[r <= 0.72] = MARROW
        # discs
        disc_ok = aw < bw
        for j in range(len(self.disc_centres)):
            sd, dh = self.disc_centres[j], self.dh[j]
            dd = (self.d[j] + self.d[j + 1]) / 4
            if disc_ok:
                bb = self.dbox[j]
                sb, ab, lb = s[bb], a[bb], lab[bb]
                r = (np.abs(sb - sd) / (dh / 2 + 0.4)) ** 6 + (np.abs(ab) / dd) ** 4 + (aw / bw) ** 4
                lb[r <= 1] = ANNULUS
                nuc = ((sb - sd) / (dh * 0.38)) ** 2 + (ab / (dd * 0.62)) ** 2 + (aw / (bw * 0.6)) ** 2
                degenerate = j < len(LEVELS) and p.levels[j].disc != "normal"
                lb[nuc <= 1] = NUCLEUS_DEG if degenerate or (j < len(LEVELS) and p.levels[j].disc_height_mm < 4.3) else NUCLEUS
        # canal (thecal sac), cord, flavum, encroachments
        chw = p.canal_halfwidth_mm
        front_ost = np.interp(s, self.sg, self.front)
        back = np.interp(s, self.sg, self.back)
        hern = self.herniation(s, w)
        if aw < chw:
            lat = np.sqrt(1 - (aw / chw) ** 2)
            mid_a = (c_front + c_back) / 2
            sac = (np.abs(a - mid_a) <= canal_ap / 2 * (0.55 + 0.45 * lat)) & (s > self.centres[0] - 60)
            lab[sac] = CSF
            # cord: squeezed between the anterior and posterior encroachments
            fr_line = c_front + np.maximum(hern, front_ost)
            bk_line = c_back - back
            free = bk_line - fr_line
            cord_ap = np.minimum(p.cord_ap_mm, np.maximum(free - 0.2, 1.5))
            centre = np.clip(mid_a, fr_line + cord_ap / 2, bk_line - cord_ap / 2)
            flat = p.cord_ap_mm / cord_ap
            cw = p.cord_halfwidth_mm * np.minimum(flat, 1.6) ** 0.5
            cord = ((a - centre) / (cord_ap / 2)) ** 2 + (w / cw) ** 2 <= 1
            lab[sac & cord] = CORD
            for j in self.grade3:
                if True:
                    sd = self.disc_centres[j]
                    spot = ((s - sd) / 3.0) ** 2 + ((a - mid_a) / 1.6) ** 2 + (w / 3.0) ** 2 <= 1
                    lab[spot & cord] = MYELO
        # anterior encroachment: herniation (disc material) and osteophytes
        if aw < bw + 1:
            lab[(a > half_d - 0.5) & (a <= c_front - 1.0 + hern) & (hern > 0.05)] = HERNIATION
            ost = (a > half_d - 0.5) & (a <= c_front + front_ost - 1.0) & (front_ost > 0.05)
            lab[ost & (lab != HERNIATION)] = CORTEX
        # posterior elements: laminae, flavum, spinous processes
        if aw < chw + 1:
            flav = (a >= c_back - back) & (a <= c_back + 3.5)
            lab[flav & (back > 0.1)] = LIGAMENT
            for i, c in enumerate(self.centres):
                hh = self.h[i] / 2
                bb = self.pbox[i]
                sb, ab, lb, cb = s[bb], a[bb], lab[bb], c_back[bb]
                lam = (np.abs(sb - c - 1.5) <= hh * 0.85) & (ab > cb) & (ab <= cb + 5.0)
                lb[lam] = CORTEX
                lb[lam & (ab > cb + 1.2) & (ab < cb + 3.8)] = MARROW
                if aw < 3.5:
                    tilt = sb - c - 1.5 - 0.35 * (ab - cb)
                    sp = (np.abs(tilt) <= 4.0 * (1 - 0.3 * np.clip((ab - cb) / p.spinous_length_mm[i], 0, 1))) & (
                        ab > cb) & (ab <= cb + 5 + p.spinous_length_mm[i])
                    lb[sp] = CORTEX
                    lb[sp & (np.abs(tilt) <= 2.5) & (ab < cb + 3 + p.spinous_length_mm[i])] = MARROW
            between = (lab != CORTEX) & (lab != MARROW) & (a > c_back) & (a <= c_back + 3.0)
            lab[between & (s > self.centres[0]) & (s < self.centres[-1])] = LIGAMENT
        # lateral column: pedicles, foramina, articular pillars
        if chw - 1.5 < aw < 21.0:
            for i, c in enumerate(self.centres):
                hh = self.h[i] / 2
                if aw < 16.0:
                    bb = self.vbox[i]
                    sb, ab, lb, hd = s[bb], a[bb], lab[bb], half_d[bb]
                    ped = (np.abs(sb - c) <= hh * 0.55) & (ab > hd - 1.5) & (ab < hd + 8.5)
                    lb[ped] = CORTEX
                    lb[ped & (np.abs(sb - c) <= hh * 0.4) & (ab > hd) & (ab < hd + 7)] = MARROW
            pillar = (a > half_d + 8.5) & (a < half_d + 20.0) & (s > self.centres[0] - 5) & (s < self.centres[-1] + 5)
            lab[pillar] = CORTEX
            lab[pillar & (a > half_d + 10) & (a < half_d + 18.5)] = MARROW
            for j, sd in enumerate(self.disc_centres):
                bb = self.dbox[j]
                sb, ab, lb, hd = s[bb], a[bb], lab[bb], half_d[bb]
                joint = pillar[bb] & (np.abs((sb - sd - 2.0) - 0.8 * (ab - hd - 14.0)) < 0.9)
                lb[joint] = FACET
                if j >= len(LEVELS):
                    nl = 0.1
                else:
                    st = p.levels[j]
                    nl = st.foramen_narrowing_left if w > 0 else st.foramen_narrowing_right
                lat = 1 - ((aw - FORAMEN_LATERAL_MM) / 4.5) ** 2
                if lat <= 0:
                    continue
                ra0, rs0 = 3.8 * lat**0.5, (self.dh[j] / 2 + 3.5) * lat**0.5
                af = hd + 4.2
                zone = ((ab - af) / (ra0 + 0.8)) ** 2 + ((sb - sd) / (rs0 + 0.8)) ** 2 <= 1
                lb[zone] = CORTEX
                ra = ra0 * (1 - nl)
                rs = rs0 * (1 - 0.45 * nl)
                ac = af + 0.6 * ra0 * nl
                fora = ((ab - ac) / max(ra, 0.3)) ** 2 + ((sb - sd) / max(rs, 0.5)) ** 2 <= 1
                lb[fora] = FORAMEN_FAT
                root = ((ab - ac) / max(min(1.6, ra * 0.6), 0.3)) ** 2 + ((sb - sd - 0.3 * rs) / 1.6) ** 2 <= 1
                lb[root & fora] = ROOT
        if self.upper is not None:
            self.upper.paint(self, lab, w)
        return lab

    def intracranial(self) -> np.ndarray:
        """bool map of the pixels above the foramen magnum (all False without ``upper``)."""
        if self.upper is None:
            return np.zeros(self.s.shape, bool)
        return self.upper.frame(self)["h_fm"] > 0
