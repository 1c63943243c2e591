"""pipelines.raster.fill_polygon answers what matplotlib's point-in-path test answers for every pixel centre."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.path import Path as MplPath

from pipelines.raster import fill_polygon


def _reference(polygon: np.ndarray, rows: int, cols: int) -> np.ndarray:
    yy, xx = np.mgrid[0:rows, 0:cols]
    inside = MplPath(polygon).contains_points(np.column_stack([xx.ravel(), yy.ravel()]))
    return inside.reshape(rows, cols)


def test_random_polygons_match_matplotlib_pixel_for_pixel() -> None:
    rng = np.random.default_rng(7)
    filled = 0
    for _ in range(400):  # convex, concave and self-intersecting outlines, partly outside the image
        n = int(rng.integers(3, 12))
        poly = rng.uniform(-20, 110, 2) + rng.normal(0, rng.uniform(1, 40), (n, 2))
        got = fill_polygon(poly, 90, 80)
        assert np.array_equal(got, _reference(poly, 90, 80))
        filled += int(got.sum())
    assert filled > 100_000  # the polygons covered real areas, not only empty masks


@pytest.mark.parametrize("poly", [np.zeros((0, 2)), np.array([[1.0, 1.0], [5.0, 5.0]]),
                                  np.array([[np.nan, 1.0], [5.0, 5.0], [2.0, 9.0]]),
                                  np.array([[-50.0, -50.0], [-40.0, -50.0], [-45.0, -40.0]])])
def test_degenerate_or_outside_polygons_fill_nothing(poly: np.ndarray) -> None:
    out = fill_polygon(poly, 20, 30)
    assert out.shape == (20, 30) and not out.any()


def test_a_rectangle_fills_the_centres_inside() -> None:
    out = fill_polygon(np.array([[1.5, 2.5], [6.5, 2.5], [6.5, 4.5], [1.5, 4.5]]), 8, 10)
    expected = np.zeros((8, 10), dtype=bool)
    expected[3:5, 2:7] = True
    assert np.array_equal(out, expected)


def test_bounding_box_holds_every_true_and_nothing_more() -> None:
    from pipelines.raster import bounding_box

    mask = np.zeros((4, 20, 30), dtype=bool)
    mask[1, 3, 7] = mask[2, 11, 25] = True
    assert bounding_box(mask) == (slice(1, 3), slice(3, 12), slice(7, 26))
    assert bounding_box(np.zeros((5, 6), dtype=bool)) is None
