"""Keypoints predicted outside the image (a weak model, a cropped radiograph) must not make the result
objects unwritable: SR SCOORDs and GSPS graphics are clipped to the image, the values stay as measured."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np

from pipelines.dicom_out import encode
from pipelines.results import Keypoint, StudyResult
from pipelines.study import Study


def _graphic_points(ds) -> list[np.ndarray]:  # noqa: ANN001
    """Every GraphicData array in a dataset tree (SR content items and GSPS graphic objects)."""
    out = []
    for elem in ds.iterall():
        if elem.keyword == "GraphicData":
            out.append(np.asarray(elem.value, dtype=float).reshape(-1, 2))
    return out


def test_keypoints_outside_the_image_are_clipped(xray_case: tuple[Study, StudyResult], now, tmp_path: Path,
                                                 dciodvfy) -> None:
    study, result = xray_case
    first = result.images[0]
    moved = [replace(k, x=-25.0, y=first.rows + 40.0) if i < 4 else k for i, k in enumerate(first.keypoints)]
    assert all(isinstance(k, Keypoint) for k in moved)
    off = replace(result, images=[replace(first, keypoints=moved), *result.images[1:]])

    objects = encode(study, off, now=now)
    kinds = {str(o.Modality) for o in objects}
    assert {"SR", "PR", "SEG"} <= kinds
    for ds in objects:
        if ds.Modality not in ("SR", "PR"):
            continue
        pts = _graphic_points(ds)
        assert pts, ds.Modality
        for p in pts:
            assert (p >= 0).all()
        path = tmp_path / f"{ds.Modality}_{ds.SOPInstanceUID}.dcm"
        ds.save_as(path, enforce_file_format=True)
        errors, _ = dciodvfy(path)
        assert errors == [], (ds.Modality, errors)
