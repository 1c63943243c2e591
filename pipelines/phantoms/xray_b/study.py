"""Renderer B's studies: one patient, three views (neutral, flexion, extension), exact ground truth.

Random streams: the patient ``np.random.default_rng([seed, 0xB])``, the acquisition of the study
``[seed, 0xB, 1]``, view ``k`` (neutral, flexion, extension = 1, 2, 3) ``[seed, 0xB, 10 + k]``, the UIDs
``[seed, 0xB, 7]``. The true measurements are those of ``pipelines.xray.geometry`` on the exact keypoints and
spacing (paper 002's definitions; renderer A instead computes closed forms from its construction).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np

from pipelines.phantoms.dicom import seeded_uid
from pipelines.phantoms.xray_b.anatomy import SpineB, build_chain, sample_spine
from pipelines.phantoms.xray_b.render import Acquisition, body_polygons, expose, line_integrals, mapping
from pipelines.results import Finding, Measurement
from pipelines.vocabulary import View
from pipelines.xray import geometry
from pipelines.xray.findings import findings_from_measurements

FIELDS = ("tight", "wide")
DETECTOR_SPACINGS_MM = (0.1, 0.125, 0.139, 0.143, 0.148, 0.15, 0.168, 0.2)


@dataclass(frozen=True)
class ImageInfo:
    """What the DICOM writer reads per view (``pipelines.phantoms.dicom``): burned-in text or not."""

    text: bool = False


@dataclass(frozen=True)
class StudyParams:
    """The study-level parameters the DICOM writer reads (``facing``, ``images``) and the patient."""

    facing: int
    spine: SpineB
    acquisition: dict[View, Acquisition]
    images: dict[View, ImageInfo] = field(default_factory=dict)


@dataclass
class ViewB:
    """One radiograph of renderer B with its ground truth (the field names of renderer A's ``PhantomView``)."""

    view: View
    pixels: np.ndarray
    """uint16 (rows, cols): stored values (already inverted when MONOCHROME1)."""
    photometric: str
    bits_stored: int
    imager_pixel_spacing_mm: tuple[float, float]
    magnification: float
    keypoints: np.ndarray
    """(30, 2) x, y px in ``KEYPOINT_NAMES`` order (true location, also where not visible)."""
    visible: np.ndarray
    """(30,) False outside the image, outside the collimated field or under the shoulders."""
    vertebra_polygons: dict[str, np.ndarray]
    canal_polygon: np.ndarray
    truth: list[Measurement]
    sop_instance_uid: str = ""
    t1_corners: np.ndarray | None = None
    """(4, 2) px corners of T1 (AS, AI, PS, PI): where a chain shifted down by one vertebra puts "C7"."""
    lossy: tuple[tuple[float, str], ...] = ()
    """Lossy compressions applied so far (``pipelines.phantoms.shifts`` jpeg): (ratio, DICOM method) each."""

    @property
    def pixel_spacing_mm(self) -> tuple[float, float]:
        r, c = self.imager_pixel_spacing_mm
        return (r / self.magnification, c / self.magnification)

    @property
    def shape(self) -> tuple[int, int]:
        return (int(self.pixels.shape[0]), int(self.pixels.shape[1]))


@dataclass
class StudyB:
    """One patient's lateral cervical study from renderer B."""

    model_name: ClassVar[str] = "cspine-node xray phantom B"
    """ManufacturerModelName of its DICOM files (renderer A's: ``pipelines.phantoms.dicom.XRAY_MODEL_NAME``)."""
    seed: int
    params: StudyParams
    views: dict[View, ViewB]
    truth: list[Measurement]
    findings: list[Finding]
    study_uid: str = ""


def _acquisition(s: SpineB, rng: np.random.Generator, views: tuple[View, ...], field_kind: str | None,
                 detector_mm: float | None, max_size: int | None) -> dict[View, Acquisition]:
    """The acquisition of every view: one detector and facing per study, a field and exposure per view."""
    facing = 1 if rng.random() < 0.5 else -1
    kind = field_kind or str(rng.choice(FIELDS, p=[0.6, 0.4]))
    ips = float(detector_mm or rng.choice(DETECTOR_SPACINGS_MM))
    mag = float(rng.uniform(1.05, 1.2))
    photometric = "MONOCHROME1" if rng.random() < 0.3 else "MONOCHROME2"
    bits = int(rng.choice([12, 14, 16]))
    dose = float(np.exp(rng.uniform(np.log(8e4), np.log(6e5))))  # photons / mm^2 at the detector
    out = {}
    for view in views:
        ch = build_chain(s, s.poses[view])
        kp = np.concatenate([ch.corners.reshape(-1, 2), ch.spinolaminar])
        dens_top = ch.corners[0, 2, 1] + s.dens_height_mm + 4.0
        if kind == "tight":
            field_mm = (float(kp[:, 0].min() - rng.uniform(28, 42)), float(kp[:, 0].max() + rng.uniform(28, 45)),
                        float(ch.corners[6, :, 1].min() - rng.uniform(-6, 8)), float(dens_top + rng.uniform(2, 14)))
            border = tuple(float(v) for v in rng.uniform(0, 12, 4))
            shoulder = float(rng.uniform(-0.8, 0.8)) if rng.random() < 0.35 else None
        else:
            field_mm = (float(kp[:, 0].min() - rng.uniform(45, 70)), float(kp[:, 0].max() + rng.uniform(55, 85)),
                        float(ch.corners[6, :, 1].min() - rng.uniform(20, 50)), float(dens_top + rng.uniform(35, 70)))
            border = tuple(float(v) for v in rng.uniform(0, 8, 4))
            shoulder = float(rng.uniform(-1.2, 1.5))
        spacing = ips
        if max_size is not None:  # a coarser detector so the image fits (fast tests, training)
            extent = max(field_mm[1] - field_mm[0] + border[0] + border[1], field_mm[3] - field_mm[2] + border[2] + border[3])
            spacing = max(ips, extent * mag * 1.05 / max_size)
        out[view] = Acquisition(
            imager_spacing_mm=spacing, magnification=mag, rotation_deg=float(np.clip(rng.normal(0, 3.0), -8, 8)),
            facing=facing, field=kind, field_mm=field_mm, border=border, dose=dose,  # type: ignore[arg-type]
            scatter=float(rng.uniform(0.15, 0.9)), detector_blur_mm=float(rng.uniform(0.06, 0.2)),
            compression=float(rng.uniform(0.3, 0.75)), edge=float(rng.uniform(0.2, 1.2)), shoulder_level=shoulder,
            photometric=photometric, bits_stored=bits)
    return out


def render_view(s: SpineB, acq: Acquisition, view: View, rng: np.random.Generator, uid: str) -> ViewB:
    """One view of patient ``s`` under acquisition ``acq``."""
    ch = build_chain(s, s.poses[view])
    mp = mapping(acq)
    pixels = expose(line_integrals(s, ch, acq, mp, rng), acq, mp, rng)
    kp = mp.px(ch.keypoints())
    rows, cols = mp.shape
    a0, a1, c0, c1 = acq.field_mm
    anat = ch.keypoints()
    in_field = (anat[:, 0] >= a0) & (anat[:, 0] <= a1) & (anat[:, 1] >= c0) & (anat[:, 1] <= c1)
    inside = (kp[:, 0] >= -0.5) & (kp[:, 0] <= cols - 0.5) & (kp[:, 1] >= -0.5) & (kp[:, 1] <= rows - 0.5)
    visible = in_field & inside
    if acq.shoulder_level is not None:
        centres = ch.corners.mean(axis=1)
        k = min(max(int(np.floor(5 - acq.shoulder_level)), 0), 5)
        f = (5 - acq.shoulder_level) - k
        top = centres[k] + f * (centres[k + 1] - centres[k])
        axis = ch.frames[5, 2]
        visible &= (anat - top) @ axis > -2.0  # more than 2 mm below the shoulder line: hidden
    post = ch.corners[:6, 2:4].reshape(12, 2)
    canal = mp.px(np.concatenate([post, ch.spinolaminar[:6][::-1]]))
    spacing = (acq.spacing_mm, acq.spacing_mm)
    truth = [Measurement(**{**m.__dict__, "reason": "phantom ground truth (renderer B: geometry on the exact keypoints)"})
             for m in geometry.measure_view(kp, spacing, view=view, image_uid=uid)]
    return ViewB(view=view, pixels=pixels, photometric=acq.photometric, bits_stored=acq.bits_stored,
                 imager_pixel_spacing_mm=(acq.imager_spacing_mm, acq.imager_spacing_mm),
                 magnification=acq.magnification, keypoints=kp, visible=visible,
                 vertebra_polygons=body_polygons(ch, s, mp), canal_polygon=canal, truth=truth,
                 sop_instance_uid=uid, t1_corners=mp.px(ch.corners[6]))


def generate_study_b(seed: int, *, views: tuple[View, ...] = (View.NEUTRAL, View.FLEXION, View.EXTENSION),
                     field: str | None = None, detector_spacing_mm: float | None = None,
                     max_size: int | None = None) -> StudyB:
    """One patient's study from renderer B (seeded, deterministic).

    ``field``: ``tight`` (C1-T1, no skull), ``wide`` (skull base to the shoulders) or None (60 / 40 % at random);
    ``detector_spacing_mm``: the imager pixel spacing (default one of ``DETECTOR_SPACINGS_MM``); ``max_size``: the
    largest image side in pixels (a coarser detector is used when the field would not fit: fast tests)."""
    if field is not None and field not in FIELDS:
        raise ValueError(f"field must be one of {FIELDS}, got {field!r}")
    views = tuple(View(v) for v in views)
    if not views:
        raise ValueError("at least one view is needed")
    s = sample_spine(np.random.default_rng([seed, 0xB]), seed, views)
    acq = _acquisition(s, np.random.default_rng([seed, 0xB, 1]), views, field, detector_spacing_mm, max_size)
    uid_rng = np.random.default_rng([seed, 0xB, 7])
    study_uid = seeded_uid(uid_rng)
    out = {}
    for view in views:
        k = list(View).index(view) + 1
        out[view] = render_view(s, acq[view], view, np.random.default_rng([seed, 0xB, 10 + k]), seeded_uid(uid_rng))
    truth = [m for v in out.values() for m in v.truth]
    if View.FLEXION in out and View.EXTENSION in out:
        f, e = out[View.FLEXION], out[View.EXTENSION]
        truth += geometry.measure_dynamic(f.keypoints, e.keypoints, f.pixel_spacing_mm, e.pixel_spacing_mm,
                                          image_uids=(f.sop_instance_uid, e.sop_instance_uid))
    params = StudyParams(facing=next(iter(acq.values())).facing, spine=s, acquisition=acq,
                         images={v: ImageInfo() for v in views})
    return StudyB(seed=seed, params=params, views=out, truth=truth, findings=findings_from_measurements(truth),
                  study_uid=study_uid)
