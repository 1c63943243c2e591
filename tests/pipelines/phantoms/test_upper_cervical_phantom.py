"""The upper cervical phantom: same patient as generate_study, labels consistent with what is drawn, ROIs."""

from __future__ import annotations

import numpy as np
import pytest

from models.curvature.roi import curvature_box, landmarks_from_keypoints, upper_cervical_box
from pipelines.phantoms.xray import generate_study
from pipelines.phantoms.xray.upper_cervical import (
    EXCLUSIVE_PAIRS,
    generate_upper_cervical_study,
    sample_anatomy,
)
from pipelines.results import View
from pipelines.vocabulary import UPPER_CERVICAL_LABELS


def _seed_with(label: str, start: int = 0) -> int:
    """First seed whose sampled anatomy carries ``label`` (cheap: no rendering)."""
    for seed in range(start, start + 2000):
        if sample_anatomy(np.random.default_rng([seed, 1001])).labels[label]:
            return seed
    raise AssertionError(f"no seed with {label}")


def test_same_patient_and_generate_study_unchanged() -> None:
    before = generate_study(11, shape=(128, 128))
    uc = generate_upper_cervical_study(11, shape=(128, 128))
    after = generate_study(11, shape=(128, 128))
    for view in View:
        assert np.array_equal(before.views[view].pixels, after.views[view].pixels)
        np.testing.assert_allclose(uc.views[view].keypoints, before.views[view].keypoints, atol=1e-9)
        assert uc.views[view].pixels.shape == (128, 128)
        # the upper cervical rendering differs from the default one (its own C0-C2)
        assert not np.array_equal(uc.views[view].pixels, before.views[view].pixels)


def test_label_dependencies_and_exclusions() -> None:
    labels = np.array([[sample_anatomy(np.random.default_rng([s, 1001])).labels[k] for k in UPPER_CERVICAL_LABELS]
                       for s in range(800)])
    prev = labels.mean(0)
    assert np.all(prev > 0.08) and np.all(prev < 0.3), prev
    for a, b in EXCLUSIVE_PAIRS:
        i, j = UPPER_CERVICAL_LABELS.index(a), UPPER_CERVICAL_LABELS.index(b)
        assert not np.any(labels[:, i] & labels[:, j])
    aai, os_, assim, bi = (UPPER_CERVICAL_LABELS.index(k) for k in
                           ("atlantoaxial_instability", "os_odontoideum", "atlanto_occipital_assimilation",
                            "basilar_invagination"))
    assert labels[labels[:, os_], aai].mean() > 2 * labels[~labels[:, os_], aai].mean()
    assert labels[labels[:, assim], bi].mean() > 3 * labels[~labels[:, assim], bi].mean()


@pytest.mark.parametrize("seed", [3, 17, 29, 41, 58, 77])
def test_truth_measurements_match_labels(seed: int) -> None:
    st = generate_upper_cervical_study(seed, shape=(64, 64))
    lab = st.labels
    t = {v: st.views[v].truth_mm for v in View}
    intact = not (lab["os_odontoideum"] or lab["odontoid_fracture"])
    shift = t[View.FLEXION]["c1_translation"] - t[View.EXTENSION]["c1_translation"]
    if lab["atlantoaxial_instability"]:
        assert shift >= 3.0
        if intact:
            assert t[View.FLEXION]["adi"] > 3.0
    else:
        assert shift < 1.0 and t[View.FLEXION]["adi"] <= 3.0
    assert (t[View.NEUTRAL]["dens_above_mcrae"] > 0) == lab["basilar_invagination"]
    moves = abs(t[View.FLEXION]["c0_c1_angle"]) + abs(t[View.EXTENSION]["c0_c1_angle"])
    assert (moves == 0.0) == lab["atlanto_occipital_assimilation"]
    if lab["atlantodental_osteoarthritis"]:
        assert all(t[v]["adi"] < 1.0 for v in View)


def test_instability_gap_is_visible_in_flexion() -> None:
    """The widened atlanto-dental interval is dark (soft tissue) between two bright bones on the image."""
    seed = _seed_with("atlantoaxial_instability")
    while sample_anatomy(np.random.default_rng([seed, 1001])).labels["os_odontoideum"] or \
            sample_anatomy(np.random.default_rng([seed, 1001])).labels["odontoid_fracture"]:
        seed = _seed_with("atlantoaxial_instability", seed + 1)
    st = generate_upper_cervical_study(seed, shape=(640, 640), difficulty="easy", views=(View.FLEXION,))
    uv = st.views[View.FLEXION]
    img = uv.unit_image()
    dens = np.array(uv.landmarks["dens_anterior"])
    arch = np.array(uv.landmarks["c1_arch_posterior"])
    u = (arch - dens) / np.hypot(*(arch - dens))
    mm = 1.0 / uv.pixel_spacing_mm[0]

    def val(p: np.ndarray) -> float:
        x, y = np.rint(p).astype(int)
        return float(img[y - 1:y + 2, x - 1:x + 2].mean())

    gap = val(0.5 * (dens + arch))
    assert uv.truth_mm["adi"] > 3.0
    assert gap < val(dens - 2.5 * mm * u) - 0.05  # inside the dens
    assert gap < val(arch + 2.0 * mm * u) - 0.05  # inside the anterior arch


def test_rois_contain_their_structures() -> None:
    st = generate_upper_cervical_study(5, shape=(256, 256))
    for uv in st.views.values():
        pts = landmarks_from_keypoints(uv.keypoints)
        box = upper_cervical_box(pts, 96)
        for name in ("dens_tip", "dens_anterior", "c1_arch_posterior", "basion", "c2_top"):
            x, y = box.to_model(np.array(uv.landmarks[name]))
            assert 0 <= x < 96 and 0 <= y < 96, name
        cb = curvature_box(pts, 128)
        m = cb.to_model(uv.keypoints[:24])
        assert np.all((m >= 0) & (m < 128))
