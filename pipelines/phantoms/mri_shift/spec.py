"""The MRI shift suite's vocabulary: ``NAME[:VALUE]`` shifts, their defaults, and the suite that cycles them.

* acquisition: ``slices[:n]`` slice count (default 10, an even count), ``thickness[:mm]`` (4), ``gap[:mm]`` gap
  between slices (1.2), ``pixel[:mm]`` in-plane pixel (0.44), ``matrix[:RxC]`` rows x columns (448x320);
* positioning: ``oblique[:deg]`` slab turned about the S and A axes (5), ``tilt[:deg]`` head flexion (+) or
  extension (-) (15), ``offcentre[:mm]`` spine off the slab centre laterally, and the field of view off-centre
  in-plane (6);
* signal: ``bias[:strength]`` receive-coil bias (1.0), ``noise[:sigma]`` Rician noise relative to the brightest
  tissue (0.09);
* study and storage: ``t1`` / ``stir`` a T1 / STIR series of the same slab also in the study, ``flip`` anterior on
  the image right, ``upside`` head at the image bottom, ``reverse`` slices numbered left to right.

``suite`` (evaluation) cycles through ``SUITE`` one shift per series.
"""

from __future__ import annotations

DEFAULTS: dict[str, str | None] = {
    "slices": "10", "thickness": "4", "gap": "1.2", "pixel": "0.44", "matrix": "448x320", "oblique": "5",
    "tilt": "15", "offcentre": "6", "bias": "1.0", "noise": "0.09", "t1": None, "stir": None, "flip": None,
    "upside": None, "reverse": None,
}
SUITE: tuple[str, ...] = ("slices:10", "slices:16", "thickness:4", "gap:1.2", "pixel:0.44", "pixel:0.78",
                          "matrix:448x320", "oblique:5", "tilt:15", "tilt:-15", "offcentre:6", "bias:1.0",
                          "noise:0.09", "t1", "stir", "flip", "reverse", "upside")
"""One shift per series, in turn, for ``--shift suite``."""


def parse_shifts(items: list[str] | tuple[str, ...]) -> dict[str, str | None]:
    """``["tilt:10", "t1"]`` -> ``{"tilt": "10", "t1": None}`` (defaults filled in); ValueError for unknown names."""
    out: dict[str, str | None] = {}
    for item in items:
        name, _, value = item.partition(":")
        name = name.strip().lower()
        if name not in DEFAULTS:
            raise ValueError(f"unknown MRI shift {name!r}; known: {', '.join(DEFAULTS)} (or 'suite')")
        out[name] = value or DEFAULTS[name]
    return out


def suite_shift(index: int, *, exclude: tuple[str, ...] = ()) -> str:
    """The ``index``-th shift of ``SUITE`` (cycling), skipping names in ``exclude``."""
    items = [s for s in SUITE if s.partition(":")[0] not in exclude]
    return items[index % len(items)]


def number(shifts: dict[str, str | None], name: str) -> float:
    return float(shifts[name])  # type: ignore[arg-type]


def matrix(shifts: dict[str, str | None]) -> tuple[int, int]:
    r, _, c = str(shifts["matrix"]).lower().partition("x")
    return int(r), int(c or r)
