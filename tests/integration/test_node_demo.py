"""``cspine-node demo``, the README's main command: the embedded node end to end in a subprocess.

No mocks: the real embedded node (SCP, spool, filesystem-transport Celery worker), real C-STORE, the shipped models.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pydicom
import pytest

pytestmark = pytest.mark.timeout(600)


def _demo(tmp_path: Path, *args: str) -> str:
    proc = subprocess.run([sys.executable, "-m", "node.cli", "demo", "--spool", str(tmp_path / "spool"), *args],
                          capture_output=True, text=True, timeout=540, cwd=Path(__file__).resolve().parents[2])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def _outbox_files(stdout: str) -> list[Path]:
    dirs = re.findall(r"^result objects in (\S+):$", stdout, flags=re.M)
    assert dirs, stdout[-2000:]
    return [p for d in dirs for p in sorted(Path(d).glob("*.dcm"))]


def test_demo_analyses_a_phantom_study_and_writes_the_result_objects(tmp_path: Path) -> None:
    out = _demo(tmp_path)
    assert "C-STORE statuses: 0x0000 (3 instances)" in out
    assert re.search(r"analysed in \d+\.\d s", out)
    assert re.search(r"C2-C7 Cobb angle C2-C7 \[neutral\]: -?\d+\.\d\d deg", out)
    assert len(re.findall(r"FINDING Spinal cord compression C\d-C\d: (present|absent) p=", out)) == 5
    files = _outbox_files(out)
    kinds = {(str(ds.Modality), str(ds.SeriesDescription)) for ds in (pydicom.dcmread(f, stop_before_pixels=True) for f in files)}
    modalities = {m for m, _ in kinds}
    assert {"SR", "SEG", "PR"} <= modalities
    assert any("Grad-CAM" in d for _, d in kinds)
    assert "Celery" not in out and "celery@" not in out  # no worker banner in the demo


def test_demo_with_mri_builds_the_patient_report_with_the_neck_pain_prediction(tmp_path: Path) -> None:
    out = _demo(tmp_path, "--with-mri", "--seed", "3")
    assert out.count("C-STORE statuses: 0x0000") == 2
    assert "mri pipeline" in out and "xray pipeline" in out
    block = out.split("patient-level report, model prediction:", 1)[1]
    prob = re.search(r"Probability: (\d\.\d+)", block)
    assert prob and 0.0 <= float(prob.group(1)) <= 1.0
    assert re.search(r"Postoperative neck pain recovery: (likely|unlikely)", block)
    descs = [str(pydicom.dcmread(f, stop_before_pixels=True).SeriesDescription) for f in _outbox_files(out)]
    assert any("patient-level report" in d and "(SR)" in d for d in descs)
    assert any("patient-level report" in d and "(PDF)" in d for d in descs)
