"""Degenerate radiographs (1x1, 1xN, Nx1, under 32 px) are refused by ``image_from_dataset`` with a clear
``ValueError``, which the X-ray pipeline reports as "image X: not analysed (...)" while it analyses the other
images of the study (before, a 1x1 image made the whole study fail, hence a dead letter in the node)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipelines.xray.preprocessing import MIN_IMAGE_SIZE, image_from_dataset
from tests.node.nodetest_data import make_image, phantom_study_files, write_image

ROOT = Path(__file__).resolve().parents[3]


@pytest.mark.parametrize(("rows", "cols"), [(1, 1), (1, 300), (300, 1), (MIN_IMAGE_SIZE - 1, 64)])
def test_too_small_images_raise_a_clear_error(rows: int, cols: int) -> None:
    with pytest.raises(ValueError, match=rf"image too small to analyse \({rows}x{cols} pixels"):
        image_from_dataset(make_image(rows=rows, cols=cols))


def test_smallest_accepted_image_is_read() -> None:
    img = image_from_dataset(make_image(rows=MIN_IMAGE_SIZE, cols=MIN_IMAGE_SIZE))
    assert img.shape == (MIN_IMAGE_SIZE, MIN_IMAGE_SIZE) and 0.0 <= img.min() <= img.max() <= 1.0


@pytest.mark.slow
def test_study_with_a_1x1_image_analyses_the_others(tmp_path: Path) -> None:
    """``cspine-node analyze`` on a phantom lateral study plus a 1x1 and a 1x300 DX of the same study: results for
    the phantom views, and a "not analysed" warning for each degenerate image."""
    study_uid, _ = phantom_study_files(tmp_path / "in", seed=3, shape=(512, 448))
    tiny = make_image(study_uid, rows=1, cols=1, seed=1)
    line = make_image(study_uid, rows=1, cols=300, seed=2)
    write_image(tmp_path / "in" / "tiny.dcm", tiny)
    write_image(tmp_path / "in" / "line.dcm", line)
    env = {k: v for k, v in os.environ.items() if not k.startswith("CSPINE_")}
    r = subprocess.run([sys.executable, "-m", "node.cli", "analyze", str(tmp_path / "in"), "--out", str(tmp_path / "out")],
                       cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    summary = (tmp_path / "out" / "summary.txt").read_text()
    assert f"image {tiny.SOPInstanceUID}: not analysed (image too small to analyse (1x1 pixels" in summary
    assert f"image {line.SOPInstanceUID}: not analysed (image too small to analyse (1x300 pixels" in summary
    for view in ("neutral", "flexion", "extension"):
        assert f"C2-C7 Cobb angle C2-C7 [{view}]" in summary
    assert any(p.name.startswith("SR_") for p in (tmp_path / "out" / study_uid).glob("*.dcm"))
