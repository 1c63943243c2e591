"""Renderer B's tissues: which tissue lies at any 3-D point of the anatomy frame (see ``skeleton``).

``Anatomy.labels(x, y, z, s, a)`` paints, in order: neck and head outline (skin fat, muscle, fat planes),
pharynx/airway and prevertebral soft tissue, skull base (clivus, occipital bone, posterior fossa, brainstem),
C1 (anterior and posterior arches, lateral masses) and the dens, the rigid vertebral bodies and wedge discs,
disc material behind the posterior line (bulge, protrusion, extrusion with a migrated fragment), endplate
osteophyte ridges, the thecal sac with the cord (squeezed where the canal is narrow, myelopathic signal where it
is compressed), ligamentum flavum (buckling at the disc levels), laminae and spinous processes, and the lateral
column: pedicles, transverse processes with the vertebral arteries, articular pillars with oblique facet joints
and the intervertebral foramina with their nerve roots.

The canal boundaries (``canal_front``, ``canal_back``) are shared with the truth, so the residual canal reported
is the one drawn.
"""

from __future__ import annotations

import numpy as np

from pipelines.phantoms.mri_b.patient import DISCS, SpinePatient
from pipelines.phantoms.mri_b.skeleton import Skeleton
from pipelines.vocabulary import LEVELS

(AIR, FAT, MUSCLE, MARROW, BONE, NUCLEUS, NUCLEUS_DRY, ANNULUS, DISC_OUT, CSF, CORD, MYELOPATHY, LIGAMENT,
 EPIDURAL, ROOT, FORAMEN, FACET, BRAIN, SOFT, VESSEL) = range(20)
TISSUES = ("air", "fat", "muscle", "marrow", "bone", "nucleus", "dry nucleus", "annulus", "disc material", "csf",
           "cord", "myelopathy", "ligament", "epidural fat", "root", "foraminal fat", "facet fluid", "brain",
           "soft tissue", "vessel")
DISC_TISSUE = (NUCLEUS, NUCLEUS_DRY, ANNULUS, DISC_OUT)
PLL_MM = 0.8
"""Posterior longitudinal ligament + anterior epidural space in front of the sac (mm)."""
FLAVUM_MM = 1.6
"""Resting thickness of the ligamentum flavum / posterior epidural fat behind the sac (mm)."""


def _bump(u: np.ndarray) -> np.ndarray:
    """1 at 0, falling smoothly to 0 at |u| = 1."""
    return np.clip(1 - u * u, 0, None) ** 1.5


class Anatomy:
    """The tissues of one ``SpinePatient`` built on its ``Skeleton``."""

    def __init__(self, p: SpinePatient, sk: Skeleton) -> None:
        self.p, self.sk = p, sk
        self.h, self.d = np.array(p.body_height_mm), np.array(p.body_depth_mm)
        self.bw, self.dh = np.array(p.body_halfwidth_mm), np.array(p.disc_height_mm)
        mids = sk.body_s.mean(1)
        self._depth = (mids, self.d)
        self.top = float(sk.body_s[0, 0])  # C2 upper endplate
        self.basion = self.top - p.dens_height_mm - 5.0

    # ---------------------------------------------------------------------------------------- canal
    def depth(self, s: np.ndarray) -> np.ndarray:
        return np.interp(s, *self._depth)

    def disc_material(self, s: np.ndarray, x: np.ndarray) -> np.ndarray:
        """How far disc material reaches behind the posterior line (mm) at (s, x)."""
        s, x = np.broadcast_arrays(s, x)
        out = np.zeros(s.shape, np.float32)
        for j, lv in enumerate(self.p.levels):
            sd, dh = self.sk.disc_s[j], self.dh[j]
            reach = max(dh / 2 + 2.0, abs(lv.migration_mm) + lv.fragment_mm / 2 + 0.5)
            i = np.nonzero((np.abs(s - sd) < reach) & (np.abs(x - lv.centre_x_mm) < lv.halfwidth_mm))
            si, xi = s[i], x[i]
            lat = np.clip(1 - ((xi - lv.centre_x_mm) / lv.halfwidth_mm) ** 2, 0, None) ** 0.5
            if lv.kind == "extrusion":
                stem = 0.55 * lv.depth_mm * _bump((si - sd) / (dh / 2 + 0.6))
                frag = lv.depth_mm * _bump((si - sd - lv.migration_mm) / (lv.fragment_mm / 2))
                prof = np.maximum(stem, frag)
            else:
                prof = lv.depth_mm * _bump((si - sd) / (dh / 2 + (1.0 if lv.kind != "protrusion" else 1.8)))
            out[i] = np.maximum(out[i], prof * lat)
        return out

    def ridge(self, s: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Posterior osteophyte ridge height (mm) at the endplate corners of the graded levels."""
        s, x = np.broadcast_arrays(s, x)
        out = np.zeros(s.shape, np.float32)
        for j, lv in enumerate(self.p.levels):
            if lv.ridge_mm <= 0:
                continue
            sd, dh = self.sk.disc_s[j], self.dh[j]
            for e in (sd - dh / 2, sd + dh / 2):
                i = np.nonzero((np.abs(s - e) < 2.2) & (np.abs(x) < 10.0))
                latm = np.clip(1 - (x[i] / 10.0) ** 2, 0, None) ** 0.5
                out[i] = np.maximum(out[i], lv.ridge_mm * _bump((s[i] - e) / 2.2) * latm)
        return out

    def buckling(self, s: np.ndarray, x: np.ndarray) -> np.ndarray:
        s, x = np.broadcast_arrays(s, x)
        out = np.zeros(s.shape, np.float32)
        for j, lv in enumerate(self.p.levels):
            w = self.dh[j] / 2 + 3.5
            c = self.sk.disc_s[j] + 1.5
            i = np.nonzero((np.abs(s - c) < w) & (np.abs(x) < 11.0))
            latm = np.clip(1 - (x[i] / 11.0) ** 2, 0, None) ** 0.5
            out[i] = np.maximum(out[i], lv.buckling_mm * _bump((s[i] - c) / w) * latm)
        return out

    def canal_front(self, s: np.ndarray, x: np.ndarray) -> np.ndarray:
        """Anterior boundary of the thecal sac (mm behind the posterior line)."""
        return PLL_MM + np.maximum(self.disc_material(s, x), self.ridge(s, x))

    def canal_back(self, s: np.ndarray, x: np.ndarray) -> np.ndarray:
        return self.p.canal_ap_mm - FLAVUM_MM - self.buckling(s, x)

    def residual_canal(self, j: int) -> float:
        """Narrowest mid-sagittal (x = 0) sac AP (mm) within the disc level (disc height / 2 + 2 mm of its centre)."""
        sd, dh = self.sk.disc_s[j], self.dh[j]
        s = np.linspace(sd - dh / 2 - 2, sd + dh / 2 + 2, 81)
        return float(np.min(self.canal_back(s, np.zeros_like(s)) - self.canal_front(s, np.zeros_like(s))))

    # --------------------------------------------------------------------------------------- labels
    def labels(self, x: np.ndarray, y: np.ndarray, z: np.ndarray, s: np.ndarray, a: np.ndarray,
               myelopathy: tuple[int, ...] = ()) -> np.ndarray:
        """Tissue label (uint8) of every point; ``myelopathy``: graded levels with cord signal change."""
        p = self.p
        ax = np.abs(x)
        lab = np.full(x.shape, AIR, np.uint8)
        cap = p.canal_ap_mm
        self._outline(lab, ax, s, a, self.depth(s), cap)
        self._skull_base(lab, ax, s, a, cap)
        # the spine and its neighbours: only the points near it
        i = np.nonzero((a > -45) & (a < cap + 55) & (ax < 30) & (s > self.basion - 60)
                       & (s < self.sk.body_s[-1, 1] + 10))[0]
        if len(i):
            sub = lab[i]
            xi, si, ai, axi = x[i], s[i], a[i], ax[i]
            self._bodies_and_discs(sub, xi, y[i], z[i], si, ai)
            self._canal(sub, xi, axi, si, ai, cap, myelopathy)
            self._posterior(sub, axi, si, ai, cap)
            self._lateral(sub, xi, axi, si, ai)
            lab[i] = sub
        return lab

    def _outline(self, lab, ax, s, a, dep, cap) -> None:
        p = self.p
        g = np.clip((self.basion + 12 - s) / 35.0, 0, 1)  # 0 in the neck, 1 in the head
        front = -dep - p.neck_front_mm - 40.0 * g
        back = cap + p.neck_back_mm + 25.0 * g
        mid, half = (front + back) / 2, (back - front) / 2
        r = np.abs((a - mid) / half) ** 3 + (ax / (58.0 + 17.0 * g)) ** 3
        inside = r <= 1
        lab[inside] = MUSCLE
        lab[inside & (r > 0.82)] = FAT
        for off in (22.0, 44.0):  # fat planes between the posterior muscle layers
            lab[inside & (r <= 0.82) & (np.abs(a - cap - off - 8 * g) < 0.9) & (g < 1)] = FAT
        # prevertebral soft tissue, widening where the oesophagus starts (C5-C6)
        prev = p.prevertebral_mm + 9.0 / (1 + np.exp(-(s - self.sk.disc_s[3]) / 4.0))
        pv = inside & (a < -dep) & (a > -dep - prev) & (ax < 22)
        lab[pv] = SOFT
        air_back = -dep - prev
        hw_air = 10.0 + 3.0 * np.tanh((self.top - s) / 30.0)
        airway = inside & (a < air_back) & (a > air_back - p.airway_ap_mm) & (ax < hw_air) & (s > self.basion - 45)
        lab[airway] = AIR
        lab[inside & (a < air_back - p.airway_ap_mm) & (a > air_back - p.airway_ap_mm - 6) & (ax < 18)] = SOFT

    def _skull_base(self, lab, ax, s, a, cap) -> None:
        p = self.p
        b = self.basion
        above = s < b
        beta = np.radians(180.0 - p.clivus_deg)
        # clivus: a bony slab from the basion up and forwards
        da, ds = -np.sin(beta), -np.cos(beta)
        along = (a + 2.0) * da + (s - b) * ds
        across = (a + 2.0) * (-ds) - (s - b) * (-da)
        cl = (along > 0) & (along < 48) & (across > -10) & (across < 0) & (ax < 13)
        lab[cl] = BONE
        lab[cl & (across > -8.5) & (across < -1.5) & (along > 1.5) & (along < 46)] = MARROW
        # posterior fossa: CSF around the brainstem, cerebellum behind, occipital bone behind that
        occ_in = cap + 3.0 + 0.55 * (b - s)
        fossa = above & (across > 0) & (a < occ_in) & (ax < 45)
        lab[fossa] = BRAIN  # cerebellum, pons
        lab[fossa & (across < 4.0)] = CSF  # prepontine cistern
        lab[fossa & (a > cap - 1) & (a < cap + 5) & (s > b - 30)] = CSF  # cisterna magna
        occ = above & (a > occ_in) & (a < occ_in + 6.5) & (ax < 60)
        lab[occ] = BONE
        lab[occ & (a > occ_in + 1.5) & (a < occ_in + 5)] = MARROW

    def _bodies_and_discs(self, lab, x, y, z, s, a) -> None:
        sk, p = self.sk, self.p
        ax = np.abs(x)
        near = (a > -40) & (a < 5)
        for i in range(len(self.h)):
            top, bot = sk.body_s[i]
            lo = top - (p.dens_height_mm + 16 if i == 0 else 3)
            reach = near if i else (a > -40) & (a < p.canal_ap_mm + 16)  # C2 carries C1's posterior arch
            k = np.nonzero(reach & (s > lo) & (s < bot + 3))[0]
            dy, dz = y[k] - sk.centres[i, 0], z[k] - sk.centres[i, 1]
            u = dy * sk.normals[i, 0] + dz * sk.normals[i, 1]
            v = dy * sk.axes[i, 0] + dz * sk.axes[i, 1]
            axk, sub = ax[k], lab[k]
            hh, dd, bw = self.h[i] / 2, self.d[i] / 2, self.bw[i]
            body = np.abs(v / hh) ** 8 + np.abs(u / dd) ** 6 + (axk / bw) ** 4 <= 1
            sub[body] = BONE
            inner = np.abs(v / (hh - 0.9)) ** 8 + np.abs(u / (dd - 1.0)) ** 6 + (axk / (bw - 1.0)) ** 4 <= 1
            sub[body & inner] = MARROW
            if i == 0:  # dens: a rounded peg above the C2 body, behind the body's middle
                du = u - dd * 0.15
                tip_v = v + hh + p.dens_height_mm - 5
                dens = (v < -hh + 1) & (v > -hh - p.dens_height_mm) & (np.abs(du) < 5.2) & (axk < 5.5)
                dens &= ~((tip_v < 0) & ((tip_v / 5) ** 2 + (du / 5.2) ** 2 > 1))
                sub[dens] = BONE
                sub[dens & (np.abs(du) < 3.8) & (axk < 4.2)] = MARROW
                self._c1(sub, axk, u, v, hh, dd)
            lab[k] = sub
        for j in range(len(DISCS)):
            sd = sk.disc_s[j]
            k = np.nonzero(near & (np.abs(s - sd) < self.dh[j] / 2 + 6))[0]
            ax_k, sub = ax[k], lab[k]
            dy0, dz0 = y[k] - sk.centres[j, 0], z[k] - sk.centres[j, 1]
            dy1, dz1 = y[k] - sk.centres[j + 1, 0], z[k] - sk.centres[j + 1, 1]
            v0 = dy0 * sk.axes[j, 0] + dz0 * sk.axes[j, 1]
            v1 = dy1 * sk.axes[j + 1, 0] + dz1 * sk.axes[j + 1, 1]
            um = (dy0 * sk.normals[j, 0] + dz0 * sk.normals[j, 1] + dy1 * sk.normals[j + 1, 0] + dz1 * sk.normals[j + 1, 1]) / 2
            dd = (self.d[j] + self.d[j + 1]) / 4
            bw = (self.bw[j] + self.bw[j + 1]) / 2
            disc = (v0 > self.h[j] / 2 - 0.3) & (v1 < -self.h[j + 1] / 2 + 0.3)
            disc &= (np.abs(um + 0.3) / (dd + 0.3)) ** 6 + (ax_k / bw) ** 4 <= 1
            sub[disc] = ANNULUS
            t = sk.disc_axes[j]
            dy, dz = y[k] - sk.disc_centres[j, 0], z[k] - sk.disc_centres[j, 1]
            along, across = dy * t[0] + dz * t[1], -dy * t[1] + dz * t[0]  # across: posterior +
            nuc = (along / (0.36 * self.dh[j])) ** 2 + ((across - 0.1 * dd) / (0.62 * dd)) ** 2 + (ax_k / (0.58 * bw)) ** 2 <= 1
            dry = j < len(LEVELS) and p.levels[j].nucleus_signal < 0.6
            sub[disc & nuc] = NUCLEUS_DRY if dry else NUCLEUS
            lab[k] = sub

    def _c1(self, lab, ax, u, v, hh, dd) -> None:
        """C1 in the C2 frame: anterior arch in front of the dens, posterior arch behind the canal, lateral masses."""
        p = self.p
        vc = -hh - 0.55 * p.dens_height_mm
        front = dd * 0.15 - 5.2 - 2.0  # atlanto-dental interval 2 mm
        ant = (((u - (front - 3.5)) / 3.5) ** 2 + ((v - vc) / 5.5) ** 2 <= 1) & (ax < 10)
        lab[ant] = BONE
        lab[ant & (((u - (front - 3.5)) / 2.2) ** 2 + ((v - vc) / 4.0) ** 2 <= 1)] = MARROW
        back = dd + p.canal_ap_mm + 4.0
        post = (((u - (back + 4.0)) / 4.0) ** 2 + ((v - vc - 1.0) / 4.5) ** 2 <= 1) & (ax < 17)
        lab[post] = BONE
        lab[post & (((u - (back + 4.0)) / 2.6) ** 2 + ((v - vc - 1.0) / 3.0) ** 2 <= 1)] = MARROW
        lat = (ax > 9) & (ax < 23) & (u > front - 6) & (u < back) & (np.abs(v - vc) < 7.5)
        lab[lat] = BONE
        lab[lat & (ax > 10.5) & (ax < 21.5) & (u > front - 4.5) & (u < back - 1.5) & (np.abs(v - vc) < 6)] = MARROW

    def _canal(self, lab, x, ax, s, a, cap, myelopathy) -> None:
        p = self.p
        below = s > self.basion - 25
        fr, bk = self.canal_front(s, x), self.canal_back(s, x)
        mid = cap / 2
        latw = p.sac_halfwidth_mm * np.sqrt(np.clip(1 - ((a - mid) / (cap / 2 + 2.5)) ** 2, 0, None))
        sac = below & (a >= fr) & (a <= bk) & (ax <= latw)
        epid = below & (a > bk) & (a <= cap) & (ax <= p.sac_halfwidth_mm + 1)
        lab[epid] = EPIDURAL
        lab[below & (a > 0) & (a < fr) & (ax < self.bw.mean()) & (lab != BONE) & (lab != MARROW)] = LIGAMENT
        lab[sac] = CSF
        # cord (the medulla above C1, thicker), squeezed between the encroachments
        grow = 1 + 0.35 * np.clip((self.top - 12 - s) / 25.0, 0, 1)
        free = bk - fr
        cap_cord = np.minimum(p.cord_ap_mm * grow, np.maximum(free - 0.25, 1.2))
        centre = np.clip(mid, fr + cap_cord / 2, bk - cap_cord / 2)
        squeeze = np.minimum(p.cord_ap_mm * grow / cap_cord, 1.8) ** 0.5
        cord = ((a - centre) / (cap_cord / 2)) ** 2 + (x / (p.cord_halfwidth_mm * grow * squeeze)) ** 2 <= 1
        lab[(sac | (s < self.basion) & (a > 0) & (a < cap)) & cord & (s > self.basion - 25)] = CORD
        for j in myelopathy:
            spot = ((s - self.sk.disc_s[j]) / 4.0) ** 2 + ((a - centre) / 1.8) ** 2 + (x / 2.5) ** 2 <= 1
            lab[spot & cord] = MYELOPATHY
        # disc material and ridges in front of the sac
        dm, rg = self.disc_material(s, x), self.ridge(s, x)
        lab[(a > -0.5) & (a < PLL_MM + dm - 0.05) & (dm > 0.3) & (dm >= rg)] = DISC_OUT
        lab[(a > -0.5) & (a < PLL_MM + rg - 0.05) & (rg > 0.3) & (rg > dm)] = BONE

    def _posterior(self, lab, ax, s, a, cap) -> None:
        p, sk = self.p, self.sk
        band = (s > self.top - 2) & (s < sk.body_s[-1, 1])
        fl = band & (a > cap - FLAVUM_MM - self.buckling(s, ax)) & (a <= cap + 0.5) & (ax < p.sac_halfwidth_mm + 2)
        for j in range(len(LEVELS)):
            lab[fl & (np.abs(s - sk.disc_s[j] - 1.5) < self.dh[j] / 2 + 5.0)] = LIGAMENT
        for i in range(len(self.h)):
            top, bot = sk.body_s[i]
            lam = (s > top + 1.0) & (s < bot + 2.5) & (a > cap) & (a < cap + 5.5) & (ax < p.sac_halfwidth_mm + 5)
            lab[lam] = BONE
            lab[lam & (a > cap + 1.3) & (a < cap + 4.2) & (s > top + 2) & (s < bot + 1.5)] = MARROW
            L = p.spinous_mm[i]
            k = np.clip((a - cap - 5) / L, 0, 1)
            slope = s - (top + bot) / 2 - 0.45 * (a - cap - 5)
            half = 3.2 - 1.2 * k
            spx = (ax > 1.0) & (ax < 6.0) if i == 0 else (ax < 3.2)  # C2: bifid
            sp = spx & (a > cap + 3) & (a < cap + 5 + L) & (np.abs(slope) < half)
            lab[sp] = BONE
            lab[sp & (np.abs(slope) < half - 1.2) & (a < cap + 4 + L)] = MARROW
        between = band & (ax < 1.8) & (a > cap + 5) & (a < cap + 18) & (lab != BONE) & (lab != MARROW)
        lab[between] = LIGAMENT

    def _lateral(self, lab, x, ax, s, a) -> None:
        sk = self.sk
        zone = (ax > 7.0) & (ax < 26.0) & (s > self.top - 4) & (s < sk.body_s[-2, 1]) & (lab != CSF) & (lab != CORD)
        if not zone.any():
            return
        # articular pillars: a column of bone behind the foramina
        pil = zone & (a > 6.5) & (a < 19.0) & (ax > 11.0)
        lab[pil] = BONE
        lab[pil & (a > 8.0) & (a < 17.5) & (ax > 12.0) & (ax < 24.5)] = MARROW
        for i in range(len(self.h) - 1):
            top, bot = sk.body_s[i]
            bw = self.bw[i]
            ped = zone & (s > top + 1.0) & (s < top + 0.6 * self.h[i]) & (a > -2.5) & (a < 7.5) & (ax > bw - 2) & (ax < 17)
            lab[ped] = BONE
            lab[ped & (s > top + 2) & (s < top + 0.5 * self.h[i]) & (a > -1.5) & (a < 6.5)] = MARROW
            tp = zone & (s > top + 2.0) & (s < bot - 2.0) & (a > -13) & (a < -2.5) & (ax > bw - 1)
            lab[tp] = BONE
            lab[tp & (s > top + 3.2) & (s < bot - 3.2) & (a > -11.8) & (a < -3.7) & (ax > bw) & (ax < 24.8)] = MARROW
        # vertebral arteries through the transverse foramina, C6 up to C1
        va = (s > self.top - 12) & (s < sk.body_s[4, 1]) & ((ax - 15.2) ** 2 / 2.3**2 + (a + 7.5) ** 2 / 2.3**2 <= 1)
        lab[va] = VESSEL
        for j in range(len(DISCS) - 1):
            sd, dh = sk.disc_s[j], self.dh[j]
            joint = pil & (np.abs((s - sd - 3.0) - 0.7 * (a - 12.5)) < 0.7)
            lab[joint] = FACET
            for side, sgn in (("left", 1.0), ("right", -1.0)):
                self._foramen(lab, x * sgn, s, a, j, side, sd, dh, zone)

    def _foramen(self, lab, xs, s, a, j, side, sd, dh, zone) -> None:
        p = self.p
        lat = 1 - ((xs - p.foramen_x_mm) / 4.8) ** 2
        m = (lat > 0) & zone
        if not m.any():
            return
        lt = np.sqrt(np.clip(lat, 0, None))
        n = p.levels[j].narrowing(side) if j < len(LEVELS) else 0.1
        unc = p.levels[j].uncovertebral[0 if side == "left" else 1] if j < len(LEVELS) else 0.05
        ra0 = p.foramen_ap_mm / 2
        ac = 2.8 - 0.55 * (xs - p.foramen_x_mm)
        sc = sd - 1.0
        rs0 = dh / 2 + 4.0
        rim = m & (((a - ac) / (ra0 + 1.3)) ** 2 + ((s - sc) / (rs0 + 1.3)) ** 2 <= lt**2)
        lab[rim] = BONE
        ra = ra0 * max(1 - n, 0.1)
        acn = ac - ra0 + 2 * ra0 * unc + ra  # pushed back from the front, forward from behind
        hole = m & (((a - acn) / ra) ** 2 + ((s - sc) / rs0) ** 2 <= lt**2)
        lab[hole] = FORAMEN
        root = hole & (((a - acn) / min(1.5, 0.6 * ra)) ** 2 + ((s - sc + 0.35 * rs0) / 1.7) ** 2 <= 1)
        lab[root] = ROOT
