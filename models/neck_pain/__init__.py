"""Postoperative neck-pain recovery from one patient's lateral radiograph and sagittal T2 MRI (seed 000).

``network.py`` the two-encoder network with ABPDC (adaptive bidirectional pyramid difference convolution) and
FPRAN (feature pyramid registration auxiliary network), ``data.py`` the paired phantom crops with their outcome
(:mod:`pipelines.phantoms.outcome`) and true alignment, ``train.py`` / ``evaluate.py`` the CLIs, ``predictor.py``
:class:`NeckPainPredictor` for the patient-level report (:mod:`pipelines.patient`).
"""

from pathlib import Path

DEFAULT_WEIGHTS = Path(__file__).with_name("neck_pain_v1.pt")
MODEL_CARD = Path(__file__).with_name("MODEL_CARD.md")
