"""Radiologists' corrections as training data (issue 18): read a viewer's TID 1500 SR (``sr_annotations``),
decide which of the node's keypoints it moves (``match``), and fold it into the corrections folder's COCO-keypoints
document (``coco``). Pure: no files, no network; ``node.corrections`` does the receiving and the writing.
"""

from pipelines.corrections.coco import apply_correction, empty_document
from pipelines.corrections.match import (
    CORNER_NAMES,
    ImageCorrection,
    MatchResult,
    keypoint_from_label,
    match_corrections,
)
from pipelines.corrections.sr_annotations import (
    SR_SOP_CLASSES,
    Annotation,
    SrAnnotations,
    UnreadableSR,
    read_annotations,
    read_annotations_bytes,
)

__all__ = [
    "CORNER_NAMES",
    "SR_SOP_CLASSES",
    "Annotation",
    "ImageCorrection",
    "MatchResult",
    "SrAnnotations",
    "UnreadableSR",
    "apply_correction",
    "empty_document",
    "keypoint_from_label",
    "match_corrections",
    "read_annotations",
    "read_annotations_bytes",
]
