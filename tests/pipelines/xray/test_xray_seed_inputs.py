"""What the X-ray pipeline hands the seed models equals what they were trained on, and the entry points work."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pydicom
import pytest
import torch

from models.curvature import DEFAULT_WEIGHTS
from models.upper_cervical import DEFAULT_WEIGHTS as UC_WEIGHTS
from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.xray import generate_study, unit_image
from pipelines.phantoms.xray.upper_cervical import generate_upper_cervical_study
from pipelines.results import AlgorithmInfo, Finding
from pipelines.xray.preprocessing import image_from_dataset

torch.set_num_threads(1)


def test_training_normalisation_equals_the_pipeline_reading_of_the_dicom(tmp_path: Path) -> None:
    photometrics = set()
    for seed in (4, 5):
        st = generate_study(seed, shape=(128, 128))
        for path, pv in zip(write_study(st, tmp_path / str(seed)), st.views.values(), strict=True):
            ds = pydicom.dcmread(path)
            photometrics.add(str(ds.PhotometricInterpretation))
            np.testing.assert_allclose(image_from_dataset(ds), unit_image(pv.pixels, pv.photometric), atol=2e-3)
    assert photometrics == {"MONOCHROME1", "MONOCHROME2"}


@pytest.mark.skipif(not (DEFAULT_WEIGHTS.is_file() and UC_WEIGHTS.is_file()), reason="weights not shipped")
def test_entry_points_from_dicom_pixels(tmp_path: Path) -> None:
    from models.curvature.predictor import CurvaturePredictor
    from models.upper_cervical.predictor import UpperCervicalPredictor
    from pipelines.vocabulary import View

    curvature, upper = CurvaturePredictor.load(), UpperCervicalPredictor.load()

    st = generate_study(21, shape=(400, 360))
    path = write_study(st, tmp_path)[0]
    ds = pydicom.dcmread(path)
    spacing = tuple(float(v) for v in ds.PixelSpacing)
    (f,) = curvature.classify({View.NEUTRAL: image_from_dataset(ds)}, {View.NEUTRAL: spacing})
    assert isinstance(f, Finding) and f.key == "curvature_class_model" and f.value in ("normal", "straightened", "reversed")
    uc = generate_upper_cervical_study(21, shape=(300, 340))
    findings = upper.classify({v: uv.unit_image() for v, uv in uc.views.items()}, {v: None for v in uc.views})
    assert len(findings) == 6 and all(f.probability is not None for f in findings)
    for info in (curvature.algorithm, upper.algorithm):
        assert isinstance(info, AlgorithmInfo) and "synthetic" in info.model_card and info.version
