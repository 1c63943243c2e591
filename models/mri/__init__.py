"""MRI models for cervical sagittal series (paper 002, intervertebral degeneration on MR images).

``network.py`` the disc localiser (heatmaps + disc/canal masks, MONAI UNet) and the per-level
classifier (MONAI Classifier: disc herniation, canal stenosis, foraminal stenosis), ``data.py`` phantom
training samples, ``predictor.py`` :class:`MriPredictor` (the MRI pipeline's ``MriModel``) loads the weights
and analyses a volume, ``train.py`` and ``evaluate.py`` the CLIs.
"""

from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).with_name("mri_v2.pt")
MODEL_CARD = Path(__file__).with_name("MODEL_CARD.md")
