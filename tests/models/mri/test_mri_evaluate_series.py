"""The honest MRI evaluation through the real pipeline (``models.mri.evaluate_series``): its bookkeeping on
hand-made records, and one written series of each renderer end to end."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from models.mri import DEFAULT_WEIGHTS
from models.mri.evaluate_series import RecordingModel, run_case, summarise
from pipelines.vocabulary import LEVELS, TASKS


def _rec(seed: int, level: str, err: float, *, flagged: bool = False, assessable: bool = True, y: bool = False,
         p: float = 0.5) -> dict:
    return {"seed": seed, "shifts": "none", "level": level, "error_mm": err, "found": err <= 5.0,
            "flagged": flagged or not assessable, "assessable": assessable, "labels": dict.fromkeys(TASKS, y),
            "probs": dict.fromkeys(TASKS, p if assessable else None), "model_probs": dict.fromkeys(TASKS, p),
            "seconds": 0.1, "n_slices": 11, "old_flag": False}


def test_summary_counts_wrong_levels_flags_and_scores():
    recs = [_rec(1, lv, 1.0, y=j % 2 == 0, p=0.9 if j % 2 == 0 else 0.1) for j, lv in enumerate(LEVELS)]
    recs += [_rec(2, LEVELS[0], 18.0, assessable=False, y=True, p=0.2),  # wrong and not assessable: flagged
             _rec(2, LEVELS[1], 19.0, y=False, p=0.8),  # wrong and graded: the number that must be 0
             _rec(2, LEVELS[2], 2.0, assessable=False, y=True, p=0.7)]  # right but not assessable
    s = summarise(recs)
    assert (s["levels"], s["found"], s["series"], s["all_levels_found_series"]) == (8, 6, 2, 1)
    assert (s["wrong_levels"], s["wrong_graded_unflagged"], s["wrong_flagged"]) == (2, 1, 1)
    assert s["not_assessable_fraction"] == pytest.approx(2 / 8) and s["right_but_not_assessable"] == 1
    assert s["error_mm"]["median"] == pytest.approx(1.0)
    t = s["tasks"]["canal_stenosis"]
    assert t["graded"] == 6 and t["auc_graded"] == pytest.approx(1.0)  # the graded scores separate the labels
    assert t["auc_found"] == pytest.approx(1.0) and 0 <= t["ece_graded"] <= 1 and 0 <= t["brier_graded"] <= 1
    assert t["auc_all"] < 1.0  # the ungraded wrong levels' scores count in "all"


@pytest.mark.skipif(not DEFAULT_WEIGHTS.exists(), reason="MRI weights not trained yet")
@pytest.mark.parametrize(("style", "shifts"), [("a", ["slices:7", "flip"]),
                                               ("b", ["matrix:176x144", "pixel:0.78", "slices:9", "t1"])])
def test_one_series_through_the_pipeline(tmp_path: Path, style: str, shifts: list[str]):
    from models.mri.predictor import MriPredictor
    from pipelines.mri.pipeline import MriPipeline

    torch.set_num_threads(1)
    pipe = MriPipeline(RecordingModel(MriPredictor.load(None)))
    recs = run_case(pipe, style, 11, shifts, tmp_path)
    assert [r["level"] for r in recs] == list(LEVELS)
    assert all(np.isfinite(r["error_mm"]) and r["error_mm"] >= 0 for r in recs)
    assert all(all(0 <= v <= 1 for v in r["model_probs"].values()) for r in recs)
    for r in recs:  # graded levels carry the model's probability; not assessable ones none
        assert all((v is None) != r["assessable"] for v in r["probs"].values())
    if style == "a":  # renderer A in its own geometry: the model finds its levels
        assert sum(r["found"] for r in recs) >= 4, [r["error_mm"] for r in recs]
