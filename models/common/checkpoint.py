"""The one checkpoint schema of every model in ``models/``, written by the trainers and read by the predictors.

A checkpoint is a ``torch.save`` of a plain dict::

    {"format": "cspine-checkpoint/1",
     "model": "curvature",                      # which model (folder name, or "spine_locator")
     "version": "1",                            # the trained weights' version (goes into AlgorithmInfo)
     "parts": {"classifier": {name: tensor}},   # one state dict per network of the model
     "meta": {...}}                             # plain JSON-able data: configuration, training, metrics

It holds only tensors and plain Python values, so it is always read with ``torch.load(...,
weights_only=True)``: loading a weights file never runs code from it. ``meta`` may hold NaN/inf floats
(``json.dumps`` writes them); tuples are stored as lists.
"""

from __future__ import annotations

import os
import pickle
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

FORMAT = "cspine-checkpoint/1"
"""The value of ``"format"`` in every checkpoint."""
CONVERT_HINT = "python -m models.common.convert_checkpoints FILE"


class CheckpointError(ValueError):
    """A file that is not a checkpoint of the expected model in this schema."""


@dataclass(frozen=True)
class Checkpoint:
    """A loaded checkpoint (tensors on the CPU, as stored: usually fp16)."""

    model: str
    version: str
    parts: dict[str, dict[str, torch.Tensor]]
    meta: dict[str, Any] = field(default_factory=dict)
    path: Path | None = None

    def part(self, name: str) -> dict[str, torch.Tensor]:
        """The state dict of one network, floating tensors as float32 (``load_state_dict`` ready)."""
        if name not in self.parts:
            raise CheckpointError(f"{self._where()}: no part {name!r} (parts: {sorted(self.parts)})")
        return {k: v.float() if v.is_floating_point() else v for k, v in self.parts[name].items()}

    def _where(self) -> str:
        return str(self.path) if self.path is not None else f"{self.model} checkpoint"


def plain(value: Any, where: str = "meta") -> Any:
    """``value`` as plain JSON-able data (dict with str keys, list, str, int, float, bool, None); tuples become
    lists, numpy scalars Python numbers. Anything else (a Path, an array, a tensor, an object) is refused with
    its location."""
    if isinstance(value, np.generic) and not isinstance(value, np.str_ | np.bytes_ | np.void):
        value = value.item()
    if value is None or isinstance(value, bool):
        return value
    if isinstance(value, str):
        return str(value)
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    if isinstance(value, Mapping):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise TypeError(f"{where}: key {k!r} is not a string")
            out[str(k)] = plain(v, f"{where}.{k}")
        return out
    if isinstance(value, list | tuple):
        return [plain(v, f"{where}[{i}]") for i, v in enumerate(value)]
    raise TypeError(f"{where}: {type(value).__name__} is not plain JSON-able data (use str, int, float, list, dict)")


def state_dict(part: torch.nn.Module | Mapping[str, torch.Tensor], dtype: torch.dtype | None) -> dict[str, torch.Tensor]:
    """A module's (or a state dict's) tensors, detached on the CPU; floating ones cast to ``dtype`` unless None."""
    sd = part.state_dict() if isinstance(part, torch.nn.Module) else part
    out = {}
    for k, v in sd.items():
        if not isinstance(v, torch.Tensor):
            raise TypeError(f"state dict entry {k!r} is a {type(v).__name__}, not a tensor")
        v = v.detach().cpu()
        out[str(k)] = (v.to(dtype) if dtype is not None and v.is_floating_point() else v).clone()
    return out


def save_checkpoint(path: Path | str, model: str, version: str,
                    parts: Mapping[str, torch.nn.Module | Mapping[str, torch.Tensor]],
                    meta: Mapping[str, Any] | None = None, *, dtype: torch.dtype | None = torch.float16) -> Path:
    """Write a checkpoint of ``model`` (atomically: a temporary file, then rename).

    ``parts``: network name -> module or state dict. ``dtype``: floating tensors are stored in it (fp16, as
    every shipped weights file); None stores them as they are (training checkpoints, conversions).
    ``meta``: plain JSON-able data (:func:`plain`)."""
    if not model or not isinstance(model, str):
        raise ValueError("model must be a non-empty string")
    if not parts:
        raise ValueError("a checkpoint needs at least one part")
    path = Path(path)
    ck = {"format": FORMAT, "model": model, "version": str(version),
          "parts": {str(name): state_dict(p, dtype) for name, p in parts.items()},
          "meta": plain(dict(meta or {}))}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        torch.save(ck, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path | str, expected_model: str | None) -> Checkpoint:
    """Read a checkpoint with ``torch.load(path, map_location="cpu", weights_only=True)``.

    Raises ``FileNotFoundError`` when there is no file and :class:`CheckpointError` when the file cannot be
    read as plain weights, is not in this schema (e.g. an old layout: convert it with
    ``python -m models.common.convert_checkpoints``) or belongs to another model than ``expected_model``
    (None accepts any)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights not found: {path}")
    try:
        ck = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: not loadable as plain weights (weights_only=True): {e}") from e
    except (RuntimeError, EOFError, OSError, ValueError) as e:
        raise CheckpointError(f"{path}: not a readable torch checkpoint: {e}") from e
    if not isinstance(ck, dict) or ck.get("format") != FORMAT:
        found = ck.get("format", "no format key") if isinstance(ck, dict) else type(ck).__name__
        raise CheckpointError(f"{path}: not a {FORMAT} checkpoint (found {found!r}); an old layout converts "
                              f"with `{CONVERT_HINT}`")
    model = ck.get("model")
    if expected_model is not None and model != expected_model:
        raise CheckpointError(f"{path}: a checkpoint of model {model!r}, expected {expected_model!r}")
    parts = ck.get("parts")
    if not isinstance(parts, dict) or not parts or not all(
            isinstance(sd, dict) and all(isinstance(t, torch.Tensor) for t in sd.values()) for sd in parts.values()):
        raise CheckpointError(f"{path}: 'parts' must map part names to state dicts of tensors")
    meta = ck.get("meta", {})
    if not isinstance(meta, dict):
        raise CheckpointError(f"{path}: 'meta' must be a dict")
    return Checkpoint(model=str(model), version=str(ck.get("version", "")), parts=parts, meta=meta, path=path)


def same_tensors(a: Mapping[str, torch.Tensor], b: Mapping[str, torch.Tensor]) -> bool:
    """True when two state dicts hold the same names, dtypes, shapes and bits (NaN == NaN, -0.0 != 0.0)."""
    if a.keys() != b.keys():
        return False
    return all(a[k].dtype == b[k].dtype and a[k].shape == b[k].shape and torch.equal(_bits(a[k]), _bits(b[k]))
               for k in a)


def _bits(t: torch.Tensor) -> torch.Tensor:
    """The tensor's bytes as integers of the same width."""
    t = t.detach().cpu().contiguous().flatten()
    return t.view({1: torch.uint8, 2: torch.int16, 4: torch.int32, 8: torch.int64}[t.element_size()])


__all__ = ["FORMAT", "Checkpoint", "CheckpointError", "load_checkpoint", "plain", "same_tensors",
           "save_checkpoint", "state_dict"]
