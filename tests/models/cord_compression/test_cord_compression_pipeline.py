"""Cord compression (seed 004) in the X-ray pipeline with the shipped weights: one finding per segment with its
probability, the algorithm in Contributing Equipment, Grad-CAM maps on the neutral view inside their segment's
crop, the findings in the TID 1500 SR, the maps as a FRACTIONAL SEG; the model stays off behind the gate."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from models.cord_compression import DEFAULT_WEIGHTS
from models.cord_compression.roi import CROP, segment_transform
from pipelines.dicom_out import encode
from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.mri import cord_compression_truth
from pipelines.phantoms.patient import virtual_patient, xray_anatomy
from pipelines.phantoms.xray import generate_study
from pipelines.results import SEGMENTS, View
from pipelines.study import Study
from pipelines.xray.pipeline import XrayPipeline

SEED = 4  # a virtual patient with cord compression at some levels (checked below)


@pytest.fixture(scope="module")
def analysed(tmp_path_factory: pytest.TempPathFactory, models):  # noqa: ANN001
    assert DEFAULT_WEIGHTS.is_file()
    torch.set_num_threads(1)
    vp = virtual_patient(SEED)
    st = generate_study(SEED, views=(View.NEUTRAL,), shape=(768, 640), anatomy=xray_anatomy(vp))
    files = write_study(st, tmp_path_factory.mktemp("cc"))
    study = Study.from_paths(files)[0]
    return vp, st, study, XrayPipeline.from_models(models).run(study, study.instances)


def test_one_finding_per_segment_with_probability(analysed) -> None:
    vp, _, _, result = analysed
    assert any(cord_compression_truth(vp))
    cc = [f for f in result.findings if f.key == "cord_compression"]
    assert [f.site for f in cc] == list(SEGMENTS)
    for f in cc:
        assert f.value in {"present", "absent"} and 0.0 <= f.probability <= 1.0 and f.threshold
    assert any("cord-compression" in a.name for a in result.contributors)
    assert not [w for w in result.warnings if "cord compression" in w]


def test_gradcam_maps_lie_in_their_segment_crops(analysed) -> None:
    _, _, _, result = analysed
    img = next(i for i in result.images if i.view == View.NEUTRAL)
    assert [h.site for h in img.heatmaps] == list(SEGMENTS)
    kp = np.array([[k.x, k.y] for k in img.keypoints])
    for j, h in enumerate(img.heatmaps):
        assert h.array.dtype == np.float32 and 0.0 <= float(h.array.min()) and float(h.array.max()) <= 1.0 + 1e-6
        ys, xs = np.nonzero(h.array > 0)
        if not len(xs):
            continue
        m = segment_transform(kp, j).to_model(np.stack([xs + h.origin[1], ys + h.origin[0]], axis=1).astype(float))
        assert np.all((m[:, 0] > -1) & (m[:, 0] < CROP[1]) & (m[:, 1] > -1) & (m[:, 1] < CROP[0]))


def test_findings_reach_the_sr_and_maps_the_seg(analysed) -> None:
    _, _, study, result = analysed
    objs = encode(study, result)
    sr = next(o for o in objs if o.Modality == "SR")
    text = str(sr)
    assert "F-CORDCOMP" in text and text.count("Spinal cord compression") >= len(SEGMENTS)
    names = [str(item.ManufacturerModelName) for item in sr.ContributingEquipmentSequence]
    assert any("cord-compression" in n for n in names)
    frac = [o for o in objs if o.Modality == "SEG" and o.SegmentationType == "FRACTIONAL"]
    assert len(frac) == 1 and len(frac[0].SegmentSequence) == len(SEGMENTS)


def test_gate_keeps_the_model_off(analysed, models) -> None:  # noqa: ANN001
    _, _, study, _ = analysed
    pipe = XrayPipeline.from_models(models)
    pipe.max_median_sigma_mm = 0.0
    result = pipe.run(study, study.instances)
    assert not [f for f in result.findings if f.key == "cord_compression"]
    assert any("cord compression model did not run" in w for w in result.warnings)
    assert not any(i.heatmaps for i in result.images)


def test_shipped_weights_on_fresh_virtual_patients() -> None:
    """30 virtual patients outside the training, validation and card ranges (150 segments), true keypoints:
    the card reports AUC 0.93 / accuracy 0.85 on 120; the bounds leave room for the smaller sample."""
    from models.cord_compression.evaluate import evaluate

    torch.set_num_threads(1)
    res = evaluate(range(300000, 300030), e2e=0)["true_keypoints"]["overall"]
    assert res["n"] == 150 and 20 <= res["positives"] <= 100
    assert res["auc"] >= 0.8 and res["accuracy"] >= 0.72 and res["kappa"] >= 0.4
