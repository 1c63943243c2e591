"""Renderer C's spine, painted on one sub-plane of a slice (labels depend on the lateral position x).

Order (later paints win): epidural fat and the anterior epidural/PLL zone; discs (annulus, nucleus with an
intranuclear cleft when degenerated); vertebral bodies as rounded boxes with concave endplates, cortical rim,
marrow of per-vertebra fat fraction, basivertebral vein, Modic change and anterior spurs; the dens and C1 arches
and lateral masses; transverse processes with the vertebral artery flow void; pedicles, articular pillars with
sloping facet joints; the intervertebral foramina (a fat oval with its nerve root, narrowed from the front by
uncovertebral and from behind by facet hypertrophy by exactly the drawn fraction); laminae, buckled ligamentum
flavum and spinous processes; herniated disc material; and last the thecal sac (CSF) between the closed-form canal
walls of ``SpineC`` with the cord inside, flattened where the residual canal is narrower than the cord.
"""

from __future__ import annotations

import numpy as np

from pipelines.phantoms.mri_c.canvas import Canvas
from pipelines.phantoms.mri_c.patient import SpineC
from pipelines.phantoms.mri_c.tissue import BASE, Labels

_LAM_TH = 4.5


def _q4(v: np.ndarray) -> np.ndarray:
    v = v * v
    return v * v

_T_PIL = 8.5


class SpinePainter:
    """Per-case label ids and the painting of the spine on a sub-plane."""

    def __init__(self, sp: SpineC, lab: Labels, rng: np.random.Generator) -> None:
        self.sp, self.L = sp, lab
        nd = len(sp.disc_h)
        self.marrow = [lab.marrow(f"marrow_{i}", float(f)) for i, f in enumerate(sp.marrow_fat)]
        self.pillar = lab.marrow("marrow_pillar", float(np.clip(sp.marrow_fat.mean() - 0.05, 0.1, 0.9)))
        self.modic2 = lab.marrow("modic2", 0.88)
        ann = BASE["annulus"]
        self.nucleus, self.annulus, self.hern = [], [], []
        for k in range(nd):
            dg = float(sp.degen[k])
            self.nucleus.append(lab.add(f"nucleus_{k}", (0.92 - 0.25 * dg, 1150 - 300 * dg,
                                                         float(sp.nucleus_t2[k]), 0.0, 0.04)))
            self.annulus.append(lab.add(f"annulus_{k}", (ann[0], ann[1], ann[2] * (1 - 0.2 * dg), 0.0, 0.05)))
            boost = 1.25 if sp.hern_kind[k] == "extrusion" else 0.95
            self.hern.append(lab.add(f"hern_{k}", (0.85, 1050, float(sp.nucleus_t2[k]) * boost, 0.0, 0.03)))
        self.concav = rng.uniform(0.6, 1.3, len(sp.depth))
        self.modic_depth = rng.uniform(2.5, 5.5, nd)
        self.sp_len = np.array([24, 15, 16, 17, 22, 30] + [34] * (len(sp.depth) - 6)) * rng.uniform(0.85, 1.15)
        self.sp_ang = np.deg2rad(np.array([15, 22, 24, 26, 30, 32] + [52] * (len(sp.depth) - 6)))
        self.facet_slope = rng.uniform(0.6, 1.0)
        self.va_x = [fx + rng.uniform(0.5, 2.0) for fx in sp.foramen_x]
        self.fm = (-sp.dens_height - 6.0, -2.5, -sp.dens_height - 9.0, 32.0)
        """Basion (s, t) and opisthion (s, t): the canal ends at the line between them (set by the case)."""

    # ------------------------------------------------------------------------------------------- helpers
    def _bone(self, lab: np.ndarray, inside: np.ndarray, f: np.ndarray, thr: float, marrow: int) -> None:
        lab[inside] = self.L["cortex"]
        lab[inside & (f < thr)] = marrow

    def _ta_full(self, cv: Canvas, x: np.ndarray | float) -> np.ndarray:
        """Anterior canal wall on the whole grid (herniation terms only inside their own windows)."""
        sp = self.sp
        out = np.full(cv.shape, np.float32(sp.pll), dtype=np.float32)
        xa = np.broadcast_to(np.asarray(x, dtype=np.float32), cv.shape)
        w = cv.window(-sp.dens_height - 40, float(sp.s_bot[-1]) + 4, -3, 40)
        if w is not None:
            out[w] += cv.prof("bo", lambda s: sp.lut("bo", s), w) * sp.bulge_lat(xa[w])
        for k in sp.herniated():
            reach = sp.disc_h[k] / 2 + 10 + 2 * abs(sp.hern_mig[k])
            wk = cv.window(sp.disc_s[k] - reach, sp.disc_s[k] + reach, -3, 40)
            if wk is not None:
                out[wk] += cv.prof(f"hern_{k}", lambda s, k=k: sp.lut(f"hern_{k}", s), wk) * sp.hern_lat(xa[wk], k)
        return out

    def _ta(self, cv: Canvas, w: tuple[slice, slice], X: np.ndarray | float) -> np.ndarray:
        key = "ta0" if np.isscalar(X) else "ta"
        if key == "ta0":
            if key not in cv.cache:
                cv.cache[key] = self._ta_full(cv, 0.0)
        elif cv.cache.get("ta_x") is not cv.x:
            cv.cache["ta"] = self._ta_full(cv, cv.x)
            cv.cache["ta_x"] = cv.x
        return cv.cache[key][w]

    def _tl(self, cv: Canvas, w: tuple[slice, slice], X: np.ndarray | float) -> np.ndarray:
        sp = self.sp
        return cv.prof("canal", sp.canal_ap, w) - 2.5 * (np.asarray(X, dtype=np.float32) / sp.sac_half_width) ** 2

    def _tp(self, cv: Canvas, w: tuple[slice, slice], X: np.ndarray | float) -> np.ndarray:
        return self._tl(cv, w, X) - cv.prof("fl", self.sp.buckle, w)

    # ------------------------------------------------------------------------------------------- painting
    def paint(self, cv: Canvas) -> None:
        sp, L = self.sp, self.L
        s_lo, s_hi = -sp.dens_height - 14, float(sp.s_bot[-1]) + 4
        fx_max = max(sp.foramen_x) + 12
        w = cv.window(s_lo, s_hi, -3, 40)
        if w is not None:
            S, T, X, lab = cv.get(w)
            ax = np.abs(X)
            tl = self._tl(cv, w, X)
            ta = self._ta(cv, w, X)
            sb, tb, so, to = self.fm
            m = (ax < fx_max - 8) & (T > -1.5) & (T < tl + 1) & (S > sb + (T - tb) * (so - sb) / (to - tb))
            lab[m] = L["fat"]
            lab[m & (T < ta) & (ax < sp.sac_half_width + 1.5)] = L["ligament"]
        for k in range(len(sp.disc_h)):
            self._disc(cv, k)
        for i in range(len(sp.depth)):
            self._body(cv, i)
        self._upper(cv)
        if cv.lateral_hit(sp.sac_half_width, fx_max + 6):
            self._lateral(cv)
        self._posterior(cv)
        for k in range(len(sp.disc_h)):
            if sp.hern_mm[k] > 0:
                self._herniation(cv, k)
        self._canal(cv)

    def _disc(self, cv: Canvas, k: int) -> None:
        sp = self.sp
        d = (sp.depth[k] + sp.depth[k + 1]) / 2
        c = (sp.half_width[k] + sp.half_width[k + 1]) / 2
        if not cv.lateral_hit(0, c + 1):
            return
        s0, s1 = sp.s_bot[k] - 2.5, sp.s_top[k + 1] + 2.5
        w = cv.window(s0, s1, -d - 6, 4)
        if w is None:
            return
        S, T, X, lab = cv.get(w)
        sd, g = sp.disc_s[k], sp.disc_h[k]
        bl = sp.bulge[k] * np.clip(1 - (X / (c + 1)) ** 2, 0, 1)
        m = (S > s0) & (S < s1) & (np.abs(X) < c + 0.5) & (T < bl) & (T > -d - 0.4 - 0.5 * sp.bulge[k])
        lab[m] = self.annulus[k]
        nuc = ((S - sd) / (0.36 * g + 0.9)) ** 2 + ((T + 0.48 * d) / (0.3 * d)) ** 2 + (X / (0.6 * c)) ** 2
        mn = m & (nuc < 1)
        lab[mn] = self.nucleus[k]
        if sp.degen[k] > 0.3:
            lab[mn & (np.abs(S - sd) < 0.3 + 0.2 * sp.degen[k])] = self.annulus[k]

    def _body(self, cv: Canvas, i: int) -> None:
        sp, L = self.sp, self.L
        a, c = sp.depth[i] / 2, sp.half_width[i]
        if not cv.lateral_hit(0, c):
            return
        st, sbm = sp.s_top[i], sp.s_bot[i]
        w = cv.window(st - 3, sbm + 3, -2 * a - 8, 3)
        if w is None:
            return
        S, T, X, lab = cv.get(w)
        sc, b = (st + sbm) / 2, (sbm - st) / 2
        u = (T + a) / a
        v0 = X / c
        r2 = np.clip(1 - u * u - v0 * v0, 0, 1)
        v = (S - sc) / (b - self.concav[i] * r2)
        u2, v2, w2 = u * u, v * v, v0 * v0
        f = u2 * u2 * u2 + v2 * v2 * v2 + w2 * w2
        inside = f < 1
        # anterior spurs at the corners next to degenerated discs
        for k, edge in ((i - 1, st), (i, sbm)):
            if 0 <= k < len(sp.osteo_ant) and sp.osteo_ant[k] > 0.3:
                lo = sp.osteo_ant[k] * np.clip(1 - np.abs(S - edge) / 3.0, 0, 1)
                inside |= (T < -2 * a + 1) & (T > -2 * a - lo) & (np.abs(X) < 0.7 * c) & (np.abs(S - edge) < 3)
        self._bone(lab, inside, f, 0.45, self.marrow[i])
        core = inside & (f < 0.45)
        lab[core & (((S - sc) / 1.8) ** 2 + ((T + 1.6) / 2.0) ** 2 + (X / 2.5) ** 2 < 1)] = L["vein"]
        for k, edge in ((i - 1, st), (i, sbm)):
            if 0 <= k < len(sp.modic) and sp.modic[k]:
                band = core & (np.abs(S - edge) < self.modic_depth[k]) & (T < -0.2 * a) & (T > -1.8 * a)
                lab[band] = L["modic1"] if sp.modic[k] == 1 else self.modic2

    def _upper(self, cv: Canvas) -> None:
        """Dens, C1 anterior arch, C1 posterior arch, C1 lateral masses."""
        sp = self.sp
        dh, dd = sp.dens_height, sp.dens_depth
        w = cv.window(-dh - 6, 3, -dd - 14, 40)
        if w is None:
            return
        S, T, X, lab = cv.get(w)
        ax = np.abs(X)
        if cv.lateral_hit(0, dd / 2):
            u = (T + 1.2 + dd / 2) / (dd / 2)
            v = (S + dh / 2 - 1.5) / (dh / 2 + 1.5)
            xx = X / (dd / 2)
            u2, v2, x2 = u * u, v * v, xx * xx
            f = u2 * u2 + np.where(v < 0, v2, v2 * v2) + x2 * x2
            self._bone(lab, f < 1, f, 0.55, self.marrow[0])
        s1 = -dh * 0.55
        f = ((S - s1) / 5.0) ** 2 + ((T + dd + 1.2 + 2.0 + 3.4) / 3.4) ** 2 + _q4(X / 11.0)
        self._bone(lab, f < 1, f, 0.4, self.marrow[0])
        tl = self._tl(cv, w, X)
        f = ((S - s1 - 1.5) / 4.3) ** 2 + ((T - tl - 4.2) / 3.8) ** 2 + _q4(X / 20.0)
        self._bone(lab, f < 1, f, 0.4, self.marrow[0])
        if cv.lateral_hit(9, 26):
            f = ((S - s1) / 7.5) ** 2 + ((T + 2.0) / 9.0) ** 2 + ((ax - 17.0) / 7.0) ** 2
            self._bone(lab, f < 1, f, 0.6, self.pillar)

    def _lat_ctx(self, cv: Canvas, w: tuple[slice, slice]):
        S, T, X, lab = cv.get(w)
        ax = np.abs(X)
        left = X >= 0
        sp = self.sp
        fx = np.where(left, np.float32(sp.foramen_x[0]), np.float32(sp.foramen_x[1]))
        return S, T, X, lab, ax, left, fx

    def _lateral(self, cv: Canvas) -> None:
        """Transverse processes + vertebral artery, pedicles, pillars with facets, foramina with roots."""
        sp, L = self.sp, self.L
        nd = len(sp.disc_h)
        s_end = float(sp.s_bot[7])
        w = cv.window(-2, s_end, _T_PIL, _T_PIL + 13)
        if w is not None:  # articular pillars with facet joints sloping down posteriorly
            S, T, X, lab, ax, left, fx = self._lat_ctx(cv, w)
            pil = (ax > fx - 4) & (ax < fx + 10) & (T > _T_PIL) & (T < _T_PIL + 13) & (S > -2) & (S < s_end)
            lab[pil] = self.pillar
            for k in range(min(nd, 8)):
                wk = cv.window(sp.disc_s[k] - 10, sp.disc_s[k] + 14, _T_PIL, _T_PIL + 13)
                if wk is None:
                    continue
                S, T, X, lab, ax, left, fx = self._lat_ctx(cv, wk)
                pil = (ax > fx - 4) & (ax < fx + 10) & (T > _T_PIL) & (T < _T_PIL + 13) & (S > -2) & (S < s_end)
                dj = np.abs(S - (sp.disc_s[k] + 1.5 + self.facet_slope * (T - _T_PIL - 6)))
                lab[pil & (dj < 1.9)] = L["cortex"]
                lab[pil & (dj < 0.65)] = L["joint"]
        tv = -5.0
        for i in range(min(len(sp.depth), 8)):
            st, h = sp.s_top[i], sp.s_bot[i] - sp.s_top[i]
            w = cv.window(st, st + 0.65 * h, tv - 4.5, _T_PIL + 0.5)
            if w is None:
                continue
            S, T, X, lab, ax, left, fx = self._lat_ctx(cv, w)
            ped = (S > st + 1) & (S < st + 0.62 * h) & (ax > sp.sac_half_width + 0.5) & (ax < fx + 3) & (
                T > -1.5) & (T < _T_PIL + 0.5)
            self._bone(lab, ped, np.minimum(np.abs(S - st - 0.31 * h) / (0.31 * h), 1.0) ** 2, 0.55, self.pillar)
            if i < 6:
                vax = np.where(left, np.float32(self.va_x[0]), np.float32(self.va_x[1]))
                f = ((ax - vax) / 5.0) ** 2 + ((T - tv) / 4.5) ** 2 + _q4((S - st - 0.35 * h) / (0.3 * h))
                self._bone(lab, f < 1, f, 0.5, self.pillar)
        w = cv.window(-sp.dens_height, sp.s_top[5], tv - 2.5, tv + 2.5)
        if w is not None:
            S, T, X, lab, ax, left, fx = self._lat_ctx(cv, w)
            vax = np.where(left, np.float32(self.va_x[0]), np.float32(self.va_x[1]))
            lab[(((ax - vax) / 2.3) ** 2 + ((T - tv) / 2.3) ** 2 < 1) & (S > -sp.dens_height) & (S < sp.s_top[5])] = L[
                "flow"]
        for k in range(min(nd, 7)):
            self._foramen(cv, k)

    def _foramen(self, cv: Canvas, k: int) -> None:
        sp, L = self.sp, self.L
        hs = sp.disc_h[k] / 2 + 0.38 * (sp.s_bot[k] - sp.s_top[k])
        sf = sp.disc_s[k] - 0.6 * hs + sp.disc_h[k] / 2
        ha = sp.foramen_ap[k] / 2
        tf = _T_PIL - ha
        w = cv.window(sf - hs - 1.5, sf + hs + 1.5, tf - ha - 2.5, _T_PIL + 0.5)
        if w is None:
            return
        S, T, X, lab, ax, left, fx = self._lat_ctx(cv, w)
        near = (np.abs(S - sf) < hs + 1.5) & (np.abs(ax - fx) < 5.0)
        if not near.any():
            return
        frame = near & (T > tf - ha - 2.5) & (T < _T_PIL + 0.5)
        lab[frame] = self.pillar
        lab[frame & ((T < tf - ha - 1.3) | (T > _T_PIL - 0.8) | (np.abs(S - sf) > hs + 0.3))] = L["cortex"]
        n = np.where(left, np.float32(sp.narrowing[k, 0]), np.float32(sp.narrowing[k, 1]))
        f_unc = np.where(left, np.float32(sp.unc_share[k, 0]), np.float32(sp.unc_share[k, 1]))
        ha_n = ha * (1 - n)
        tc = tf + ha * n * (2 * f_unc - 1)
        e = ((S - sf) / hs) ** 2 + ((T - tc) / np.maximum(ha_n, 0.05)) ** 2 + _q4((ax - fx) / 5.0)
        fat = near & (e < 1)
        lab[near & (e < 1.35) & ~fat & frame] = L["cortex"]
        lab[fat] = L["fat"]
        rs = sf + 0.35 * hs
        root = ((S - rs) / 1.9) ** 2 + ((T - tc + 0.25 * ha_n) / 1.6) ** 2 < 1
        lab[fat & root] = L["root"]

    def _posterior(self, cv: Canvas) -> None:
        """Laminae, ligamentum flavum, spinous processes."""
        sp, L = self.sp, self.L
        nv = len(sp.depth)
        fxm = min(sp.foramen_x)
        for i in range(nv):
            g_below = sp.disc_h[i] if i < len(sp.disc_h) else 4.0
            l0 = sp.s_top[i] + (2.0 if i == 0 else 0.25 * (sp.s_bot[i] - sp.s_top[i]))
            l1 = sp.s_bot[i] + 0.3 * g_below
            w = cv.window(l0 - 12, l1 + 40, 0, 90)
            if w is None:
                continue
            S, T, X, lab = cv.get(w)
            ax = np.abs(X)
            tl = self._tl(cv, w, X)
            lam = (S > l0) & (S < l1) & (T > tl) & (T < tl + _LAM_TH) & (ax < fxm + 3)
            self._bone(lab, lam, np.abs(T - tl - _LAM_TH / 2) / (_LAM_TH / 2), 0.5, self.marrow[i])
            if i + 1 < nv:
                n0 = sp.s_top[i + 1] + 0.25 * (sp.s_bot[i + 1] - sp.s_top[i + 1])
                tp = tl - cv.prof("fl", sp.buckle, w)
                fl = (S > l1 - 1.0) & (S < n0 + 1.0) & (T > tp) & (T < tl + 3.0) & (ax < fxm - 2)
                lab[fl] = L["flavum"]
            if cv.lateral_hit(0, 4.0):
                s0 = (l0 + l1) / 2
                t0 = float(sp.canal_ap(np.array([s0]))[0]) + _LAM_TH - 1.5
                th = self.sp_ang[i]
                along = (T - t0) * np.cos(th) + (S - s0) * np.sin(th)
                across = -(T - t0) * np.sin(th) + (S - s0) * np.cos(th)
                ln = self.sp_len[i]
                half = 3.6 * (1 - 0.35 * np.clip(along / ln, 0, 1))
                spm = (along > 0) & (along < ln) & (np.abs(across) < half) & (ax < 3.5 + 0.08 * along)
                f = np.maximum(np.abs(across) / half, np.clip((along - ln + 2) / 2, 0, 1)) ** 2
                self._bone(lab, spm, f, 0.55, self.marrow[i])

    def _herniation(self, cv: Canvas, k: int) -> None:
        sp = self.sp
        reach = sp.disc_h[k] / 2 + 8 + abs(sp.hern_mig[k])
        w = cv.window(sp.disc_s[k] - reach, sp.disc_s[k] + reach, -2, sp.hern_mm[k] + 4)
        if w is None:
            return
        S, T, X, lab = cv.get(w)
        hp = cv.prof(f"hern_{k}", lambda s: sp.lut(f"hern_{k}", s), w) * sp.hern_lat(X, k)
        ta = self._ta(cv, w, X)
        m = (hp > 0.35) & (T > -0.6) & (T < ta - 0.45 * sp.pll)
        lab[m] = self.hern[k]

    def _canal(self, cv: Canvas) -> None:
        sp, L = self.sp, self.L
        sb, tb, so, to = self.fm
        w = cv.window(min(sb, so) - 1, float(sp.s_bot[-1]) + 4, -1, 36)
        if w is None:
            return
        S, T, X, lab = cv.get(w)
        ta = self._ta(cv, w, X)
        tp = self._tp(cv, w, X)
        hw = sp.sac_half_width + np.clip(-S / 6, 0, 5)
        canal = (T > ta) & (T < tp) & (np.abs(X) < hw) & (S > sb + (T - tb) * (so - sb) / (to - tb))
        lab[canal] = L["csf"]
        r = cv.prof("cord", sp.cord_ap_at, w) / 2
        ta0 = self._ta(cv, w, 0.0)
        tc = ta0 + (cv.prof("canal", sp.canal_ap, w) - ta0) * 0.46
        lo1 = np.maximum(tc - r, ta0)
        hi = np.minimum(lo1 + 2 * r, self._tp(cv, w, 0.0))
        lo = np.maximum(ta0, hi - 2 * r)
        mid, half = (lo + hi) / 2, np.maximum((hi - lo) / 2, 0.05)
        q = np.clip(1 - ((T - mid) / half) ** 2, 0, 1)
        flat = np.sqrt(np.clip(r / half, 1, 2.5))
        cord = canal & (np.abs(X) < sp.cord_half_width * flat * np.sqrt(q))
        lab[cord] = L["cord"]
        for k in range(len(sp.cord_lesion)):
            if sp.cord_lesion[k]:
                e = ((S - sp.disc_s[k]) / (sp.disc_h[k] / 2 + 3.5)) ** 2 + ((T - mid) / half) ** 2 * 2.5 + (
                    X / 2.5) ** 2
                lab[cord & (e < 1)] = L["edema"]
