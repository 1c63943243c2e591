"""A site's versions of each model: weights with their card and metrics, one active version, rollback.

Layout under the store root (``NodeSettings.model_store``)::

    <root>/<model>/<version>/weights.pt        a checkpoint in the one schema (models.common.checkpoint)
    <root>/<model>/<version>/MODEL_CARD.md     what it is, the data it was trained on, intended use
    <root>/<model>/<version>/metrics.json      its evaluation (plain JSON)
    <root>/<model>/<version>/manifest.json     version, sha256 of the weights, source, data, when added
    <root>/<model>/active.json                 {"version": ..., "history": [older active versions, newest last]}

A version is added once (``add``) and never changed; ``promote`` makes one active and ``rollback`` returns to the
previous one. The store never serves a version whose card or metrics are missing or whose weights do not match
the manifest: ``active_weights`` checks before the registry loads it. With no active version the shipped weights
serve (``models.registry``).
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from models.common.checkpoint import load_checkpoint

FILES = ("weights.pt", "MODEL_CARD.md", "metrics.json", "manifest.json")


class StoreError(ValueError):
    """A version that is missing, incomplete, or does not match its manifest."""


@dataclass(frozen=True)
class StoredVersion:
    model: str
    version: str
    path: Path
    manifest: dict[str, Any]
    active: bool = False

    @property
    def weights(self) -> Path:
        return self.path / "weights.pt"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w") as fh:
        json.dump(data, fh, indent=2, sort_keys=True)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class ModelStore:
    """The versions of every model under ``root`` (see the module docstring)."""

    def __init__(self, root: Path | str) -> None:
        self.root = Path(root)

    # -- reading -------------------------------------------------------------------------------------

    def _active(self, model: str) -> dict[str, Any]:
        path = self.root / model / "active.json"
        if not path.is_file():
            return {"version": None, "history": []}
        return json.loads(path.read_text())

    def versions(self, model: str) -> list[StoredVersion]:
        """Every stored version of ``model``, oldest first (by the time it was added)."""
        base = self.root / model
        if not base.is_dir():
            return []
        active = self._active(model).get("version")
        out = []
        for d in base.iterdir():
            man = d / "manifest.json"
            if d.is_dir() and man.is_file():
                m = json.loads(man.read_text())
                out.append(StoredVersion(model, d.name, d, m, d.name == active))
        return sorted(out, key=lambda v: (v.manifest.get("added", 0), v.version))

    def version(self, model: str, version: str) -> StoredVersion:
        for v in self.versions(model):
            if v.version == version:
                return v
        raise StoreError(f"model {model}: no version {version!r} in {self.root}")

    def check(self, v: StoredVersion) -> None:
        """Raise ``StoreError`` unless the version has its card, metrics and the weights its manifest names."""
        missing = [f for f in FILES if not (v.path / f).is_file()]
        if missing:
            raise StoreError(f"model {v.model} version {v.version}: missing {', '.join(missing)}")
        if not (v.path / "MODEL_CARD.md").read_text().strip():
            raise StoreError(f"model {v.model} version {v.version}: empty model card")
        json.loads((v.path / "metrics.json").read_text())
        if _sha256(v.weights) != v.manifest.get("sha256"):
            raise StoreError(f"model {v.model} version {v.version}: weights do not match the manifest")

    def active_weights(self, model: str) -> Path | None:
        """The weights of the active version (checked), or None when the store has none for ``model``."""
        version = self._active(model).get("version")
        if version is None:
            return None
        v = self.version(model, version)
        self.check(v)
        return v.weights

    # -- writing -------------------------------------------------------------------------------------

    def add(self, model: str, weights: Path | str, card: Path | str, metrics: Path | str | dict[str, Any], *,
            data: str = "", source: str = "") -> StoredVersion:
        """Copy a trained checkpoint with its card and metrics into the store as a new version (not active).

        The version name is the checkpoint's own version plus the first 8 hex digits of its sha256, so the same
        weights added twice are one version. The checkpoint must be of ``model`` in the one schema."""
        weights = Path(weights)
        ck = load_checkpoint(weights, None)
        digest = _sha256(weights)
        name = f"{ck.version}-{digest[:8]}"
        card_text = Path(card).read_text()
        if not card_text.strip():
            raise StoreError("the model card is empty")
        metrics_data = metrics if isinstance(metrics, dict) else json.loads(Path(metrics).read_text())
        dest = self.root / model / name
        if (dest / "manifest.json").is_file():
            return self.version(model, name)
        tmp = self.root / model / f".{name}.{os.getpid()}.part"
        shutil.rmtree(tmp, ignore_errors=True)
        tmp.mkdir(parents=True)
        shutil.copyfile(weights, tmp / "weights.pt")
        (tmp / "MODEL_CARD.md").write_text(card_text)
        (tmp / "metrics.json").write_text(json.dumps(metrics_data, indent=2, sort_keys=True))
        _write_json(tmp / "manifest.json", {"model": model, "version": name, "checkpoint_model": ck.model,
                                            "checkpoint_version": ck.version, "sha256": digest, "data": data,
                                            "source": source or str(weights), "added": time.time()})
        os.replace(tmp, dest)
        return self.version(model, name)

    def promote(self, model: str, version: str) -> StoredVersion:
        """Make ``version`` the active one (after checking it); the previous active goes onto the history."""
        v = self.version(model, version)
        self.check(v)
        load_checkpoint(v.weights, None)
        state = self._active(model)
        history = list(state.get("history", []))
        if state.get("version") and state["version"] != version:
            history.append(state["version"])
        _write_json(self.root / model / "active.json", {"version": version, "history": history})
        return self.version(model, version)

    def rollback(self, model: str) -> str | None:
        """Return to the previously active version (None: back to the shipped weights). Returns what is active."""
        state = self._active(model)
        if state.get("version") is None:
            raise StoreError(f"model {model}: nothing to roll back (the shipped weights are active)")
        history = list(state.get("history", []))
        previous = history.pop() if history else None
        _write_json(self.root / model / "active.json", {"version": previous, "history": history})
        return previous
