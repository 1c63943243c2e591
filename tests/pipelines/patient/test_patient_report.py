"""Patient-level report: Fig. 7 factors and Fig. 8 corroborations from hand-made results."""

from __future__ import annotations

import pytest

from pipelines.mri.grading import THRESHOLDS, level_findings, study_findings
from pipelines.patient.report import FACTORS, correlate, patient_report, sites_overlap, vertebrae_of
from pipelines.results import AlgorithmInfo, Finding, StudyResult
from pipelines.vocabulary import LEVELS, TASKS

ALG = AlgorithmInfo("test", "0")


def _mri(positive: dict[str, set[str]]) -> StudyResult:
    probs = {t: [0.9 if lv in positive.get(t, set()) else 0.1 for lv in LEVELS] for t in TASKS}
    return StudyResult("1.2.3", "mri", ALG, findings=study_findings(probs))


def _xray(findings: list[Finding]) -> StudyResult:
    return StudyResult("1.2.4", "xray", ALG, findings=findings)


def test_grading_thresholds_and_sites():
    fs = level_findings("C4-C5", {t: THRESHOLDS[t] for t in TASKS} | {"canal_stenosis": 0.2})
    by = {f.key: f for f in fs}
    assert by["disc_degeneration"].value == "present" and by["canal_stenosis"].value == "absent"
    assert all(f.site == "C4-C5" and f.probability is not None and f.threshold for f in fs)
    assert "uncertain" in " ".join(by["disc_degeneration"].evidence)
    with pytest.raises(ValueError):
        level_findings("C7-T1", {t: 0.5 for t in TASKS})
    assert len(study_findings({t: [0.1] * 5 for t in TASKS})) == 20


def test_sites():
    assert vertebrae_of("C3-C5") == ("C3", "C4", "C5")
    assert sites_overlap("C4-C5", "C3-C5") and not sites_overlap("C5-C6", "C3-C5")
    assert not sites_overlap("C4-C5", "")


def test_mri_herniation_corroborates_canal_stenosis_at_the_same_level():
    mri = _mri({"disc_degeneration": {"C3-C4", "C4-C5", "C5-C6"}, "canal_stenosis": {"C4-C5"},
                "foraminal_stenosis_left": {"C6-C7"}})
    cor = correlate(None, mri)
    assert [(c.threshold, c.site) for c in cor] == [("herniation_canal", "C4-C5")]
    assert cor[0].probability == pytest.approx(0.9)
    assert any("MRI" in e for e in cor[0].evidence)


def test_xray_and_mri_corroborate_and_report_lists_every_factor():
    xray = _xray([
        Finding("canal_stenosis", "Developmental canal stenosis", "present", "C3-C5"),
        Finding("instability", "Segmental instability", "present", "C5-C6"),
        Finding("instability", "Segmental instability", "absent", "C4-C5"),
        Finding("kyphosis", "Cervical kyphosis", "absent", "C2-C7"),
        Finding("cervical_deformity", "Cervical sagittal deformity (SVA)", "not measurable", "C2-C7"),
    ])
    mri = _mri({"disc_degeneration": {"C5-C6"}, "canal_stenosis": {"C4-C5"}})
    rep = patient_report(xray, mri)
    factors = {f.key: f for f in rep.factors}
    assert len(rep.factors) == len(FACTORS) == 8
    assert factors["factor_developmental_stenosis"].value == "present"
    assert factors["factor_stability"].site == "C5-C6"
    assert factors["factor_curvature"].value == "absent"
    assert factors["factor_sagittal_balance"].value == "not assessed"
    assert factors["factor_spinal_stenosis"].site == "C4-C5"
    assert factors["factor_foramen_left"].value == "absent"
    assert rep.overall is not None and rep.overall.value == "present"
    pairs = {(c.threshold, c.site) for c in rep.corroborations}
    assert pairs == {("developmental_canal", "C4-C5"), ("instability_herniation", "C5-C6")}
    assert "Fig. 7" in rep.summary()


def test_report_without_xray_marks_xray_factors_not_assessed():
    rep = patient_report(None, _mri({}))
    values = {f.key: f.value for f in rep.factors}
    assert values["factor_curvature"] == "not assessed"
    assert values["factor_disc_degeneration"] == "absent"
    assert rep.overall.value == "absent"
    with pytest.raises(ValueError):
        patient_report(_mri({}), None)


def test_report_from_both_phantoms_of_one_patient():
    """X-ray phantom truth findings (the X-ray pipeline's keys) + MRI phantom truth -> a full Fig. 7 report."""
    from pipelines.phantoms.mri import generate_series
    from pipelines.phantoms.xray import generate_study

    xs = generate_study(3, shape=(384, 384))
    mri_ph = generate_series(3, shape=(128, 128), n_slices=7)
    xray = _xray(list(xs.findings))
    mri = StudyResult("1.2.3", "mri", ALG, findings=[f for f in mri_ph.findings() if f.key in TASKS])
    rep = patient_report(xray, mri)
    assert all(f.value in ("present", "absent") for f in rep.factors), rep.summary()
    by = {f.key: f for f in rep.factors}
    for t in mri_ph.levels:
        assert (t.level in by["factor_disc_degeneration"].site.split(", ")) == t.disc_herniation
    expected = {t.level for t in mri_ph.levels if t.disc_herniation and t.canal_stenosis}
    assert {c.site for c in rep.corroborations if c.threshold == "herniation_canal"} == expected
