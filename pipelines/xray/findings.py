"""Clinical findings from lateral cervical radiograph measurements, with thresholds from paper 002.

All thresholds live in :class:`Thresholds` (one place, configurable). Every :class:`Finding` names its
level(s), the measurement values it came from (``evidence``), the ``(key, site)`` pairs it used and the rule
with its literature source (``threshold``).

Sign conventions are those of :mod:`pipelines.xray.geometry`: Cobb angle lordosis positive, kyphosis
negative; SVA positive when C2's centre lies anterior of C7's postero-superior corner.

Static findings (kyphosis, cervical deformity, canal stenosis, curvature class) use the *neutral* view;
instability uses the flexion-extension differences (measurements with ``view=None``).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import Any

import numpy as np

from pipelines.results import SEGMENTS, Finding, Measurement, View
from pipelines.xray import geometry
from pipelines.xray.geometry import GeometryError

__all__ = ["Thresholds", "findings_from_measurements", "CURVATURE_CLASSES"]

CURVATURE_CLASSES = ("normal", "straightened", "reversed-kyphotic", "S-shaped")
NOT_MEASURABLE = "not measurable"


@dataclass(frozen=True)
class Thresholds:
    """Decision thresholds (deg, mm, unitless). Defaults follow paper 002 and the sources it cites."""

    kyphosis_cobb_deg: float = -13.0
    """Kyphosis when C2-C7 Cobb < this (a local kyphosis over 13 deg; Suda et al. 2003, paper 002 ref. 18)."""
    sva_deformity_mm: float = 40.0
    """Cervical deformity when C2-C7 SVA > this (Tang et al. 2012 / Ames et al. 2013, paper 002 ref. 20)."""
    sva_low_mm: float | None = 15.0
    """Paper 002's second criterion: SVA < this (Peking University Third Hospital experience); None disables."""
    instability_translation_mm: float = 3.5
    """Instability when |flexion - extension translation| > this (White & Panjabi, paper 002 ref. 21)."""
    instability_angle_deg: float = 11.0
    """Instability when |flexion - extension angulation| > this (White & Panjabi, paper 002 ref. 21)."""
    pavlov_ratio: float = 0.75
    """Developmental canal stenosis when the Pavlov ratio < this ... (Pavlov 1987; Wang et al., ref. 22)."""
    pavlov_consecutive_levels: int = 3
    """... on at least this many consecutive vertebrae (paper 002)."""
    lordosis_normal_deg: float = 10.0
    """Curvature class ``normal`` (lordotic) when Cobb >= this (project convention, not from paper 002)."""
    kyphotic_class_deg: float = 0.0
    """Curvature class ``reversed-kyphotic`` when Cobb < this (project convention); in between: straightened."""
    s_shape_mm: float = 2.0
    """``S-shaped`` when posterior-inferior corners C3-C6 lie more than this both anterior and posterior of
    the C2-C7 chord (Ishihara's construction; project convention)."""

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any] | None) -> Thresholds:
        """Thresholds from a settings mapping (e.g. the node's configuration); unknown keys are an error."""
        values = dict(values or {})
        names = {f.name for f in fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown threshold(s): {', '.join(unknown)}; known: {', '.join(sorted(names))}")
        out: dict[str, Any] = {}
        for k, v in values.items():
            if v is None and k == "sva_low_mm":
                out[k] = None
            elif k == "pavlov_consecutive_levels":
                out[k] = int(v)
                if out[k] < 1:
                    raise ValueError("pavlov_consecutive_levels must be >= 1")
            else:
                out[k] = float(v)
        return replace(cls(), **out)


def _index(measurements: Iterable[Measurement]) -> dict[tuple[str, str, View | None], Measurement]:
    return {(m.key, m.site, m.view): m for m in measurements}


def _why(m: Measurement) -> str:
    """Why ``m`` is not measurable, without the leading "not measurable: " the pipeline's reasons carry."""
    return m.reason.removeprefix("not measurable: ")


def _nm(key: str, name: str, site: str, why: str, threshold: str) -> Finding:
    return Finding(key=key, name=name, value=NOT_MEASURABLE, site=site, evidence=(why,), threshold=threshold)


def findings_from_measurements(measurements: list[Measurement], thresholds: Thresholds = Thresholds()
                               ) -> list[Finding]:
    """Kyphosis, cervical deformity (SVA), instability per segment, canal stenosis and curvature class.

    A finding whose inputs are missing or not measurable is returned with value ``"not measurable"`` and
    the reason in ``evidence`` (it is never silently dropped).
    """
    t = thresholds
    idx = _index(measurements)
    neutral = View.NEUTRAL
    out: list[Finding] = []

    # kyphosis --------------------------------------------------------------------------------------
    rule = f"C2-C7 Cobb < {t.kyphosis_cobb_deg:g} deg (Suda et al. 2003, via paper 002)"
    cobb = idx.get(("cobb_c2_c7", "C2-C7", neutral))
    site_key = ("cobb_c2_c7", "C2-C7")
    if cobb is None or cobb.value is None:
        sub = idx.get(("cobb_c2_c6", "C2-C6", neutral))
        if sub is not None and sub.value is not None:  # paper 002: C6 may replace an unclear C7
            cobb, site_key = sub, ("cobb_c2_c6", "C2-C6")
    if cobb is None or cobb.value is None:
        why = "no neutral C2-C7 Cobb angle" if cobb is None else f"Cobb angle not measurable: {_why(cobb)}"
        out.append(_nm("kyphosis", "Cervical kyphosis", "C2-C7", why, rule))
    else:
        present = cobb.value < t.kyphosis_cobb_deg
        rel = "<" if present else ">="
        out.append(Finding(key="kyphosis", name="Cervical kyphosis", value="present" if present else "absent",
                           site=cobb.site,
                           evidence=(f"{cobb.site} Cobb angle {cobb.value:.1f} deg {rel} {t.kyphosis_cobb_deg:g} deg",),
                           measurement_keys=(site_key,), threshold=rule))

    # cervical deformity (SVA) ----------------------------------------------------------------------
    rule = f"C2-C7 SVA > {t.sva_deformity_mm:g} mm (Tang et al. 2012 / Ames et al. 2013, via paper 002)"
    if t.sva_low_mm is not None:
        rule += f" or < {t.sva_low_mm:g} mm (paper 002, Peking University Third Hospital)"
    sva = idx.get(("sva_c2_c7", "C2-C7", neutral))
    if sva is None or sva.value is None:
        why = "no neutral C2-C7 SVA" if sva is None else f"SVA not measurable: {_why(sva)}"
        out.append(_nm("cervical_deformity", "Cervical sagittal deformity (SVA)", "C2-C7", why, rule))
    else:
        ev: list[str] = []
        if sva.value > t.sva_deformity_mm:
            ev.append(f"SVA {sva.value:.1f} mm > {t.sva_deformity_mm:g} mm")
        if t.sva_low_mm is not None and sva.value < t.sva_low_mm:
            ev.append(f"SVA {sva.value:.1f} mm < {t.sva_low_mm:g} mm (paper 002 second criterion)")
        present = bool(ev)
        if not ev:
            ev.append(f"SVA {sva.value:.1f} mm within the thresholds")
        out.append(Finding(key="cervical_deformity", name="Cervical sagittal deformity (SVA)",
                           value="present" if present else "absent", site="C2-C7", evidence=tuple(ev),
                           measurement_keys=(("sva_c2_c7", "C2-C7"),), threshold=rule))

    # instability per segment -----------------------------------------------------------------------
    rule = (f"|flexion - extension| translation > {t.instability_translation_mm:g} mm or angulation > "
            f"{t.instability_angle_deg:g} deg (White & Panjabi, via paper 002)")
    for seg in SEGMENTS:
        d = idx.get(("listhesis_distance", seg, None))
        a = idx.get(("listhesis_angle", seg, None))
        if (d is None or d.value is None) and (a is None or a.value is None):
            why = ("no flexion-extension pair" if d is None and a is None
                   else f"not measurable: {_why(d or a)}")  # type: ignore[arg-type]
            out.append(_nm("instability", "Segmental instability", seg, why, rule))
            continue
        ev = []
        keys = []
        present = False
        for m, lim, unit, what in ((d, t.instability_translation_mm, "mm", "translation"),
                                   (a, t.instability_angle_deg, "deg", "angulation")):
            if m is None or m.value is None:
                ev.append(f"{what} not measurable")
                continue
            keys.append((m.key, seg))
            over = abs(m.value) > lim
            present |= over
            ev.append(f"{what} change {abs(m.value):.1f} {unit} {'>' if over else '<='} {lim:g} {unit}")
        out.append(Finding(key="instability", name="Segmental instability", value="present" if present else "absent",
                           site=seg, evidence=tuple(ev), measurement_keys=tuple(keys), threshold=rule))

    # developmental canal stenosis ------------------------------------------------------------------
    rule = (f"Pavlov ratio < {t.pavlov_ratio:g} on {t.pavlov_consecutive_levels} consecutive vertebrae "
            "(Pavlov 1987; Wang et al., via paper 002)")
    pav = [m for m in measurements if m.key == "pavlov_ratio" and m.view == neutral]
    pav.sort(key=lambda m: m.site)
    measured = [m for m in pav if m.value is not None]
    if len(measured) < t.pavlov_consecutive_levels:
        why = f"fewer than {t.pavlov_consecutive_levels} measurable Pavlov ratios"
        reasons = list(dict.fromkeys(_why(m) for m in pav if m.value is None and m.reason))
        if reasons:
            why += f" ({'; '.join(reasons[:2])})"
        out.append(_nm("canal_stenosis", "Developmental canal stenosis", "C3-C7", why, rule))
    else:
        runs: list[list[Measurement]] = []
        cur: list[Measurement] = []
        for m in pav:
            if m.value is not None and m.value < t.pavlov_ratio:
                cur.append(m)
            else:
                if cur:
                    runs.append(cur)
                cur = []
        if cur:
            runs.append(cur)
        long_runs = [r for r in runs if len(r) >= t.pavlov_consecutive_levels]
        if long_runs:
            for r in long_runs:
                out.append(Finding(
                    key="canal_stenosis", name="Developmental canal stenosis", value="present",
                    site=f"{r[0].site}-{r[-1].site}",
                    evidence=tuple(f"{m.site} Pavlov {m.value:.2f} < {t.pavlov_ratio:g}" for m in r),
                    measurement_keys=tuple(("pavlov_ratio", m.site) for m in r), threshold=rule))
        else:
            low = [m for m in measured if m.value < t.pavlov_ratio]  # type: ignore[operator]
            ev = tuple(f"{m.site} Pavlov {m.value:.2f} < {t.pavlov_ratio:g}" for m in low) or (
                f"all Pavlov ratios >= {t.pavlov_ratio:g}",)
            if len(measured) < len(pav):
                ev += ("some levels not measurable",)
            out.append(Finding(key="canal_stenosis", name="Developmental canal stenosis", value="absent",
                               site=f"{pav[0].site}-{pav[-1].site}", evidence=ev,
                               measurement_keys=tuple(("pavlov_ratio", m.site) for m in measured), threshold=rule))

    # curvature class -------------------------------------------------------------------------------
    out.append(_curvature_finding(idx, t))
    return out


def classify_curvature(cobb_deg: float, offsets_mm: Sequence[float] | None, thresholds: Thresholds | None = None) -> str:
    """Curvature class from the C2-C7 Cobb angle and (optionally) the four Ishihara offsets.

    ``S-shaped`` when offsets exceed ``s_shape_mm`` on both sides of the chord; else ``normal`` (Cobb >=
    ``lordosis_normal_deg``), ``reversed-kyphotic`` (Cobb < ``kyphotic_class_deg``) or ``straightened``.
    ``thresholds``: :class:`Thresholds` (default values when None).
    """
    thresholds = thresholds if thresholds is not None else Thresholds()
    if not np.isfinite(cobb_deg):
        raise GeometryError("Cobb angle is not finite")
    if offsets_mm is not None:
        o = np.asarray(offsets_mm, dtype=float)
        if o.max() > thresholds.s_shape_mm and o.min() < -thresholds.s_shape_mm:
            return "S-shaped"
    if cobb_deg >= thresholds.lordosis_normal_deg:
        return "normal"
    if cobb_deg < thresholds.kyphotic_class_deg:
        return "reversed-kyphotic"
    return "straightened"


def curvature_class(points: np.ndarray, spacing_mm: Sequence[float], thresholds: Thresholds | None = None) -> str:
    """``normal`` / ``straightened`` / ``reversed-kyphotic`` / ``S-shaped`` (see :func:`classify_curvature`)."""
    cobb = geometry.cobb_angle(points, spacing_mm)
    offs = list(geometry.curvature_offsets(points, spacing_mm).values())
    return classify_curvature(cobb, offs, thresholds)


def _curvature_finding(idx: dict[tuple[str, str, View | None], Measurement], t: Thresholds) -> Finding:
    rule = (f"normal: Cobb >= {t.lordosis_normal_deg:g} deg; reversed-kyphotic: Cobb < {t.kyphotic_class_deg:g} deg;"
            f" straightened in between; S-shaped: C3-C6 posterior-inferior corners > {t.s_shape_mm:g} mm on both "
            "sides of the C2-C7 chord (project convention)")
    cobb = idx.get(("cobb_c2_c7", "C2-C7", View.NEUTRAL))
    if cobb is None or cobb.value is None:
        why = "C2-C7 Cobb angle not measurable" + (f": {_why(cobb)}" if cobb is not None and cobb.reason else "")
        return _nm("curvature_class", "Cervical curvature class", "C2-C7", why, rule)
    offsets = [idx.get(("curvature_offset", f"C{k}", View.NEUTRAL)) for k in range(3, 7)]
    offs = [m.value for m in offsets if m is not None and m.value is not None]
    label = classify_curvature(cobb.value, offs if len(offs) == 4 else None, t)
    ev = [f"C2-C7 Cobb {cobb.value:.1f} deg"]
    keys = [("cobb_c2_c7", "C2-C7")]
    if len(offs) == 4:
        ev.append("C3-C6 offsets from the C2-C7 chord " + ", ".join(f"{o:+.1f}" for o in offs) + " mm")
        keys += [("curvature_offset", f"C{k}") for k in range(3, 7)]
    return Finding(key="curvature_class", name="Cervical curvature class", value=label, site="C2-C7",
                   evidence=tuple(ev), measurement_keys=tuple(keys), threshold=rule)
