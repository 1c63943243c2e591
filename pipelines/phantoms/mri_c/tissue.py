"""Tissue relaxation parameters and the spin-echo signal of every label renderer C paints.

Each label carries proton density, T1 at 1.5 T, T2, a fat fraction (mixed in as fat signal: marrow, tongue,
Modic type 2) and a texture amplitude. At 3 T, T1 of non-fluid tissues is lengthened and T2 shortened a little.
The signal is the spin-echo equation S = PD (1 - exp(-TR/T1)) exp(-TE/T2); on fast spin echo (the T2 series) fat
keeps a long apparent T2 (J-coupling), so fat stays bright on both weightings.
"""

from __future__ import annotations

import numpy as np

# name: (PD, T1 at 1.5 T [ms], T2 [ms], fat fraction, texture amplitude)
BASE: dict[str, tuple[float, float, float, float, float]] = {
    "air": (0.0, 1000, 10, 0.0, 0.0),
    "skin": (0.7, 600, 40, 0.0, 0.05),
    "fat": (1.0, 260, 80, 1.0, 0.05),
    "muscle": (0.8, 870, 45, 0.03, 0.08),
    "prevert": (0.82, 900, 60, 0.05, 0.06),
    "tongue": (0.82, 850, 50, 0.2, 0.08),
    "gland": (0.85, 950, 80, 0.05, 0.05),
    "csf": (1.0, 4000, 1500, 0.0, 0.01),
    "cord": (0.72, 800, 80, 0.0, 0.02),
    "edema": (0.85, 1300, 190, 0.0, 0.02),
    "brain": (0.78, 950, 90, 0.0, 0.03),
    "cerebellum": (0.8, 1050, 95, 0.0, 0.04),
    "cortex": (0.05, 500, 5, 0.0, 0.0),
    "annulus": (0.62, 800, 40, 0.0, 0.05),
    "ligament": (0.3, 500, 18, 0.0, 0.02),
    "flavum": (0.55, 700, 45, 0.0, 0.03),
    "vein": (0.85, 1200, 160, 0.0, 0.02),
    "flow": (0.03, 1000, 10, 0.0, 0.0),
    "root": (0.7, 900, 70, 0.0, 0.02),
    "joint": (0.85, 1100, 110, 0.0, 0.02),
    "cartilage": (0.7, 900, 35, 0.0, 0.02),
    "modic1": (0.9, 1200, 110, 0.15, 0.06),
    "mucosa": (0.85, 1000, 110, 0.0, 0.03),
}
RED_MARROW = (0.8, 600, 45)
FAT_T2_FSE = 165.0


class Labels:
    """Registry of the labels of one case: id -> tissue parameters (ids 0..254, uint8)."""

    def __init__(self) -> None:
        self.params: list[tuple[float, float, float, float, float]] = []
        self.ids: dict[str, int] = {}
        for name, p in BASE.items():
            self.add(name, p)

    def add(self, name: str, p: tuple[float, float, float, float, float]) -> int:
        self.ids[name] = len(self.params)
        self.params.append(p)
        return self.ids[name]

    def __getitem__(self, name: str) -> int:
        return self.ids[name]

    def marrow(self, name: str, fat_fraction: float) -> int:
        return self.add(name, (*RED_MARROW, fat_fraction, 0.16))

    def signal_table(self, tr: float, te: float, field_t: float, fse: bool) -> tuple[np.ndarray, np.ndarray]:
        """Signal and texture amplitude per label for TR/TE (ms) at ``field_t`` tesla."""
        def se(pd: float, t1: float, t2: float) -> float:
            if field_t > 2.0 and t1 < 2500:
                t1, t2 = t1 * 1.3, t2 * 0.92
            return pd * (1.0 - np.exp(-tr / t1)) * np.exp(-te / t2)

        fat = se(1.0, 260, FAT_T2_FSE if fse else 80)
        sig = np.zeros(256, dtype=np.float32)
        tex = np.zeros(256, dtype=np.float32)
        for i, (pd, t1, t2, ff, amp) in enumerate(self.params):
            water = se(pd, t1, t2) if pd > 0 else 0.0
            sig[i] = (1 - ff) * water + ff * fat
            tex[i] = amp
        return sig, tex
