"""The seed classifiers' own trust checks inside ``XrayPipeline`` (issue 13): an input that a classifier's
out-of-distribution gate rejects, and a curvature class that the keypoint geometry contradicts, give findings "not
assessable" with the reason, no probability and no heat map, and the reason reaches the warnings, the summary and the
SR. The shipped classifiers run with their gates forced shut (threshold 0) on a renderer-A phantom whose keypoints
come from its truth (so the pipeline's own gates pass); the geometry check runs on a stand-in curvature model."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import numpy as np
import pytest
import torch

from models.common.ood import REASON, fit_gate
from pipelines.interfaces import KeypointPrediction
from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.xray import generate_study
from pipelines.results import AlgorithmInfo, Finding
from pipelines.study import Study
from pipelines.vocabulary import UPPER_CERVICAL_LABELS, View
from pipelines.xray.classifiers import (
    NOT_ASSESSABLE,
    check_curvature_geometry,
    curvature_class_range,
)
from pipelines.xray.pipeline import XrayPipeline
from pipelines.xray.preprocessing import image_from_dataset, view_of
from tests.pipelines.xray.xraytest_sr import sr_texts


class TruthKeypoints:
    """The phantom's true keypoints for each image (looked up by its pixels)."""

    algorithm = AlgorithmInfo("truth keypoints", "0")

    def __init__(self, by_image: dict[bytes, np.ndarray]) -> None:
        self.by_image = by_image

    def predict(self, image: np.ndarray) -> KeypointPrediction:
        return KeypointPrediction(self.by_image[image.tobytes()], np.full(30, 0.5), {View.NEUTRAL: 1.0})


class FixedCurvature:
    """A stand-in curvature model that always says ``label``."""

    algorithm = AlgorithmInfo("fixed curvature", "0")
    required_views = (View.NEUTRAL,)

    def __init__(self, label: str) -> None:
        self.label = label

    def classify(self, images: Mapping[View, np.ndarray], spacing_mm) -> list[Finding]:  # noqa: ANN001
        return [Finding("curvature_class_model", "Cervical curvature class (model)", self.label, "C2-C7",
                        evidence=("p=0.90",), probability=0.9)]


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    st = generate_study(5, shape=(448, 384))
    study = Study.from_paths(write_study(st, tmp_path_factory.mktemp("ood")))[0]
    by_image = {}
    for inst in study.instances:
        pv = next(pv for pv in st.views.values() if pv.sop_instance_uid == inst.sop_instance_uid)
        by_image[image_from_dataset(inst.read()).tobytes()] = pv.keypoints
    return st, study, TruthKeypoints(by_image)


def _shut(pred, dims: int):  # noqa: ANN001, ANN202
    """The predictor with a gate whose threshold is 0 (its shipped gate, else one on ``dims`` features): every input
    is out of distribution."""
    gate = pred.gate if pred.gate is not None else fit_gate(np.random.default_rng(0).normal(size=(300, dims)))
    pred.gate = dataclasses.replace(gate, threshold=0.0, info={**gate.info, "quantile": 0.99})
    return pred


def test_rejected_inputs_are_not_assessable_with_the_reason(phantom) -> None:  # noqa: ANN001
    from models.cord_compression.predictor import CordCompressionPredictor
    from models.curvature.predictor import CurvaturePredictor
    from models.upper_cervical.predictor import UpperCervicalPredictor

    torch.set_num_threads(1)
    _, study, kp = phantom
    curv, upper = _shut(CurvaturePredictor.load(), 128), _shut(UpperCervicalPredictor.load(), 128)
    cord = _shut(CordCompressionPredictor.load(), 64)
    result = XrayPipeline(kp, [curv, upper], cord).run(study, study.instances)
    assert not any(i.rejected for i in result.images)  # the pipeline's own gates passed
    seeds = [f for f in result.findings if f.key in {"curvature_class_model", "cord_compression",
                                                      *UPPER_CERVICAL_LABELS}]
    assert len(seeds) == 1 + 6 + 5
    for f in seeds:
        assert f.value == NOT_ASSESSABLE and f.probability is None, f
        assert REASON in f.evidence[0], f
    assert not any(i.heatmaps for i in result.images)  # no Grad-CAM of a segment that is not assessed
    assert len(result.contributors) == 3  # the models ran (and said why they give no result)
    for name in (curv.algorithm.name, upper.algorithm.name, cord.algorithm.name):
        assert any(w.startswith(f"{name}: not assessable") and REASON in w for w in result.warnings), name
    summary = result.summary()
    assert f"C2-C7: not assessable - {REASON}" in summary
    texts = sr_texts(study, result)
    assert any(f"C2-C7: not assessable - {REASON}" in t for t in texts)
    assert any("C4-C5: not assessable" in t and REASON in t for t in texts)


def test_shipped_gates_reject_an_inverted_radiograph(tmp_path) -> None:  # noqa: ANN001
    """A real out-of-distribution input: the same phantom with its photometric interpretation flipped (bone dark).
    The shipped cord-compression gate refuses every segment crop and the curvature model gives no class."""
    import pydicom

    from models.cord_compression.predictor import CordCompressionPredictor
    from models.curvature.predictor import CurvaturePredictor

    torch.set_num_threads(1)
    st = generate_study(970_001, shape=(768, 640), views=(View.NEUTRAL,))
    files = write_study(st, tmp_path)
    for path in files:
        ds = pydicom.dcmread(path)
        ds.PhotometricInterpretation = {"MONOCHROME1": "MONOCHROME2", "MONOCHROME2": "MONOCHROME1"}[
            ds.PhotometricInterpretation]
        ds.save_as(path)
    study = Study.from_paths(files)[0]
    (inst,) = study.instances
    kp = TruthKeypoints({image_from_dataset(inst.read()).tobytes(): st.views[View.NEUTRAL].keypoints})
    cord, curv = CordCompressionPredictor.load(), CurvaturePredictor.load()
    assert cord.gate is not None and curv.gate is not None  # the shipped weights carry their gates
    result = XrayPipeline(kp, [curv], cord).run(study, study.instances)
    assert not any(i.rejected for i in result.images)
    segs = [f for f in result.findings if f.key == "cord_compression"]
    assert len(segs) == 5 and all(f.value == NOT_ASSESSABLE and REASON in f.evidence[0] for f in segs)
    assert not any(i.heatmaps for i in result.images)
    (c,) = [f for f in result.findings if f.key == "curvature_class_model"]
    assert c.value in (NOT_ASSESSABLE, "not measurable") and c.probability is None


def test_curvature_gate_refusing_one_view_withholds_the_upper_cervical_findings(phantom) -> None:  # noqa: ANN001
    """The study-level input check of the upper-cervical model: the curvature model's gate, with its threshold set
    between the largest and the second-largest distance of the study's three views, refuses exactly one view; the six
    upper-cervical findings are then not assessable with that view named, in the warnings, summary and SR. With the
    threshold above all three (a clean study), or with the check turned off, the findings are reported."""
    from models.curvature.predictor import CurvaturePredictor
    from models.upper_cervical.predictor import UpperCervicalPredictor
    from pipelines.xray.classifiers import CURVATURE_CHECK

    torch.set_num_threads(1)
    _, study, kp = phantom
    curv, upper = CurvaturePredictor.load(), UpperCervicalPredictor.load()
    assert curv.gate is not None
    images = {}
    for inst in study.instances:
        ds = inst.read()
        images[view_of(ds)] = image_from_dataset(ds)
    assert set(images) == {View.NEUTRAL, View.FLEXION, View.EXTENSION}
    dist = {v: curv.predict(img).distance for v, img in images.items()}
    order = sorted(dist, key=dist.__getitem__)
    worst, second = order[-1], order[-2]
    assert dist[worst] - dist[second] > 1e-3, dist

    def run(threshold: float, check: bool = True):  # noqa: ANN202
        curv.gate = dataclasses.replace(curv.gate, threshold=threshold)
        pipe = XrayPipeline(kp, [curv, upper])
        pipe.upper_cervical_curvature_check = check
        result = pipe.run(study, study.instances)
        assert not any(i.rejected for i in result.images)  # the pipeline's own gates passed
        return result, [f for f in result.findings if f.key in UPPER_CERVICAL_LABELS]

    # clean: the gate accepts all three views; the upper-cervical model's own gate accepts the study too
    result, uc = run(max(dist.values()) + 1.0)
    assert len(uc) == 6
    assert all(f.value in ("present", "absent") and f.probability is not None for f in uc), uc
    assert not any(CURVATURE_CHECK in w for w in result.warnings)

    # one view refused
    result, uc = run((dist[worst] + dist[second]) / 2)
    head = f"{REASON}: {CURVATURE_CHECK} {worst.value} view ("
    assert len(uc) == 6
    for f in uc:
        assert f.value == NOT_ASSESSABLE and f.probability is None, f
        assert f.evidence[0].startswith(head), f.evidence
        assert "feature distance" in f.evidence[0]
    assert any(w.startswith(f"{upper.algorithm.name}: not assessable") and head in w for w in result.warnings)
    assert upper.algorithm in result.contributors  # the model ran; its output was withheld
    assert f"C1-C2: not assessable - {head}" in result.summary()
    assert any(f"C1-C2: not assessable - {head}" in t for t in sr_texts(study, result))

    # the check turned off: the same threshold, the findings are reported
    _, uc = run((dist[worst] + dist[second]) / 2, check=False)
    assert all(f.value in ("present", "absent") and f.probability is not None for f in uc), uc


def test_curvature_class_contradicted_by_the_geometry_is_not_assessable(phantom) -> None:  # noqa: ANN001
    st, study, kp = phantom
    cobb = next(m.value for m in st.views[View.NEUTRAL].truth if m.key == "cobb_c2_c7")
    assert cobb < 4.0  # precondition (-1.1 deg): "normal" (>= 10 deg) is contradicted by more than the 5 deg margin
    result = XrayPipeline(kp, [FixedCurvature("normal")]).run(study, study.instances)
    (f,) = [f for f in result.findings if f.key == "curvature_class_model"]
    assert f.value == NOT_ASSESSABLE and f.probability is None
    assert f.evidence[0].startswith("image classifier disagrees with the keypoint geometry: class normal")
    assert any("curvature class model: not assessable at C2-C7 (image classifier disagrees" in w
               for w in result.warnings)
    assert "not assessable - image classifier disagrees with the keypoint geometry" in result.summary()
    result = XrayPipeline(kp, [FixedCurvature("reversed")]).run(study, study.instances)
    (f,) = [f for f in result.findings if f.key == "curvature_class_model"]
    assert f.value == "reversed" and f.probability == 0.9 and "consistent with the keypoint geometry" in f.evidence[-1]


def test_geometry_check_margin() -> None:
    from pipelines.results import Measurement

    def cobb(v: float | None) -> list[Measurement]:
        return [Measurement("cobb_c2_c7", "C2-C7 Cobb angle", v, "deg", "C2-C7", View.NEUTRAL)]

    f = Finding("curvature_class_model", "curvature (model)", "straightened", "C2-C7", probability=0.6)
    assert curvature_class_range("straightened") == (0.0, 10.0)
    assert check_curvature_geometry(f, cobb(14.9)).value == "straightened"  # 4.9 deg beyond: within the margin
    assert check_curvature_geometry(f, cobb(-4.9)).value == "straightened"
    out = check_curvature_geometry(f, cobb(15.5))
    assert out.value == NOT_ASSESSABLE and "needs C2-C7 Cobb 0 to 10 deg, measured 15.5 deg" in out.evidence[0]
    assert check_curvature_geometry(f, cobb(-5.5)).value == NOT_ASSESSABLE
    n = dataclasses.replace(f, value="normal")
    assert check_curvature_geometry(n, cobb(5.1)).value == "normal"
    assert ">= 10 deg" in check_curvature_geometry(n, cobb(4.0)).evidence[0]
    r = dataclasses.replace(f, value="reversed")
    assert "< 0 deg" in check_curvature_geometry(r, cobb(5.5)).evidence[0]
    kept = check_curvature_geometry(f, cobb(None))
    assert kept.value == "straightened" and "not checked against the keypoint geometry" in kept.evidence[-1]
    other = dataclasses.replace(f, value="not measurable")
    assert check_curvature_geometry(other, cobb(40.0)) == other
    with pytest.raises(ValueError, match="unknown"):
        curvature_class_range("S-shaped")
