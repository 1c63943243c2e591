"""Renderer C's soft tissues and head: the structures that change little across the sagittal slab.

Painted once per slice (they ignore x): the neck outline (skin, subcutaneous fat, posterior intermuscular fat
planes, muscle), prevertebral soft tissue (thin at C2-C4, thick with the oesophagus from C5 down), the airway
(nasopharynx to trachea), tongue, hard palate and nasal cavity, hyoid, mandibular symphysis, thyroid, sternum and
mediastinal fat; and, in a rigid head frame pivoting at the foramen magnum, the clivus, sphenoid sinus, occipital
bone with diploe, scalp, posterior fossa CSF, cerebellum with tentorium and the cerebrum above it.
"""

from __future__ import annotations

import numpy as np

from pipelines.phantoms.mri_c.canvas import Canvas
from pipelines.phantoms.mri_c.patient import SpineC
from pipelines.phantoms.mri_c.tissue import Labels


class SoftTissue:
    """Knots of the outline and airway along s, and the head frame, for one patient."""

    def __init__(self, sp: SpineC, lab: Labels, rng: np.random.Generator) -> None:
        self.sp, self.lab = sp, lab
        hab = sp.habitus
        mid = (sp.s_top + sp.s_bot) / 2
        self.sb = -sp.dens_height - rng.uniform(4.0, 6.5)
        self.so, self.to = self.sb - rng.uniform(2.0, 5.0), rng.uniform(29.0, 35.0)
        self.tb = -rng.uniform(1.5, 3.5)
        c2, c3, c5, c7, t2 = mid[0], mid[1], mid[3], mid[5], mid[7]
        self.ks = np.array([-400, -70, -35, c2 - 4, c2 + 12, c3 + 6, c5, c7, t2, 400.0])
        neck = rng.uniform(0.9, 1.12) * hab ** 0.5
        self.kant = np.array([-115, -112, -100, -92, -86, -62, -52, -56, -72, -95.0]) * neck
        self.kant[:4] *= rng.uniform(0.95, 1.1)
        self.kpost = np.array([95, 92, 84, 64, 58, 55, 54, 60, 74, 90.0]) * hab ** 0.6
        self.fat_ant = rng.uniform(2.5, 6.0) * hab
        self.fat_post = rng.uniform(3.5, 9.0) * hab ** 1.5
        self.front_s = np.concatenate([[-400.0, self.sb - 10], mid, [500.0]])
        self.front_t = np.concatenate([[-sp.depth[0] - 9, -sp.depth[0] - 9], -sp.depth, [-sp.depth[-1]]])
        self.pv_s = np.array([-400, self.sb, 0.0, c3, mid[2], c5, mid[4], c7, 500.0])
        self.pv_t = np.array([12, 9, 4.5, 4.0, 5.0, 12.0, 15, 16, 17.0]) * rng.uniform(0.85, 1.2, 9)
        self.aw_t = np.array([12, 13, 13, 12, 9, 14, 15, 15, 15.0]) * rng.uniform(0.7, 1.3, 9)
        self.aw_top = self.sb - rng.uniform(18, 26)
        self.beta = sp.head_angle * 0.6  # + the curve's angle at the foramen magnum (set_frame)
        self.marrow_skull = lab.marrow("marrow_skull", float(np.clip(sp.marrow_fat.mean() - 0.05, 0.1, 0.95)))
        self.marrow_misc = lab.marrow("marrow_misc", float(np.clip(sp.marrow_fat.mean() + 0.05, 0, 0.95)))
        self.c2, self.c3, self.c7, self.t2 = c2, c3, c7, t2
        self.t1_bot = sp.s_bot[6]
        self.sk_rs, self.sk_rt = rng.uniform(56, 64), rng.uniform(70, 80)
        self.clivus_len, self.clivus_th = rng.uniform(38, 46), rng.uniform(7.5, 10.0)

    def set_frame(self, phi_fm: float) -> None:
        """Make the head frame upright in the world, then pitch it by the drawn head pose."""
        self.beta = phi_fm + self.sp.head_angle * 0.6

    def front_line(self, s: np.ndarray) -> np.ndarray:
        return np.interp(s, self.front_s, self.front_t).astype(np.float32)

    def _bone(self, lab: np.ndarray, m: np.ndarray, f: np.ndarray, marrow: int, thr: float) -> None:
        lab[m] = self.lab["cortex"]
        lab[m & (f < thr)] = marrow

    def paint(self, cv: Canvas) -> None:
        L = self.lab
        S, T, lab = cv.s, cv.t, cv.lab
        lab[:] = L["air"]
        tant = np.interp(S, self.ks, self.kant).astype(np.float32)
        tpost = np.interp(S, self.ks, self.kpost).astype(np.float32)
        inside = (T > tant) & (T < tpost)
        lab[inside] = L["muscle"]
        lab[inside & ((T < tant + 1.5 + self.fat_ant) | (T > tpost - 1.5 - self.fat_post))] = L["fat"]
        lab[inside & ((T < tant + 1.5) | (T > tpost - 1.5))] = L["skin"]
        musc = tpost - 1.5 - self.fat_post - 42.0
        for q, ph in ((0.35, 0.0), (0.68, 2.0)):
            plane = 42.0 + musc * q + 3.0 * np.sin(S / 23.0 + ph)
            lab[inside & (S > self.sb) & (np.abs(T - plane) < 0.6) & (musc > 8)] = L["fat"]
        fl = self.front_line(S)
        back = fl - np.interp(S, self.pv_s, self.pv_t).astype(np.float32)
        front = back - np.interp(S, self.pv_s, self.aw_t).astype(np.float32)
        lab[inside & (T >= back) & (T < fl)] = L["prevert"]
        air = inside & (T >= front) & (T < back) & (S > self.aw_top) & (T > tant + 6)
        lab[air] = L["air"]
        lab[inside & (np.abs(T - front) < 0.8) & (S > self.aw_top)] = L["mucosa"]
        oral = inside & (T < front - 0.8) & (T > tant + 2 + self.fat_ant)
        lab[oral & (S < self.c3 + 4) & (S > self.sb + 3)] = L["tongue"]
        palate = oral & (np.abs(S - self.sb) < 3.0)
        self._bone(lab, palate, np.abs(S - self.sb) / 3.0, self.marrow_misc, 0.6)
        nasal = oral & (S < self.sb - 3) & (S > self.sb - 40) & (T > front - 45)
        lab[nasal] = L["mucosa"]
        lab[nasal & (np.abs(S - self.sb + 20) < 8) & (T > front - 38) & (T < front - 6)] = L["air"]
        ant = inside & (T < front - 0.8)
        f = ((S - self.c3 - 2) / 4.0) ** 2 + ((T - front + 9) / 5.0) ** 2
        self._bone(lab, ant & (f < 1), f, self.marrow_misc, 0.45)
        f = ((S - self.c2 - 6) / 15.0) ** 2 + ((T - tant - 11) / 7.0) ** 2
        self._bone(lab, inside & (f < 1) & (T > tant + 2), f, self.marrow_misc, 0.7)
        f = ((S - self.c7 - 12) / 9.0) ** 2 + ((T - front + 7) / 5.0) ** 2
        lab[ant & (f < 1)] = L["gland"]
        med = inside & (S > self.t1_bot + 5) & (T < front - 1) & (T > tant + 14)
        lab[med] = L["fat"]
        f = ((S - self.t2 - 18) / 24.0) ** 2 + ((T - tant - 9) / 5.5) ** 2
        self._bone(lab, inside & (f < 1), f, self.marrow_misc, 0.55)
        w = cv.window(-400, self.sb + 12, -300, 300)
        if w is not None:
            self._head(S[w], T[w], lab[w])

    def _head(self, S: np.ndarray, T: np.ndarray, lab: np.ndarray) -> None:
        L = self.lab
        cb, sbt = np.cos(self.beta), np.sin(self.beta)
        sp_, tp_ = self.sb, 10.0
        sh = sp_ + cb * (S - sp_) - sbt * (T - tp_)
        th = tp_ + sbt * (S - sp_) + cb * (T - tp_)
        sb, tb, so, to = self.sb, self.tb, self.so, self.to
        # clivus: a band anterior to the line rising up-and-forward from the basion
        us, ut = -np.sin(np.deg2rad(65)), -np.cos(np.deg2rad(65))
        along = (sh - sb) * us + (th - tb) * ut
        across = (sh - sb) * ut - (th - tb) * us
        cl = (along > -1) & (along < self.clivus_len) & (across < 0) & (across > -self.clivus_th)
        self._bone(lab, cl, np.maximum(np.abs(across + self.clivus_th / 2) / (self.clivus_th / 2),
                                       np.abs(along - self.clivus_len / 2) / (self.clivus_len / 2 + 1)) ** 2,
                   self.marrow_skull, 0.55)
        sph = (along > self.clivus_len - 22) & (along < self.clivus_len + 4) & (across < -self.clivus_th) & (
            across > -self.clivus_th - 22)
        lab[sph] = L["mucosa"]
        lab[sph & (across < -self.clivus_th - 2) & (across > -self.clivus_th - 20)
            & (along < self.clivus_len + 2) & (along > self.clivus_len - 20)] = L["air"]
        # cranial cavity: ellipse above the foramen magnum line, behind the clivus
        sc, tc = sb - self.sk_rs + 4, tb + 6
        e = ((sh - sc) / self.sk_rs) ** 2 + ((th - tc) / self.sk_rt) ** 2
        fm_line = np.where(th <= to, sb + (th - tb) * (so - sb) / (to - tb), so)
        cav = (e < 1) & (across > 0) & (sh < fm_line)
        e_out = ((sh - sc) / (self.sk_rs + 7)) ** 2 + ((th - tc) / (self.sk_rt + 7)) ** 2
        e_sc = ((sh - sc) / (self.sk_rs + 14)) ** 2 + ((th - tc) / (self.sk_rt + 14)) ** 2
        top = ((th > to - 6) | (sh < sc)) & (sh < so + 2)
        lab[top & (e_sc < 1) & (e_out >= 1) & (lab != L["air"])] = L["fat"]
        shell = top & (e_out < 1) & (e >= 1)
        lab[shell] = L["cortex"]
        lab[shell & (e_out < 0.93) & (e > 1.08)] = self.marrow_skull
        lab[cav] = L["csf"]
        cer_s, cer_t = so - 19, to + 10
        ec = ((sh - cer_s) / 19.5) ** 2 + ((th - cer_t) / 30.0) ** 2
        lab[cav & (ec < 1)] = L["cerebellum"]
        lab[cav & (ec >= 1) & (sh < cer_s - 6)] = L["brain"]
        lab[cav & (ec >= 1.0) & (ec < 1.12) & (sh < cer_s - 6) & (th > cer_t - 14)] = L["ligament"]
        # brainstem (medulla -> pons) rising parallel to the clivus, fourth ventricle behind it
        ax = (tb + to) / 2 - 3 + (sh - sb) * 0.38
        half = 5.5 + 7.0 * np.clip((sb - 18 - sh) / 14, 0, 1) * np.clip((sh - sb + 52) / 10, 0, 1)
        bs = cav & (np.abs(th - ax - (half - 5.5) * -0.6) < half) & (sh < sb + 4)
        lab[bs] = L["cord"]
        v4 = cav & (np.abs(sh - (sb - 26)) < 6) & (th > ax + 5.5) & (th < ax + 5.5 + 4 - np.abs(sh - sb + 26) * 0.6)
        lab[v4] = L["csf"]
