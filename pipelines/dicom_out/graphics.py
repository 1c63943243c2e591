"""What to draw for each result: shared by the SR (SCOORD), the GSPS and the report picture.

Everything here is in *results* image coordinates: pixels of the original image, x right, y down,
``(0, 0)`` the centre of the top-left pixel. The DICOM writers add 0.5 (DICOM puts ``(0, 0)`` at the
top-left corner of the top-left pixel).

X-ray figures are driven by keypoint names from ``KEYPOINT_NAMES`` ("C3 antero-superior",
"C3 spinolaminar" ...): endplate lines for angles, the C2 plumb line for SVA, mid-wall segments for
SDVB/SDVC. Anything else (an MRI "C4-C5 disc" point, a new measurement key) falls back to the
measurement's own keypoint list: a polyline through them in order, or a point.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from scipy.spatial import ConvexHull

from pipelines.results import VERTEBRAE, ImageResult, Keypoint, Measurement


@dataclass(frozen=True)
class Graphic:
    """One drawable primitive on one image."""

    kind: str
    """``POINT`` or ``POLYLINE`` (DICOM graphic types valid for both SR regions and GSPS)."""
    points: np.ndarray
    """(n, 2) float array of (x, y) in results image coordinates."""
    image_uid: str
    frame: int = 1
    closed: bool = False
    """A polygon: the writers repeat the first point at the end."""

    def closed_points(self) -> np.ndarray:
        return np.vstack([self.points, self.points[:1]]) if self.closed else self.points

    def dicom_points(self, rows: int, columns: int) -> np.ndarray:
        """Points in DICOM graphic coordinates (the top-left corner of the first pixel is (0, 0), so our
        pixel-centre coordinates shift by +0.5), clipped to the image: SR SCOORDs and GSPS graphics must lie
        on it, and a keypoint predicted just outside the image (or a line extended past it) would otherwise
        make the object unwritable."""
        pts = self.closed_points().astype(float) + 0.5
        return np.clip(pts, 0.0, [float(columns), float(rows)])


def keypoints_by_name(image: ImageResult) -> dict[str, Keypoint]:
    """The keypoints the outputs may draw from, by name: none on an image whose keypoints were rejected
    (``ImageResult.rejected``), so that no outline, figure, segment or finding site is drawn from them, and no
    spinolaminar point where only the canal checks failed (``ImageResult.canal_rejected``)."""
    if image.rejected:
        return {}
    return {k.name: k for k in image.keypoints if not (image.canal_rejected and k.name.endswith(" spinolaminar"))}


def _xy(kp: dict[str, Keypoint], *names: str) -> np.ndarray | None:
    if not all(n in kp for n in names):
        return None
    return np.array([[kp[n].x, kp[n].y] for n in names], dtype=float)


def _mid(kp: dict[str, Keypoint], a: str, b: str) -> np.ndarray | None:
    p = _xy(kp, a, b)
    return None if p is None else p.mean(axis=0)


def c2_centroid(kp: dict[str, Keypoint]) -> np.ndarray | None:
    """Intersection of the C2 body diagonals (antero-superior to postero-inferior and postero-superior to
    antero-inferior), the plumb-line origin of the C2-C7 SVA (paper 002 eq. 16)."""
    p = _xy(kp, "C2 antero-superior", "C2 postero-inferior", "C2 postero-superior", "C2 antero-inferior")
    if p is None:
        return None
    a, b, c, d = p
    r, s = b - a, d - c
    den = r[0] * s[1] - r[1] * s[0]
    if abs(den) < 1e-9:
        return p.mean(axis=0)
    t = ((c - a)[0] * s[1] - (c - a)[1] * s[0]) / den
    return a + t * r


def vertebra_polygon(kp: dict[str, Keypoint], vertebra: str) -> np.ndarray | None:
    """The four corners of a vertebral body in drawing order AS, PS, PI, AI (a closed quadrilateral)."""
    return _xy(kp, *(f"{vertebra} {r}" for r in ("antero-superior", "postero-superior", "postero-inferior", "antero-inferior")))


def _pair(site: str) -> tuple[str, str] | None:
    parts = site.split()[0].split("-") if site else []
    return (parts[0], parts[1]) if len(parts) == 2 and all(p in VERTEBRAE for p in parts) else None


def _figure_names(m: Measurement) -> tuple[str, ...] | None:
    """Keypoint names of the X-ray figure of a measurement, in drawing order (None: not an X-ray figure)."""
    pair = _pair(m.site)
    if m.key.startswith("cobb") and pair:  # both inferior endplates, joined posteriorly (a Cobb bracket)
        u, lo = pair
        return (f"{u} antero-inferior", f"{u} postero-inferior", f"{lo} postero-inferior", f"{lo} antero-inferior")
    if m.key == "segmental_angle" and pair:  # upper inferior endplate, lower superior endplate
        u, lo = pair
        return (f"{u} antero-inferior", f"{u} postero-inferior", f"{lo} postero-superior", f"{lo} antero-superior")
    if m.key.startswith("listhesis") and pair:  # the two posterior walls
        u, lo = pair
        return (f"{u} postero-superior", f"{u} postero-inferior", f"{lo} postero-superior", f"{lo} postero-inferior")
    if m.key == "curvature_index":  # posterior-inferior corners C2..C7
        return tuple(f"{v} postero-inferior" for v in VERTEBRAE)
    if m.key == "curvature_offset" and m.site in VERTEBRAE:  # chord end, the corner, chord end
        return ("C2 postero-inferior", f"{m.site} postero-inferior", "C7 postero-inferior")
    return None


def measurement_graphic(m: Measurement, image: ImageResult) -> Graphic | None:
    """The figure a measurement came from, on ``image`` (None when its keypoints are not on that image).

    X-ray figures: Cobb bracket (C2 and C7 inferior endplates), segmental angle endplates, listhesis
    posterior walls, SVA plumb line (C2 centroid straight down to the level of C7's postero-superior
    corner, then to that corner), SDVB/SDVC/Pavlov mid-wall segments, curvature chord. Others: a polyline
    through the measurement's own keypoints, or a point.
    """
    kp = keypoints_by_name(image)
    site = m.site.split()[0] if m.site else ""
    pts: np.ndarray | None = None
    kind = "POLYLINE"
    names = _figure_names(m)
    if names is not None:
        pts = _xy(kp, *names)
    elif m.key.startswith("sva"):
        c = c2_centroid(kp)
        c7 = _xy(kp, f"{VERTEBRAE[-1]} postero-superior")
        if c is not None and c7 is not None:
            pts = np.array([c, [c[0], c7[0, 1]], c7[0]])
    elif m.key in ("sdvb", "sdvc", "pavlov_ratio") and site in VERTEBRAE:
        ant = _mid(kp, f"{site} antero-superior", f"{site} antero-inferior")
        post = _mid(kp, f"{site} postero-superior", f"{site} postero-inferior")
        lam = _xy(kp, f"{site} spinolaminar")
        chain = {"sdvb": [ant, post], "sdvc": [post, None if lam is None else lam[0]], "pavlov_ratio": [ant, post, None if lam is None else lam[0]]}[m.key]
        if all(p is not None for p in chain):
            pts = np.array(chain)
    elif m.keypoints:
        pts = _xy(kp, *m.keypoints)
        if pts is not None and len(pts) == 1:
            kind = "POINT"
    if pts is None:
        return None
    used = set(names or m.keypoints)
    frame = next((k.frame for k in image.keypoints if k.name in used), 1)
    return Graphic(kind, pts, image.image_uid, frame)


def keypoint_graphics(image: ImageResult) -> list[tuple[str, str, Graphic]]:
    """Graphics of the raw keypoints of one image as ``(label, site, graphic)``.

    X-ray: one closed quadrilateral per vertebral body and one polyline through the spinolaminar points.
    Other keypoints (MRI levels ...): one point each.
    """
    kp = keypoints_by_name(image)
    out: list[tuple[str, str, Graphic]] = []
    used: set[str] = set()
    for v in VERTEBRAE:
        poly = vertebra_polygon(kp, v)
        if poly is not None:
            frame = kp[f"{v} antero-superior"].frame
            out.append((f"{v} vertebral body corners", v, Graphic("POLYLINE", poly, image.image_uid, frame, closed=True)))
            used.update(f"{v} {r}" for r in ("antero-superior", "postero-superior", "postero-inferior", "antero-inferior"))
    lam = [kp[f"{v} spinolaminar"] for v in VERTEBRAE if f"{v} spinolaminar" in kp]
    if lam:
        pts = np.array([[k.x, k.y] for k in lam])
        out.append(("Spinolaminar line", "C2-C7", Graphic("POLYLINE", pts, image.image_uid, lam[0].frame)))
        used.update(k.name for k in lam)
    for k in image.keypoints:
        if k.name in kp and k.name not in used:
            out.append((k.name, k.name, Graphic("POINT", np.array([[k.x, k.y]]), image.image_uid, k.frame)))
    return out


CORNER_ORDER = ("antero-superior", "postero-superior", "postero-inferior", "antero-inferior")
"""The order of each vertebra's four corners in ``corner_graphic`` (paper 002's order)."""


def corner_graphic(image: ImageResult) -> tuple[tuple[str, ...], Graphic] | None:
    """All vertebral-body corners of one radiograph as one open polyline, the keypoints in a form that reads back:
    for each vertebra (C2..C7) with all four corners, its AS, PS, PI, AI in that order (24 points for six
    vertebrae); returns the vertebrae it holds and the graphic, or None without a complete vertebra. Drawn, the
    line runs along each superior endplate, posterior wall and inferior endplate and then across the disc space
    to the next vertebra's antero-superior corner."""
    kp = keypoints_by_name(image)
    held = tuple(v for v in VERTEBRAE if vertebra_polygon(kp, v) is not None)
    if not held:
        return None
    pts = np.vstack([vertebra_polygon(kp, v) for v in held])
    frame = kp[f"{held[0]} antero-superior"].frame
    kind = "POLYLINE" if len(pts) > 1 else "POINT"
    return held, Graphic(kind, pts, image.image_uid, frame)


def spinolaminar_graphic(image: ImageResult) -> Graphic | None:
    """The spinolaminar line of one radiograph (its points C2..C7 in order), None without two points."""
    kp = keypoints_by_name(image)
    lam = [kp[f"{v} spinolaminar"] for v in VERTEBRAE if f"{v} spinolaminar" in kp]
    if len(lam) < 2:
        return None
    return Graphic("POLYLINE", np.array([[k.x, k.y] for k in lam]), image.image_uid, lam[0].frame)


def sites_graphic(sites: list[str], image: ImageResult) -> Graphic | None:
    """A fallback figure for a site: the convex outline of the vertebrae (or the point) named by the site."""
    kp = keypoints_by_name(image)
    pts: list[np.ndarray] = []
    for site in sites:
        level = site.split()[0]
        parts = level.split("-")
        verts = [v for v in VERTEBRAE if v in parts] if len(parts) == 2 else [level]
        if len(parts) == 2 and parts[0] in VERTEBRAE and parts[1] in VERTEBRAE:
            verts = list(VERTEBRAE[VERTEBRAE.index(parts[0]) : VERTEBRAE.index(parts[1]) + 1])
        for v in verts:
            poly = vertebra_polygon(kp, v)
            if poly is not None:
                pts.append(poly)
        if site in kp:
            pts.append(np.array([[kp[site].x, kp[site].y]]))
        elif f"{level} disc" in kp:
            pts.append(np.array([[kp[f"{level} disc"].x, kp[f"{level} disc"].y]]))
    if not pts:
        return None
    allp = np.vstack(pts)
    if len(allp) == 1:
        return Graphic("POINT", allp, image.image_uid)
    if len(allp) < 3:
        return Graphic("POLYLINE", allp, image.image_uid)
    hull = ConvexHull(allp)
    return Graphic("POLYLINE", allp[hull.vertices], image.image_uid, closed=True)


def _extended(p: np.ndarray, q: np.ndarray, extend: float) -> np.ndarray:
    d = q - p
    return np.array([p - extend * d, q + extend * d])


def angle_lines(m: Measurement, image: ImageResult, extend: float = 0.35) -> list[Graphic]:
    """The two lines an angle is measured between, each extended both ways (for the C2-C7 Cobb angle the C2
    and C7 inferior endplate lines)."""
    names = _figure_names(m)
    pts = _xy(keypoints_by_name(image), *names) if names and len(names) == 4 else None
    if pts is None:
        return []
    return [Graphic("POLYLINE", _extended(pts[0], pts[1], extend), image.image_uid),
            Graphic("POLYLINE", _extended(pts[3], pts[2], extend), image.image_uid)]


def anterior_direction(image: ImageResult) -> float:
    """+1 when anterior is towards +x on this image (posterior corners have smaller x), else -1."""
    kp = keypoints_by_name(image)
    d = [kp[f"{v} antero-superior"].x - kp[f"{v} postero-superior"].x for v in VERTEBRAE
         if f"{v} antero-superior" in kp and f"{v} postero-superior" in kp]
    return 1.0 if not d or float(np.mean(d)) >= 0 else -1.0


def vertebra_labels(image: ImageResult) -> list[tuple[str, np.ndarray]]:
    """(vertebra name, anchor point) placed just anterior of each vertebral body."""
    kp = keypoints_by_name(image)
    sign = anterior_direction(image)
    out = []
    for v in VERTEBRAE:
        poly = vertebra_polygon(kp, v)
        if poly is None:
            continue
        width = float(np.linalg.norm(poly[0] - poly[1]))
        centre = poly.mean(axis=0)
        anterior_x = float(poly[[0, 3], 0].mean())
        out.append((v, np.array([anterior_x + sign * 0.45 * width, centre[1]])))
    return out


def figure_graphics(image: ImageResult, measurements: list[Measurement]) -> list[tuple[str, Graphic]]:
    """What the GSPS and the report draw on one image: ``(layer, graphic)`` with layers
    ``"keypoints"`` (body outlines, spinolaminar points) and ``"lines"`` (Cobb endplate lines, SVA plumb
    line) - of the single-view measurements taken on this image."""
    out: list[tuple[str, Graphic]] = [("keypoints", g) for _, _, g in keypoint_graphics(image)]
    for m in measurements_on(image, measurements):
        if m.value is None or m.key == "cobb_c2_c6" and any(k.key == "cobb_c2_c7" and k.value is not None for k in measurements_on(image, measurements)):
            continue
        if m.key.startswith("cobb"):
            out += [("lines", g) for g in angle_lines(m, image)]
        elif m.key.startswith("sva"):
            g = measurement_graphic(m, image)
            if g is not None:
                out.append(("lines", g))
    return out


def measurements_on(image: ImageResult, measurements: list[Measurement]) -> list[Measurement]:
    """Single-view measurements taken on ``image``."""
    return [
        m for m in measurements
        if m.view is not None and (image.image_uid in m.image_uids or (not m.image_uids and m.view == image.view))
    ]


def headline(image: ImageResult, measurements: list[Measurement]) -> list[str]:
    """Short lines of the key values on one image (Cobb, SVA), for on-image text; on a rejected image the reason, and
    on an image whose canal checks failed that reason after the values."""
    if image.rejected:  # wrapped: the reason can name two failed checks
        return textwrap.wrap(f"NOT MEASURABLE ({image.rejected})", 48)
    lines = []
    for m in measurements_on(image, measurements):
        if m.value is not None and (m.key.startswith("cobb") or m.key.startswith("sva")):
            lines.append(f"{m.name}: {m.value:.1f} {m.unit}")
    if image.canal_rejected:
        lines += textwrap.wrap(f"CANAL NOT MEASURABLE ({image.canal_rejected})", 48)
    return lines
