"""Typed results that every pipeline returns and that ``pipelines.dicom_out`` turns into DICOM.

Conventions used throughout the project:

* Image coordinates are ``(x, y)`` in pixels of the *original* stored image: x grows to the right
  (columns), y grows downwards (rows); ``(0, 0)`` is the centre of the top-left pixel.
* Distances are in millimetres (``mm``), angles in degrees (``deg``), ratios are unitless (``1``).
  Units are UCUM codes so that ``dicom_out`` can copy them into the SR unchanged.
* Vertebral corner keypoints follow paper 002's order per vertebra C2..C7: antero-superior,
  antero-inferior, postero-superior, postero-inferior (24 points), then one spinolaminar point per
  vertebra C2..C7 (6 points). ``KEYPOINT_NAMES`` is that order.

Nothing here imports torch or pydicom: these are plain dataclasses.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

# The vocabulary lives in ``pipelines.vocabulary``; these names are re-exported for the result types' users.
from pipelines.vocabulary import CORNER_ROLES, KEYPOINT_NAMES, SEGMENTS, VERTEBRAE, View  # noqa: F401


@dataclass(frozen=True)
class AlgorithmInfo:
    """Identity of the algorithm that produced a result (goes to Contributing Equipment, IHE AIR)."""

    name: str
    version: str
    manufacturer: str = "cspine-node (open source)"
    model_card: str = ""
    """Path or short text of the model card; states intended use (research, synthetic training data)."""


@dataclass(frozen=True)
class Keypoint:
    """One anatomical landmark found on one image, in original image pixels."""

    name: str
    """Entry of ``KEYPOINT_NAMES`` (or an MRI landmark name such as ``"C4-C5 disc"``)."""
    x: float
    y: float
    sigma_px: float
    """One-sigma spread of the location in pixels (from the heatmap); 0 for ground truth."""
    image_uid: str
    """SOPInstanceUID of the image the point lies on."""
    frame: int = 1
    """1-based frame number (for multi-frame sources), 1 otherwise."""


@dataclass(frozen=True)
class Measurement:
    """One quantitative result with its unit, uncertainty and provenance."""

    key: str
    """Stable machine name: ``cobb_c2_c7``, ``sva_c2_c7``, ``segmental_angle``, ``listhesis_distance``,
    ``listhesis_angle``, ``sdvb``, ``sdvc``, ``pavlov_ratio``, ``curvature_index`` ..."""
    name: str
    """Human-readable name, e.g. ``"C2-C7 Cobb angle"``."""
    value: float | None
    """None when not measurable (then ``reason`` says why)."""
    unit: str
    """UCUM: ``deg``, ``mm`` or ``1``."""
    site: str
    """``"C2-C7"``, a segment ``"C4-C5"`` or a vertebra ``"C3"``."""
    view: View | None = None
    """The radiograph it was measured on; None for a difference across views (flexion - extension)."""
    interval: tuple[float, float] | None = None
    """95 % interval from keypoint uncertainty, same unit as ``value``."""
    image_uids: tuple[str, ...] = ()
    """Source images (SOPInstanceUIDs)."""
    keypoints: tuple[str, ...] = ()
    """Names of the keypoints it was derived from (for the SR graphic and the audit trail)."""
    reason: str = ""
    """Why it is not measurable, or a remark on how it was derived."""

    @property
    def measurable(self) -> bool:
        return self.value is not None

    @property
    def not_measurable_text(self) -> str:
        """``"not measurable (<why>)"``, the reason without the "not measurable: " prefix the pipelines give it."""
        why = self.reason.removeprefix("not measurable: ").removeprefix("not measurable") or "no reason given"
        return f"not measurable ({why})"


@dataclass(frozen=True)
class Finding:
    """One qualitative finding, e.g. kyphosis present, instability at C4-C5, curvature class."""

    key: str
    """Stable machine name: ``kyphosis``, ``cervical_deformity``, ``instability``, ``canal_stenosis``,
    ``curvature_class``, ``disc_degeneration``, ``foraminal_stenosis_left`` ..."""
    name: str
    """Human-readable name."""
    value: str
    """``"present"``/``"absent"``/``"not measurable"``, or a class label (``"lordotic"``, ``"protrusion"``)."""
    site: str
    """``"C2-C7"``, a segment ``"C4-C5"``, a vertebra, or a span like ``"C3-C5"``."""
    evidence: tuple[str, ...] = ()
    """Human-readable evidence, e.g. ``("translation 4.1 mm > 3.5 mm",)``."""
    measurement_keys: tuple[tuple[str, str], ...] = ()
    """``(measurement key, site)`` pairs this finding was derived from."""
    probability: float | None = None
    """Model probability where the finding comes from a classifier."""
    threshold: str = ""
    """The rule applied, with its literature source, e.g. ``"Cobb < -13 deg (Suda et al.)"``."""


@dataclass
class Mask:
    """A binary mask of one structure on one image (for SEG)."""

    label: str
    """E.g. ``"C3 vertebral body"``, ``"spinal canal"``, ``"C4-C5 disc"``."""
    image_uid: str
    array: np.ndarray
    """bool array, shape (rows, cols) for a single frame or (frames, rows, cols)."""


@dataclass
class HeatMap:
    """A float map over part of one image, in its original pixels (e.g. the Grad-CAM of one segment's classifier).

    ``array`` covers the patch whose top-left pixel is ``origin`` = (row, column); the rest of the image is 0.
    Values are unitless in [0, 1] (``description`` says what they mean)."""

    label: str
    """E.g. ``"C4-C5 cord compression Grad-CAM"``."""
    image_uid: str
    site: str
    """The segment or structure the map explains, e.g. ``"C4-C5"``."""
    array: np.ndarray
    """float32 (h, w), values in [0, 1]."""
    origin: tuple[int, int] = (0, 0)
    """(row, column) of ``array[0, 0]`` in the image."""
    key: str = ""
    """The finding key the map explains (``cord_compression``)."""
    probability: float | None = None
    """The model probability of that finding."""
    description: str = ""

    def full(self, rows: int, columns: int) -> np.ndarray:
        """The map on the whole image grid (rows, columns) float32, 0 outside the patch."""
        out = np.zeros((rows, columns), dtype=np.float32)
        r0, c0 = self.origin
        h, w = self.array.shape
        r1, c1 = min(r0 + h, rows), min(c0 + w, columns)
        if r1 > r0 and c1 > c0:
            out[r0:r1, c0:c1] = self.array[: r1 - r0, : c1 - c0]
        return out


@dataclass
class ImageResult:
    """Everything found on one source image."""

    image_uid: str
    series_uid: str
    view: View | None
    rows: int
    columns: int
    pixel_spacing_mm: tuple[float, float] | None
    """(row spacing, column spacing) used for mm; see the pipeline for which attribute it came from."""
    keypoints: list[Keypoint] = field(default_factory=list)
    masks: list[Mask] = field(default_factory=list)
    heatmaps: list[HeatMap] = field(default_factory=list)
    """Explanation maps of classifiers on this image (Grad-CAM); encoded as a FRACTIONAL DICOM SEG
    (``pipelines.dicom_out.heatmap``: highdicom cannot build a Parametric Map on a DX source)."""
    rejected: str = ""
    """Why this image's keypoints are not trusted ('' when they are): the view failed a gate as a whole
    ("implausible anatomy: <check>", "keypoint uncertainty too high (...)") and every measurement on it is not
    measurable. The outputs then draw nothing from its keypoints (no outlines, measurement figures or SEG
    segments) and say why on the image instead; the keypoints stay here (audit, corrections)."""
    canal_rejected: str = ""
    """Why this image's spinolaminar points are not trusted while its bodies are ('' otherwise): the canal checks
    of the plausibility gate failed ("implausible anatomy: C4 canal depth ..."). The outputs then draw no
    spinolaminar line or canal segment from them."""


@dataclass
class StudyResult:
    """The output of one pipeline run on one study."""

    study_uid: str
    pipeline: str
    """``"xray"`` or ``"mri"``."""
    algorithm: AlgorithmInfo
    images: list[ImageResult] = field(default_factory=list)
    measurements: list[Measurement] = field(default_factory=list)
    findings: list[Finding] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    """Things a reader should know (a view missing, low image quality ...)."""
    contributors: list[AlgorithmInfo] = field(default_factory=list)
    """Further algorithms whose findings are part of this result (each gets its own Contributing Equipment item)."""

    def summary(self) -> str:
        """A short human-readable text of all measurements and findings."""
        lines = [f"Study {self.study_uid} - {self.pipeline} pipeline ({self.algorithm.name} {self.algorithm.version})"]
        for m in self.measurements:
            view = f" [{m.view.value}]" if m.view else ""
            if m.value is None:
                lines.append(f"  {m.name} {m.site}{view}: {m.not_measurable_text}")
            else:
                ci = f" (95% {m.interval[0]:.2f}..{m.interval[1]:.2f})" if m.interval else ""
                lines.append(f"  {m.name} {m.site}{view}: {m.value:.2f} {m.unit}{ci}")
        for f in self.findings:
            prob = f" p={f.probability:.2f}" if f.probability is not None else ""
            lines.append(f"  FINDING {f.name} {f.site}: {f.value}{prob}" + (f" - {'; '.join(f.evidence)}" if f.evidence else ""))
        for w in self.warnings:
            lines.append(f"  WARNING {w}")
        return "\n".join(lines)
