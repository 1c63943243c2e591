"""labelme-style keypoint JSON import (CSXA-like) into training samples."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

from models.xray_keypoints.data import labelme_samples
from models.xray_keypoints.labelme import default_label, read_labelme
from pipelines.results import KEYPOINT_NAMES


def test_default_labels() -> None:
    assert default_label("C3_1") == "C3 antero-superior"
    assert default_label("c7-4") == "C7 postero-inferior"
    assert default_label("C5 sl") == "C5 spinolaminar"
    assert default_label("C4 postero-superior") == "C4 postero-superior"
    assert default_label("skull") is None


def test_read_labelme_folder_with_image(tmp_path: Path) -> None:
    img = np.zeros((60, 40), np.uint8)
    img[20:30, 10:20] = 200
    Image.fromarray(img).save(tmp_path / "a.png")
    shapes = [{"label": "C2_1", "points": [[12.5, 20.0]], "shape_type": "point"},
              {"label": "C2_4", "points": [[18.0, 29.5]], "shape_type": "point"},
              {"label": "tooth", "points": [[1, 1]], "shape_type": "point"},
              {"label": "C6 sl", "points": [[3.0, 4.0]], "shape_type": "point"}]
    (tmp_path / "a.json").write_text(json.dumps({"imagePath": "a.png", "imageHeight": 60, "imageWidth": 40,
                                                 "shapes": shapes}))
    rec = read_labelme(tmp_path / "a.json")
    assert rec.visible.sum() == 3
    assert rec.keypoints[KEYPOINT_NAMES.index("C2 postero-inferior")].tolist() == [18.0, 29.5]
    (sample,) = labelme_samples(tmp_path)
    assert sample.image.shape == (60, 40) and sample.image.max() <= 1.0
    assert sample.image[25, 15] > sample.image[5, 5]
    custom = read_labelme(tmp_path / "a.json", {"tooth": "C7 antero-superior"})
    assert custom.visible.sum() == 1 and custom.visible[KEYPOINT_NAMES.index("C7 antero-superior")]
