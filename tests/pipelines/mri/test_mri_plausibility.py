"""The MRI level plausibility gate with hand-made disc chains, and "not assessable" findings through the
pipeline (a stub model) into the SR codes."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipelines.dicom_out import codes
from pipelines.interfaces import VolumeAnalysis
from pipelines.mri.grading import NOT_ASSESSABLE, level_findings, study_findings
from pipelines.mri.pipeline import MriPipeline
from pipelines.mri.plausibility import UNVERIFIED_ABOVE, check_chain
from pipelines.results import AlgorithmInfo
from pipelines.vocabulary import LEVELS, TASKS

PS = (0.5, 0.5)  # mm per pixel (row, column)
ROWS, COLS = 480, 400


def chain(gap_mm: float = 18.0, top_y: float = 150.0, x: float = 180.0, tilt: float = 0.15) -> np.ndarray:
    """Five disc centres (canonical px) down a slightly tilted spine, ``gap_mm`` apart."""
    step = gap_mm / PS[0] / np.hypot(1, tilt)
    return np.array([[x + tilt * step * j, top_y + step * j] for j in range(5)])


def canal_behind(c: np.ndarray, gap: tuple[float, float] | None = None) -> np.ndarray:
    """A canal strip 8-20 mm behind the chain (posterior = +x), optionally missing between rows ``gap``."""
    m = np.zeros((ROWS, COLS), bool)
    ys = np.arange(ROWS)
    xs = np.interp(ys, c[:, 1], c[:, 0])
    for y, x in zip(ys, xs, strict=True):
        m[y, int(x + 8 / PS[1]):int(x + 20 / PS[1])] = True
    if gap is not None:
        m[int(gap[0]):int(gap[1])] = False
    return m


def check(c: np.ndarray, peak: float | np.ndarray = 0.9, canal: np.ndarray | None = None, **kw):  # noqa: ANN201
    peaks = np.broadcast_to(np.asarray(peak, float), (5,))
    return check_chain(c, PS, peaks, np.full(5, 1.0), canal_behind(c) if canal is None else canal,
                       second_peak=kw.pop("second", np.zeros(5)), **kw)


def test_a_plausible_chain_passes():
    c = chain()
    res = check(c)
    assert res.failed == [] and res.chain_reasons == ()
    assert check(chain(gap_mm=14.0)).failed == check(chain(gap_mm=24.0)).failed == []


def test_one_level_on_its_neighbour_fails_it_and_the_levels_counted_below():
    c = chain()
    c[2] = c[3] + (0.5, 1.0)  # C4-C5 found on the C5-C6 disc: a level shifted by one
    res = check(c)
    assert "C2-C3" not in res.failed
    assert {"C4-C5", "C5-C6", "C6-C7"} <= set(res.failed)
    assert "cranio-caudal" in res.reason("C4-C5") or "spacing" in res.reason("C4-C5")


def test_a_missing_level_breaks_the_spacing():
    c = chain()
    c[3:] = c[3:] + (c[1] - c[0])  # one disc skipped between C4-C5 and C5-C6: a double gap
    res = check(c)
    assert res.failed == ["C4-C5", "C5-C6", "C6-C7"]
    assert "spacing" in res.reason("C4-C5") and "counted from C2" in res.reason("C6-C7")


def test_swapped_levels_are_out_of_order():
    c = chain()
    c[[1, 2]] = c[[2, 1]]
    res = check(c)
    assert res.failed == list(LEVELS)  # C2-C3's next disc is now two gaps away; C5-C6, C6-C7 counted across it
    assert "cranio-caudal" in res.reason("C3-C4") and "spacing" in res.reason("C2-C3")
    assert "counted from C2" in res.reason("C6-C7") and "irregular" not in res.reason("C6-C7")


def test_irregular_spacing_is_flagged():
    c = chain()
    c[4] = c[3] + (c[4] - c[3]) * 1.5  # C6-C7 27 mm below C5-C6 where the others are 18 mm apart
    res = check(c)
    assert res.failed == ["C5-C6", "C6-C7"]
    assert "irregular disc spacing" in res.reason("C6-C7")


def test_a_whole_chain_shifted_up_to_the_edge_has_no_c2_in_view():
    res = check(chain(top_y=40.0))  # 20 mm of image above C2-C3
    assert res.failed == list(LEVELS) and "C2 not in view" in res.chain_reasons[0]
    assert check(chain(top_y=150.0), view_top_px=100.0).chain_reasons  # the localiser saw only from row 100
    # a chain shifted by one level as a whole, regular, confident and with C2 in view is NOT caught: documented
    assert check(chain(top_y=150.0 + 18.0 / PS[0])).failed == []


def test_uncertain_or_ambiguous_localisation_and_a_broken_canal():
    c = chain()
    res = check(c, peak=[0.9, 0.1, 0.9, 0.9, 0.9])
    assert res.failed == ["C3-C4"] and "heatmap peak 0.10" in res.reason("C3-C4")
    res = check(c, second=np.array([0.0, 0.0, 0.0, 0.45, 0.0]))
    assert res.failed == ["C5-C6"] and "ambiguous" in res.reason("C5-C6")
    res = check(c, canal=canal_behind(c, gap=(c[1, 1] + 5, c[2, 1] - 5)))
    assert res.failed == ["C3-C4", "C4-C5", "C5-C6", "C6-C7"]
    assert "not continuous" in res.reason("C3-C4")
    res = check(c, canal=np.zeros((ROWS, COLS), bool))
    assert res.failed == list(LEVELS) and "no spinal canal" in res.reason("C2-C3")


def test_a_level_that_moves_when_the_localiser_runs_again_is_unstable():
    c = chain()
    still = np.full((5, 7), 1.5)
    assert check(c, moved_mm=still).failed == [] and check(c, moved_mm=None).failed == []
    moved = still.copy()
    moved[2, [1, 5]] = (17.0, 6.0)  # C4-C5 jumps to a neighbouring disc under two of seven re-runs
    res = check(c, moved_mm=moved)
    assert res.failed == ["C4-C5"]  # its own reason only: the chain is not broken, the others are stable
    assert "unstable (moved 17 mm in 2 of 7 re-runs" in res.reason("C4-C5")
    moved[2] = 5.0  # at the limit: stable
    assert check(c, moved_mm=moved).failed == []


def test_a_level_is_named_only_below_one_that_passed():
    c = chain()
    # A whole chain one level off: the top four land on odd structures and fail, the lowest looks right.
    res = check(c, peak=[0.1, 0.2, 0.1, 0.2, 0.9])
    assert res.failed == list(LEVELS)
    assert res.reason("C6-C7") == f"{UNVERIFIED_ABOVE} (C2-C3, C3-C4, C4-C5, C5-C6)"
    # C2-C3 failing leaves nothing verified to count from: none is named.
    res = check(c, peak=[0.1, 0.9, 0.9, 0.9, 0.9])
    assert res.failed == list(LEVELS) and res.reason("C3-C4") == f"{UNVERIFIED_ABOVE} (C2-C3)"
    assert res.reason("C4-C5") == f"{UNVERIFIED_ABOVE} (C2-C3, C3-C4)"
    # One level that passed above is enough: C4-C5 below C3-C4, however many failed in between.
    res = check(c, peak=[0.9, 0.1, 0.1, 0.9, 0.9])
    assert res.failed == ["C3-C4", "C4-C5"]


def test_not_assessable_findings_and_their_code():
    fs = level_findings("C4-C5", dict.fromkeys(TASKS, 0.9), not_assessable="irregular disc spacing")
    assert [f.value for f in fs] == [NOT_ASSESSABLE] * 4
    assert all(f.probability is None and "irregular disc spacing" in f.evidence[0] for f in fs)
    all_fs = study_findings({t: [0.9] * 5 for t in TASKS}, {"C2-C3": "C2 not in view"})
    assert {f.site for f in all_fs if f.value == NOT_ASSESSABLE} == {"C2-C3"}
    assert codes.value_code(NOT_ASSESSABLE) == codes.value_code("indeterminate")


class StubModel:
    """An ``MriModel`` that reports the given chain (for the pipeline wiring, no network)."""

    def __init__(self, centres: np.ndarray) -> None:
        self.centres = centres

    @property
    def algorithm(self) -> AlgorithmInfo:
        return AlgorithmInfo(name="stub", version="0")

    def analyse(self, volume, pixel_spacing_mm, mid, left, right) -> VolumeAnalysis:  # noqa: ANN001
        rows, cols = volume.shape[1:]
        canal = np.zeros((rows, cols), bool)
        canal[:, int(self.centres[:, 0].max() + 10):int(self.centres[:, 0].max() + 22)] = True
        probs = {t: np.full(5, 0.8) for t in TASKS}
        return VolumeAnalysis(self.centres, np.ones(5), np.full(5, 0.9), np.zeros((rows, cols), bool), canal, probs,
                              mid, left, right, second_peak=np.zeros(5), view_top_px=0.0)


@pytest.mark.parametrize("swap", [False, True])
def test_pipeline_reports_failed_levels_not_assessable(tmp_path: Path, swap: bool):
    from pipelines.phantoms.dicom import write_series
    from pipelines.phantoms.mri import generate_series
    from pipelines.study import Study

    ph = generate_series(8, shape=(128, 128), n_slices=7)
    study = Study.from_paths(write_series(ph, tmp_path))[0]
    c = np.array([t.disc_centre_px for t in ph.levels], float)
    if swap:
        c[[3, 4]] = c[[4, 3]]
    res = MriPipeline(StubModel(c)).run(study, study.instances)
    na = {f.site for f in res.findings if f.value == NOT_ASSESSABLE}
    assert na == ({"C4-C5", "C5-C6", "C6-C7"} if swap else set())
    graded = [f for f in res.findings if f.site not in na]
    assert all(f.value == "present" and f.probability == 0.8 for f in graded) and len(graded) == 4 * (5 - len(na))
    assert any("not assessable" in w for w in res.warnings) == swap
