"""Synthetic phantoms: test and training data generators with exact ground truth. Never imported by runtime code.

* ``xray``: lateral cervical radiographs (neutral / flexion / extension) with keypoints and true measurements,
  and the upper cervical (C0-C2) extension with its six abnormalities (``xray.upper_cervical``);
* ``mri``: sagittal cervical MR series with per-level truth (disc, canal, cord, foramina) (renderer A);
* ``mri_b``: a second MR renderer written from scratch (own anatomy and acquisition: oblique slabs, tilt, gaps);
* ``mri_shift``: the MRI shift suite on top of either renderer (``cspine-node phantom mri --style a|b --shift``);
* ``patient``: the virtual patient, the anatomy shared by both modalities;
* ``paired``: an X-ray and an MRI study of the same virtual patient;
* ``outcome``: the synthetic postoperative neck-pain outcome of a virtual patient;
* ``dicom``: the DICOM files the phantoms write (DX For Presentation, MR Image Storage).
"""
