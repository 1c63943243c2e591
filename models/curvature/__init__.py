"""Cervical curvature class (seed 003, S-ResNet-34): normal / straightened / reversed from the neutral view.

``roi.py`` the spine locator and the ROIs (also used by ``models.upper_cervical``), ``network.py`` S-ResNet-34
and the plain ResNet-34 baseline, ``data.py`` phantom training data, ``augment.py`` crop jitter,
``train.py`` / ``evaluate.py`` the CLIs (``train.py --arch locator`` trains the locator), ``predictor.py``
:class:`CurvaturePredictor`, an ``ImageClassifier`` of the X-ray pipeline. Weights: ``s_resnet34_v1.pt``, ``resnet34_plain_v1.pt``, ``spine_locator_v1.pt`` (see MODEL_CARD.md).
"""

from pathlib import Path

CLASSES: tuple[str, ...] = ("normal", "straightened", "reversed")
DEFAULT_WEIGHTS = Path(__file__).with_name("s_resnet34_v1.pt")
BASELINE_WEIGHTS = Path(__file__).with_name("resnet34_plain_v1.pt")
MODEL_CARD = Path(__file__).with_name("MODEL_CARD.md")
