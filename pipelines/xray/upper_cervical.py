"""Temporary: the upper cervical label vocabulary for ``models/upper_cervical/predictor.py`` only.

The upper cervical phantom moved to :mod:`pipelines.phantoms.xray.upper_cervical` and its labels to
:mod:`pipelines.vocabulary`; delete this module once the predictor imports ``UPPER_CERVICAL_LABELS``,
``UPPER_CERVICAL_NAMES`` and ``UPPER_CERVICAL_SITES`` from there. No phantom code is (or may be) imported here.
"""

from pipelines.vocabulary import UPPER_CERVICAL_LABELS
from pipelines.vocabulary import UPPER_CERVICAL_NAMES as LABEL_NAMES
from pipelines.vocabulary import UPPER_CERVICAL_SITES as LABEL_SITES

__all__ = ["LABEL_NAMES", "LABEL_SITES", "UPPER_CERVICAL_LABELS"]
