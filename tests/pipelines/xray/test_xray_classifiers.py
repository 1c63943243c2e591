"""The seed classifiers run inside the X-ray pipeline and reach the SR: curvature class (seed 003) on the
neutral view, six upper-cervical abnormalities (seed 001) from the three views, cord compression per segment
(seed 004) on the neutral view, each model named in the SR's Contributing Equipment beside the keypoint model."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from models.upper_cervical.predictor import UPPER_CERVICAL_LABELS
from pipelines.dicom_out import encode
from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.xray import generate_study
from pipelines.results import View
from pipelines.study import Study
from pipelines.xray.pipeline import XrayPipeline


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, models):  # noqa: ANN001
    torch.set_num_threads(1)
    files = write_study(generate_study(31, shape=(1024, 896)), tmp_path_factory.mktemp("cls"))
    study = Study.from_paths(files)[0]
    return study, XrayPipeline.from_models(models).run(study, study.instances)


def test_classifier_findings_join_the_result(analysed) -> None:
    _, result = analysed
    by_key = {f.key: f for f in result.findings}
    curv = by_key["curvature_class_model"]
    assert curv.value in {"normal", "straightened", "reversed"}
    assert curv.probability is not None and 1 / 3 <= curv.probability <= 1.0  # the argmax of three classes
    for key in UPPER_CERVICAL_LABELS:
        f = by_key[key]
        assert f.value in {"present", "absent"} and 0.0 <= f.probability <= 1.0
    assert len(result.contributors) == 3  # curvature, upper cervical, cord compression (seed 004)
    assert [f.site for f in result.findings if f.key == "cord_compression"] == ["C2-C3", "C3-C4", "C4-C5", "C5-C6", "C6-C7"]
    assert not [w for w in result.warnings if "did not run" in w]


def test_every_algorithm_is_contributing_equipment(analysed) -> None:
    study, result = analysed
    sr = next(o for o in encode(study, result) if o.Modality == "SR")
    names = [str(item.ManufacturerModelName) for item in sr.ContributingEquipmentSequence]
    assert result.algorithm.name in names
    for a in result.contributors:
        assert a.name[:64] in names
    devices = [str(item.DeviceUID) for item in sr.ContributingEquipmentSequence if "DeviceUID" in item]
    assert len(set(devices)) == len(devices) >= 3


def test_upper_cervical_needs_all_three_views(tmp_path: Path, models) -> None:  # noqa: ANN001
    torch.set_num_threads(1)
    files = write_study(generate_study(32, shape=(768, 640), views=(View.NEUTRAL,)), tmp_path)
    study = Study.from_paths(files)[0]
    result = XrayPipeline.from_models(models).run(study, study.instances)
    keys = {f.key for f in result.findings}
    assert "curvature_class_model" in keys and not keys & set(UPPER_CERVICAL_LABELS)
    assert any("did not run: it needs the extension, neutral, flexion view(s); missing extension, flexion" in w
               for w in result.warnings)
