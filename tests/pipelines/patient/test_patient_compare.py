"""pipelines.patient.compare: per-measurement change and change per year, new/resolved findings, notes."""

from __future__ import annotations

import pytest

from pipelines.patient.compare import PriorStudy, compare, finding_status, years_between
from pipelines.results import AlgorithmInfo, Finding, Measurement, StudyResult, View

ALG = AlgorithmInfo("cspine-xray", "1.1.1")


def result(cobb: float | None, instability_c4: str, *, uid: str = "1.2.3", sva: float = 20.0,
           alg: AlgorithmInfo = ALG) -> StudyResult:
    r = StudyResult(uid, "xray", alg)
    r.measurements = [
        Measurement("cobb_c2_c7", "C2-C7 Cobb angle", cobb, "deg", "C2-C7", View.NEUTRAL),
        Measurement("cobb_c2_c7", "C2-C7 Cobb angle", 30.0, "deg", "C2-C7", View.FLEXION),
        Measurement("sva_c2_c7", "C2-C7 SVA", sva, "mm", "C2-C7", View.NEUTRAL),
        Measurement("listhesis_distance", "Listhesis", 1.0, "mm", "C4-C5", None, image_uids=("a", "b")),
    ]
    r.findings = [
        Finding("instability", "Segmental instability", instability_c4, "C4-C5"),
        Finding("kyphosis", "Cervical kyphosis", "absent", "C2-C7"),
    ]
    return r


def test_measurement_change_and_change_per_year() -> None:
    prior = PriorStudy("9.9", "20220301", result(18.0, "absent", uid="9.9", sva=25.0), "node index")
    cmp = compare(result(12.0, "present"), "20240301", [prior])
    assert cmp is not None and cmp.compared and cmp.prior_date == "20220301"
    assert cmp.years == pytest.approx(731 / 365.25)
    by = {(m.key, m.view): m for m in cmp.measurements}
    cobb = by[("cobb_c2_c7", "neutral")]
    assert (cobb.current, cobb.previous) == (12.0, 18.0)
    assert cobb.change == pytest.approx(-6.0)
    assert cobb.per_year == pytest.approx(-6.0 / (731 / 365.25))
    assert by[("cobb_c2_c7", "flexion")].change == pytest.approx(0.0)  # matched per view, not across views
    assert by[("sva_c2_c7", "neutral")].change == pytest.approx(-5.0)
    assert by[("listhesis_distance", "flexion-extension")].previous == 1.0
    assert [(f.key, f.site, f.status) for f in cmp.findings] == [("instability", "C4-C5", "new")]
    text = "\n".join(cmp.lines())
    assert "Compared with 2022-03-01 (2.0 years earlier, node index)" in text
    assert "12.00 deg, was 18.00 deg on 2022-03-01, change -6.00 deg (-3.00 deg/year)" in text
    assert "Segmental instability C4-C5: new (was absent, now present)" in text


def test_resolved_persistent_not_measurable() -> None:
    prior = PriorStudy("9.9", "20230101", result(10.0, "present", uid="9.9"), "pacs (QIDO-RS)")
    cmp = compare(result(None, "absent"), "20240101", [prior])
    assert [f.status for f in cmp.findings] == ["resolved"]
    cobb = next(m for m in cmp.measurements if m.key == "cobb_c2_c7" and m.view == "neutral")
    assert cobb.current is None and cobb.change is None and cobb.per_year is None
    assert "not measurable, was 10.00 deg" in "\n".join(cmp.lines())
    assert finding_status("present", "present") == "persistent"
    assert finding_status("kyphotic", "lordotic") == "changed"
    assert finding_status("absent", "absent") is None
    assert finding_status("not assessable", "present") == "not assessable now"


def test_newest_earlier_prior_with_result_is_compared_notes_for_the_rest() -> None:
    priors = [
        PriorStudy("7.7", "20200101", result(20.0, "absent", uid="7.7"), "node index"),
        PriorStudy("8.8", "20230601", None, "pacs (C-FIND)", "prior SR from another vendor (ACME, template none): not compared"),
        PriorStudy("8.9", "20230101", result(15.0, "absent", uid="8.9"), "pacs (C-FIND)"),
        PriorStudy("6.6", "20250101", result(99.0, "absent", uid="6.6"), "node index"),  # later than the study
    ]
    cmp = compare(result(12.0, "absent"), "20240101", priors)
    assert cmp.prior_study_uid == "8.9"
    assert cmp.notes == ["prior study of 2023-06-01 (pacs (C-FIND)): prior SR from another vendor (ACME, template none): not compared"]


def test_only_unreadable_priors_give_notes_no_prior_gives_none() -> None:
    cmp = compare(result(12.0, "absent"), "20240101",
                  [PriorStudy("8.8", "20230601", None, "pacs (QIDO-RS)", "prior SR unreadable (InvalidDicomError): not compared")])
    assert cmp is not None and not cmp.compared and cmp.measurements == []
    assert cmp.lines()[0] == "Compared with: no earlier study compared"
    assert "unreadable" in cmp.notes[0]
    assert compare(result(12.0, "absent"), "20240101", []) is None


def test_other_algorithm_is_noted_and_same_day_has_no_rate() -> None:
    prior = PriorStudy("9.9", "20240101", result(18.0, "absent", uid="9.9", alg=AlgorithmInfo("other-model", "0.1")), "node index")
    cmp = compare(result(12.0, "absent"), "20240101", [prior])
    assert all(m.per_year is None for m in cmp.measurements)
    assert any("other-model 0.1" in n for n in cmp.notes)
    assert years_between("2024", "20240101") is None


def test_lookup_runs_beside_the_pipeline_and_a_slow_one_is_a_note(tmp_path) -> None:  # noqa: ANN001
    import threading
    import time

    from pipelines.patient.compare import PriorLookup
    from pipelines.study import Study

    release = threading.Event()

    class Slow:  # a history whose PACS answers after the analysis stopped waiting
        priors_limit_s = 0.2

        def priors(self, study, pipeline):  # noqa: ANN001, ANN202
            release.wait(5)
            return [PriorStudy("9.9", "20220301", result(18.0, "absent", uid="9.9"), "slow (QIDO-RS)")]

    class Quick:
        def priors(self, study, pipeline):  # noqa: ANN001, ANN202
            time.sleep(0.1)
            return [PriorStudy("9.9", "20220301", result(18.0, "absent", uid="9.9"), "quick (QIDO-RS)")]

    study = Study("1.2.3", ())
    t = time.perf_counter()
    lookup = PriorLookup(Quick(), study, "xray")
    time.sleep(0.3)  # the pipeline
    cmp = lookup.comparison(result(12.0, "absent"))
    assert cmp.compared and lookup.wait_s < 0.05 and lookup.lookup_s >= 0.1 and time.perf_counter() - t < 1
    slow = PriorLookup(Slow(), study, "xray")
    cmp = slow.comparison(result(12.0, "absent"))
    release.set()
    assert not cmp.compared and cmp.notes == ["prior lookup did not finish within 0.2 s: not compared"]
    assert 0.15 < slow.wait_s < 1
    assert PriorLookup(None, study, "xray").comparison(result(12.0, "absent")) is None


def test_findings_match_by_name_when_the_prior_key_was_cut() -> None:
    old = result(18.0, "absent", uid="9.9")
    old.findings.append(Finding("atlanto_occipit", "Atlanto-occipital assimilation", "present", "C0-C1"))
    now = result(18.0, "absent")
    now.findings.append(Finding("atlanto_occipital_assimilation", "Atlanto-occipital assimilation", "present", "C0-C1"))
    cmp = compare(now, "20240301", [PriorStudy("9.9", "20220301", old, "pacs (QIDO-RS)")])
    assert [(f.key, f.status) for f in cmp.findings] == [("atlanto_occipital_assimilation", "persistent")]
