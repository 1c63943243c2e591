"""Upper cervical (C0-C2) abnormalities from the extension, neutral and flexion views (seed 001, CerviHFENet).

``network.py`` the hybrid-feature network, ``loss.py`` the modified focal loss, ``data.py`` phantom data
(:mod:`pipelines.phantoms.xray.upper_cervical`), ``train.py`` / ``evaluate.py`` the CLIs, ``thresholds.py`` per-label
decision thresholds fitted on validation phantoms, ``predictor.py``
:class:`UpperCervicalPredictor`, an ``ImageClassifier`` of the X-ray pipeline. The ROI comes from :mod:`models.curvature.roi`.
"""

from pathlib import Path

from pipelines.results import View

VIEW_ORDER: tuple[View, ...] = (View.EXTENSION, View.NEUTRAL, View.FLEXION)
"""The order of the views in the network input (a movement sequence: extension -> neutral -> flexion)."""
DEFAULT_WEIGHTS = Path(__file__).with_name("cervihfenet_v1.pt")
MODEL_CARD = Path(__file__).with_name("MODEL_CARD.md")
