"""The shift suite: what real radiographs do that a phantom does not, applied on top of either renderer's view.

Each shift takes a rendered view (renderer A's ``PhantomView`` or renderer B's ``ViewB``: the same field names)
and returns a new one; geometric shifts move the keypoints, the body outlines and the canal outline *exactly* (the
same affine map as the pixels), intensity shifts leave them alone (the shoulders also mark the points they hide
as not visible). ``NAME[:VALUE]``:

* ``collimate[:mm]`` crop to the C2-C7 bodies plus a margin (default 4 mm: "C2-C7 only"; 60 mm keeps the skull
  base and shoulders where the view had them); ``shoulders`` a dense shoulder shadow from the C6-C7 disc down;
* ``rotate[:deg]`` in-plane rotation about the centre, canvas enlarged (default 30; counter-clockwise on screen);
  ``scale[:f]`` resampling by f (default 0.5; the spacing follows); ``spacing[:mm]`` resampling to a detector
  pixel of that size (default 0.2); ``mirror`` the other side facing;
* ``mono1`` stored as MONOCHROME1; ``invert`` inverted contrast (bone dark, photometric unchanged); ``gamma[:g]``
  (default 2); ``noise[:s]`` low-dose quantum noise (default 0.05); ``blur[:mm]`` (default 0.7); ``jpeg[:q]`` lossy
  JPEG round trip at quality q (default 25, Pillow; recorded in the view's ``lossy``, so the DICOM file says
  LossyImageCompression "01", its ratio and method ISO_10918_1);
* ``metal`` an anterior plate with screws over C4-C6; ``collar`` a cervical collar (soft band, rim, rivets).

After a geometric shift the per-view truth is recomputed by ``pipelines.xray.geometry`` on the moved keypoints and
the new spacing (SVA is defined in the image frame, so it changes with rotation, as it would on a rotated film).
"""

from __future__ import annotations

import io
import math
from dataclasses import replace
from typing import Any

import numpy as np
from PIL import Image
from scipy import ndimage

from pipelines.results import Measurement
from pipelines.vocabulary import View
from pipelines.xray import geometry
from pipelines.xray.findings import findings_from_measurements

DEFAULTS: dict[str, float | None] = {
    "collimate": 4.0, "shoulders": None, "rotate": 30.0, "scale": 0.5, "spacing": 0.2, "mirror": None,
    "mono1": None, "invert": None, "gamma": 2.0, "noise": 0.05, "blur": 0.7, "jpeg": 25.0, "metal": None,
    "collar": None,
}
"""Every shift and its default value (None: it takes none)."""
GEOMETRIC = frozenset({"collimate", "rotate", "scale", "spacing", "mirror"})
SUITE: tuple[str, ...] = ("collimate", "shoulders", "rotate:30", "rotate:-30", "scale:0.6", "scale:1.5", "mono1",
                          "invert", "gamma:2", "gamma:0.5", "noise", "blur", "jpeg", "metal", "collar", "spacing:0.1",
                          "spacing:0.2", "mirror")
"""The shift suite, one shift each (``cspine-node evaluate xray --shift suite``)."""


def parse(spec: str) -> list[tuple[str, float | None]]:
    """``"rotate:-30,jpeg"`` -> ``[("rotate", -30.0), ("jpeg", 25.0)]``; raises ValueError on an unknown name."""
    out: list[tuple[str, float | None]] = []
    for item in (s.strip() for s in spec.split(",")):
        if not item or item == "none":
            continue
        name, _, val = item.partition(":")
        if name not in DEFAULTS:
            raise ValueError(f"unknown shift {name!r}; known: {', '.join(DEFAULTS)}")
        value = float(val) if val else DEFAULTS[name]
        out.append((name, value))
    return out


# --------------------------------------------------------------------------------------- pixel helpers
def _unit(pv: Any) -> np.ndarray:
    """Stored values -> float32 [0, 1], bone bright."""
    maxval = float((1 << pv.bits_stored) - 1)
    u = pv.pixels.astype(np.float32) / np.float32(maxval)
    return 1.0 - u if pv.photometric == "MONOCHROME1" else u


def _store(pv: Any, u: np.ndarray, photometric: str | None = None) -> dict[str, Any]:
    photometric = photometric or pv.photometric
    u = np.clip(u, 0.0, 1.0)
    if photometric == "MONOCHROME1":
        u = 1.0 - u
    maxval = (1 << pv.bits_stored) - 1
    return {"pixels": np.rint(u * maxval).astype(np.uint16), "photometric": photometric}


def _spacing(pv: Any) -> float:
    r, c = pv.pixel_spacing_mm
    return float(math.sqrt(r * c))


def _affine(pv: Any, a: np.ndarray, shape: tuple[int, int], factor: tuple[float, float] = (1.0, 1.0)) -> Any:
    """Warp the view by ``a`` (2x3, old px (x, y) -> new px) onto ``shape``; ``factor`` (x, y): new pixel size /
    old pixel size."""
    m, t = a[:, :2], a[:, 2]
    inv = np.linalg.inv(m)
    # output (row, col) -> input (row, col): swap x/y
    inv_rc = inv[::-1, ::-1]
    off_rc = (-inv @ t)[::-1]
    u = _unit(pv)
    out = ndimage.affine_transform(u, inv_rc, offset=off_rc, output_shape=shape, order=1, mode="constant", cval=0.0)
    kp = pv.keypoints @ m.T + t
    rows, cols = shape
    inside = (kp[:, 0] >= -0.5) & (kp[:, 0] <= cols - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] <= rows - 0.5)
    ips = pv.imager_pixel_spacing_mm
    changes: dict[str, Any] = {
        **_store(pv, out), "keypoints": kp, "visible": pv.visible & inside,
        "imager_pixel_spacing_mm": (ips[0] * factor[1], ips[1] * factor[0]),
        "vertebra_polygons": {k: v @ m.T + t for k, v in pv.vertebra_polygons.items()},
        "canal_polygon": pv.canal_polygon @ m.T + t,
    }
    if getattr(pv, "t1_corners", None) is not None:
        changes["t1_corners"] = pv.t1_corners @ m.T + t
    return replace(pv, **changes)


def _resample(pv: Any, f: float) -> Any:
    rows, cols = pv.shape
    new = (max(int(round(rows * f)), 8), max(int(round(cols * f)), 8))
    fx, fy = new[1] / cols, new[0] / rows
    if fx < 1 or fy < 1:  # anti-alias before shrinking
        pv = replace(pv, **_store(pv, ndimage.gaussian_filter(_unit(pv), (0.4 / fy, 0.4 / fx))))
    a = np.array([[fx, 0.0, 0.5 * fx - 0.5], [0.0, fy, 0.5 * fy - 0.5]])
    return _affine(pv, a, new, (1 / fx, 1 / fy))


# --------------------------------------------------------------------------------------------- shifts
def rotate(pv: Any, deg: float) -> Any:
    rows, cols = pv.shape
    t = math.radians(deg)
    m = np.array([[math.cos(t), math.sin(t)], [-math.sin(t), math.cos(t)]])  # counter-clockwise on screen (y down)
    corners = np.array([[-0.5, -0.5], [cols - 0.5, -0.5], [-0.5, rows - 0.5], [cols - 0.5, rows - 0.5]]) @ m.T
    lo, hi = corners.min(axis=0), corners.max(axis=0)
    shape = (int(math.ceil(hi[1] - lo[1])), int(math.ceil(hi[0] - lo[0])))
    return _affine(pv, np.column_stack([m, -lo - 0.5]), shape)


def collimate(pv: Any, margin_mm: float) -> Any:
    rows, cols = pv.shape
    c = pv.keypoints[:24]
    pad = margin_mm / _spacing(pv)
    x0, y0 = np.floor(c.min(axis=0) - pad).astype(int)
    x1, y1 = np.ceil(c.max(axis=0) + pad).astype(int)
    x0, y0, x1, y1 = max(x0, 0), max(y0, 0), min(x1, cols - 1), min(y1, rows - 1)
    return _affine(pv, np.array([[1.0, 0.0, -x0], [0.0, 1.0, -y0]]), (y1 - y0 + 1, x1 - x0 + 1))


def mirror(pv: Any) -> Any:
    cols = pv.shape[1]
    return _affine(pv, np.array([[-1.0, 0.0, cols - 1.0], [0.0, 1.0, 0.0]]), pv.shape)


def _frame(pv: Any, i: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Body ``i``'s centre, caudal unit vector and anterior unit vector, in pixels."""
    c = pv.keypoints[4 * i:4 * i + 4]
    caud = 0.5 * (c[1] + c[3]) - 0.5 * (c[0] + c[2])
    ant = 0.5 * (c[0] + c[1]) - 0.5 * (c[2] + c[3])
    return c.mean(axis=0), caud / np.hypot(*caud), ant / np.hypot(*ant)


def _grid(pv: Any) -> tuple[np.ndarray, np.ndarray]:
    rows, cols = pv.shape
    return np.meshgrid(np.arange(cols, dtype=np.float32), np.arange(rows, dtype=np.float32))


def shoulders(pv: Any, rng: np.random.Generator) -> Any:
    """A dense soft-tissue shadow below the C6-C7 disc (shoulders over C7), with its extra noise."""
    sp = _spacing(pv)
    top = pv.keypoints[[17, 19, 20, 22]].mean(axis=0)  # the C6-C7 disc: C6 AI, PI and C7 AS, PS
    _, caud, _ = _frame(pv, 5)
    xx, yy = _grid(pv)
    below = ((xx - top[0]) * caud[0] + (yy - top[1]) * caud[1]) * sp  # mm below the line
    w = np.clip(below / 12.0, 0, 1) * np.float32(rng.uniform(0.6, 0.85))
    u = _unit(pv)
    u = u + (1.0 - u) * w + w * np.float32(0.04) * rng.standard_normal(u.shape).astype(np.float32)
    hidden = ((pv.keypoints - top) @ caud) * sp > 2.0
    return replace(pv, **_store(pv, u), visible=pv.visible & ~hidden)


def _burn(pv: Any, u: np.ndarray, polys: list[np.ndarray], level: float) -> np.ndarray:
    from matplotlib.path import Path as MplPath

    rows, cols = pv.shape
    mask = np.zeros((rows, cols), bool)
    for p in polys:
        x0, y0 = np.maximum(np.floor(p.min(axis=0)).astype(int), 0)
        x1, y1 = np.minimum(np.ceil(p.max(axis=0)).astype(int), [cols - 1, rows - 1])
        if x1 <= x0 or y1 <= y0:
            continue
        yy, xx = np.mgrid[y0:y1 + 1, x0:x1 + 1]
        inside = MplPath(p).contains_points(np.column_stack([xx.ravel(), yy.ravel()])).reshape(yy.shape)
        mask[y0:y1 + 1, x0:x1 + 1] |= inside
    soft = ndimage.gaussian_filter(mask.astype(np.float32), 0.8)
    return u * (1 - soft) + np.float32(level) * soft


def _bar(a: np.ndarray, b: np.ndarray, width: float) -> np.ndarray:
    d = (b - a) / max(float(np.hypot(*(b - a))), 1e-9)
    n = np.array([-d[1], d[0]]) * width / 2
    return np.array([a - n, b - n, b + n, a + n])


def metal(pv: Any) -> Any:
    """An anterior cervical plate from C4 to C6 with two screws into C4 and two into C6 (saturated)."""
    sp = _spacing(pv)
    kp = pv.keypoints
    _, _, ant = _frame(pv, 3)
    top, bottom = kp[4 * 2], kp[4 * 4 + 1]  # C4 antero-superior, C6 antero-inferior
    off = ant * 1.5 / sp
    polys = [_bar(top + off + ant * 1.2 / sp, bottom + off + ant * 1.2 / sp, 2.4 / sp)]
    for v in (2, 4):
        c = kp[4 * v:4 * v + 4]
        for f in (0.3, 0.7):
            entry = c[0] + f * (c[1] - c[0]) + off
            polys.append(_bar(entry + ant * 1.5 / sp, entry + (0.8 * (c[2] + f * (c[3] - c[2]) - entry)), 3.5 / sp))
    return replace(pv, **_store(pv, _burn(pv, _unit(pv), polys, 1.0)))


def collar(pv: Any, rng: np.random.Generator) -> Any:
    """A cervical collar: a band of plastic/foam over C3-C7 (lower contrast), its rim and a few rivets."""
    sp = _spacing(pv)
    c3, _, ant = _frame(pv, 1)
    c7, _, _ = _frame(pv, 5)
    front, back = 55.0 / sp, 75.0 / sp
    band = np.array([c3 + ant * front, c7 + ant * front, c7 - ant * back, c3 - ant * back])
    xx, yy = _grid(pv)
    u = _unit(pv)
    from matplotlib.path import Path as MplPath

    inside = MplPath(band).contains_points(np.column_stack([xx.ravel(), yy.ravel()])).reshape(u.shape)
    soft = ndimage.gaussian_filter(inside.astype(np.float32), 2.0 / sp)
    u = u * (1 - 0.25 * soft) + np.float32(0.18) * soft
    rim = [_bar(band[0], band[1], 1.5 / sp), _bar(band[2], band[3], 1.5 / sp)]
    rivets = []
    for _ in range(4):
        p = band[0] + rng.uniform(0.1, 0.9) * (band[1] - band[0]) - ant * rng.uniform(2, 8) / sp
        r = 2.5 / sp
        t = np.linspace(0, 2 * np.pi, 12, endpoint=False)
        rivets.append(p + r * np.column_stack([np.cos(t), np.sin(t)]))
    u = _burn(pv, u, rim, 0.75)
    return replace(pv, **_store(pv, _burn(pv, u, rivets, 1.0)))


def apply(pv: Any, name: str, value: float | None, rng: np.random.Generator) -> Any:
    """One shift on one view (see the module docstring)."""
    if name == "collimate":
        return collimate(pv, float(value))  # type: ignore[arg-type]
    if name == "rotate":
        return rotate(pv, float(value))  # type: ignore[arg-type]
    if name == "scale":
        return _resample(pv, float(value))  # type: ignore[arg-type]
    if name == "spacing":
        return _resample(pv, pv.imager_pixel_spacing_mm[1] / float(value))  # type: ignore[arg-type]
    if name == "mirror":
        return mirror(pv)
    if name == "shoulders":
        return shoulders(pv, rng)
    if name == "metal":
        return metal(pv)
    if name == "collar":
        return collar(pv, rng)
    if name == "mono1":
        return replace(pv, **_store(pv, _unit(pv), "MONOCHROME1"))
    u = _unit(pv)
    if name == "invert":
        u = 1.0 - u
    elif name == "gamma":
        u = np.clip(u, 0, 1) ** np.float32(value)
    elif name == "noise":
        u = u + np.float32(value) * np.sqrt(np.clip(u, 0, 1) + 0.02) * rng.standard_normal(u.shape).astype(np.float32)
    elif name == "blur":
        u = ndimage.gaussian_filter(u, float(value) / _spacing(pv))  # type: ignore[arg-type]
    elif name == "jpeg":
        buf = io.BytesIO()
        Image.fromarray(np.rint(np.clip(u, 0, 1) * 255).astype(np.uint8)).save(buf, "JPEG", quality=int(value))
        u = np.asarray(Image.open(io.BytesIO(buf.getvalue())), dtype=np.float32) / 255.0
        ratio = pv.pixels.size * 2 / len(buf.getvalue())  # the 16-bit stored pixels over the JPEG stream
        return replace(pv, **_store(pv, u), lossy=(*pv.lossy, (ratio, "ISO_10918_1")))
    return replace(pv, **_store(pv, u))


def shift_view(pv: Any, spec: str | list[tuple[str, float | None]], rng: np.random.Generator) -> Any:
    """Apply the shifts of ``spec`` in order; the per-view truth is recomputed when the geometry moved."""
    steps = parse(spec) if isinstance(spec, str) else spec
    for name, value in steps:
        pv = apply(pv, name, value, rng)
    if any(n in GEOMETRIC for n, _ in steps):
        uid = pv.sop_instance_uid
        pv = replace(pv, truth=[replace(m, reason="phantom ground truth (shifted: geometry on the exact keypoints)")
                                for m in geometry.measure_view(pv.keypoints, pv.pixel_spacing_mm, view=pv.view,
                                                               image_uid=uid)])
    return pv


def shift_study(study: Any, spec: str, seed: int | None = None) -> Any:
    """Every view of ``study`` (either renderer) with the shifts of ``spec``; truth and findings follow."""
    steps = parse(spec)
    if not steps:
        return study
    rng = np.random.default_rng([study.seed if seed is None else seed, 0x5F])
    views = {v: shift_view(pv, steps, rng) for v, pv in study.views.items()}
    if not any(n in GEOMETRIC for n, _ in steps):  # the keypoints did not move: the truth stands
        return replace(study, views=views)
    truth: list[Measurement] = [m for pv in views.values() for m in pv.truth]
    if View.FLEXION in views and View.EXTENSION in views:
        f, e = views[View.FLEXION], views[View.EXTENSION]
        truth += geometry.measure_dynamic(f.keypoints, e.keypoints, f.pixel_spacing_mm, e.pixel_spacing_mm,
                                          image_uids=(f.sop_instance_uid, e.sop_instance_uid))
    return replace(study, views=views, truth=truth, findings=findings_from_measurements(truth))
