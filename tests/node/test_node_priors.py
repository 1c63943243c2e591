"""node.priors over the node's own index (no PACS): the newest earlier analysed study of the patient is the prior,
a later one is not, a damaged saved result is a note, and run_analysis writes the comparison into summary.txt and
never logs the Patient ID. The PACS paths (QIDO-RS, C-FIND + C-GET) run against a real Orthanc in
tests/integration/test_priors_pacs.py."""

from __future__ import annotations

import logging
from io import BytesIO
from pathlib import Path

import pydicom

from node.patients import SpoolHistory, save_results
from node.priors import PriorHistory
from node.spool import Spool, header_from_dataset
from node.tasks import run_analysis
from pipelines import Analysis
from pipelines.patient.compare import PriorLookup
from pipelines.results import AlgorithmInfo, Finding, Measurement, StudyResult, View
from pipelines.vocabulary import PipelineName
from tests.node.nodetest_data import make_image

ALG = AlgorithmInfo("cspine-xray", "1.0")


def _store(sp: Spool, date: str) -> str:
    ds = make_image(seed=int(date[-4:]))
    ds.StudyDate = date
    buf = BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    sp.store(buf.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(buf.getvalue()))))
    uid = str(ds.StudyInstanceUID)
    sp.mark_dispatched(uid, sp.study(uid).generation, "t")
    return uid


def _result(uid: str, cobb: float, instability: str) -> StudyResult:
    r = StudyResult(uid, "xray", ALG)
    r.measurements = [Measurement("cobb_c2_c7", "C2-C7 Cobb angle", cobb, "deg", "C2-C7", View.NEUTRAL)]
    r.findings = [Finding("instability", "Segmental instability", instability, "C4-C5")]
    return r


def _analysed(sp: Spool, uid: str, result: StudyResult) -> None:
    from node.patients import spool_study

    gen = sp.study(uid).generation
    sp.begin_analysis(uid)
    rows = save_results(sp, uid, gen, [result], SpoolHistory(sp, 90).identity(spool_study(sp, uid)))
    sp.finish_analysis(uid, gen, [], [], results=rows)


def test_prior_from_the_index(tmp_path: Path) -> None:
    from node.patients import spool_study

    sp = Spool(tmp_path / "spool")
    old, prior, later, current = (_store(sp, d) for d in ("20200101", "20240101", "20270101", "20260101"))
    _analysed(sp, old, _result(old, 30.0, "absent"))
    _analysed(sp, prior, _result(prior, 18.0, "absent"))
    _analysed(sp, later, _result(later, 5.0, "present"))  # after the current study: never its prior
    priors = PriorHistory(sp, 90).priors(spool_study(sp, current), PipelineName.XRAY)
    assert [(p.study_uid, p.study_date, p.source) for p in priors] == [(prior, "20240101", "node index")]
    assert priors[0].result.measurements[0].value == 18.0
    assert PriorHistory(sp, 90).priors(spool_study(sp, old), PipelineName.XRAY) == []
    assert PriorHistory(sp, 90).priors(spool_study(sp, current), PipelineName.MRI) == []
    # a damaged saved result is a note, not an exception
    next((sp.root / "results" / prior).rglob("*.json")).write_text("{broken")
    (note,) = PriorHistory(sp, 90).priors(spool_study(sp, current), PipelineName.XRAY)
    assert note.result is None and note.note.startswith("saved result unreadable")


def test_run_analysis_writes_the_comparison_to_summary(tmp_path: Path, caplog) -> None:  # noqa: ANN001
    sp = Spool(tmp_path / "spool")
    prior, current = _store(sp, "20240101"), _store(sp, "20260101")
    _analysed(sp, prior, _result(prior, 18.0, "absent"))

    def analyze(study, history):  # noqa: ANN001, ANN202 - pipelines.analyze's prior step on a typed result
        result = _result(study.study_uid, 12.0, "present")
        lookup = PriorLookup(history, study, "xray")
        return Analysis(study.study_uid, results=[result], comparisons=[lookup.comparison(result)])

    with caplog.at_level(logging.DEBUG):
        run_analysis(sp, [], current, analyze)
    summary = next((sp.root / "outbox").rglob("summary.txt")).read_text()
    assert "Compared with 2024-01-01 (2.0 years earlier, node index)" in summary
    assert "C2-C7 Cobb angle [neutral]: 12.00 deg, was 18.00 deg on 2024-01-01, change -6.00 deg (-3.00 deg/year)" in summary
    assert "FINDING Segmental instability C4-C5: new (was absent, now present)" in summary
    assert "SECRET-ID-123" not in caplog.text
