"""The plausibility gate inside ``XrayPipeline``: a view whose keypoints are implausible has every measurement and
finding that depends on it reported as "not measurable: implausible anatomy: <check>" (in the result, its summary
and the SR), the dynamic measurements too when it is the flexion or extension view, and the seed classifiers do not
run on it. Unit test with stand-in models (keypoints from the phantom's truth, one view corrupted); the shipped
models run the same path in ``test_xray_classifiers.py`` and ``cspine-node analyze`` (``test_xray_gate_shift.py``)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import numpy as np
import pytest

from pipelines.interfaces import KeypointPrediction
from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.xray import generate_study
from pipelines.results import AlgorithmInfo, Finding, HeatMap
from pipelines.study import Study
from pipelines.vocabulary import View
from pipelines.xray.pipeline import XrayPipeline
from pipelines.xray.plausibility import check_view
from pipelines.xray.preprocessing import image_from_dataset


def collapse(points: np.ndarray) -> np.ndarray:
    """Two predicted levels on C4, every lower level shifted by one (the failure of issue 13)."""
    bad = points.copy()
    bad[12:16] = points[8:12] + 2.0
    bad[16:24] = points[12:20]
    return bad


class FakeKeypoints:
    """Returns given keypoints for each image (looked up by the image's pixels)."""

    algorithm = AlgorithmInfo("fake keypoints", "0")

    def __init__(self, by_image: dict[bytes, np.ndarray]) -> None:
        self.by_image = by_image

    def predict(self, image: np.ndarray) -> KeypointPrediction:
        pts = self.by_image[image.tobytes()]
        return KeypointPrediction(pts, np.full(30, 0.5), {View.NEUTRAL: 1.0})


class FakeClassifier:
    algorithm = AlgorithmInfo("fake curvature", "0")
    required_views = (View.NEUTRAL,)

    def __init__(self) -> None:
        self.calls: list[tuple[View, ...]] = []

    def classify(self, images: Mapping[View, np.ndarray], spacing_mm) -> list[Finding]:  # noqa: ANN001
        self.calls.append(tuple(images))
        return [Finding("curvature_class_model", "Curvature", "normal", "C2-C7", probability=0.9)]


class FakeSegments:
    algorithm = AlgorithmInfo("fake cord", "0")

    def __init__(self) -> None:
        self.calls = 0

    def classify(self, image: np.ndarray, keypoints: np.ndarray, image_uid: str) -> tuple[list[Finding], list[HeatMap]]:
        self.calls += 1
        return [], []


@pytest.fixture(scope="module")
def phantom(tmp_path_factory: pytest.TempPathFactory):  # noqa: ANN201
    st = generate_study(5, shape=(448, 384))
    files = write_study(st, tmp_path_factory.mktemp("gate"))
    study = Study.from_paths(files)[0]
    images = {}
    for inst in study.instances:
        ds = inst.read()
        view = next(v for v, pv in st.views.items() if pv.sop_instance_uid == inst.sop_instance_uid)
        images[view] = image_from_dataset(ds).tobytes()
    for view, pv in st.views.items():  # precondition: the truth passes the gate on every view
        assert check_view(pv.keypoints, pv.pixel_spacing_mm, shape=pv.shape).passed, view
    return st, study, images


def run(phantom, bad_view: View):  # noqa: ANN001, ANN201
    st, study, images = phantom
    by_image = {images[v]: (collapse(pv.keypoints) if v == bad_view else pv.keypoints) for v, pv in st.views.items()}
    cls, seg = FakeClassifier(), FakeSegments()
    result = XrayPipeline(FakeKeypoints(by_image), [cls], seg).run(study, study.instances)
    return result, cls, seg


def test_implausible_neutral_view_is_not_measurable(phantom, tmp_path: Path) -> None:  # noqa: ANN001
    result, cls, seg = run(phantom, View.NEUTRAL)
    neutral = [m for m in result.measurements if m.view == View.NEUTRAL]
    assert neutral and all(m.value is None for m in neutral)
    assert all(m.reason.startswith("not measurable: implausible anatomy: C4 and C5 overlap") for m in neutral)
    flexion = [m for m in result.measurements if m.view == View.FLEXION]
    assert sum(m.value is not None for m in flexion) >= 20  # the other views are measured
    assert any(m.value is not None for m in result.measurements if m.view is None)  # flexion-extension too
    by_key = {f.key: f for f in result.findings}
    for key in ("kyphosis", "cervical_deformity", "curvature_class", "canal_stenosis"):
        assert by_key[key].value == "not measurable", key
        assert "implausible anatomy" in " ".join(by_key[key].evidence), key
    assert cls.calls == [] and seg.calls == 0  # the seed classifiers skip the implausible view
    assert "curvature_class_model" not in by_key
    assert any("seed classifiers skip the neutral view: implausible anatomy" in w for w in result.warnings)
    assert any("cord compression model did not run: implausible anatomy" in w for w in result.warnings)
    summary = result.summary()
    assert "C2-C7 Cobb angle C2-C7 [neutral]: not measurable (implausible anatomy: C4 and C5" in summary

    from pipelines.dicom_out import encode

    sr = next(o for o in encode(phantom[1], result) if o.Modality == "SR")
    texts = []

    def walk(items) -> None:  # noqa: ANN001
        for it in items:
            if "TextValue" in it:
                texts.append(str(it.TextValue))
            if "ContentSequence" in it:
                walk(it.ContentSequence)

    walk(sr.ContentSequence)
    assert any("Cobb angle" in t and "implausible anatomy: C4 and C5 overlap" in t for t in texts)


def test_implausible_flexion_view_gates_the_dynamic_measurements(phantom) -> None:  # noqa: ANN001
    result, cls, seg = run(phantom, View.FLEXION)
    dyn = [m for m in result.measurements if m.view is None]
    assert dyn and all(m.value is None and "flexion view: implausible anatomy" in m.reason for m in dyn)
    inst = [f for f in result.findings if f.key == "instability"]
    assert len(inst) == 5 and all(f.value == "not measurable" for f in inst)
    assert cls.calls == [(View.NEUTRAL,)] and seg.calls == 1  # the neutral view passed: the classifiers ran
    assert all(m.value is not None for m in result.measurements
               if m.view == View.NEUTRAL and m.key in ("cobb_c2_c7", "sva_c2_c7"))
