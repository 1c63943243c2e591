"""Renderer C's virtual patient: cervical anatomy, alignment and degeneration, drawn from a seed (mm, radians).

The spine is laid out along a curvilinear axis ``s`` (mm, increasing caudally, 0 at the top of the C2 body =
base of the dens). ``t`` is the signed distance from the posterior vertebral body line (mm, + posterior) and
``x`` the lateral distance from the mid-sagittal plane (mm, + patient's left). Vertebral bodies occupy
``t in [-depth, 0]``; the spinal canal lies between an anterior wall ``t_a(s, x)`` (posterior longitudinal
ligament, disc bulge, herniation, osteophyte) and a posterior wall ``t_p(s, x)`` (laminae, buckled ligamentum
flavum). Both walls are closed-form, so the per-level truth (residual canal AP at the disc level, measured on the
mid-sagittal plane x = 0) is exact, and the renderer paints exactly the same walls.

Degeneration is a per-level latent driven by age, a patient susceptibility and level (C5-C6 most often); it
lowers disc height and nucleus water, and raises the odds of protrusion/extrusion, osteophytes, flavum
buckling, Modic endplate change and foraminal narrowing (uncovertebral anteriorly, facet posteriorly).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

VERTEBRAE_C: tuple[str, ...] = ("C2", "C3", "C4", "C5", "C6", "C7", "T1", "T2", "T3", "T4", "T5", "T6")
"""Vertebrae with a body in renderer C's anatomy (C1 has arches only); discs lie between neighbours."""
N_GRADED = 5
"""Discs C2-C3 .. C6-C7 are graded (the first five)."""


@dataclass(frozen=True)
class PatientC:
    """Who is scanned (the attributes ``write_series`` reads)."""

    seed: int
    patient_id: str
    age: int
    sex: str


@dataclass
class SpineC:
    """Anatomy of one patient in the curvilinear spine frame (see module docstring)."""

    age: int
    habitus: float
    s_top: np.ndarray
    s_bot: np.ndarray
    depth: np.ndarray
    half_width: np.ndarray
    disc_h: np.ndarray
    seg_angle: np.ndarray
    """Angle (rad) each disc adds to the downward tangent (lordosis > 0)."""
    phi_t1: float
    """Mean angle (rad) of the downward tangent from C2 to T1 from the -z axis (+ = running posteriorly going
    down: the neck leaning forward)."""
    head_angle: float
    """Head pitch relative to C2 (rad, + extension)."""
    degen: np.ndarray
    nucleus_t2: np.ndarray
    bulge: np.ndarray
    hern_mm: np.ndarray
    hern_x: np.ndarray
    hern_w: np.ndarray
    hern_mig: np.ndarray
    hern_kind: list[str]
    osteo_post: np.ndarray
    osteo_ant: np.ndarray
    flavum: np.ndarray
    canal_knots: np.ndarray
    """Developmental mid-sagittal canal AP (mm) at each disc centre."""
    cord_ap: np.ndarray
    """Cord AP (mm) at each disc centre."""
    cord_half_width: float
    sac_half_width: float
    pll: float
    foramen_x: tuple[float, float]
    """Lateral distance of the left, right foramen centre from the midline (mm)."""
    foramen_ap: np.ndarray
    """Normal foraminal AP (mm) per disc."""
    narrowing: np.ndarray
    """(discs, 2) fraction of foraminal AP lost, left then right."""
    unc_share: np.ndarray
    """(discs, 2) share of the narrowing from the anterior (uncovertebral) side."""
    modic: np.ndarray
    """Per disc: 0 none, 1 oedema type, 2 fatty type."""
    marrow_fat: np.ndarray
    cord_lesion: np.ndarray
    dens_height: float
    dens_depth: float
    extras: dict = field(default_factory=dict)

    @property
    def disc_s(self) -> np.ndarray:
        return self.s_bot[:-1] + self.disc_h / 2

    # ---------------------------------------------------------------- canal walls (vectorised, closed form)
    def _tables(self) -> dict:
        """1-D profiles along s on a uniform 0.05 mm grid behind the canal walls, built once."""
        if "grid" not in self.extras:
            g = np.arange(-80.0, float(self.s_bot[-1]) + 40.0, 0.05)
            bo = np.zeros_like(g)
            fl = np.zeros_like(g)
            tabs = {}
            for k in range(len(self.disc_h)):
                u = (g - self.disc_s[k]) / (self.disc_h[k] / 2 + 1.2)
                bo += (self.bulge[k] + self.osteo_post[k]) * np.exp(-(u ** 4))
                u = (g - self.disc_s[k] - 0.8) / (self.disc_h[k] / 2 + 2.2)
                fl += self.flavum[k] * np.exp(-u * u)
                if self.hern_mm[k] > 0:
                    sig = self.disc_h[k] / 2 + 1.0 + (1.5 + abs(self.hern_mig[k]) * 0.6
                                                      if self.hern_kind[k] == "extrusion" else 0.0)
                    u = (g - self.disc_s[k] - self.hern_mig[k]) / sig
                    tabs[f"hern_{k}"] = self.hern_mm[k] * np.exp(-u * u)
            ks = np.concatenate([[-40.0, -22.0, -9.0], self.disc_s, [self.disc_s[-1] + 40]])
            kv = np.concatenate([[26.0, 23.0, self.canal_knots[0] + 5.0], self.canal_knots, [self.canal_knots[-1]]])
            tabs["canal"] = np.interp(g, ks, kv)
            ks = np.concatenate([[-40.0], self.disc_s[:6], [self.disc_s[5] + 30, 400.0]])
            kv = np.concatenate([[self.cord_ap[0] + 3.0], self.cord_ap[:6], [self.cord_ap[5] - 0.5, 5.5]])
            tabs["cord"] = np.interp(g, ks, kv)
            tabs.update(bo=bo, fl=fl)
            self.extras["tabs"] = {k: v.astype(np.float32) for k, v in tabs.items()}
            self.extras["grid"] = (float(g[0]), len(g))
        return self.extras

    def lut(self, name: str, s: np.ndarray) -> np.ndarray:
        """Profile ``name`` (bo, fl, canal, cord, hern_<k>) at s (nearest sample of the 0.05 mm grid)."""
        tb = self._tables()
        g0, n = tb["grid"]
        i = np.clip(((np.asarray(s, dtype=np.float32) - np.float32(g0)) * np.float32(20.0) + 0.5).astype(np.int32),
                    0, n - 1)
        return tb["tabs"][name][i]

    def herniated(self) -> list[int]:
        return [k for k in range(len(self.disc_h)) if self.hern_mm[k] > 0]

    def hern_lat(self, x: np.ndarray | float, k: int) -> np.ndarray:
        return np.exp(-((np.asarray(x, dtype=np.float32) - self.hern_x[k]) / self.hern_w[k]) ** 2)

    def bulge_lat(self, x: np.ndarray | float) -> np.ndarray:
        x = np.asarray(x, dtype=np.float32)
        return np.clip(1.0 - (x / (self.sac_half_width + 3.0)) ** 2, 0.0, 1.0)

    def herniation_profile(self, s: np.ndarray, x: np.ndarray | float, k: int) -> np.ndarray:
        """Posterior extent (mm) of disc k's herniation at (s, x); zero for a disc without one."""
        if self.hern_mm[k] <= 0:
            return np.zeros(np.broadcast(s, x).shape, dtype=np.float32)
        return self.lut(f"hern_{k}", s) * self.hern_lat(x, k)

    def anterior_wall(self, s: np.ndarray, x: np.ndarray | float) -> np.ndarray:
        """t of the canal's anterior wall: PLL + disc bulge + osteophyte ridge + herniation (mm)."""
        out = self.pll + self.lut("bo", s) * self.bulge_lat(x)
        for k in self.herniated():
            out = out + self.herniation_profile(s, x, k)
        return out.astype(np.float32)

    def canal_ap(self, s: np.ndarray) -> np.ndarray:
        """Developmental (un-narrowed) mid-sagittal canal AP along s, wide at C1 and the foramen magnum."""
        return self.lut("canal", s)

    def buckle(self, s: np.ndarray) -> np.ndarray:
        return self.lut("fl", s)

    def posterior_wall(self, s: np.ndarray, x: np.ndarray | float) -> np.ndarray:
        """t of the canal's posterior wall (flavum surface), curving forward laterally (mm)."""
        return self.lamina_wall(s, x) - self.buckle(s)

    def lamina_wall(self, s: np.ndarray, x: np.ndarray | float) -> np.ndarray:
        """t of the laminae's anterior surface (the canal wall without flavum buckling)."""
        x = np.asarray(x, dtype=np.float32)
        return self.canal_ap(s) - 2.5 * (x / self.sac_half_width) ** 2

    def cord_ap_at(self, s: np.ndarray) -> np.ndarray:
        return self.lut("cord", s)

    def residual(self, k: int) -> float:
        """Narrowest mid-sagittal canal AP within half a disc height + 2 mm of disc k's centre (mm)."""
        s = np.linspace(self.disc_s[k] - self.disc_h[k] / 2 - 2, self.disc_s[k] + self.disc_h[k] / 2 + 2, 161)
        return float(np.min(self.posterior_wall(s, 0.0) - self.anterior_wall(s, 0.0)))


def _sig(v: float) -> float:
    return float(1.0 / (1.0 + np.exp(-v)))


def draw_spine(rng: np.random.Generator, age: int, sex: str) -> tuple[SpineC, dict]:
    """Draw anatomy, alignment and degeneration (module docstring); also return a JSON-ready summary."""
    nv = len(VERTEBRAE_C)
    nd = nv - 1
    male = sex == "M"
    a = (age - 25) / 60.0
    size = rng.normal(1.0, 0.05) + (0.04 if male else -0.02)
    h_base = rng.uniform(11.5, 15.0) * size
    d_base = rng.uniform(14.5, 17.5) * size
    h = np.empty(nv)
    d = np.empty(nv)
    h[0] = rng.uniform(14.0, 17.5) * size
    d[0] = rng.uniform(14.0, 17.0) * size
    h[1:6] = h_base * np.array([0.95, 0.95, 0.97, 1.0, 1.07]) * rng.normal(1, 0.03, 5)
    d[1:6] = d_base * np.array([0.95, 0.97, 1.0, 1.03, 1.06]) * rng.normal(1, 0.025, 5)
    h[6:] = h_base * np.linspace(1.15, 1.45, nv - 6) * rng.normal(1, 0.03, nv - 6)
    d[6:] = d_base * np.linspace(1.12, 1.45, nv - 6)
    d = np.clip(d, 13.0, 30.0)
    half_w = np.concatenate([[8.5], rng.uniform(7.8, 10.0) * np.linspace(0.97, 1.08, 5), np.full(nv - 6, 12.0)])

    susc = rng.normal()
    level_w = np.array([0.45, 0.65, 0.85, 1.0, 0.9] + [0.45] + [0.3] * (nd - 6))
    degen = np.empty(nd)
    for k in range(nd):
        latent = 2.0 * a * level_w[k] + 0.5 * susc + 0.55 * rng.normal() - 0.65
        degen[k] = _sig(4.0 * (latent - 0.15))
    g0 = rng.uniform(5.0, 6.6) * size
    disc_h = np.where(np.arange(nd) < 6, g0 * (1 - 0.45 * degen) * rng.normal(1, 0.05, nd),
                      rng.uniform(3.6, 4.6, nd))
    disc_h = np.clip(disc_h, 2.8, 7.0)

    s_top = np.empty(nv)
    s_bot = np.empty(nv)
    s_top[0] = 0.0
    for i in range(nv):
        s_bot[i] = s_top[i] + h[i]
        if i + 1 < nv:
            s_top[i + 1] = s_bot[i] + disc_h[i]

    # ---- alignment: per-disc segment angles (deg)
    kind = rng.choice(["lordotic", "straight", "kyphotic", "s_shaped"], p=[0.45, 0.25, 0.12, 0.18])
    wts = np.array([0.16, 0.18, 0.2, 0.22, 0.24])
    if kind == "lordotic":
        seg = rng.uniform(10, 42) * wts / wts.sum()
    elif kind == "straight":
        seg = rng.uniform(-5, 7) * wts / wts.sum()
    elif kind == "kyphotic":
        seg = rng.uniform(-22, -5) * wts / wts.sum()
    else:
        up, lo = rng.uniform(-16, -5), rng.uniform(10, 26)
        if rng.random() < 0.3:
            up, lo = -up, -lo * 0.6
        seg = np.array([up * 0.5, up * 0.5, lo * 0.3, lo * 0.35, lo * 0.35])
    seg = seg + rng.normal(0, 1.5, 5)
    head = rng.uniform(-14, 14)
    seg[:2] += head * np.array([0.25, 0.15])
    seg_all = np.concatenate([seg, [rng.uniform(-2, 3)], rng.uniform(-5, -3, nd - 6)])
    phi_t1 = np.deg2rad(rng.uniform(0, 20))

    # ---- degeneration findings per disc
    bulge = np.clip(0.3 + 1.3 * degen * rng.uniform(0.4, 1.2, nd), 0, 2.0)
    hern = np.zeros(nd)
    hern_x = np.zeros(nd)
    hern_w = np.full(nd, 5.0)
    mig = np.zeros(nd)
    kinds = ["none"] * nd
    for k in range(nd):
        p = _sig(-2.6 + 3.8 * degen[k] + 0.6 * rng.normal()) if k < 6 else 0.04
        if rng.random() < p:
            ext = rng.random() < 0.3
            kinds[k] = "extrusion" if ext else "protrusion"
            hern[k] = rng.uniform(2.5, 6.0) if ext else rng.uniform(1.2, 3.6)
            hern_x[k] = 0.0 if rng.random() < 0.45 else rng.choice([-1, 1]) * rng.uniform(2.5, 6.5)
            hern_w[k] = rng.uniform(3.0, 6.5)
            if ext and rng.random() < 0.5:
                mig[k] = rng.choice([-1, 1]) * rng.uniform(2.5, 7.0)
    osteo_post = np.clip(degen * a * rng.uniform(0, 2.4, nd) - 0.2, 0, None)
    osteo_ant = np.clip(degen * a * rng.uniform(0, 5.0, nd) - 0.4, 0, None)
    flavum = np.clip(0.4 + 2.4 * degen * a + rng.normal(0, 0.45, nd), 0.2, 4.0)

    canal = rng.normal(14.6, 1.4)
    if rng.random() < 0.15:
        canal = rng.uniform(10.5, 12.5)
    canal_knots = np.clip(canal + rng.normal(0, 0.5, nd) - 0.25 * np.minimum(np.arange(nd), 4), 10.0, 19.0)
    canal_knots[6:] = np.maximum(canal_knots[6:], canal + 0.5)
    cord = rng.uniform(6.2, 8.6)
    cord_ap = np.clip(cord + rng.normal(0, 0.2, nd) + np.array([0, 0, 0.2, 0.35, 0.2] + [-0.3] * (nd - 5)),
                      5.5, 9.2)
    nucleus_t2 = np.clip(135 - 95 * degen + rng.normal(0, 8, nd), 35, 160)

    # ---- foramina: narrowing fraction per side, correlated with degeneration, independent sides
    narrowing = np.zeros((nd, 2))
    unc = rng.uniform(0.3, 0.8, (nd, 2))
    for k in range(nd):
        for j, side in enumerate((1, -1)):
            hx = 0.15 if (kinds[k] != "none" and hern_x[k] * side > 2) else 0.0
            lat = 0.5 * degen[k] + 0.25 * a * level_w[k] + hx + rng.normal(0, 0.21) - 0.1
            narrowing[k, j] = float(np.clip(lat, 0.0, 0.85)) if k < 7 else 0.0
    modic = np.where(rng.random(nd) < 0.35 * degen * (degen > 0.55), rng.choice([1, 2], nd, p=[0.4, 0.6]), 0)
    marrow_fat = np.clip(0.28 + 0.45 * a + rng.normal(0, 0.06) + rng.normal(0, 0.04, nv), 0.15, 0.9)

    spine = SpineC(
        age=age, habitus=float(rng.uniform(0.85, 1.3)), s_top=s_top, s_bot=s_bot, depth=d, half_width=half_w,
        disc_h=disc_h, seg_angle=np.deg2rad(seg_all), phi_t1=float(phi_t1), head_angle=float(np.deg2rad(head)),
        degen=degen, nucleus_t2=nucleus_t2, bulge=bulge, hern_mm=hern, hern_x=hern_x, hern_w=hern_w,
        hern_mig=mig, hern_kind=kinds, osteo_post=osteo_post, osteo_ant=osteo_ant, flavum=flavum,
        canal_knots=canal_knots, cord_ap=cord_ap, cord_half_width=float(rng.uniform(5.0, 6.5)),
        sac_half_width=float(rng.uniform(8.0, 10.0)), pll=float(rng.uniform(0.6, 1.2)),
        foramen_x=(float(rng.uniform(11.5, 16.5)), float(rng.uniform(11.5, 16.5))),
        foramen_ap=rng.uniform(6.5, 9.0, nd), narrowing=narrowing, unc_share=unc, modic=modic,
        marrow_fat=marrow_fat, cord_lesion=np.zeros(nd, dtype=bool),
        dens_height=float(rng.uniform(13.0, 17.0) * size), dens_depth=float(rng.uniform(9.0, 11.5) * size),
    )
    for k in range(N_GRADED):
        r = spine.residual(k)
        spine.cord_lesion[k] = r < spine.cord_ap[k] * 0.95 and rng.random() < 0.5
    info = {"alignment": str(kind), "head_pitch_deg": round(float(head), 2),
            "c2_c7_cobb_deg": round(float(seg_all[:5].sum()), 2), "habitus": round(spine.habitus, 3),
            "degeneration": [round(float(v), 3) for v in degen[:N_GRADED]],
            "disc_kind": kinds[:N_GRADED]}
    return spine, info
