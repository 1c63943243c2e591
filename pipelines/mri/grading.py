"""Per-level model probabilities -> ``Finding`` objects. Every threshold lives here.

Tasks follow paper 002 (intervertebral degeneration on MR images): disc degeneration is binary,
protrusion or extrusion (positive) vs normal or bulge; spinal canal stenosis; left and right
intervertebral foramen stenosis. The definitions of the positive class on the training phantoms are in
``pipelines.vocabulary.TRUTH_RULES``.
"""

from __future__ import annotations

from collections.abc import Mapping

from pipelines.results import Finding
from pipelines.vocabulary import FINDING_NAMES, LEVELS, NOT_ASSESSABLE, TASKS, TRUTH_RULES

THRESHOLDS: dict[str, float] = {
    "disc_degeneration": 0.5,
    "canal_stenosis": 0.5,
    "foraminal_stenosis_left": 0.5,
    "foraminal_stenosis_right": 0.5,
}
"""Probability at or above which a level is reported positive."""
UNCERTAIN_BAND = 0.15
"""Probabilities within this distance of the threshold get an 'uncertain' remark in the evidence."""


def _rule(task: str) -> str:
    base = TRUTH_RULES["foraminal_stenosis" if task.startswith("foraminal") else task]
    return f"model probability >= {THRESHOLDS[task]:.2f}; positive class: {base}"


def level_findings(level: str, probabilities: Mapping[str, float], not_assessable: str = "") -> list[Finding]:
    """The four findings of one disc level from its task probabilities; with ``not_assessable`` (the reason) the
    four are "not assessable" instead, without a probability (the model's number is not a result there)."""
    if level not in LEVELS:
        raise ValueError(f"unknown level {level!r}; expected one of {LEVELS}")
    out = []
    for task in TASKS:
        if not_assessable:
            out.append(Finding(key=task, name=FINDING_NAMES[task], value=NOT_ASSESSABLE, site=level,
                               evidence=(f"level not assessable: {not_assessable}",), threshold=_rule(task)))
            continue
        p = float(probabilities[task])
        thr = THRESHOLDS[task]
        ev = [f"p={p:.2f} {'>=' if p >= thr else '<'} {thr:.2f}"]
        if abs(p - thr) < UNCERTAIN_BAND:
            ev.append("close to the threshold: uncertain")
        out.append(Finding(key=task, name=FINDING_NAMES[task], value="present" if p >= thr else "absent",
                           site=level, evidence=tuple(ev), probability=round(p, 4), threshold=_rule(task)))
    return out


def study_findings(probabilities: Mapping[str, object], not_assessable: Mapping[str, str] | None = None) -> list[Finding]:
    """Findings for all levels; ``probabilities[task]`` is a sequence over ``LEVELS``; ``not_assessable`` maps a
    level to the reason it is not graded."""
    out = []
    skip = not_assessable or {}
    for j, level in enumerate(LEVELS):
        out.extend(level_findings(level, {t: float(probabilities[t][j]) for t in TASKS},  # type: ignore[index]
                                  skip.get(level, "")))
    return out
