"""The domain vocabulary, in one place: vertebrae, corners, segments (disc levels), views, pipelines and the
names of the findings the models grade. Plain constants and enums: no numpy, no torch, no pydicom.

Everything else (results, pipelines, phantoms, models, DICOM encoders) imports these names from here.
"""

from __future__ import annotations

from enum import Enum, StrEnum

VERTEBRAE: tuple[str, ...] = ("C2", "C3", "C4", "C5", "C6", "C7")
"""The measured vertebrae, cranial to caudal."""
CORNER_ROLES: tuple[str, ...] = ("antero-superior", "antero-inferior", "postero-superior", "postero-inferior")
"""The four vertebral body corners in paper 002's order."""
SEGMENTS: tuple[str, ...] = tuple(f"{a}-{b}" for a, b in zip(VERTEBRAE[:-1], VERTEBRAE[1:], strict=True))
"""The motion segments / disc levels C2-C3 .. C6-C7."""
LEVELS: tuple[str, ...] = SEGMENTS
"""The MRI-graded disc levels (paper 002 grades C2-3 .. C6-7): the same five as ``SEGMENTS``."""

KEYPOINT_NAMES: tuple[str, ...] = tuple(f"{v} {r}" for v in VERTEBRAE for r in CORNER_ROLES) + tuple(
    f"{v} spinolaminar" for v in VERTEBRAE
)
"""The 30 X-ray keypoints in model/ground-truth order: 24 corners (paper 002 order) + 6 spinolaminar."""

FORAMEN_LATERAL_MM = 14.0
"""Lateral distance (mm) of the intervertebral foramen centre from the mid-sagittal plane."""

NOT_ASSESSABLE = "not assessable"
"""The value of a graded finding that is not a result: its input failed a trust check (an MRI level the plausibility
gate did not pass, a classifier input unlike the model's training data, a class the keypoint geometry contradicts)."""
UNLIKE_TRAINING_DATA = "image unlike the training data"
"""The head of the reason of a finding that is not assessable because a model's input check (its out-of-distribution
gate, ``models.common.ood``) refused the image."""


class View(str, Enum):  # noqa: UP042 - str() of a member stays "View.X" as code expects
    """Position of a lateral cervical radiograph."""

    NEUTRAL = "neutral"
    FLEXION = "flexion"
    EXTENSION = "extension"


class PipelineName(StrEnum):
    """The pipelines of the node (``StudyResult.pipeline``); members are their plain strings."""

    XRAY = "xray"
    MRI = "mri"


# -- MRI findings (paper 002 tasks) -------------------------------------------------------------------

TASKS: tuple[str, ...] = ("disc_degeneration", "canal_stenosis", "foraminal_stenosis_left",
                              "foraminal_stenosis_right")
"""The per-level MRI tasks, in model output order."""

FINDING_NAMES: dict[str, str] = {
    "disc_degeneration": "Intervertebral disc herniation (protrusion or extrusion)",
    "canal_stenosis": "Spinal canal stenosis",
    "foraminal_stenosis_left": "Left intervertebral foramen stenosis",
    "foraminal_stenosis_right": "Right intervertebral foramen stenosis",
    "cord_compression": "Spinal cord compression",
}
"""Human names of the MRI findings (and of cord compression, graded from MRI truth for seed 004)."""

TRUTH_RULES: dict[str, str] = {
    "disc_degeneration": "protrusion or extrusion (vs normal or bulge), as in paper 002",
    "canal_stenosis": "residual canal AP < cord AP + 1 mm at the disc level (Kang grade >= 2)",
    "foraminal_stenosis": "foraminal AP narrowing >= 50 %",
}
"""What the positive class of each MRI task means (the phantoms render their truth by these rules)."""


# -- X-ray findings: upper cervical (C0-C2) abnormalities (seed 001) -----------------------------------

UPPER_CERVICAL_LABELS: tuple[str, ...] = (
    "atlantoaxial_instability",
    "os_odontoideum",
    "odontoid_fracture",
    "basilar_invagination",
    "atlanto_occipital_assimilation",
    "atlantodental_osteoarthritis",
)
"""Finding keys of the upper cervical multi-label classifier, in model output order."""

UPPER_CERVICAL_NAMES: dict[str, str] = {
    "atlantoaxial_instability": "Atlantoaxial instability",
    "os_odontoideum": "Os odontoideum",
    "odontoid_fracture": "Odontoid (dens) fracture, type II",
    "basilar_invagination": "Basilar invagination",
    "atlanto_occipital_assimilation": "Atlanto-occipital assimilation",
    "atlantodental_osteoarthritis": "Atlanto-dental osteoarthritis",
}
"""Human names of the upper cervical findings."""

UPPER_CERVICAL_SITES: dict[str, str] = {
    "atlantoaxial_instability": "C1-C2",
    "os_odontoideum": "C2",
    "odontoid_fracture": "C2",
    "basilar_invagination": "C0-C2",
    "atlanto_occipital_assimilation": "C0-C1",
    "atlantodental_osteoarthritis": "C1-C2",
}
"""Finding site of each upper cervical finding."""


# -- patient level (seed 000) --------------------------------------------------------------------------

CLINICAL_VARIABLES: tuple[str, ...] = ("age", "female", "duration_months", "ndi", "vas")
"""Clinical inputs of the neck-pain outcome model, in model order: age (years), female (0/1), symptom duration
(months), Neck Disability Index (0-100), neck-pain VAS (0-10). Any may be unknown (None)."""
