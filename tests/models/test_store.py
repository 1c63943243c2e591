"""models.store: a site's model versions (weights + card + metrics), one active, rollback; the registry serves the
active version and refuses one whose card, metrics or checksum is missing or wrong."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from models.common.checkpoint import load_checkpoint, save_checkpoint
from models.mri import DEFAULT_WEIGHTS
from models.registry import build_models
from models.store import ModelStore, StoreError
from node.settings import NodeSettings

ROOT = Path(__file__).resolve().parents[2]
ONLY_MRI = {n: {"enabled": False} for n in ("keypoints", "curvature", "upper_cervical", "cord_compression",
                                            "neck_pain")}


@pytest.fixture
def site_weights(tmp_path: Path) -> tuple[Path, Path, Path]:
    """The shipped MRI weights re-saved as a site's version "site-2", with a card and metrics."""
    ck = load_checkpoint(DEFAULT_WEIGHTS, "mri")
    weights = save_checkpoint(tmp_path / "mri_site.pt", "mri", "site-2", ck.parts, ck.meta, dtype=None)
    card = tmp_path / "card.md"
    card.write_text("# MRI model, site fine-tune\nResearch use only.\n")
    metrics = tmp_path / "metrics.json"
    metrics.write_text(json.dumps({"auc_disc": 0.9}))
    return weights, card, metrics


def test_add_promote_rollback(tmp_path: Path, site_weights: tuple[Path, Path, Path]) -> None:
    store = ModelStore(tmp_path / "store")
    weights, card, metrics = site_weights
    v = store.add("mri", weights, card, metrics, data="site corrections 2026-12")
    assert v.version.startswith("site-2-") and not v.active
    assert store.add("mri", weights, card, metrics).version == v.version  # the same weights are one version
    assert store.active_weights("mri") is None  # added, not active: the shipped weights serve
    store.promote("mri", v.version)
    assert store.active_weights("mri") == v.weights and store.versions("mri")[0].active
    assert store.rollback("mri") is None and store.active_weights("mri") is None
    with pytest.raises(StoreError, match="nothing to roll back"):
        store.rollback("mri")


def test_registry_serves_the_active_version_and_refuses_a_broken_one(tmp_path: Path, site_weights) -> None:  # noqa: ANN001
    store = ModelStore(tmp_path / "store")
    v = store.add("mri", *site_weights)
    settings = NodeSettings(device="cpu", models=ONLY_MRI, model_store=store.root)
    shipped = build_models(settings.model).mri.algorithm.version
    assert "site-2" not in shipped
    store.promote("mri", v.version)
    assert "site-2" in build_models(settings.model, store=store.root).mri.algorithm.version
    (v.path / "metrics.json").unlink()  # a version without its metrics is never served
    with pytest.raises(StoreError, match="missing metrics.json"):
        build_models(settings.model, store=store.root)
    (v.path / "metrics.json").write_text("{}")
    (v.path / "weights.pt").write_bytes(b"tampered")
    with pytest.raises(StoreError, match="do not match the manifest"):
        build_models(settings.model, store=store.root)


def test_promote_refuses_an_incomplete_version(tmp_path: Path, site_weights) -> None:  # noqa: ANN001
    store = ModelStore(tmp_path / "store")
    v = store.add("mri", *site_weights)
    (v.path / "MODEL_CARD.md").write_text("  \n")
    with pytest.raises(StoreError, match="empty model card"):
        store.promote("mri", v.version)
    with pytest.raises(StoreError, match="no version"):
        store.promote("mri", "nope")


def test_cli_models_add_promote_rollback(tmp_path: Path, site_weights) -> None:  # noqa: ANN001
    env = {"CSPINE_MODEL_STORE": str(tmp_path / "store"), "PATH": "/usr/bin:/bin"}

    def cli(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-m", "node.cli", "models", *args], cwd=ROOT, env=env,
                              capture_output=True, text=True, timeout=120)

    weights, card, metrics = site_weights
    added = cli("add", "mri", str(weights), "--card", str(card), "--metrics", str(metrics), "--data", "site")
    assert added.returncode == 0, added.stderr
    version = added.stdout.split()[2]
    assert cli("promote", "mri", version).returncode == 0
    listed = {r["model"]: r for r in json.loads(cli("list", "--json").stdout)}
    assert listed["mri"]["weights"] == f"store:{version}" and listed["mri"]["versions"][0]["active"] is True
    assert listed["keypoints"]["weights"] == "shipped"
    back = cli("rollback", "mri")
    assert back.returncode == 0 and "shipped weights" in back.stdout
    bad = cli("promote", "mri", "nope")
    assert bad.returncode == 2 and "no version" in bad.stderr
