"""Cervical sagittal MRI pipeline (paper 002, intervertebral degeneration on MR images).

Same file roles as ``pipelines.xray`` (the synthetic series are ``pipelines.phantoms.mri``): ``preprocessing``
(series -> volume, slice choice, crops), ``plausibility`` (the level chain checked before grading),
``grading`` (probabilities -> findings, thresholds in one place, "not assessable"), ``pipeline``
(``MriPipeline``), ``correlate`` (patient-level X-ray + MRI report logic).
"""
