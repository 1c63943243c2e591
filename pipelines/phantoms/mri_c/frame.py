"""The spine's curvilinear frame in patient (LPS) coordinates, and the map from LPS points to (s, t, x).

The posterior vertebral body line is a plane curve in the mid-sagittal plane x = x0, built by integrating a
curvature that is concentrated at the discs (each disc adds its segment angle, so the bodies stay almost rigid
and the discs are wedged). Above the C2 body the curve runs straight (the head is a rigid frame pivoting at the
foramen magnum), and it is extended by long straight rays at both ends so every point of the field of view has a
nearest foot point. Points are mapped to (s, t) by a few Newton steps of the foot-point equation.
"""

from __future__ import annotations

import numpy as np

from pipelines.phantoms.mri_c.patient import SpineC

_DS = 0.25


class SpineFrame:
    """Posterior body line P(s) (LPS y, z) with tangent angle phi(s); origin of s at the top of C2."""

    def __init__(self, spine: SpineC, origin_lps: np.ndarray) -> None:
        self.x0 = float(origin_lps[0])
        s = np.arange(-400.0, float(spine.s_bot[-1]) + 400.0 + _DS, _DS)
        kappa = np.zeros_like(s)
        for k, ang in enumerate(spine.seg_angle):
            w = spine.disc_h[k] / 2 + 1.5
            g = np.exp(-0.5 * ((s - spine.disc_s[k]) / w) ** 2)
            kappa += ang * g / (w * np.sqrt(2 * np.pi))
        kappa[(s < spine.s_top[0]) | (s > spine.s_bot[-1] + 5)] = 0.0
        phi = np.cumsum(kappa) * _DS
        neck = (s >= 0) & (s <= spine.s_bot[6])
        phi += spine.phi_t1 - phi[neck].mean()
        dy, dz = np.sin(phi), -np.cos(phi)
        y = np.cumsum(dy) * _DS
        z = np.cumsum(dz) * _DS
        i0 = int(np.searchsorted(s, 0.0))
        y += origin_lps[1] - y[i0]
        z += origin_lps[2] - z[i0]
        self.s, self.phi, self.y, self.z = s, phi, y, z

    def point(self, s: float, t: float = 0.0, x: float = 0.0) -> np.ndarray:
        """LPS point (mm) of curvilinear coordinates (s, t, x)."""
        ph = float(np.interp(s, self.s, self.phi))
        y = float(np.interp(s, self.s, self.y)) + t * np.cos(ph)
        z = float(np.interp(s, self.s, self.z)) + t * np.sin(ph)
        return np.array([self.x0 + x, y, z])

    def project(self, y: np.ndarray, z: np.ndarray, iters: int = 4) -> tuple[np.ndarray, np.ndarray]:
        """(s, t) of LPS points (y, z): foot point on the curve by Newton iteration (start from the z order)."""
        zr = self.z[::-1]
        s = np.interp(z, zr, self.s[::-1])
        for _ in range(iters):
            ph = np.interp(s, self.s, self.phi)
            cy = np.interp(s, self.s, self.y)
            cz = np.interp(s, self.s, self.z)
            ds = (y - cy) * np.sin(ph) - (z - cz) * np.cos(ph)
            s = s + np.clip(ds, -40, 40)
        ph = np.interp(s, self.s, self.phi)
        t = (y - np.interp(s, self.s, self.y)) * np.cos(ph) + (z - np.interp(s, self.s, self.z)) * np.sin(ph)
        return s, t
