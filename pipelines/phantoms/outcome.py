"""Postoperative neck-pain recovery of a virtual patient (seed 000): a documented synthetic outcome model.

The outcome is a deterministic function of the seed. ``virtual_patient(seed)`` drives the MRI and the X-ray
phantom (``pipelines.phantoms.paired``); this module adds what the images must show for the outcome
(a Modic-like endplate marrow change rendered on MRI, see ``generate_series(endplate_marrow=...)``), samples
the clinical variables and draws ``recovered ~ Bernoulli(p)`` with

    logit p = B0
              - 1.3 * cord_signal          MRI only: T2 cord signal change (a level of canal grade 3)
              - 0.35 * n_compressed        MRI only: levels with cord compression (grade >= 2) = levels operated
              - 1.2 * modic                MRI only, a texture sign: mottled endplate marrow at one level; the
                                           zone's grey level is scaled at random (0.55-1.6) in *every* patient,
                                           only the texture (2 mm grain, relative amplitude 0.35-0.6) tells
              - 1.2 * hard_compression     needs both, aligned: MRI compression (grade >= 2) at a level AND an
                                           X-ray osteophyte (> 1 mm) at that same level (spondylotic bar, not
                                           soft disc)
              - 0.05 * max(0, 10 - cobb)   X-ray: C2-C7 Cobb (deg, lordosis positive): loss of lordosis / kyphosis
              - 0.045 * max(0, sva - 20)   X-ray only: C2-C7 SVA of the neutral radiograph (mm)
              - 0.025 * (age - 55)         clinical (years; also in DICOM PatientAge)
              - 0.2 * female               clinical (DICOM PatientSex)
              - 0.5 * ln(duration / 12)    clinical: symptom duration (months), log-normal, median 10
              - 0.03 * (ndi - 40)          clinical: preoperative Neck Disability Index (%)
              + 0.15 * (vas - 6)           clinical: preoperative neck pain VAS (0-10): more to gain

``B0`` = 2.0 gives about 50 % recovered (54 % in seeds 100000-100299). The Bayes-optimal AUC (the true
probability as the score) for seeds 100000-100299: 0.883 expected over the Bernoulli draws (:func:`bayes_auc`,
``python -m pipelines.phantoms.outcome --first 100000 --count 300``) and 0.906 on their realised outcomes
(``bayes_auc_realised`` of ``models.neck_pain.evaluate``; see ``models/neck_pain/MODEL_CARD.md``).
Which drivers a model can see: cord signal, compression and Modic texture only on MRI; SVA only on the
radiograph (it depends on the X-ray positioning draws, not on ``virtual_patient``); the osteophyte and Cobb
angle on both; ``hard_compression`` needs the MRI level and the X-ray level matched.
"""

from __future__ import annotations

import argparse
import json
import math
from dataclasses import asdict, dataclass, field

import numpy as np

from pipelines.phantoms.mri.anatomy import canal_grade, residual_canal_mm
from pipelines.phantoms.patient import VirtualPatient, virtual_patient, xray_anatomy
from pipelines.phantoms.xray import generate_study
from pipelines.vocabulary import LEVELS, View

B0 = 2.0
COEF: dict[str, float] = {
    "cord_signal": -1.3, "n_compressed": -0.35, "modic": -1.2, "hard_compression": -1.2,
    "lordosis_loss_deg": -0.05, "sva_excess_mm": -0.045,
    "age_dev": -0.025, "female": -0.2, "log_duration": -0.5, "ndi_dev": -0.03, "vas_dev": 0.15,
}
"""Coefficients of the logit (see the module docstring); the keys are those of ``OutcomeCase.terms``."""
OSTEOPHYTE_MM = 1.0
"""An osteophyte the radiograph shows (the X-ray phantom draws it when ``osteophyte_mm > 1``)."""


@dataclass(frozen=True)
class OutcomeCase:
    """The outcome of one virtual patient and everything it was computed from."""

    seed: int
    probability: float
    recovered: bool
    drivers: dict[str, float]
    """Image drivers: cord_signal, n_compressed, modic, hard_compression, cobb_deg, sva_mm."""
    clinical: dict[str, float]
    """``pipelines.vocabulary.CLINICAL_VARIABLES`` values."""
    terms: dict[str, float]
    """Logit inputs by ``COEF`` key."""
    canal_grades: tuple[int, ...]
    modic_level: str | None
    endplate_marrow: dict[str, tuple[float, float]] = field(default_factory=dict)
    """What ``generate_series(endplate_marrow=...)`` must render for this patient."""

    def to_dict(self) -> dict:
        return asdict(self)


def xray_truth(seed: int, vp: VirtualPatient) -> tuple[float, float]:
    """(C2-C7 Cobb deg, C2-C7 SVA mm) of the neutral radiograph the paired phantom renders (size independent)."""
    st = generate_study(seed, shape=(64, 64), anatomy=xray_anatomy(vp))
    got = {m.key: m.value for m in st.truth if m.view == View.NEUTRAL}
    return float(got["cobb_c2_c7"]), float(got["sva_c2_c7"])


def clinical_variables(seed: int, vp: VirtualPatient) -> dict[str, float]:
    """Age and sex of the virtual patient plus sampled symptom duration (months), NDI (%) and VAS (0-10)."""
    rng = np.random.default_rng([seed, 4242])
    duration = float(np.clip(rng.lognormal(math.log(10.0), 0.8), 1.0, 120.0))
    ndi = float(np.clip(rng.normal(30 + 20 * vp.degeneration, 14), 4, 90))
    vas = float(np.clip(rng.normal(6.0, 1.8), 1, 10))
    return {"age": float(vp.age), "female": float(vp.sex == "F"), "duration_months": round(duration, 2),
            "ndi": round(ndi, 1), "vas": round(vas, 1)}


def logit_of(terms: dict[str, float]) -> float:
    """The logit of the recovery probability from the ``COEF`` terms."""
    return B0 + sum(COEF[k] * v for k, v in terms.items())


def outcome_case(seed: int, vp: VirtualPatient | None = None, xray: tuple[float, float] | None = None) -> OutcomeCase:
    """The outcome of virtual patient ``seed`` (deterministic). ``xray``: its (Cobb, SVA) when already known."""
    vp = vp or virtual_patient(seed)
    rng = np.random.default_rng([seed, 9090])
    grades = tuple(canal_grade(r, vp.cord_ap_mm) for r in residual_canal_mm(vp))
    cobb, sva = xray if xray is not None else xray_truth(seed, vp)
    compressed = [g >= 2 for g in grades]
    hard = any(c and lv.osteophyte_mm > OSTEOPHYTE_MM for c, lv in zip(compressed, vp.levels, strict=True))
    # Modic-like change: more likely with degeneration, at a level weighted by its severity
    modic = bool(rng.random() < 0.15 + 0.3 * vp.degeneration)
    weights = np.array([0.3 + lv.osteophyte_mm + (lv.disc != "normal") for lv in vp.levels])
    level = LEVELS[int(rng.choice(len(LEVELS), p=weights / weights.sum()))]
    gain = float(rng.uniform(0.55, 1.6))  # grey level of the zone: random in every patient
    texture = float(rng.uniform(0.35, 0.6)) if modic else 0.0
    clin = clinical_variables(seed, vp)
    drivers = {"cord_signal": float(any(g == 3 for g in grades)), "n_compressed": float(sum(compressed)),
               "modic": float(modic), "hard_compression": float(hard), "cobb_deg": round(cobb, 3), "sva_mm": round(sva, 3)}
    terms = {
        "cord_signal": drivers["cord_signal"], "n_compressed": drivers["n_compressed"], "modic": drivers["modic"],
        "hard_compression": drivers["hard_compression"], "lordosis_loss_deg": max(0.0, 10.0 - cobb),
        "sva_excess_mm": max(0.0, sva - 20.0), "age_dev": clin["age"] - 55.0, "female": clin["female"],
        "log_duration": math.log(clin["duration_months"] / 12.0), "ndi_dev": clin["ndi"] - 40.0, "vas_dev": clin["vas"] - 6.0,
    }
    p = 1.0 / (1.0 + math.exp(-logit_of(terms)))
    return OutcomeCase(seed=seed, probability=p, recovered=bool(rng.random() < p), drivers=drivers, clinical=clin,
                       terms=terms, canal_grades=grades, modic_level=level if modic else None,
                       endplate_marrow={level: (gain, texture)})


def bayes_auc(p: np.ndarray) -> float:
    """The ceiling of the synthetic outcome: the expected AUC of the true probabilities ``p`` as the score, over
    the Bernoulli draws of the outcomes, in closed form (no sample of outcomes, no ROC computation):
    sum_{i != j} p_i (1 - p_j) [p_i > p_j] (+ 1/2 for ties) / sum_{i != j} p_i (1 - p_j).

    The AUC on the realised outcomes is the caller's: ``roc_auc(recovered, p)`` (``models.common.metrics``)."""
    p = np.sort(np.asarray(p, float))
    q = 1 - p
    # for each i: the sum of (1 - p_j) over j with p_j < p_i (sorted: j < i, ties ignored: continuous p)
    below = np.concatenate([[0.0], np.cumsum(q)[:-1]])
    num = float((p * below).sum())
    den = float(p.sum() * q.sum() - (p * q).sum())
    return num / den


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m pipelines.phantoms.outcome",
                                 description="Outcome cases of virtual patients; prints prevalence and the expected "
                                             "Bayes AUC.")
    ap.add_argument("--first", type=int, default=100000)
    ap.add_argument("--count", type=int, default=300)
    ap.add_argument("--show", type=int, default=0, help="print this many cases as JSON")
    args = ap.parse_args(argv)
    cases = [outcome_case(s) for s in range(args.first, args.first + args.count)]
    p = np.array([c.probability for c in cases])
    y = np.array([c.recovered for c in cases])
    for c in cases[: args.show]:
        print(json.dumps(c.to_dict()))
    drivers = {k: float(np.mean([c.drivers[k] for c in cases])) for k in cases[0].drivers}
    print(json.dumps({"cases": len(cases), "recovered": float(y.mean()), "mean_p": float(p.mean()),
                      "bayes_auc_expected": round(bayes_auc(p), 4),
                      "driver_means": drivers}))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
