"""``cspine-node train xray --from-corrections DIR``: a deterministic split by study with a minimum, a fine-tune of
the current model, the paired comparison on phantoms and held-back corrections, and promotion in the site's store
only when the candidate is not worse on (a) and better on (b). The gate is unit-tested with given numbers and run
for real both ways: a candidate that beats a degraded active version is promoted (and rolled back); a candidate
wrecked by a huge learning rate is stored but not promoted."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.store import ModelStore
from models.xray_keypoints import DEFAULT_WEIGHTS, corrections_train
from models.xray_keypoints.corrections_gate import Comparison, decide, paired
from pipelines.phantoms.xray import generate_study
from pipelines.phantoms.xray.coco import write_coco
from pipelines.results import KEYPOINT_NAMES

torch.set_num_threads(1)


def _cmp(key: str, cur: float, cand: float, ci: tuple[float, float], margin: float = 0.02, **kw) -> Comparison:  # noqa: ANN003
    return Comparison(key, "mm", 30, cur, cand, cur, cand, cand - cur, ci, margin, **kw)


GOOD_A = [_cmp("corner_error_mm", 0.20, 0.201, (-0.004, 0.006)), _cmp("cobb_abs_error_deg", 0.95, 0.93, (-0.1, 0.05), 0.1),
          _cmp("sva_abs_error_mm", 0.14, 0.14, (-0.01, 0.01))]


def test_gate_promotes_only_if_not_worse_on_phantoms_and_better_on_held_back() -> None:
    better = _cmp("median_corner_error_mm", 5.8, 0.3, (-6.0, -4.9))
    d = decide(GOOD_A, better)
    assert d.promote and len(d.reasons) == 4 and all("not worse" in r for r in d.reasons[:3])
    # worse on one phantom quantity beyond the margin: refused, whatever the corrections say
    worse_a = [*GOOD_A[:2], _cmp("sva_abs_error_mm", 0.14, 0.19, (0.03, 0.07))]
    d = decide(worse_a, better)
    assert not d.promote and any("sva_abs_error_mm: may be worse" in r for r in d.reasons)
    # not shown better on the held-back corrections (interval reaches 0, or median not lower)
    assert not decide(GOOD_A, _cmp("median_corner_error_mm", 0.50, 0.45, (-0.12, 0.01))).promote
    assert not decide(GOOD_A, Comparison("median_corner_error_mm", "mm", 8, 0.5, 0.45, 0.40, 0.42, -0.05,
                                         (-0.08, -0.01))).promote
    # better on average but one radiograph much worse (a vertebra moved to a wrong place): refused
    one_bad = [_cmp("corner_error_mm", 0.20, 0.201, (-0.004, 0.006), regressions=1, regression_limit=1.0,
                    max_increase=1.8), *GOOD_A[1:]]
    d = decide(one_bad, better)
    assert not d.promote and "worse by more than 1 mm on 1 image(s) (largest +1.800 mm)" in " ".join(d.reasons)
    # nothing to compare, or a candidate that fails on images: refused
    nan = float("nan")
    assert not decide([], better).promote
    assert not decide(GOOD_A, Comparison("median_corner_error_mm", "mm", 0, nan, nan, nan, nan, nan, (nan, nan))).promote
    fails = _cmp("median_corner_error_mm", 5.8, 0.3, (-6.0, -4.9), current_failures=0, candidate_failures=1)
    d = decide(GOOD_A, fails)
    assert not d.promote and "fails on 1 image" in " ".join(d.reasons)


def test_paired_bootstrap_is_seeded_and_counts_failures() -> None:
    rng = np.random.default_rng(1)
    cur = rng.uniform(0.1, 0.3, 40)
    cand = cur - 0.05 + rng.normal(0, 0.01, 40)
    a, b = paired("x", "mm", cur, cand, rel_margin=0.1), paired("x", "mm", cur, cand, rel_margin=0.1)
    assert a == b and a.n == 40 and a.diff_ci[0] < a.diff_mean < a.diff_ci[1] < 0
    assert a.margin == pytest.approx(0.1 * cur.mean())
    cand[3], cur[5] = np.inf, np.nan
    c = paired("x", "mm", cur, cand)
    assert c.n == 38 and c.candidate_failures == 1 and c.current_failures == 0
    cand[7] = cur[7] + 1.5
    r = paired("x", "mm", cur, cand, regression_limit=1.0)
    assert r.regressions == 1 and r.max_increase == pytest.approx(1.5)
    assert paired("x", "mm", cur, cand).regressions == 0  # no limit: not counted


def _corrections(folder: Path, seeds: range, shape=(330, 280)) -> Path:  # noqa: ANN001
    """Corrections in the corrections-store layout (24 corners, provenance per annotation) from renderer-A truth."""
    write_coco([generate_study(s, shape=shape) for s in seeds], folder, image_format="png")
    path = folder / "annotations.json"
    doc = json.loads(path.read_text())
    doc["categories"][0]["keypoints"] = list(KEYPOINT_NAMES[:24])
    for a in doc["annotations"]:
        a["keypoints"] = a["keypoints"][:72]
        a.update(source_sr_uid=f"2.25.{a['image_id']}", corrected_model_version="1.1.1",
                 corrected_at="2026-12-02T10:00:00Z")
    path.write_text(json.dumps(doc))
    return folder


def test_split_is_deterministic_by_study_and_too_few_are_refused(tmp_path: Path, capsys, monkeypatch) -> None:  # noqa: ANN001
    from pipelines.xray.annotations import read_coco

    folder = _corrections(tmp_path / "corr", range(990200, 990204))
    images = read_coco(folder / "annotations.json")
    train, held = corrections_train.split(images, 0.5)
    again = corrections_train.split(list(reversed(images)), 0.5)
    assert {im.image_uid for im in again[1]} == {im.image_uid for im in held} and len(train) + len(held) == 12
    by_study = {}
    for im in images:
        by_study.setdefault(im.study_uid, set()).add(any(im is h for h in held))
    assert all(len(v) == 1 for v in by_study.values())  # a study is never on both sides
    assert corrections_train.split(images, 0.0)[1] == [] and corrections_train.split(images, 1.0)[0] == []
    from node.cli import main  # the route a user takes: cspine-node train xray --from-corrections

    monkeypatch.delenv("CSPINE_MODEL_STORE", raising=False)
    monkeypatch.setenv("CSPINE_CONFIG", str(tmp_path / "none.toml"))
    (tmp_path / "none.toml").write_text("")
    assert main(["train", "xray", "--from-corrections", str(folder)]) == 2
    assert "no model store" in capsys.readouterr().err
    (tmp_path / "node.toml").write_text(f'model_store = "{tmp_path / "store"}"\n')  # the store named in the settings
    monkeypatch.setenv("CSPINE_CONFIG", str(tmp_path / "node.toml"))
    rc = main(["train", "xray", "--from-corrections", str(folder)])
    assert rc == 2
    err = capsys.readouterr().err
    assert "too few corrections" in err and "need 15" in err
    assert not (tmp_path / "store").exists()


def _degraded(path: Path) -> Path:
    """The shipped weights with noise on stage 2 (about 2 x the corner error): a bad 'current' model."""
    ck = load_checkpoint(DEFAULT_WEIGHTS, "xray_keypoints")
    g = torch.Generator().manual_seed(0)
    s2 = {k: v.float() + 0.4 * v.float().std() * torch.randn(v.shape, generator=g)
          if v.is_floating_point() and v.numel() > 1 and "running" not in k else v for k, v in ck.parts["stage2"].items()}
    return save_checkpoint(path, "xray_keypoints", "0.0.1-degraded", {"stage1": ck.parts["stage1"], "stage2": s2}, ck.meta)


ARGS = ["--min-train", "4", "--min-held", "3", "--steps", "1", "--minutes", "2", "--phantom-studies", "1",
        "--phantom-rows", "250", "300", "--phantom-test-studies", "1", "--phantom-test-shape", "330", "280",
        "--held-back", "0.5", "--device", "cpu"]


def test_candidate_better_than_the_active_version_is_promoted(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    folder = _corrections(tmp_path / "corr", range(990210, 990216))
    store = ModelStore(tmp_path / "store")
    bad = _degraded(tmp_path / "bad.pt")
    (tmp_path / "card.md").write_text("degraded on purpose\n")
    v_bad = store.add("keypoints", bad, tmp_path / "card.md", {"note": "degraded"})
    store.promote("keypoints", v_bad.version)
    # start from the shipped weights (tiny lr: the candidate stays the shipped model); compared with the active one
    rc = corrections_train.cli(["--from-corrections", str(folder), "--store", str(store.root), "--init",
                                str(DEFAULT_WEIGHTS), "--lr", "1e-7", "--work", str(tmp_path / "work"), *ARGS])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "PROMOTED" in out and "NOT PROMOTED" not in out
    active = [v for v in store.versions("keypoints") if v.active]
    assert len(active) == 1 and active[0].version.startswith("0.0.1-degraded+corr.")
    card = (active[0].path / "MODEL_CARD.md").read_text()
    assert "Decision: promoted" in card and "| held-back corrections | median_corner_error_mm |" in card
    assert "cspine-node train xray --from-corrections" in card and "cspine-node train xray cascade stage2" in card
    metrics = json.loads((active[0].path / "metrics.json").read_text())
    held = metrics["held_back"]
    assert metrics["promoted"] and held["candidate_median"] < held["current_median"] and held["diff_ci"][1] < 0
    assert metrics["provenance"]["corrected_model_versions"] == {"1.1.1": 18}
    assert store.rollback("keypoints") == v_bad.version  # one command undoes it


def test_wrecked_candidate_is_stored_but_not_promoted(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    folder = _corrections(tmp_path / "corr", range(990210, 990216))
    store = ModelStore(tmp_path / "store")
    rc = corrections_train.cli(["--from-corrections", str(folder), "--store", str(store.root), "--lr", "0.5",
                                "--work", str(tmp_path / "work"), *ARGS[:5], "3", *ARGS[6:]])
    out = capsys.readouterr().out
    assert rc == 0, out
    assert "NOT PROMOTED" in out
    versions = store.versions("keypoints")
    assert len(versions) == 1 and not versions[0].active and store.active_weights("keypoints") is None
    metrics = json.loads((versions[0].path / "metrics.json").read_text())
    assert not metrics["promoted"] and metrics["parent"] == load_checkpoint(DEFAULT_WEIGHTS, "xray_keypoints").version
    assert any("may be worse" in r or "not better" in r or "fails on" in r for r in metrics["decision"]["reasons"])
    assert "Decision: not promoted" in (versions[0].path / "MODEL_CARD.md").read_text()


def test_broken_corrections_file_is_refused_with_a_message(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    (tmp_path / "corr").mkdir()
    (tmp_path / "corr" / "annotations.json").write_text('{"images": [{"id": 1}], "annotations": [')
    rc = corrections_train.cli(["--from-corrections", str(tmp_path / "corr"), "--store", str(tmp_path / "store")])
    assert rc == 2 and "not a corrections file" in capsys.readouterr().err
    assert corrections_train.cli(["--from-corrections", str(tmp_path / "nothing"), "--store", str(tmp_path)]) == 2


def test_a_broken_active_version_is_refused(tmp_path: Path, capsys) -> None:  # noqa: ANN001
    folder = _corrections(tmp_path / "corr", range(990210, 990216))
    store = ModelStore(tmp_path / "store")
    (tmp_path / "card.md").write_text("card\n")
    v = store.add("keypoints", DEFAULT_WEIGHTS, tmp_path / "card.md", {"m": 1})
    store.promote("keypoints", v.version)
    (v.path / "metrics.json").unlink()  # the store never serves a version without its metrics
    rc = corrections_train.cli(["--from-corrections", str(folder), "--store", str(store.root), *ARGS])
    assert rc == 2 and "missing metrics.json" in capsys.readouterr().err
