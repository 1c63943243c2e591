"""Comparison with the patient's earlier study of the same pipeline (issue 17, prior-study comparison).

A radiologist reads alignment against the previous study ("Cobb 12 deg, was 18 deg two years ago; new C4-C5
instability"). ``pipelines`` does not know where earlier studies are kept: it asks a ``PriorHistory`` (the node
answers from its own index, then from the PACS: ``node.priors``), which returns ``PriorStudy`` entries, each with
the typed result of the earlier analysis or a note saying why it cannot be compared (SR missing, corrupt, from
another vendor). ``compare`` is pure: the current result, its study date and the priors -> one ``Comparison``
(per measurement the previous value, its date, the change and the change per year; findings that are new,
resolved, persistent or changed; the notes). ``pipelines.dicom_out.sr_compare`` writes it into the SR, the report
page and ``summary.txt`` show ``lines()``.

Measurements are matched on (key, site, view); findings on (key, site). A prior without a result (only a note)
is never compared; the newest earlier prior with a result of the same pipeline is.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Protocol

from pipelines.results import Measurement, StudyResult
from pipelines.study import Study
from pipelines.vocabulary import PipelineName

POSITIVE = frozenset({"present", "abnormal", "unstable"})
"""Finding values that mean the finding is there."""
NEGATIVE = frozenset({"absent", "normal", "stable"})
"""Finding values that mean it is not."""
UNKNOWN = frozenset({"", "not measurable", "not assessable", "indeterminate", "not assessed"})


@dataclass(frozen=True)
class PriorStudy:
    """An earlier study of the patient: its analysed result, or a note why it cannot be compared."""

    study_uid: str
    study_date: str
    """YYYYMMDD ("" when unknown)."""
    result: StudyResult | None
    """The earlier analysis (typed, from the node's index or read back from its SR); None: see ``note``."""
    source: str
    """Where it was found: ``node index``, ``<destination> (QIDO-RS)``, ``<destination> (C-FIND)``."""
    note: str = ""
    """Why it is not compared (e.g. ``prior SR from another vendor (ACME): not compared``)."""
    pipelines: tuple[str, ...] = ()
    """For a note: the pipelines it concerns (e.g. an earlier DX study without an SR: ``("xray",)``); () for all."""


class PriorHistory(Protocol):
    """Earlier analysed studies of the patient of a study (a sibling of ``PatientHistory``)."""

    def priors(self, study: Study, pipeline: PipelineName) -> list[PriorStudy]:
        """The patient's studies before ``study`` that ``pipeline`` applies to, newest first; those that cannot be
        compared carry a note instead of a result. Never raises for a missing or unreadable prior."""
        ...


@dataclass(frozen=True)
class MeasurementChange:
    key: str
    name: str
    site: str
    view: str
    """``neutral``/``flexion``/``extension``, ``flexion-extension`` for a difference across views, "" for none."""
    unit: str
    current: float | None
    previous: float | None
    change: float | None
    """current - previous (None when either is not measurable)."""
    per_year: float | None
    """change / years between the studies (None when the dates are unknown or the same day)."""


@dataclass(frozen=True)
class FindingChange:
    key: str
    name: str
    site: str
    current: str
    previous: str
    status: str
    """``new``, ``resolved``, ``persistent``, ``changed`` (a class label differs) or ``not assessable now``."""


@dataclass
class Comparison:
    """The comparison of one study's result with the newest comparable earlier study."""

    pipeline: str
    current_date: str
    prior_study_uid: str = ""
    """"" when no earlier study could be compared (then ``notes`` say why)."""
    prior_date: str = ""
    source: str = ""
    prior_algorithm: str = ""
    measurements: list[MeasurementChange] = field(default_factory=list)
    findings: list[FindingChange] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def compared(self) -> bool:
        return bool(self.prior_study_uid)

    @property
    def years(self) -> float | None:
        return years_between(self.prior_date, self.current_date)

    def headline(self) -> str:
        """``Compared with 2024-03-01 (2.0 years earlier, node index)``, or why nothing was compared."""
        if not self.compared:
            return "Compared with: no earlier study compared"
        yrs = self.years
        span = f"{yrs:.1f} years earlier, " if yrs is not None else ""
        return f"Compared with {display_date(self.prior_date)} ({span}{self.source})"

    def lines(self) -> list[str]:
        """Plain-text lines (summary.txt, SR remarks): headline, changed measurements, findings, notes."""
        out = [self.headline()]
        for m in self.measurements:
            out.append("  " + measurement_text(m, self.prior_date))
        for f in self.findings:
            out.append(f"  FINDING {f.name} {f.site}: {f.status} (was {f.previous or 'not reported'}, now {f.current})")
        out += [f"  NOTE {n}" for n in self.notes]
        return out


def display_date(d: str) -> str:
    return f"{d[:4]}-{d[4:6]}-{d[6:8]}" if len(d) == 8 and d.isdigit() else (d or "unknown date")


def parse_date(d: str) -> date | None:
    d = (d or "").strip()
    if len(d) != 8 or not d.isdigit():
        return None
    try:
        return date(int(d[:4]), int(d[4:6]), int(d[6:8]))
    except ValueError:
        return None


def years_between(earlier: str, later: str) -> float | None:
    a, b = parse_date(earlier), parse_date(later)
    if a is None or b is None:
        return None
    return (b - a).days / 365.25


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "not measurable"
    u = "" if unit == "1" else f" {unit}"
    return f"{v:.2f}{u}"


def measurement_text(m: MeasurementChange, prior_date: str) -> str:
    """``C2-C7 Cobb angle [neutral]: 12.00 deg, was 18.00 deg on 2024-03-01, change -6.00 deg (-3.00 deg/year)``."""
    view = f" [{m.view}]" if m.view else ""
    site = "" if m.site in m.name else f" {m.site}"
    text = f"{m.name}{site}{view}: {_fmt(m.current, m.unit)}, was {_fmt(m.previous, m.unit)} on {display_date(prior_date)}"
    if m.change is not None:
        u = "" if m.unit == "1" else f" {m.unit}"
        text += f", change {m.change:+.2f}{u}"
        if m.per_year is not None:
            text += f" ({m.per_year:+.2f}{u}/year)"
    return text


def view_name(m: Measurement) -> str:
    if m.view is not None:
        return m.view.value
    return "flexion-extension" if len(set(m.image_uids)) > 1 else ""


def _match_key(m: Measurement) -> tuple[str, str, str]:
    return (m.key, m.site, view_name(m))


def _state(value: str) -> str:
    v = value.strip().lower()
    if v in POSITIVE:
        return "positive"
    if v in NEGATIVE:
        return "negative"
    if v in UNKNOWN:
        return "unknown"
    return "class"


def finding_status(current: str, previous: str | None) -> str | None:
    """How a finding changed (None: nothing worth reporting, e.g. absent before and now)."""
    now = _state(current)
    if previous is None:
        return "new" if now == "positive" else None
    before = _state(previous)
    if now == "positive":
        return "persistent" if before == "positive" else "new"
    if before == "positive":
        return "resolved" if now == "negative" else "not assessable now"
    if now == "class" and current.strip().lower() != previous.strip().lower() and before != "unknown":
        return "changed"
    return None


def compare_results(current: StudyResult, current_date: str, prior: PriorStudy) -> Comparison:
    """Compare ``current`` with one prior that has a result."""
    assert prior.result is not None
    old = prior.result
    cmp = Comparison(current.pipeline, current_date, prior.study_uid, prior.study_date, prior.source,
                     f"{old.algorithm.name} {old.algorithm.version}".strip())
    years = years_between(prior.study_date, current_date)
    before = {_match_key(m): m for m in old.measurements}
    for m in current.measurements:
        p = before.get(_match_key(m))
        if p is None:
            continue
        change = m.value - p.value if m.value is not None and p.value is not None else None
        per_year = change / years if change is not None and years is not None and years > 1 / 365.25 else None
        cmp.measurements.append(MeasurementChange(m.key, m.name, m.site, view_name(m), m.unit, m.value, p.value,
                                                  change, per_year))
    previous = {(f.key, f.site): f.value for f in old.findings}
    by_name = {(f.name, f.site): f.value for f in old.findings}  # a prior read from an SR whose code lost the key
    matched: set[tuple[str, str]] = set()
    for f in current.findings:
        before = previous.get((f.key, f.site), by_name.get((f.name, f.site)))
        if before is not None:
            matched |= {(f.key, f.site), (f.name, f.site)}
        status = finding_status(f.value, before)
        if status is not None:
            cmp.findings.append(FindingChange(f.key, f.name, f.site, f.value, before or "", status))
    for f in old.findings:  # positive before, not reported at all now
        if (f.key, f.site) not in matched and (f.name, f.site) not in matched and _state(f.value) == "positive":
            cmp.findings.append(FindingChange(f.key, f.name, f.site, "not reported", f.value, "not assessable now"))
    if old.algorithm.name and old.algorithm.name != current.algorithm.name:
        cmp.notes.append(f"prior analysed by {cmp.prior_algorithm}, now {current.algorithm.name} "
                         f"{current.algorithm.version}: differences may come from the algorithm")
    return cmp


def compare(current: StudyResult, current_date: str, priors: list[PriorStudy], *,
            max_notes: int = 5) -> Comparison | None:
    """The comparison of ``current`` (study date ``current_date``, YYYYMMDD) with the newest earlier prior that has
    a result of the same pipeline; the others that could not be read give notes (at most ``max_notes``). None
    when there are no priors at all."""
    if not priors:
        return None
    cur = parse_date(current_date)

    def earlier(p: PriorStudy) -> bool:
        d = parse_date(p.study_date)
        return cur is None or d is None or d <= cur

    ordered = sorted((p for p in priors if earlier(p)), key=lambda p: p.study_date or "", reverse=True)
    chosen = next((p for p in ordered if p.result is not None and p.result.pipeline == current.pipeline), None)
    cmp = compare_results(current, current_date, chosen) if chosen is not None else Comparison(current.pipeline, current_date)
    notes = []
    for p in ordered:  # the priors newer than the one compared (all of them when none was) say why they were not
        if p is chosen:
            break
        if p.result is None and p.note:
            notes.append(f"prior study of {display_date(p.study_date)} ({p.source}): {p.note}" if p.study_uid else p.note)
    cmp.notes += notes[:max_notes]
    if len(notes) > max_notes:
        cmp.notes.append(f"{len(notes) - max_notes} more prior studies not compared")
    if not cmp.compared and not cmp.notes:
        return None
    return cmp


# -- in ``pipelines.analyze``: the lookup runs while the pipeline does -----------------------------------


class PriorLookup:
    """``history.priors(study, pipeline)`` started in a thread before the pipeline runs; ``comparison(result)``
    waits for it and compares. A lookup that fails is a note, never a failed study."""

    def __init__(self, history: object | None, study: Study, pipeline: PipelineName | str) -> None:
        import threading

        self.study = study
        self.priors: list[PriorStudy] = []
        self.error = ""
        self.lookup_s = 0.0
        self.wait_s = 0.0
        self._thread: threading.Thread | None = None
        lookup = getattr(history, "priors", None)
        self.limit_s: float | None = getattr(history, "priors_limit_s", None)
        """The longest ``comparison`` waits for the lookup (None: until it ends)."""
        if lookup is None:
            return

        def run() -> None:
            import time

            t = time.perf_counter()
            try:
                self.priors = list(lookup(study, PipelineName(pipeline)))
            except Exception as exc:  # noqa: BLE001 - the study's own results must still go out
                self.error = f"prior lookup failed: {type(exc).__name__}: {str(exc)[:200]}"
            self.lookup_s = time.perf_counter() - t

        self._thread = threading.Thread(target=run, name="prior-lookup", daemon=True)
        self._thread.start()

    @property
    def started(self) -> bool:
        return self._thread is not None

    def comparison(self, result: StudyResult) -> Comparison | None:
        """Wait for the lookup (``wait_s``: how long, beyond the pipeline's own time) and compare."""
        if self._thread is None:
            return None
        import time

        t = time.perf_counter()
        self._thread.join(self.limit_s)
        self.wait_s = time.perf_counter() - t
        if self._thread.is_alive():  # a PACS slower than its timeouts: go on without it (the thread ends by itself)
            self.error = f"prior lookup did not finish within {self.limit_s:g} s: not compared"
            self.priors = []
        cmp = compare(result, study_date(self.study), list(self.priors))
        if self.error:
            cmp = cmp or Comparison(result.pipeline, study_date(self.study))
            cmp.notes.append(self.error)
        return cmp


def study_date(study: Study) -> str:
    """StudyDate (YYYYMMDD) of the study's first instance that has one ("" when none does)."""
    import pydicom

    for inst in study.instances:
        try:
            ds = pydicom.dcmread(inst.path, stop_before_pixels=True, specific_tags=["StudyDate"])
        except Exception:  # noqa: BLE001 - an unreadable file just has no date
            continue
        value = str(ds.get("StudyDate", "") or "").strip()
        if value:
            return value
    return ""
