"""Findings: thresholds of paper 002 at their boundaries, consecutive Pavlov levels, not-measurable input."""

from __future__ import annotations

import pytest

from pipelines.phantoms.xray import generate_study
from pipelines.results import SEGMENTS, Measurement, View
from pipelines.xray.findings import Thresholds, findings_from_measurements

N = View.NEUTRAL


def m(key, site, value, unit="deg", view=N, reason=""):
    return Measurement(key=key, name=key, value=value, unit=unit, site=site, view=view, reason=reason)


def find(fs, key, site=None):
    hits = [f for f in fs if f.key == key and (site is None or f.site == site)]
    assert len(hits) == 1, (key, site, hits)
    return hits[0]


@pytest.mark.parametrize(("cobb", "expected"), [(-13.5, "present"), (-13.0, "absent"), (-12.9, "absent"),
                                                (20.0, "absent")])
def test_kyphosis_threshold(cobb, expected):
    f = find(findings_from_measurements([m("cobb_c2_c7", "C2-C7", cobb)]), "kyphosis")
    assert f.value == expected
    assert f"{cobb:.1f}" in f.evidence[0] and "Suda" in f.threshold
    assert f.measurement_keys == (("cobb_c2_c7", "C2-C7"),)


def test_kyphosis_uses_c6_when_c7_missing_and_reports_not_measurable_otherwise():
    fs = findings_from_measurements([m("cobb_c2_c7", "C2-C7", None, reason="C7 hidden"),
                                     m("cobb_c2_c6", "C2-C6", -20.0)])
    f = find(fs, "kyphosis")
    assert f.value == "present" and f.site == "C2-C6"
    f = find(findings_from_measurements([m("cobb_c2_c7", "C2-C7", None, reason="C7 hidden")]), "kyphosis")
    assert f.value == "not measurable" and "C7 hidden" in f.evidence[0]
    assert find(findings_from_measurements([]), "kyphosis").value == "not measurable"


@pytest.mark.parametrize(("sva", "expected"), [(41.0, "present"), (40.0, "absent"), (20.0, "absent"),
                                               (14.9, "present"), (15.0, "absent")])
def test_sva_thresholds(sva, expected):
    f = find(findings_from_measurements([m("sva_c2_c7", "C2-C7", sva, "mm")]), "cervical_deformity")
    assert f.value == expected
    assert any(f"{sva:.1f}" in e for e in f.evidence)


def test_sva_low_criterion_can_be_disabled():
    t = Thresholds(sva_low_mm=None)
    assert find(findings_from_measurements([m("sva_c2_c7", "C2-C7", 5.0, "mm")], t), "cervical_deformity").value == "absent"


def test_instability_per_segment():
    ms = []
    for seg in SEGMENTS:
        ms.append(m("listhesis_distance", seg, 1.0, "mm", view=None))
        ms.append(m("listhesis_angle", seg, 5.0, view=None))
    ms[2] = m("listhesis_distance", "C3-C4", 3.6, "mm", view=None)
    ms[5] = m("listhesis_angle", "C4-C5", 11.5, view=None)
    fs = findings_from_measurements(ms)
    assert find(fs, "instability", "C3-C4").value == "present"
    assert "3.6 mm > 3.5 mm" in find(fs, "instability", "C3-C4").evidence[0]
    assert find(fs, "instability", "C4-C5").value == "present"
    assert find(fs, "instability", "C2-C3").value == "absent"
    # configurable: a stricter translation limit flags C2-C3 too
    fs = findings_from_measurements(ms, Thresholds(instability_translation_mm=0.5))
    assert find(fs, "instability", "C2-C3").value == "present"
    # without a flexion-extension pair: not measurable, per segment
    fs = findings_from_measurements([m("cobb_c2_c7", "C2-C7", 10.0)])
    assert all(f.value == "not measurable" for f in fs if f.key == "instability")


def _pavlov(values):
    return [m("pavlov_ratio", f"C{i}", v, "1") for i, v in zip(range(3, 8), values, strict=True)]


def test_canal_stenosis_needs_three_consecutive_levels():
    f = find(findings_from_measurements(_pavlov([0.7, 0.7, 0.8, 0.7, 0.7])), "canal_stenosis")
    assert f.value == "absent" and len(f.evidence) == 4
    f = find(findings_from_measurements(_pavlov([0.9, 0.74, 0.6, 0.7, 0.8])), "canal_stenosis")
    assert f.value == "present" and f.site == "C4-C6"
    assert f.measurement_keys == (("pavlov_ratio", "C4"), ("pavlov_ratio", "C5"), ("pavlov_ratio", "C6"))
    f = find(findings_from_measurements(_pavlov([0.7, 0.7, None, 0.7, 0.7])), "canal_stenosis")
    assert f.value == "absent" and "some levels not measurable" in f.evidence
    f = find(findings_from_measurements(_pavlov([0.7, None, None, None, 0.7])), "canal_stenosis")
    assert f.value == "not measurable"
    f = find(findings_from_measurements(_pavlov([0.8] * 5), Thresholds(pavlov_ratio=0.82)), "canal_stenosis")
    assert f.value == "present" and f.site == "C3-C7"


@pytest.mark.parametrize(("cobb", "offsets", "label"), [
    (25.0, [3, 5, 5, 3], "normal"), (5.0, [1, 1, 0.5, 0], "straightened"), (-8.0, [-2, -3, -3, -2], "reversed-kyphotic"),
    (2.0, [3, 2.5, -1, -3], "S-shaped")])
def test_curvature_class(cobb, offsets, label):
    ms = [m("cobb_c2_c7", "C2-C7", cobb)] + [m("curvature_offset", f"C{k}", o, "mm") for k, o in
                                            zip(range(3, 7), offsets, strict=True)]
    assert find(findings_from_measurements(ms), "curvature_class").value == label


def test_phantom_findings_match_its_truth():
    for seed in range(6):
        study = generate_study(seed, shape=(64, 64))
        fs = study.findings
        assert {f.key for f in fs} == {"kyphosis", "cervical_deformity", "instability", "canal_stenosis",
                                       "curvature_class"}
        assert all(f.value != "not measurable" for f in fs)
        cobb = next(x.value for x in study.truth if x.key == "cobb_c2_c7" and x.view == N)
        assert find(fs, "kyphosis").value == ("present" if cobb < -13 else "absent")


def test_thresholds_from_mapping():
    t = Thresholds.from_mapping({"kyphosis_cobb_deg": "-10", "sva_low_mm": None, "pavlov_consecutive_levels": 2})
    assert t.kyphosis_cobb_deg == -10.0 and t.sva_low_mm is None and t.pavlov_consecutive_levels == 2
    assert t.instability_angle_deg == 11.0
    with pytest.raises(ValueError, match="unknown threshold"):
        Thresholds.from_mapping({"kyphosis": 1})
    assert find(findings_from_measurements([m("cobb_c2_c7", "C2-C7", -11.0)], t), "kyphosis").value == "present"
