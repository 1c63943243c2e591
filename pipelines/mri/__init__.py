"""Cervical sagittal MRI pipeline (paper 002, intervertebral degeneration on MR images).

Same file roles as ``pipelines.xray`` (the synthetic series are ``pipelines.phantoms.mri``): ``preprocessing``
(series -> volume, slice choice, crops), ``grading`` (probabilities -> findings, thresholds in one
place), ``pipeline`` (``MriPipeline``), ``correlate`` (patient-level X-ray + MRI report logic).
"""
