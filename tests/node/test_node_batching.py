"""Cross-study batching of the X-ray keypoint predictor, and the device setting's CPU fallback."""

from __future__ import annotations

import logging
import threading

import numpy as np
import pytest
import torch

from models.xray_keypoints import DEFAULT_WEIGHTS
from models.xray_keypoints.batching import BatchingPredictor
from models.xray_keypoints.predictor import KeypointPredictor, resolve_device

pytestmark = pytest.mark.skipif(not DEFAULT_WEIGHTS.is_file(), reason="no shipped X-ray keypoint weights")


@pytest.fixture(scope="module")
def predictor() -> KeypointPredictor:
    torch.set_num_threads(1)
    return KeypointPredictor.load(device="cpu")


@pytest.fixture(scope="module")
def images() -> list[np.ndarray]:
    """Four radiographs of two phantom patients, of different sizes (letterboxed differently)."""
    from pipelines.phantoms.xray import generate_study
    from pipelines.results import View
    from pipelines.xray.preprocessing import to_unit_range

    out = []
    for seed, shape in ((3, (560, 480)), (4, (480, 640))):
        st = generate_study(seed, views=(View.NEUTRAL, View.FLEXION), shape=shape)
        for v in st.views.values():
            out.append(to_unit_range(v.pixels.astype(np.float64), monochrome1=v.photometric == "MONOCHROME1"))
    return out


def _concurrently(fn, items: list) -> list:  # noqa: ANN001
    """Call ``fn(item)`` from one thread per item, all released at once; results in item order."""
    barrier = threading.Barrier(len(items))
    results: list = [None] * len(items)
    errors: list = []

    def run(i: int) -> None:
        barrier.wait()
        try:
            results[i] = fn(items[i])
        except Exception as e:  # noqa: BLE001 - collected, re-raised below
            errors.append(e)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(items))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    if errors:
        raise errors[0]
    return results


def test_batched_predictions_equal_unbatched(predictor: KeypointPredictor, images: list[np.ndarray]) -> None:
    """Concurrent requests share forwards, and each gets what unbatched prediction gives (float rounding)."""
    reference = [predictor.predict(im) for im in images]
    seen: list[int] = []
    bp = BatchingPredictor(predictor, max_images=8, wait_ms=500, on_batch=seen.append)
    try:
        batched = _concurrently(bp.predict, images)
    finally:
        bp.close()
    assert sum(seen) == len(images)
    assert sorted(seen) == sorted(n for n, c in bp.batch_sizes.items() for _ in range(c))
    assert max(seen) >= 2, f"concurrent requests did not share a forward: batch sizes {seen}"
    assert bp.images == len(images)
    for ref, got in zip(reference, batched, strict=True):
        np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=1e-3, rtol=0)
        np.testing.assert_allclose(got.sigma_px, ref.sigma_px, atol=1e-3, rtol=1e-4)
        assert got.view == ref.view
        for v, p in ref.view_probs.items():
            assert abs(got.view_probs[v] - p) < 1e-4
    # The keypoints are real predictions: far apart from one image to the next (not one result handed to all).
    assert np.abs(batched[0].keypoints - batched[2].keypoints).max() > 5


def test_batch_respects_max_images_and_isolates_a_bad_image(predictor: KeypointPredictor,
                                                            images: list[np.ndarray]) -> None:
    bp = BatchingPredictor(predictor, max_images=2, wait_ms=500)
    try:
        bad = np.zeros(7)  # not an image: its caller gets the error, the others their predictions
        futures = [bp.submit(im) for im in [images[0], bad, images[1]]]
        assert futures[0].result(120).keypoints.shape == (30, 2)
        with pytest.raises(Exception):  # noqa: B017 - whatever numpy/torch raise for a 1-D "image"
            futures[1].result(120)
        assert futures[2].result(120).keypoints.shape == (30, 2)
    finally:
        bp.close()
    assert max(bp.batch_sizes) <= 2
    assert bp.version == predictor.version and bp.device == predictor.device  # delegated attributes


def test_preprocessing_on_the_device_equals_the_scipy_path(predictor: KeypointPredictor,
                                                           images: list[np.ndarray]) -> None:
    """Letterbox and vertebra crops with torch on the device (the GPU default) give the scipy path's keypoints."""
    on_device = KeypointPredictor.load(device="cpu", preprocess_on_device=True)
    assert on_device.preprocess_on_device and not predictor.preprocess_on_device
    for ref, got in zip(predictor.predict_batch(images), on_device.predict_batch(images), strict=True):
        np.testing.assert_allclose(got.keypoints, ref.keypoints, atol=5e-3, rtol=0)
        np.testing.assert_allclose(got.sigma_px, ref.sigma_px, atol=5e-3, rtol=1e-3)
        assert got.view == ref.view


def test_registry_wraps_the_keypoint_model_when_batching() -> None:
    from models.registry import build_models
    from node.settings import NodeSettings
    from pipelines.xray.pipeline import XrayPipeline

    others = ("curvature", "upper_cervical", "cord_compression", "mri", "neck_pain")
    s = NodeSettings(device="cpu", models={n: {"enabled": False} for n in others})
    calls: list[int] = []
    batched = build_models(s.model, batch_max_images=4, batch_wait_ms=5, on_batch=calls.append)
    assert isinstance(batched.keypoints, BatchingPredictor)
    assert batched.keypoints.max_images == 4 and batched.keypoints.device.type == "cpu"
    assert XrayPipeline.from_models(batched).algorithm() == batched.keypoints.predictor.algorithm
    assert batched.image_classifiers == () and batched.mri is None  # disabled in the settings
    assert not isinstance(build_models(s.model).keypoints, BatchingPredictor)


def test_device_setting_falls_back_to_cpu(caplog: pytest.LogCaptureFixture) -> None:
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")
    n = torch.cuda.device_count() if torch.cuda.is_available() else 0
    with caplog.at_level(logging.WARNING, logger="models.xray_keypoints"):
        assert resolve_device(f"cuda:{n + 3}") == torch.device("cpu")
    assert "falling back to the CPU" in caplog.text
    if n == 0:
        assert resolve_device("cuda") == torch.device("cpu")
