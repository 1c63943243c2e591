"""Renderer B's skeleton: rigid vertebral bodies chained through wedge-shaped discs, and the canal line.

Anatomy frame (mm): ``x`` towards the patient's left, ``y`` posterior, ``z`` superior (DICOM LPS with z up), the
patient's mid-sagittal plane is ``x = 0``. Every body ``i`` is rigid: centre ``c_i`` in the (y, z) plane, axis
``t_i`` pointing down the body, ``n_i`` pointing posterior. Discs fill the gap between the lower endplate of one
body and the upper endplate of the next, so a change of axis angle makes them wedges. The *canal line* runs
along the posterior walls of the bodies (through every posterior corner); ``s`` is the arc length along it
(caudal positive, 0 at the upper posterior corner of C2) and ``a`` the signed distance from it (posterior
positive): soft tissues, canal and posterior elements are drawn in ``(s, a, x)``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from pipelines.phantoms.mri_b.patient import SpinePatient

EXTEND_MM = 170.0
"""How far the canal line continues straight above C2 and below the last body."""
LOOKUP_MM = 0.6
"""Grid step of the (y, z) -> (s, a) lookup."""


def _unit(deg: float) -> tuple[np.ndarray, np.ndarray]:
    r = np.radians(deg)
    return np.array([np.sin(r), -np.cos(r)]), np.array([np.cos(r), np.sin(r)])


@dataclass
class Skeleton:
    """The chain of one patient in the anatomy frame ((y, z) vectors)."""

    centres: np.ndarray
    """(8, 2) body centres."""
    axes: np.ndarray
    """(8, 2) unit vectors down each body."""
    normals: np.ndarray
    """(8, 2) unit vectors posterior."""
    disc_centres: np.ndarray
    """(7, 2) midpoints between the facing endplate centres."""
    disc_axes: np.ndarray
    """(7, 2) unit vectors down each disc."""
    line: np.ndarray
    """(m, 2) dense canal line (0.2 mm steps), cranial to caudal."""
    line_s: np.ndarray
    line_t: np.ndarray
    line_n: np.ndarray
    body_s: np.ndarray
    """(8, 2) arc positions of the upper and lower endplate of each body on the canal line."""
    disc_s: np.ndarray
    """(7,) arc position of each disc centre on the canal line."""

    def to_line(self, yz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(k, 2) (y, z) points -> arc position ``s`` and signed distance ``a`` (posterior +), exact nearest."""
        _, i = cKDTree(self.line).query(yz)
        d = yz - self.line[i]
        return self.line_s[i] + (d * self.line_t[i]).sum(1), (d * self.line_n[i]).sum(1)


def build_skeleton(p: SpinePatient) -> Skeleton:
    """Chain the bodies from C2 down; re-centre so that the C4-C5 disc centre is the origin."""
    h, d, dh = np.array(p.body_height_mm), np.array(p.body_depth_mm), np.array(p.disc_height_mm)
    axes, normals = zip(*(_unit(a) for a in p.axis_deg), strict=True)
    axes, normals = np.array(axes), np.array(normals)
    centres = [np.zeros(2)]
    discs, dax = [], []
    for i in range(len(h) - 1):
        bottom = centres[i] + h[i] / 2 * axes[i]
        t = axes[i] + axes[i + 1]
        t /= np.hypot(*t)
        top = bottom + dh[i] * t
        discs.append((bottom + top) / 2)
        dax.append(t)
        centres.append(top + h[i + 1] / 2 * axes[i + 1])
    centres, discs = np.array(centres), np.array(discs)
    origin = discs[2].copy()
    centres -= origin
    discs -= origin
    # canal line through the posterior corners, extended straight at both ends
    pts = [centres[0] - h[0] / 2 * axes[0] + d[0] / 2 * normals[0] - EXTEND_MM * axes[0]]
    for i in range(len(h)):
        pts.append(centres[i] - h[i] / 2 * axes[i] + d[i] / 2 * normals[i])
        pts.append(centres[i] + h[i] / 2 * axes[i] + d[i] / 2 * normals[i])
    pts.append(pts[-1] + EXTEND_MM * axes[-1])
    pts = np.array(pts)
    seg = np.hypot(*np.diff(pts, axis=0).T)
    cum = np.concatenate([[0.0], np.cumsum(seg)])
    dense_s = np.arange(0.0, cum[-1], 0.2)
    line = np.stack([np.interp(dense_s, cum, pts[:, 0]), np.interp(dense_s, cum, pts[:, 1])], 1)
    # round the corners a little (a real posterior wall is smooth across the disc)
    line = np.stack([ndimage.gaussian_filter1d(line[:, k], 6, mode="nearest") for k in range(2)], 1)
    step = np.hypot(*np.diff(line, axis=0).T)
    line_s = np.concatenate([[0.0], np.cumsum(step)])
    tang = np.gradient(line, axis=0)
    tang /= np.hypot(*tang.T)[:, None]
    norm = np.stack([-tang[:, 1], tang[:, 0]], 1)
    norm[(norm * normals[0]).sum(1) < 0] *= -1  # posterior
    sk = Skeleton(centres, axes, normals, discs, np.array(dax), line, line_s, tang, norm, np.zeros((len(h), 2)),
                  np.zeros(len(discs)))
    s0, _ = sk.to_line(np.array([centres[0] - h[0] / 2 * axes[0] + d[0] / 2 * normals[0]]))
    sk.line_s = sk.line_s - s0[0]
    ends = np.concatenate([centres - h[:, None] / 2 * axes, centres + h[:, None] / 2 * axes])
    es, _ = sk.to_line(ends)
    sk.body_s = np.stack([es[: len(h)], es[len(h):]], 1)
    sk.disc_s, _ = sk.to_line(discs)
    return sk


class LineLookup:
    """(y, z) -> (s, a) on a regular grid over a box, interpolated (much faster than a tree query per sample)."""

    def __init__(self, sk: Skeleton, y_range: tuple[float, float], z_range: tuple[float, float]) -> None:
        self.y0, self.z0 = y_range[0] - 2, z_range[0] - 2
        ny = int(np.ceil((y_range[1] - y_range[0] + 4) / LOOKUP_MM)) + 1
        nz = int(np.ceil((z_range[1] - z_range[0] + 4) / LOOKUP_MM)) + 1
        gy, gz = np.meshgrid(self.y0 + np.arange(ny) * LOOKUP_MM, self.z0 + np.arange(nz) * LOOKUP_MM, indexing="ij")
        s, a = sk.to_line(np.stack([gy.ravel(), gz.ravel()], 1))
        self.s, self.a = s.reshape(ny, nz).astype(np.float32), a.reshape(ny, nz).astype(np.float32)

    def __call__(self, y: np.ndarray, z: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        c = [(y - self.y0) / LOOKUP_MM, (z - self.z0) / LOOKUP_MM]
        return (ndimage.map_coordinates(self.s, c, order=1, mode="nearest"),
                ndimage.map_coordinates(self.a, c, order=1, mode="nearest"))
