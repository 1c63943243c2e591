"""Settings (env + config file), the ``cspine-node`` CLI (status, analyze, pass-through subcommands) and
the log policy (no patient names or IDs)."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path

import pydantic
import pytest

from node.logs import JsonFormatter, log, setup_logging
from node.settings import NodeSettings
from node.spool import Spool
from tests.node.nodetest_data import make_image, phantom_study_files, write_image

ROOT = Path(__file__).resolve().parents[2]


def _cli(*args: str, env: dict[str, str] | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    import os

    e = {k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")}
    e.update(env or {})
    return subprocess.run([sys.executable, "-m", "node.cli", *args], cwd=ROOT, env=e, capture_output=True,
                          text=True, timeout=timeout)


def test_settings_env_over_file_over_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = tmp_path / "node.toml"
    cfg.write_text('ae_title = "FROMFILE"\nport = 4243\nstable_age_s = 9\n'
                   '[[destinations]]\nname = "pacs"\nkind = "dimse"\nae_title = "PACS"\nhost = "10.0.0.5"\nport = 104\n')
    monkeypatch.setenv("CSPINE_CONFIG", str(cfg))
    monkeypatch.setenv("CSPINE_PORT", "5555")
    monkeypatch.setenv("CSPINE_ALLOWED_CALLING_AETS", '["ORTHANC", "PACS"]')
    s = NodeSettings()
    assert (s.ae_title, s.port, s.stable_age_s) == ("FROMFILE", 5555, 9)
    assert s.allowed_calling_aets == ["ORTHANC", "PACS"]
    assert s.destination("pacs").port == 104 and s.embedded_broker
    assert NodeSettings(port=7).port == 7
    monkeypatch.setenv("CSPINE_DESTINATIONS", '[{"name": "a", "kind": "stow"}]')
    with pytest.raises(pydantic.ValidationError, match="stow needs url"):
        NodeSettings()


def test_status_reads_the_index_without_a_running_node(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    study = make_image()
    from io import BytesIO

    import pydicom

    from node.spool import header_from_dataset

    b = BytesIO()
    study.save_as(b, enforce_file_format=True)
    spool.store(b.getvalue(), header_from_dataset(pydicom.dcmread(BytesIO(b.getvalue()))))
    spool.fail_study(study.StudyInstanceUID, 1, "RuntimeError: boom")
    r = _cli("status", "--spool", str(tmp_path / "spool"))
    assert r.returncode == 0, r.stderr
    assert "studies: failed 1" in r.stdout and "dead letters: 1" in r.stdout and "boom" in r.stdout
    r = _cli("status", "--spool", str(tmp_path / "spool"), "--json")
    info = json.loads(r.stdout)
    assert info["studies"] == {"failed": 1} and info["instances"]["count"] == 1


def test_analyze_reports_a_study_it_does_not_analyse(tmp_path: Path) -> None:
    ct = write_image(tmp_path / "in" / "ct.dcm", make_image(modality="CT", sop_class="1.2.840.10008.5.1.4.1.1.2",
                                                             body_part="CHEST", view=""))
    (tmp_path / "in" / "notes.txt").write_text("not dicom")
    r = _cli("analyze", str(ct.parent), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert "not analysed" in summary and "modality CT is not DX/CR" in summary
    assert "notes.txt: not a DICOM" in r.stderr


@pytest.mark.slow
def test_analyze_phantom_study_writes_results(tmp_path: Path) -> None:
    study_uid, files = phantom_study_files(tmp_path / "in", seed=5)
    r = _cli("analyze", str(tmp_path / "in"), "--out", str(tmp_path / "out"))
    assert r.returncode == 0, r.stderr[-3000:]
    out = list((tmp_path / "out" / study_uid).glob("*.dcm"))
    assert any(p.name.startswith("SR_") for p in out), [p.name for p in out]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert study_uid in summary and "xray" in summary


def test_phantom_subcommand_passes_through(tmp_path: Path) -> None:
    r = _cli("phantom", "xray", "--out", str(tmp_path / "ph"), "--seed", "2", "--shape", "256", "256")
    assert r.returncode == 0, r.stderr[-3000:]
    assert list((tmp_path / "ph").rglob("*.dcm"))


def test_unknown_target_is_an_error() -> None:
    r = _cli("train", "ct")
    assert r.returncode != 0


def test_logs_are_json_without_patient_fields() -> None:
    stream = io.StringIO()
    setup_logging("INFO", json_lines=True, stream=stream)
    logger = logging.getLogger("node.test")
    log(logger, "instance stored", study_uid="1.2.3", PatientName="Doe^Jane", patient_id="SECRET")
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "instance stored" and line["study_uid"] == "1.2.3"
    assert "Doe" not in stream.getvalue() and "SECRET" not in stream.getvalue()
    rec = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
    rec.PatientName = "Doe^Jane"
    assert "Doe" not in JsonFormatter().format(rec)


def test_models_table_comes_from_the_registry_and_the_settings(tmp_path: Path) -> None:
    from models.registry import REGISTRY

    env = {"CSPINE_MODELS": json.dumps({"mri": {"enabled": False}, "keypoints": {"weights": str(tmp_path / "kp.pt"),
                                                                                "device": "cpu"}})}
    out = _cli("models", "--json", env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = {r["model"]: r for r in json.loads(out.stdout)}
    assert list(rows) == [e.name for e in REGISTRY]
    assert rows["mri"]["enabled"] is False and rows["curvature"]["enabled"] is True
    assert rows["keypoints"]["weights"] == str(tmp_path / "kp.pt") and rows["keypoints"]["device"] == "cpu"
    assert rows["curvature"]["device"] == "auto" and rows["curvature"]["weights"] == "shipped"
    assert all(Path(r["card"]).is_file() for r in rows.values())
    bad = _cli("models", env={"CSPINE_MODELS": '{"nonsense": {}}'}, timeout=120)
    assert bad.returncode != 0 and "unknown model" in bad.stderr
