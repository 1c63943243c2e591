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

    def __init__(self, by_image: dict[bytes, np.ndarray], sigma_px: dict[bytes, float] | None = None) -> None:
        self.by_image = by_image
        self.sigma_px = sigma_px or {}

    def predict(self, image: np.ndarray) -> KeypointPrediction:
        pts = self.by_image[image.tobytes()]
        return KeypointPrediction(pts, np.full(30, self.sigma_px.get(image.tobytes(), 0.5)), {View.NEUTRAL: 1.0})


class FakeClassifier:
    algorithm = AlgorithmInfo("fake curvature", "0")
    required_views = (View.NEUTRAL,)

    def __init__(self) -> None:
        self.calls: list[tuple[View, ...]] = []

    def classify(self, images: Mapping[View, np.ndarray], spacing_mm) -> list[Finding]:  # noqa: ANN001
        self.calls.append(tuple(images))
        return [Finding("curvature_class_model", "Curvature", "normal", "C2-C7", probability=0.9)]


class FakeThreeViews(FakeClassifier):
    algorithm = AlgorithmInfo("fake upper cervical", "0")
    required_views = (View.EXTENSION, View.NEUTRAL, View.FLEXION)


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


def run(phantom, *bad_views: View):  # noqa: ANN001, ANN201
    st, study, images = phantom
    by_image = {images[v]: (collapse(pv.keypoints) if v in bad_views else pv.keypoints) for v, pv in st.views.items()}
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

    from tests.pipelines.xray.xraytest_sr import sr_texts

    texts = sr_texts(phantom[1], result)
    assert any("Cobb angle" in t and "implausible anatomy: C4 and C5 overlap" in t for t in texts)


def test_three_view_classifier_needs_every_view_through_the_gates(phantom) -> None:  # noqa: ANN001
    """The upper-cervical model (all three views) does not run when one view failed the gate; it runs when none did."""
    st, study, images = phantom
    for bad, runs in ((View.FLEXION, False), (None, True)):
        by_image = {images[v]: (collapse(pv.keypoints) if v == bad else pv.keypoints) for v, pv in st.views.items()}
        three = FakeThreeViews()
        result = XrayPipeline(FakeKeypoints(by_image), [three]).run(study, study.instances)
        assert three.calls == ([(View.EXTENSION, View.NEUTRAL, View.FLEXION)] if runs else []), bad
        if not runs:
            assert any(w.startswith("fake upper cervical did not run: it needs the extension, neutral, flexion")
                       and w.endswith("missing flexion") for w in result.warnings)


def test_uncertain_neutral_view_is_rejected_and_skipped_by_the_classifiers(phantom) -> None:  # noqa: ANN001
    """The uncertainty gate rejects a view like the plausibility gate: no masks, and neither the whole-image
    classifiers nor cord compression run on it (plausible keypoints, but a 20 px spread)."""
    st, study, images = phantom
    cls, seg = FakeClassifier(), FakeSegments()
    keypoints = FakeKeypoints({images[v]: pv.keypoints for v, pv in st.views.items()}, {images[View.NEUTRAL]: 20.0})
    result = XrayPipeline(keypoints, [cls], seg).run(study, study.instances)
    neutral = next(i for i in result.images if i.view == View.NEUTRAL)
    assert neutral.rejected.startswith("keypoint uncertainty too high") and neutral.masks == []
    assert all(not i.rejected for i in result.images if i.view != View.NEUTRAL)
    assert cls.calls == [] and seg.calls == 0
    assert any(w.startswith("seed classifiers skip the neutral view: keypoint uncertainty too high")
               for w in result.warnings)


def test_implausible_flexion_view_gates_the_dynamic_measurements(phantom) -> None:  # noqa: ANN001
    result, cls, seg = run(phantom, View.FLEXION)
    dyn = [m for m in result.measurements if m.view is None]
    assert dyn and all(m.value is None and "flexion view: implausible anatomy" in m.reason for m in dyn)
    inst = [f for f in result.findings if f.key == "instability"]
    assert len(inst) == 5 and all(f.value == "not measurable" for f in inst)
    assert cls.calls == [(View.NEUTRAL,)] and seg.calls == 1  # the neutral view passed: the classifiers ran
    assert all(m.value is not None for m in result.measurements
               if m.view == View.NEUTRAL and m.key in ("cobb_c2_c7", "sva_c2_c7"))


def _texts(items, concept: str | None = None) -> list[str]:  # noqa: ANN001
    """Every TEXT value in the tree (of concept code ``concept`` only, e.g. 112039 Tracking Identifier)."""
    out = []
    for it in items:
        if "TextValue" in it and (concept is None or it.ConceptNameCodeSequence[0].CodeValue == concept):
            out.append(str(it.TextValue))
        if "ContentSequence" in it:
            out += _texts(it.ContentSequence, concept)
    return out


def _scoord_images(items) -> set[str]:  # noqa: ANN001
    """SOP instance UIDs that SCOORDs (anywhere in the tree) are drawn on."""
    out: set[str] = set()
    for it in items:
        if getattr(it, "ValueType", "") == "SCOORD":
            out |= {str(r.ReferencedSOPSequence[0].ReferencedSOPInstanceUID) for r in it.ContentSequence}
        if "ContentSequence" in it:
            out |= _scoord_images(it.ContentSequence)
    return out


def _dciodvfy_errors(ds, path: Path) -> list[str]:  # noqa: ANN001
    import subprocess

    ds.save_as(path, enforce_file_format=True)
    out = subprocess.run(["dciodvfy", str(path)], capture_output=True, text=True)
    return [ln for ln in (out.stdout + out.stderr).splitlines() if ln.startswith("Error")]


def _gsps_drawing(pr) -> tuple[int, list[str]]:  # noqa: ANN001
    """(graphic objects drawn, texts) of a GSPS."""
    n, texts = 0, []
    for ann in pr.GraphicAnnotationSequence:
        n += len(ann.get("GraphicObjectSequence", []))
        texts += [str(t.UnformattedTextValue) for t in ann.get("TextObjectSequence", [])]
    return n, texts


def test_gated_view_is_not_drawn(phantom, tmp_path: Path, require) -> None:  # noqa: ANN001
    """A view that failed the gate gets no outlines, measurement figures or SEG segments in any output: the SR has
    no group on it (and no finding resting on it is drawn on another view), no SEG references it, its GSPS carries
    only the reason as text, and the objects pass dciodvfy. The other views are drawn as before."""
    from pipelines.dicom_out import encode
    from pipelines.results_json import result_from_json, result_to_json

    st, study, _ = phantom
    result, _, _ = run(phantom, View.NEUTRAL)
    uid = {v: pv.sop_instance_uid for v, pv in st.views.items()}
    image = next(i for i in result.images if i.view == View.NEUTRAL)
    assert image.rejected.startswith("implausible anatomy: C4 and C5 overlap") and image.masks == []
    assert all(not i.rejected and len(i.masks) == 6 for i in result.images if i.view != View.NEUTRAL)
    assert image.keypoints  # kept in the result (audit, corrections) ...
    assert [i.rejected for i in result_from_json(result_to_json(result)).images] == [i.rejected for i in result.images]

    objects = encode(study, result)
    sr = next(o for o in objects if o.Modality == "SR")
    drawn_on = _scoord_images(sr.ContentSequence)
    assert uid[View.NEUTRAL] not in drawn_on and {uid[View.FLEXION], uid[View.EXTENSION]} <= drawn_on
    idents = _texts(sr.ContentSequence, "112039")
    assert not any("[neutral]" in t for t in idents) and any(t.startswith("Vertebral corners C2-C7 [flexion]")
                                                             for t in idents)
    texts = _texts(sr.ContentSequence)
    assert any(t.startswith("neutral view not measurable (implausible anatomy: C4 and C5 overlap") for t in texts)
    assert any(t.startswith("Cervical kyphosis C2-C7: not measurable") for t in texts)
    segs = [o for o in objects if o.Modality == "SEG" and o.SegmentationType == "BINARY"]
    seg_refs = {str(r.ReferencedSOPInstanceUID) for o in segs for s in o.ReferencedSeriesSequence
                for r in s.ReferencedInstanceSequence}
    assert uid[View.NEUTRAL] not in seg_refs and {uid[View.FLEXION], uid[View.EXTENSION]} <= seg_refs
    prs = {str(o.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID): o
           for o in objects if o.Modality == "PR"}
    n, pr_texts = _gsps_drawing(prs[uid[View.NEUTRAL]])
    assert n == 0 and pr_texts[0].startswith("NOT MEASURABLE (implausible anatomy: C4 and C5")
    assert not any(t in ("C2", "C3", "C4") for t in pr_texts)  # no vertebra labels either
    n, pr_texts = _gsps_drawing(prs[uid[View.FLEXION]])
    assert n > 24 and "C4" in pr_texts
    require("dciodvfy")
    for name, ds in (("sr", sr), ("pr", prs[uid[View.NEUTRAL]])):
        assert _dciodvfy_errors(ds, tmp_path / f"{name}.dcm") == [], name


def test_failed_canal_checks_hide_only_the_spinolaminar_points(phantom) -> None:  # noqa: ANN001
    """Spinolaminar points put on the posterior walls (no canal): the bodies pass, the canal checks fail. The view is
    measured and drawn, but no spinolaminar line, no canal segment, and its GSPS says the canal is not measurable."""
    from pipelines.dicom_out import encode

    st, study, images = phantom
    bad = st.views[View.NEUTRAL].keypoints.copy()
    bad[24:30] = 0.5 * (bad[2:24:4] + bad[3:24:4])  # each vertebra's posterior-wall midpoint
    by_image = {images[v]: (bad if v == View.NEUTRAL else pv.keypoints) for v, pv in st.views.items()}
    result = XrayPipeline(FakeKeypoints(by_image)).run(study, study.instances)
    neutral = next(i for i in result.images if i.view == View.NEUTRAL)
    assert not neutral.rejected and neutral.canal_rejected.startswith("implausible anatomy: C")
    assert next(m for m in result.measurements if m.key == "cobb_c2_c7" and m.view == View.NEUTRAL).value is not None
    objects = encode(study, result)
    sr = next(o for o in objects if o.Modality == "SR")
    idents = _texts(sr.ContentSequence, "112039")
    assert "Spinolaminar line [flexion]" in idents and "Spinolaminar line [neutral]" not in idents
    assert any(t.startswith("Vertebral corners C2-C7 [neutral]") for t in idents)
    assert any(t.startswith("neutral view canal not measurable (implausible anatomy") for t in _texts(sr.ContentSequence))
    segments = {str(o.ReferencedSeriesSequence[0].ReferencedInstanceSequence[0].ReferencedSOPInstanceUID):
                [str(s.SegmentLabel) for s in o.SegmentSequence]
                for o in objects if o.Modality == "SEG" and o.SegmentationType == "BINARY"}
    uid = {v: pv.sop_instance_uid for v, pv in st.views.items()}
    assert "spinal canal" not in segments[uid[View.NEUTRAL]] and len(segments[uid[View.NEUTRAL]]) == 6
    assert "spinal canal" in segments[uid[View.FLEXION]]
    pr = next(o for o in objects if o.Modality == "PR"
              and o.ReferencedSeriesSequence[0].ReferencedImageSequence[0].ReferencedSOPInstanceUID == uid[View.NEUTRAL])
    _, texts = _gsps_drawing(pr)
    assert any(t.startswith("CANAL NOT MEASURABLE (implausible anatomy") for t in texts)
    assert any(t.startswith("C2-C7 Cobb angle") for t in texts)


def test_every_view_gated_still_encodes(phantom, tmp_path: Path, require) -> None:  # noqa: ANN001
    """All three views rejected: an SR of remarks only (no Imaging Measurements container, valid), no SEG, three
    GSPS with the reason, and the report."""
    from pipelines.dicom_out import encode

    result, _, _ = run(phantom, View.NEUTRAL, View.FLEXION, View.EXTENSION)
    assert all(i.rejected for i in result.images)
    objects = encode(phantom[1], result)
    kinds = [o.Modality for o in objects]
    assert "SEG" not in kinds and kinds.count("PR") == 3 and kinds.count("SR") == 1
    sr = next(o for o in objects if o.Modality == "SR")
    names = [str(it.ConceptNameCodeSequence[0].CodeValue) for it in sr.ContentSequence]
    assert "126010" not in names  # no Imaging Measurements
    texts = _texts(sr.ContentSequence)
    assert sum("view not measurable (implausible anatomy" in t for t in texts) == 3
    assert not _scoord_images(sr.ContentSequence)
    require("dciodvfy")
    assert _dciodvfy_errors(sr, tmp_path / "sr.dcm") == []
