"""One synthetic patient's lateral cervical study (neutral / flexion / extension) with exact ground truth.

Random streams: the patient ``np.random.default_rng(seed)``, view ``k`` (neutral, flexion, extension = 1, 2, 3)
``np.random.default_rng([seed, k])``, the UIDs ``[seed, 7]`` (and the DICOM writer ``[seed, 11, n]``,
``[seed, 99, n]``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from pipelines.phantoms.dicom import seeded_uid
from pipelines.phantoms.xray.anatomy import PatientParams
from pipelines.phantoms.xray.render import PhantomView, generate_view
from pipelines.phantoms.xray.sampling import DIFFICULTIES, sample_patient
from pipelines.phantoms.xray.truth import dynamic_truth
from pipelines.results import Finding, Measurement
from pipelines.vocabulary import View
from pipelines.xray.findings import findings_from_measurements


@dataclass
class PhantomStudy:
    """One synthetic patient's lateral cervical study."""

    seed: int
    params: PatientParams
    views: dict[View, PhantomView]
    truth: list[Measurement]
    """Per-view truths of all views plus the flexion-extension differences (view None)."""
    findings: list[Finding]
    """Findings derived from the true measurements with the default thresholds."""
    study_uid: str = ""


def generate_study(seed: int, *, views: tuple[View, ...] = (View.NEUTRAL, View.FLEXION, View.EXTENSION),
                   shape: tuple[int, int] | None = None, difficulty: str = "realistic",
                   anatomy: dict | None = None) -> PhantomStudy:
    """Generate one synthetic patient's lateral cervical study (seeded, deterministic).

    ``shape=None`` picks a realistic detector size (about 900-3000 px); a small shape such as (512, 512)
    renders fast for training. ``difficulty`` is ``easy`` (no rotation, shoulders, collimation or text),
    ``realistic`` or ``hard``.

    ``anatomy`` (opt-in) renders a given patient instead of a sampled one: a dict as returned by
    ``pipelines.phantoms.patient.xray_anatomy(virtual_patient)`` (body depth/height, disc heights, segment angles,
    Pavlov ratios, osteophytes, spinous lengths), so that the X-ray and MRI phantoms show the same patient.
    Its optional keys ``posterior_osteophyte_mm`` and ``calcified_herniation_mm`` (5 values, C2-C3..C6-C7) add
    the radiographic signs of canal encroachment (posterior spurs, calcified disc herniation; see
    ``pipelines.phantoms.xray.draw.draw_canal_encroachment``).
    Everything else (dynamics, acquisition) is still drawn from ``seed``; without it the output is unchanged.
    """
    if difficulty not in DIFFICULTIES:
        raise ValueError(f"difficulty must be one of {DIFFICULTIES}, got {difficulty!r}")
    if not views:
        raise ValueError("at least one view is needed")
    views = tuple(View(v) for v in views)
    rng = np.random.default_rng(seed)
    p = sample_patient(rng, seed, views, shape, difficulty, anatomy)
    uid_rng = np.random.default_rng([seed, 7])
    study_uid = seeded_uid(uid_rng)
    out: dict[View, PhantomView] = {}
    for view in views:
        out[view] = generate_view(p, view, np.random.default_rng([seed, list(View).index(view) + 1]),
                                  uid=seeded_uid(uid_rng))
    truth = [m for pv in out.values() for m in pv.truth]
    if View.FLEXION in out and View.EXTENSION in out:
        flex, ext = out[View.FLEXION], out[View.EXTENSION]
        truth += dynamic_truth(flex.truth, ext.truth, flex.sop_instance_uid, ext.sop_instance_uid)
    return PhantomStudy(seed=seed, params=p, views=out, truth=truth,
                        findings=findings_from_measurements(truth), study_uid=study_uid)

