"""Spinal cord compression per segment C2-C3..C6-C7 from the neutral lateral radiograph (seed 004).

``roi.py`` the segment localisation (an oriented crop of the two vertebrae of a segment and the canal behind
them, from the X-ray keypoints) and the mapping of crop maps back to the image; ``network.py`` the small
per-segment CNN with Grad-CAM on its last conv block; ``data.py`` phantom data (X-ray phantoms of virtual
patients, labels from the MRI truth of the same patient); ``train.py`` / ``evaluate.py`` the CLIs (metrics
from ``models.common.metrics``); ``predictor.py`` :class:`CordCompressionPredictor`, the X-ray pipeline's
``SegmentClassifier``.
"""

from pathlib import Path

from pipelines.results import SEGMENTS

DEFAULT_WEIGHTS = Path(__file__).with_name("segment_cnn_v1.pt")
MODEL_CARD = Path(__file__).with_name("MODEL_CARD.md")
ALGORITHM_NAME = "cspine-cord-compression"

__all__ = ["ALGORITHM_NAME", "DEFAULT_WEIGHTS", "MODEL_CARD", "SEGMENTS"]
