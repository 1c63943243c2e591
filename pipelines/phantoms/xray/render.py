"""Rendering one view of the X-ray phantom: projection onto the detector, exposure, and the view with its truth.

The anatomical frame (mm; ``a`` anterior, ``c`` cranial) is mapped to the image (``facing`` = +1 puts anterior
at image right), rotated by a small in-plane angle, magnified by ``magnification`` onto a detector with
``imager_pixel_spacing_mm`` and drawn (:mod:`pipelines.phantoms.xray.draw`) into an attenuation map at a working
resolution of at most about 1100 px; a tone curve, quantum-like noise, blur, collimation and burned-in text
follow (:func:`expose`). Distances are at the patient plane: ``pixel spacing at the patient = imager pixel
spacing / magnification``.

Image coordinates: x right, y down, ``(0, 0)`` the centre of the top-left pixel (see ``pipelines.results``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw, ImageFont
from scipy import ndimage

from pipelines.phantoms.xray.anatomy import Chain, ImageParams, PatientParams, build_chain
from pipelines.phantoms.xray.draw import Canvas, body_outline, draw_bones, draw_soft_tissue, resize_linear
from pipelines.phantoms.xray.truth import view_truth
from pipelines.results import Measurement
from pipelines.vocabulary import VERTEBRAE, View


@dataclass
class PhantomView:
    """One rendered radiograph with its ground truth."""

    view: View
    pixels: np.ndarray
    """uint16 (rows, cols): the stored values (already inverted when MONOCHROME1)."""
    photometric: str
    bits_stored: int
    imager_pixel_spacing_mm: tuple[float, float]
    """(row, col) at the detector."""
    magnification: float
    """EstimatedRadiographicMagnificationFactor; patient-plane spacing = imager spacing / magnification."""
    keypoints: np.ndarray
    """(30, 2) float x, y in pixels, ``pipelines.vocabulary.KEYPOINT_NAMES`` order (true location, also when not visible)."""
    visible: np.ndarray
    """(30,) bool: False where the point is hidden (shoulders) or outside the exposed field."""
    vertebra_polygons: dict[str, np.ndarray]
    """"C2".."C7" -> (K, 2) x, y px outline of the vertebral body (C2 including the dens)."""
    canal_polygon: np.ndarray
    """(K, 2) x, y px outline of the canal between posterior walls and spinolaminar points C2-C7."""
    truth: list[Measurement]
    sop_instance_uid: str = ""
    lossy: tuple[tuple[float, str], ...] = ()
    """Lossy compressions applied so far (``pipelines.phantoms.shifts`` jpeg): (ratio, DICOM method) each."""

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        """(row, col) mm per pixel at the patient plane (what measurements use)."""
        r, c = self.imager_pixel_spacing_mm
        return (r / self.magnification, c / self.magnification)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))


@dataclass(frozen=True, eq=False)
class Projection:
    """Where the anatomy of one view lands: anatomical mm -> image-aligned mm -> output pixels -> working pixels."""

    chain: Chain
    lin: np.ndarray
    """(2, 2) anatomical mm -> image-aligned mm (facing flip, then the in-plane rotation)."""
    origin: np.ndarray
    """The C7 postero-inferior corner (anatomical mm), imaged at ``anchor_px``."""
    anchor_px: np.ndarray
    spacing_mm: float
    """mm per output pixel at the patient plane."""
    shape: tuple[int, int]
    """Output (rows, cols)."""
    work_shape: tuple[int, int]
    """Working (rows, cols): images up to ~1100 px are drawn directly, larger ones at ~1100 px and upsampled."""

    @classmethod
    def of(cls, p: PatientParams, view: View) -> Projection:
        """The projection of view ``view`` of patient ``p`` (its ``views[view]`` and ``images[view]``)."""
        v, ip = p.views[view], p.images[view]
        rows, cols = ip.shape
        ch = build_chain(p, v.disc_angle_deg, v.translation_mm, v.c7_angle_deg)
        rot = math.radians(v.rotation_deg)
        cr, sr = math.cos(rot), math.sin(rot)
        rmat = np.array([[cr, sr], [-sr, cr]])  # positive = counter-clockwise on screen (y down)
        flip = np.array([[float(p.facing), 0.0], [0.0, -1.0]])
        k = min(1.0, 1100.0 / max(rows, cols))
        wshape = (max(int(round(rows * k)), 8), max(int(round(cols * k)), 8))
        return cls(chain=ch, lin=rmat @ flip, origin=ch.corners[5, 3], anchor_px=np.asarray(v.anchor_px),
                   spacing_mm=ip.imager_pixel_spacing_mm / ip.magnification, shape=(rows, cols), work_shape=wshape)

    def to_img_mm(self, q: np.ndarray) -> np.ndarray:
        """Anatomical mm (..., 2) -> image-aligned mm relative to the origin (x right, y down)."""
        return (np.asarray(q) - self.origin) @ self.lin.T

    def to_px(self, q: np.ndarray) -> np.ndarray:
        """Anatomical mm (..., 2) -> output pixels (x, y)."""
        return self.to_img_mm(q) / self.spacing_mm + self.anchor_px

    def to_w(self, q: np.ndarray) -> np.ndarray:
        """Anatomical mm (..., 2) -> working pixels (x, y), pixel centres aligned with the output's."""
        px = self.to_px(q)
        kx, ky = self.work_shape[1] / self.shape[1], self.work_shape[0] / self.shape[0]
        return np.column_stack([(px[..., 0] + 0.5) * kx - 0.5, (px[..., 1] + 0.5) * ky - 0.5])

    @property
    def mm_w(self) -> float:
        """mm per working pixel."""
        return self.spacing_mm / (self.work_shape[1] / self.shape[1])

    @cached_property
    def img_up(self) -> np.ndarray:
        """The image's "up" as a unit vector in the anatomical frame."""
        up = np.linalg.solve(self.lin, np.array([0.0, -1.0]))
        up /= np.hypot(*up)
        return up


def generate_view(p: PatientParams, view: View, rng: np.random.Generator, *, uid: str = "") -> PhantomView:
    """Render one view of patient ``p`` (its ``views[view]`` and ``images[view]`` parameters)."""
    ip = p.images[view]
    rows, cols = ip.shape
    pr = Projection.of(p, view)
    ch = pr.chain
    canvas = Canvas(pr.work_shape)
    draw_soft_tissue(canvas, p, ch, pr.to_w, pr.mm_w, ip, rng, pr.img_up)
    bones = Canvas(pr.work_shape)
    draw_bones(bones, p, ch, pr.to_w, pr.mm_w, rng)
    pixels = develop(canvas, bones, pr, p, view, rng)
    cl, ct, crt, cb = ip.collimation_px

    # keypoints and visibility
    kp_anat = np.concatenate([ch.corners.reshape(24, 2), ch.spinolaminar])
    kps = pr.to_px(kp_anat)
    xi = np.clip(np.rint(kps[:, 0]).astype(int), 0, cols - 1)
    yi = np.clip(np.rint(kps[:, 1]).astype(int), 0, rows - 1)
    inside = (kps[:, 0] >= 0) & (kps[:, 0] <= cols - 1) & (kps[:, 1] >= 0) & (kps[:, 1] <= rows - 1)
    # hidden by the shoulders: point lies below the shoulder-shadow top (measured along the spine axis)
    height = (kp_anat - pr.origin) @ pr.img_up  # mm above the C7 postero-inferior corner, image vertical
    hidden = (height < ip.shoulder_top_mm - 2.0) & (ip.shoulder_density > 1.2)
    exposed = (xi >= cl) & (xi < cols - crt) & (yi >= ct) & (yi < rows - cb)
    visible = inside & exposed & ~hidden

    polys = {name: pr.to_px(_body_outline_plain(ch, i)) for i, name in enumerate(VERTEBRAE)}
    post = np.concatenate([ch.corners[:, 2:4].reshape(12, 2)])
    canal = np.concatenate([post, ch.spinolaminar[::-1]])
    truth = view_truth(p, p.views[view], ch, pr.to_img_mm, uid)
    return PhantomView(view=view, pixels=pixels, photometric=ip.photometric, bits_stored=ip.bits_stored,
                       imager_pixel_spacing_mm=(ip.imager_pixel_spacing_mm, ip.imager_pixel_spacing_mm),
                       magnification=ip.magnification, keypoints=kps.astype(np.float64), visible=visible,
                       vertebra_polygons=polys, canal_polygon=pr.to_px(canal), truth=truth, sop_instance_uid=uid)


def _body_outline_plain(ch: Chain, i: int) -> np.ndarray:
    """Deterministic outline (no random wall concavity) for the SEG writer: corners plus the dens for C2."""
    rng = np.random.default_rng(0)
    return body_outline(ch.corners[i], False, rng, i == 0)


def develop(canvas: Canvas, bones: Canvas, pr: Projection, p: PatientParams, view: View,
            rng: np.random.Generator) -> np.ndarray:
    """Soft tissue ``canvas`` + ``bones`` (with trabecular texture) -> blurred attenuation -> stored pixels
    (:func:`expose`); adds to ``canvas``."""
    ip = p.images[view]
    # trabecular texture: smooth multiplicative noise on bone only
    tex = rng.standard_normal(pr.work_shape, dtype=np.float32)
    tex *= np.float32(0.18)
    tex += np.float32(1.0)
    tex *= bones.a
    canvas.a += tex
    att = ndimage.gaussian_filter(canvas.a, max(ip.blur_mm / pr.mm_w, 0.5), truncate=2.5)
    return expose(att, pr.work_shape, pr.shape, ip, view, p, rng)


_FONT_CACHE: dict[int, ImageFont.FreeTypeFont | ImageFont.ImageFont] = {}


def expose(att: np.ndarray, wshape: tuple[int, int], shape: tuple[int, int], ip: ImageParams, view: View,
           p: PatientParams, rng: np.random.Generator) -> np.ndarray:
    """Blurred attenuation (work shape) -> stored pixel values (uint16, ``shape``): the detector and display
    stage shared by every X-ray phantom renderer (tone curve, resize, noise, collimation, burned-in text,
    quantisation; MONOCHROME1 inverted)."""
    rows, cols = shape
    # tone curve (for-presentation look): bone bright, air dark
    lo, hi = ip.window
    img = np.exp(att * np.float32(-1 / 2.2))
    img = (np.float32(1 - lo) - img) * np.float32(1 / (hi - lo))
    np.clip(img, 0.0, 1.0, out=img)
    img **= np.float32(ip.gamma)
    if wshape != (rows, cols):
        img = resize_linear(img, (rows, cols))
    # quantum-like noise, stronger where the image is bright (dense, fewer photons)
    noise = rng.standard_normal((rows, cols), dtype=np.float32)
    noise *= np.float32(ip.noise) * (np.float32(0.7) + np.float32(1.2) * img)
    img += noise

    # collimation: unexposed borders are bright on a for-presentation image
    cl, ct, crt, cb = ip.collimation_px
    if any((cl, ct, crt, cb)):
        lvl = rng.uniform(0.85, 0.97)
        img[:, :cl] = lvl
        img[:, cols - crt:] = lvl
        img[:ct, :] = lvl
        img[rows - cb:, :] = lvl
    if ip.text:
        _burn_text(img, view, p, rng, (cl, ct, crt, cb))

    maxval = (1 << ip.bits_stored) - 1
    np.clip(img, 0.0, 1.0, out=img)
    if ip.photometric == "MONOCHROME1":
        img *= np.float32(-maxval)
        img += np.float32(maxval + 0.5)
    else:
        img *= np.float32(maxval)
        img += np.float32(0.5)
    return img.astype(np.uint16)


def _burn_text(img: np.ndarray, view: View, p: PatientParams, rng: np.random.Generator,
               collim: tuple[int, int, int, int]) -> None:
    """Burn a side marker and a view label into the image corners (as many modalities do)."""
    rows, cols = img.shape
    size = max(8, int(rows * 0.025))
    font = _FONT_CACHE.get(size)
    if font is None:
        try:
            font = ImageFont.load_default(size=size)
        except TypeError:  # pragma: no cover - very old Pillow
            font = ImageFont.load_default()
        _FONT_CACHE[size] = font
    label = {View.NEUTRAL: "LAT", View.FLEXION: "FLEX", View.EXTENSION: "EXT"}[view]
    marker = "R" if p.facing < 0 else "L"
    texts = [(marker, "tl"), (label, "tr"), (f"{int(rng.integers(60, 90))} kV", "bl")]
    for text, corner in texts:
        tw, th = int(size * 0.7 * len(text)) + 4, size + 6
        if tw >= cols // 2 or th >= rows // 2:
            continue
        im = Image.new("L", (tw, th), 0)
        ImageDraw.Draw(im).text((2, 1), text, fill=255, font=font)
        mask = np.asarray(im, dtype=np.float32) / 255.0
        pad = max(2, int(0.02 * min(rows, cols)))
        y = collim[1] + pad if corner[0] == "t" else rows - collim[3] - pad - th
        x = collim[0] + pad if corner[1] == "l" else cols - collim[2] - pad - tw
        if x < 0 or y < 0:
            continue
        sl = img[y:y + th, x:x + tw]
        sl[...] = np.maximum(sl, mask * 0.98)


def unit_image(pixels: np.ndarray, photometric: str) -> np.ndarray:
    """Phantom stored values -> float32 [0, 1] bone bright, as ``image_from_dataset`` returns them for the DX
    file the phantom writes (linear VOI window of the 1-99 % percentiles, then the percentile stretch)."""
    from pipelines.xray.preprocessing import to_unit_range

    px = pixels.astype(np.float32)
    lo, hi = np.percentile(pixels[::4, ::4], [1, 99])
    px = np.clip(px, lo, max(hi, lo + 16))
    return to_unit_range(px, monochrome1=photometric == "MONOCHROME1")
