"""Keypoint model for lateral cervical radiographs: HRNet-style heatmaps + DSNT coordinates (paper 002).

``network.py`` the network, ``dsnt.py`` heatmap -> coordinates, ``heatmaps.py`` Gaussian targets,
``measures.py`` differentiable measurements (eq. 9-30), ``losses.py`` the multi-task loss (eq. 6),
``data.py`` phantom / COCO / labelme training data, ``train.py`` and ``evaluate.py`` the CLIs,
``cascade.py`` the coarse-to-fine geometry (oriented per-vertebra crops) and ``cascade_train.py`` its trainer
(the shipped 1.1.0 weights), ``predictor.py`` loads the shipped weights and predicts keypoints with their spread.
"""

from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).with_name("xray_keypoints_v2.pt")
MODEL_CARD = Path(__file__).with_name("MODEL_CARD.md")
