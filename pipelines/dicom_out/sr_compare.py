"""The prior-study comparison (``pipelines.patient.compare.Comparison``) in the SR and on the report page.

SR: TID 1500 row 12 (Qualitative Evaluations) TEXT items, which every SR viewer lists (OHIF shows the text
container; a measurement group would need a figure on an image of *this* study, which a previous value does not
have): the headline ``Compared with <date> (...)``, one item per measurement with its previous value, date, change
and change per year, one per new/resolved/persistent/changed finding, and the notes (prior SR missing, corrupt,
another vendor). The same text goes to ``summary.txt`` (``Comparison.lines``).

Report page: a "Compared with <date>" table of the headline measurements (Cobb, SVA, curvature index per view),
the findings that changed (first) and the notes (the SR and summary.txt carry every measurement).
"""

from __future__ import annotations

from pipelines.patient.compare import Comparison, display_date, measurement_text

__all__ = ["comparison_remarks", "comparison_table"]

PAGE_KEYS: tuple[str, ...] = ("cobb", "sva_c2_c7", "curvature_index")
"""Measurement keys (prefixes) the report page's comparison table shows."""
MAX_PAGE_ROWS = 12


def comparison_remarks(comparison: Comparison | None) -> list[str]:
    """The SR's Qualitative Evaluations TEXT items of ``comparison`` (none for None)."""
    if comparison is None:
        return []
    out = [comparison.headline() + (f"; prior analysed by {comparison.prior_algorithm}" if comparison.prior_algorithm else "")]
    out += [f"Comparison: {measurement_text(m, comparison.prior_date)}" for m in comparison.measurements]
    out += [f"Comparison: {f.name} {f.site}: {f.status} (was {f.previous or 'not reported'}, now {f.current})"
            for f in comparison.findings]
    out += [f"Comparison note: {n}" for n in comparison.notes]
    return out


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/m"
    u = "" if unit == "1" else ("°" if unit == "deg" else f" {unit}")
    return f"{v:.2f}{u}" if unit == "1" else f"{v:.1f}{u}"


def comparison_table(comparison: Comparison) -> tuple[str, list[str], list[list[str]], list[float], list[bool]]:
    """(title, header, rows, column widths, highlighted rows) of the report page's comparison table."""
    title = comparison.headline()
    header = ["Measurement / finding", "Site", "Now", f"{display_date(comparison.prior_date)}", "Change", "Per year"]
    rows = [[f.name[:48], f.site, f.current, f.previous or "not reported", f.status, ""] for f in comparison.findings]
    highlight = [f.status in ("new", "persistent") for f in comparison.findings]
    for m in comparison.measurements:
        if not m.key.startswith(PAGE_KEYS):
            continue
        view = f" [{m.view}]" if m.view else ""
        change = "" if m.change is None else ("+" if m.change >= 0 else "") + _fmt(m.change, m.unit)
        per_year = "" if m.per_year is None else ("+" if m.per_year >= 0 else "") + _fmt(m.per_year, m.unit) + "/y"
        rows.append([f"{m.name}{view}"[:48], m.site, _fmt(m.current, m.unit), _fmt(m.previous, m.unit), change, per_year])
        highlight.append(False)
    if len(rows) > MAX_PAGE_ROWS:
        more = len(rows) - MAX_PAGE_ROWS + 1
        rows, highlight = rows[: MAX_PAGE_ROWS - 1], highlight[: MAX_PAGE_ROWS - 1]
        rows.append([f"... {more} more rows in the SR and summary.txt", "", "", "", "", ""])
        highlight.append(False)
    for n in comparison.notes[:3]:
        rows.append([f"Note: {n}"[:120], "", "", "", "", ""])
        highlight.append(False)
    if not rows:
        rows.append(["no measurement in common with the prior", "", "", "", "", ""])
        highlight.append(False)
    return title, header, rows, [0.34, 0.1, 0.12, 0.14, 0.15, 0.15], highlight
