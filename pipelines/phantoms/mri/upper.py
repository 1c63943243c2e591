"""Optional anatomy above C2 for the MRI phantom (renderer A): the craniocervical junction on sagittal planes.

Off by default (``generate_series(..., upper=False)``: the series of before, bit for bit). With it on,
``generate_series`` moves the field of view up by a random amount (from a little to a lot above C2) and
``SpineGeometry.labels`` paints, over the plain block of before:

- the dens (odontoid peg) rising from the top of the C2 body, with the transverse ligament / tectorial membrane
  behind it and fat around its tip;
- the C1 anterior arch (a small oval in front of the dens, bending back at lateral planes) and the C1 posterior
  arch behind the canal, the C1 lateral masses and the occipital condyles on lateral planes, the vertebral artery
  over the posterior arch;
- the clivus (skull base) sloping up and forward from the basion, the sphenoid sinus in front of its upper part,
  the prevertebral muscles and the nasopharynx in front of it;
- the foramen magnum between the basion and the opisthion, the occipital bone (two tables and diploe) curving back
  and up from the opisthion, the scalp behind it;
- the medulla and pons continuing the cord upward along the clivus with CSF in front (premedullary/prepontine
  cistern), the fourth ventricle behind the pons, the cerebellum with folia, the cisterna magna above the foramen
  magnum, CSF under the inner table, the tentorium.

All sizes, angles and the extra field of view are drawn from ``numpy.random.default_rng([seed, 41])``
(``UpperAnatomy.draw``), a stream of its own: the draws of the series itself are unchanged. Tissues are the
phantom's labels (``pipelines.phantoms.mri.anatomy``), so their T2/T1 signals are those of the spine; the brain
signal gets its own random gain. Written from general anatomy (what a sagittal T2 of the craniocervical junction
shows); the truth (disc centres, grades) keeps its meaning.

Frame: ``t`` (mm) above the top of the C2 body along the spinal axis (continued straight up with C2's tilt),
``a`` (mm) posterior of the vertebral body centre line, ``w`` lateral (see ``anatomy``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING

import numpy as np

from pipelines.phantoms.mri.anatomy import (
    AIR,
    AIRWAY,
    BRAIN,
    CORD,
    CORTEX,
    CSF,
    FACET,
    FAT,
    LIGAMENT,
    MARROW,
    MUSCLE,
    MYELO,
    SOFT,
    VESSEL,
)

if TYPE_CHECKING:
    from pipelines.phantoms.mri.anatomy import SpineGeometry


@dataclass(frozen=True)
class UpperAnatomy:
    """Random sizes and angles of the anatomy above C2 (mm and degrees)."""

    extra_mm: float
    """Added to the distance from the image top to the C2 centre (the field of view moved up; negative: less)."""
    dens_h: float
    """Height of the dens tip above the C2 body top."""
    dens_r: float
    """Half AP width of the dens."""
    dens_a: float
    """AP position of the dens axis (posterior of the body centre line)."""
    adi: float
    """Atlanto-dental interval."""
    c1a_r: float
    c1a_h: float
    c1a_drop: float
    """C1 anterior arch: half AP, half height, its centre below the dens tip."""
    c1p_r: float
    c1p_h: float
    c1p_t: float
    c1p_gap: float
    """C1 posterior arch: half AP, half height, height as a fraction of the dens height, gap behind the canal."""
    basion_gap: float
    basion_da: float
    """Basion above the dens tip, and its AP offset from the dens axis."""
    clivus_deg: float
    clivus_th: float
    clivus_len: float
    """Clivus: angle forward of the spinal axis, thickness, length from the basion to the dorsum sellae."""
    fm_ap: float
    op_dt: float
    """Foramen magnum AP (basion to opisthion) and the opisthion's height relative to the basion."""
    skull_r: float
    skull_deg: float
    skull_th: float
    scalp: float
    """Posterior fossa inner radius, the angle of its centre above the opisthion, bone and scalp thickness."""
    prepontine: float
    medulla_ap: float
    pons_ap: float
    pons_l: float
    """CSF in front of the brainstem; medulla and pons AP; pons centre along the clivus from the basion."""
    cm_near: float
    cm_far: float
    csf_rim: float
    """Cisterna magna height behind the medulla and at the back; CSF under the inner table."""
    tent_dt: float
    """Tentorium: where it meets the inner table, relative to the height of the fossa's centre."""
    folia: float
    folia_phase: float
    """Cerebellar folia period (mm; 0: none) and phase."""
    longus: float
    pharynx: float
    sphenoid_l: float
    sphenoid_d: float
    """Prevertebral muscle thickness, nasopharynx AP, sphenoid sinus start along the clivus and depth."""
    brain_gain: float
    """Relative gain of the brain signal."""

    @classmethod
    def draw(cls, seed: int) -> UpperAnatomy:
        r = np.random.default_rng([seed, 41])
        u = r.uniform
        return cls(
            extra_mm=float(u(-25.0, 65.0)), dens_h=float(u(11.0, 17.0)), dens_r=float(u(4.0, 5.5)),
            dens_a=float(u(-1.0, 2.0)), adi=float(u(1.2, 3.0)),
            c1a_r=float(u(2.8, 4.2)), c1a_h=float(u(4.5, 6.5)), c1a_drop=float(u(2.0, 6.0)),
            c1p_r=float(u(3.5, 6.0)), c1p_h=float(u(3.5, 5.5)), c1p_t=float(u(0.35, 0.6)), c1p_gap=float(u(1.5, 4.5)),
            basion_gap=float(u(3.0, 9.0)), basion_da=float(u(-4.0, 1.0)),
            clivus_deg=float(u(15.0, 40.0)), clivus_th=float(u(7.0, 12.0)), clivus_len=float(u(38.0, 50.0)),
            fm_ap=float(u(30.0, 38.0)), op_dt=float(u(-6.0, 2.0)),
            skull_r=float(u(50.0, 70.0)), skull_deg=float(u(55.0, 75.0)), skull_th=float(u(5.0, 9.0)),
            scalp=float(u(4.0, 9.0)),
            prepontine=float(u(2.0, 5.0)), medulla_ap=float(u(9.0, 12.0)), pons_ap=float(u(20.0, 27.0)),
            pons_l=float(u(28.0, 40.0)),
            cm_near=float(u(1.0, 4.0)), cm_far=float(u(4.0, 18.0)), csf_rim=float(u(1.0, 3.0)),
            tent_dt=float(u(-12.0, 4.0)),
            folia=float(u(3.5, 6.0)) if r.random() < 0.75 else 0.0, folia_phase=float(u(0.0, 1.0)),
            longus=float(u(5.0, 9.0)), pharynx=float(u(8.0, 16.0)),
            sphenoid_l=float(u(18.0, 30.0)), sphenoid_d=float(u(8.0, 20.0)),
            brain_gain=float(u(0.85, 1.15)),
        )

    def to_dict(self) -> dict:
        return {k: round(v, 3) for k, v in asdict(self).items()}

    # --- geometry ---------------------------------------------------------------------------------------

    def frame(self, geo: SpineGeometry) -> dict:
        """Per-pixel coordinates of the craniocervical frame (cached on ``geo``: the same for every plane)."""
        f = geo.__dict__.get("_upper_frame")
        if f is not None:
            return f
        p = geo.p
        s, a = geo.s.astype(np.float64), geo.a.astype(np.float64)
        half_d = float(geo.d[0]) / 2
        c_front = half_d + 1.0
        c_back = c_front + p.canal_ap_mm
        t = float(geo.centres[0] - geo.h[0] / 2) - s
        tb, ab = self.dens_h + self.basion_gap, self.dens_a + self.basion_da  # basion
        to, ao = tb + self.op_dt, ab + self.fm_ap  # opisthion
        phi = np.radians(self.clivus_deg)
        ell = (t - tb) * np.cos(phi) - (a - ab) * np.sin(phi)  # along the clivus, up from the basion
        d = (t - tb) * np.sin(phi) + (a - ab) * np.cos(phi)  # posterior of the clivus' posterior surface
        ln = np.hypot(to - tb, ao - ab)
        h_fm = ((t - tb) * (ao - ab) - (a - ab) * (to - tb)) / ln  # above the foramen magnum line
        g, rr = np.radians(self.skull_deg), self.skull_r
        tc, ac = to + rr * np.sin(g), ao - rr * np.cos(g)  # centre of the posterior fossa's inner table
        rho = np.hypot(t - tc, a - ac)
        theta = np.arctan2(a - ac, t - tc)  # 0: up, pi/2: posterior
        arc = (theta > -np.pi / 3) & (theta < np.pi / 2 + g)  # where the occipital bone runs (to the opisthion)
        fa = np.clip(t / tb, 0, 1)
        fp = np.clip(t / to, 0, 1)
        sm = fa * fa * (3 - 2 * fa)
        f = {"t": t, "a": a, "half_d": half_d, "c_front": c_front, "c_back": c_back, "tb": tb, "ab": ab, "to": to,
             "ao": ao, "phi": phi, "ell": ell, "d": d, "h_fm": h_fm, "tc": tc, "ac": ac, "rho": rho, "arc": arc,
             "a_ant": c_front + (ab + 1.0 - c_front) * fa, "a_post": c_back + (ao - c_back) * fp, "fp": fp, "sm": sm}
        geo.__dict__["_upper_frame"] = f
        return f

    def paint(self, geo: SpineGeometry, lab: np.ndarray, w: float) -> None:
        """Paint the anatomy above C2 on the labels ``lab`` of the plane at lateral position ``w``."""
        f = self.frame(geo)
        p = geo.p
        t, a, d, ell, h_fm, rho, arc = f["t"], f["a"], f["d"], f["ell"], f["h_fm"], f["rho"], f["arc"]
        half_d, c_front, c_back = f["half_d"], f["c_front"], f["c_back"]
        tb, ab, to, ao, phi = f["tb"], f["ab"], f["to"], f["ao"], f["phi"]
        aw = abs(w)
        rr, th = self.skull_r, self.skull_th
        up = t > 0.0
        # the neck as the spine paints it (same outline)
        neck_half = 58.0
        if aw < neck_half:
            shrink = np.sqrt(1 - (aw / neck_half) ** 2)
            inside = (a > -half_d - 42.0 * shrink) & (a < c_back + 68.0 * shrink)
        else:
            inside = np.zeros(t.shape, bool)
        cth = self.clivus_th * (np.sqrt(max(0.0, 1 - (aw / 22.0) ** 2)) if aw < 22 else 0.0)

        # 1. below the foramen magnum, between the prevertebral line and the back of the canal: fat, then the
        # canal (CSF), ligaments behind the dens, the cord bending forward into the medulla
        z = up & (h_fm <= 0) & (a > -half_d) & (a < f["a_post"]) & inside
        lab[z] = FAT
        chw = p.canal_halfwidth_mm * (1 + 0.35 * f["fp"])
        latc = np.sqrt(np.clip(1 - (aw / chw) ** 2, 0, 1))
        a_ant, a_post = f["a_ant"], f["a_post"]
        k = (a_post - a_ant) / 2 * (1 - latc) * 0.45
        canal = z & (aw < chw) & (a > a_ant + k) & (a < a_post - k)
        lab[canal] = CSF
        if aw < 10:
            lab[z & (a > a_ant - 2.5) & (a <= a_ant + k) & (t < tb)] = LIGAMENT  # transverse lig., tectorial membrane
        lab[z & (a >= a_post - k - 1.2) & (a < a_post - k) & (aw < chw)] = LIGAMENT  # posterior atlanto-occipital
        mid_a = (c_front + c_back) / 2
        tm = tb + (self.prepontine + self.medulla_ap / 2) * np.sin(phi)
        am = ab + (self.prepontine + self.medulla_ap / 2) * np.cos(phi)
        q = np.clip(t / tm, 0, 1)
        q = q * q * (3 - 2 * q)
        a_cent = mid_a + (am - mid_a) * q
        half_c = p.cord_ap_mm / 2 + (self.medulla_ap / 2 - p.cord_ap_mm / 2) * q
        cw = p.cord_halfwidth_mm * (1 + 0.3 * q)
        cord = ((a - a_cent) / half_c) ** 2 + (w / cw) ** 2 <= 1
        lab[canal & cord] = CORD
        # the old sac's cord above C2 (in Z) is gone; MYELO never reaches above C2
        lab[z & (lab == MYELO)] = CSF

        # 2. the posterior fossa: brain, CSF spaces, brainstem, bone
        inter = (d > 0) & (h_fm > 0) & ((rho < rr) | ~arc)
        lab[inter] = BRAIN
        bump = np.exp(-(((ell - self.pons_l) / 13.0) ** 2))
        ap_bs = self.medulla_ap + (self.pons_ap - self.medulla_ap) * bump
        hw = 9.0 + 7.0 * bump
        lat_bs = np.sqrt(np.clip(1 - (aw / hw) ** 2, 0, 1))
        back_bs = self.prepontine + ap_bs * lat_bs
        v4 = 1.2 + 6.0 * np.clip(1 - np.abs(ell - self.pons_l) / 12.0, 0, 1) * (aw < 6)
        # tentorium: from the inner table (posterior) to above the pons
        tcx, acx = f["tc"], f["ac"]
        p1 = np.array([tcx + self.tent_dt, acx + np.sqrt(max(rr**2 - self.tent_dt**2, 1.0))])
        lq = self.pons_l + 18.0
        dq = self.prepontine + self.medulla_ap + 4.0
        p2 = np.array([tb + lq * np.cos(phi) + dq * np.sin(phi), ab - lq * np.sin(phi) + dq * np.cos(phi)])
        seg = p2 - p1
        sl = np.hypot(*seg)
        side = ((t - p1[0]) * seg[1] - (a - p1[1]) * seg[0]) / sl  # > 0: below the tentorium (cerebellum)
        along = ((t - p1[0]) * seg[0] + (a - p1[1]) * seg[1]) / sl
        cereb = inter & (side > 0) & (d > back_bs + v4)
        if self.folia > 0:
            qt = tb + self.pons_l * np.cos(phi) + (self.prepontine + self.pons_ap + 4) * np.sin(phi)
            qa = ab - self.pons_l * np.sin(phi) + (self.prepontine + self.pons_ap + 4) * np.cos(phi)
            dist = np.hypot(t - qt, a - qa)
            fol = ((dist / self.folia + self.folia_phase) % 1.0) < 0.14
            lab[cereb & fol & (dist > 10.0)] = CSF
        lab[inter & arc & (rho > rr - self.csf_rim)] = CSF  # under the inner table
        cm = self.cm_near + (self.cm_far - self.cm_near) * np.clip((d - self.prepontine - self.medulla_ap) / 30, 0, 1)
        lab[inter & (h_fm < cm) & (d > self.prepontine)] = CSF  # cisterna magna / foramen magnum
        lab[inter & (d <= self.prepontine)] = CSF  # premedullary / prepontine cistern
        lab[inter & (d > back_bs) & (d <= back_bs + v4)] = CSF  # fourth ventricle, cistern behind the brainstem
        lab[inter & (d > self.prepontine) & (d <= back_bs) & (aw < hw)] = CORD  # medulla, pons
        lab[inter & (np.abs(side) < 0.9) & (along > 0) & (along < sl)] = LIGAMENT  # tentorium
        # occipital bone from the opisthion back and up; scalp; air outside the head above the neck
        bone = arc & (rho >= rr) & (rho < rr + th)
        lab[bone] = CORTEX
        if th > 3.2:
            lab[bone & (rho > rr + 1.4) & (rho < rr + th - 1.4)] = MARROW
        cap = np.hypot(t - to, a - (ao + th / 2)) < th / 2  # the rounded rim at the opisthion
        lab[cap & (h_fm > -th) & up] = CORTEX
        above = arc & (rho >= rr + th) & (t > tcx - 5)
        lab[above & (rho < rr + th + self.scalp)] = FAT
        lab[above & (rho >= rr + th + self.scalp)] = AIR

        # 3. in front of the clivus: prevertebral muscles, nasopharynx, sphenoid sinus, soft tissue
        ant = up & inside & (d < -cth) & ~inter
        lab[ant & ((a < -half_d) | (h_fm > 0))] = SOFT
        lab[ant & (a < -half_d) & (a >= -half_d - self.longus)] = MUSCLE  # longus colli / capitis
        if aw < 9:
            lab[ant & (a < -half_d - self.longus) & (a > -half_d - self.longus - self.pharynx)
                & (d < -cth - 4.0)] = AIRWAY
        if aw < 14:
            sph = up & (d < -cth - 1.2) & (d > -cth - self.sphenoid_d) & (ell > self.sphenoid_l) & (ell < self.clivus_len)
            lab[sph] = AIR
        # the clivus, from the basion up and forward to the dorsum sellae
        if cth > 1.0:
            body = (d > -cth) & (d <= 0) & (ell > 0) & (ell < self.clivus_len)
            tip = (ell <= 0) & ((ell / (cth / 2)) ** 2 + ((d + cth / 2) / (cth / 2)) ** 2 <= 1)
            clv = (body | tip) & up
            lab[clv] = CORTEX
            lab[clv & (d > -cth + 1.3) & (d < -1.3) & (ell > 1.0)] = MARROW
            lab[up & (d > -cth) & (d <= 0) & (ell >= self.clivus_len) & ~inter] = BRAIN  # sella, above the dorsum

        # 4. bones of the atlas and the axis' dens
        if aw < 5.5:
            dr = self.dens_r
            tt = np.maximum(0.0, t - (self.dens_h - dr))
            rd = ((a - self.dens_a) / dr) ** 2 + (w / 5.5) ** 2 + (tt / dr) ** 2
            dz = (t > -4.0) & (rd <= 1)
            lab[dz] = CORTEX
            rin = ((a - self.dens_a) / (dr - 1.2)) ** 2 + (w / 4.5) ** 2 + (tt / (dr - 1.2)) ** 2
            lab[dz & (rin <= 1) & (t < self.dens_h - 1.2)] = MARROW
        if aw < 11:  # C1 anterior arch (bends back laterally)
            t1 = self.dens_h - self.c1a_drop
            a1 = self.dens_a - self.dens_r - self.adi - self.c1a_r + 0.07 * w * w
            _oval(lab, t, a, t1, a1, self.c1a_h, self.c1a_r)
        if aw < 20:  # C1 posterior arch (comes forward laterally)
            t2 = self.dens_h * self.c1p_t
            a2 = c_back + (ao - c_back) * min(1.0, t2 / to) + self.c1p_gap + self.c1p_r - 0.05 * w * w
            _oval(lab, t, a, t2, a2, self.c1p_h, self.c1p_r)
            if 12 < aw < 20:  # vertebral artery over the posterior arch
                lab[((t - t2 - self.c1p_h - 2.2) / 2.2) ** 2 + ((a - a2 + 1.0) / 2.8) ** 2 <= 1] = VESSEL
        if 7.5 < aw < 20:  # C1 lateral masses, occipital condyles and their joints
            lm_top = self.dens_h * 0.8
            a0, a9 = -half_d + 1.0, c_front + 6.0
            ca, ha = (a0 + a9) / 2, (a9 - a0) / 2
            lm = (np.abs((t - lm_top / 2 - 0.3) / (lm_top / 2 - 0.3)) ** 4 + np.abs((a - ca) / ha) ** 4) <= 1
            lab[up & (t < 0.8) & (np.abs(a - ca) < ha)] = FACET  # C1-C2 joint
            lab[lm] = CORTEX
            lab[lm & (np.abs((t - lm_top / 2 - 0.3) / (lm_top / 2 - 1.5)) ** 4
                      + np.abs((a - ca) / (ha - 1.3)) ** 4 <= 1)] = MARROW
            if aw < 17:
                c0, c9 = lm_top + 1.6, lm_top + 9.5
                cond = (np.abs((t - (c0 + c9) / 2) / ((c9 - c0) / 2)) ** 2 + ((a - ca) / (ha * 0.85)) ** 2) <= 1
                lab[up & (t > lm_top + 0.3) & (t <= c0) & (np.abs(a - ca) < ha * 0.8)] = FACET
                lab[cond] = CORTEX
                lab[cond & ((np.abs((t - (c0 + c9) / 2) / ((c9 - c0) / 2 - 1.2)) ** 2
                             + ((a - ca) / (ha * 0.85 - 1.2)) ** 2) <= 1)] = MARROW


def _oval(lab: np.ndarray, t: np.ndarray, a: np.ndarray, tc: float, ac: float, ht: float, ha: float) -> None:
    """A small bone in section: cortex ring, marrow inside."""
    r = ((t - tc) / ht) ** 2 + ((a - ac) / ha) ** 2
    lab[r <= 1] = CORTEX
    lab[((t - tc) / max(ht - 1.2, 0.6)) ** 2 + ((a - ac) / max(ha - 1.2, 0.6)) ** 2 <= 1] = MARROW
