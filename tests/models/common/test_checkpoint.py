"""The one checkpoint schema: round trip, refusals with a clear message, weights_only loading, shipped files."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import pytest
import torch

from models.common.checkpoint import (
    FORMAT,
    CheckpointError,
    load_checkpoint,
    plain,
    same_tensors,
    save_checkpoint,
)

SHIPPED = {
    "xray_keypoints/xray_keypoints_v2.pt": "xray_keypoints",
    "curvature/s_resnet34_v1.pt": "curvature",
    "curvature/resnet34_plain_v1.pt": "curvature",
    "curvature/spine_locator_v1.pt": "spine_locator",
    "upper_cervical/cervihfenet_v1.pt": "upper_cervical",
    "cord_compression/segment_cnn_v1.pt": "cord_compression",
    "mri/mri_v1.pt": "mri",
    "mri/mri_v2.pt": "mri",
    "neck_pain/neck_pain_v1.pt": "neck_pain",
}
MODELS = Path(__file__).resolve().parents[3] / "models"


def _net() -> torch.nn.Module:
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(1, 4, 3), torch.nn.BatchNorm2d(4))


def test_round_trip_keeps_tensors_meta_and_version(tmp_path: Path) -> None:
    net = _net()
    meta = {"arch": "tiny", "widths": (4, 8), "nested": {"auc": float("nan"), "ok": True, "none": None}}
    path = save_checkpoint(tmp_path / "w.pt", "tiny", "1.2.3", {"net": net}, meta)
    ck = load_checkpoint(path, "tiny")
    assert (ck.model, ck.version, ck.path, list(ck.parts)) == ("tiny", "1.2.3", path, ["net"])
    assert ck.meta["widths"] == [4, 8] and ck.meta["arch"] == "tiny" and math.isnan(ck.meta["nested"]["auc"])
    sd = net.state_dict()
    stored = ck.parts["net"]
    assert stored["0.weight"].dtype == torch.float16 and stored["1.num_batches_tracked"].dtype == torch.int64
    assert same_tensors(stored, {k: v.half() if v.is_floating_point() else v for k, v in sd.items()})
    fresh = _net()
    fresh[0].weight.data.zero_()
    fresh.load_state_dict(ck.part("net"))  # float32 again
    assert fresh[0].weight.dtype == torch.float32
    torch.testing.assert_close(fresh[0].weight, sd["0.weight"].half().float())
    full = save_checkpoint(tmp_path / "f.pt", "tiny", "1", {"net": sd}, dtype=None)
    assert same_tensors(load_checkpoint(full, None).parts["net"], sd)
    assert not list(tmp_path.glob(".*tmp"))  # the temporary file of the atomic write is gone


def test_wrong_format_or_model_is_refused_with_a_clear_message(tmp_path: Path) -> None:
    old = tmp_path / "old.pt"
    torch.save({"state_dict": _net().state_dict(), "meta": {"version": "1"}}, old)
    with pytest.raises(CheckpointError, match="convert_checkpoints"):
        load_checkpoint(old, "tiny")
    other = save_checkpoint(tmp_path / "o.pt", "curvature", "1", {"net": _net()})
    with pytest.raises(CheckpointError, match="'curvature', expected 'mri'"):
        load_checkpoint(other, "mri")
    with pytest.raises(CheckpointError, match="no part 'head'"):
        load_checkpoint(other, "curvature").part("head")
    with pytest.raises(FileNotFoundError):
        load_checkpoint(tmp_path / "missing.pt", "tiny")
    (tmp_path / "junk.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "junk.pt", "tiny")


class _Payload:
    """A pickled object: unrestricted unpickling would construct it (and could run code)."""

    def __reduce__(self):  # noqa: ANN204
        return (print, ("code ran while loading",))


def test_loading_is_weights_only(tmp_path: Path) -> None:
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model": "tiny", "version": "1", "parts": {"net": {}}, "meta": {"x": _Payload()}},
               path)
    with pytest.raises(CheckpointError, match="weights_only=True"):
        load_checkpoint(path, "tiny")
    with pytest.raises(pickle.UnpicklingError):  # what load_checkpoint relies on
        torch.load(path, map_location="cpu", weights_only=True)


def test_meta_must_be_plain_data(tmp_path: Path) -> None:
    assert plain({"a": (1, 2.5, "x", None, [True])}) == {"a": [1, 2.5, "x", None, [True]]}
    for bad in ({"p": Path("x")}, {"t": torch.zeros(1)}, {1: "int key"}):
        with pytest.raises(TypeError):
            save_checkpoint(tmp_path / "b.pt", "tiny", "1", {"net": _net()}, bad)
    assert not (tmp_path / "b.pt").exists()


def test_same_tensors_compares_bits() -> None:
    a = {"w": torch.tensor([0.0, float("nan")])}
    assert same_tensors(a, {"w": torch.tensor([0.0, float("nan")])})
    assert not same_tensors(a, {"w": torch.tensor([-0.0, float("nan")])})
    assert not same_tensors(a, {"w": torch.tensor([0.0, float("nan")], dtype=torch.float64)})
    assert not same_tensors(a, {"v": a["w"]})


@pytest.mark.parametrize("name", sorted(SHIPPED))
def test_shipped_weights_are_in_the_schema(name: str) -> None:
    path = MODELS / name
    if not path.is_file():
        pytest.skip(f"{name} not shipped")
    ck = load_checkpoint(path, SHIPPED[name])
    assert ck.version and ck.parts
    assert all(v.dtype in (torch.float16, torch.int64) for sd in ck.parts.values() for v in sd.values())
    assert plain(ck.meta) == ck.meta or _nan_equal(plain(ck.meta), ck.meta)


def _nan_equal(a: object, b: object) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return a == b or (math.isnan(a) and math.isnan(b))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(_nan_equal(a[k], b[k]) for k in a)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(_nan_equal(x, y) for x, y in zip(a, b, strict=True))
    return a == b
