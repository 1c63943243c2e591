"""The explanation maps (Grad-CAM) of a pipeline as a DICOM SEG of segmentation type FRACTIONAL.

Why not a Parametric Map: highdicom 0.28's ``ParametricMap`` cannot be built on a radiograph source (no plane
geometry, no Frame of Reference): its constructor fails in ``_build_luts_multiframe`` ("Unexpected mismatch
between dimension index values ..."), because no dimension index is made without a coordinate system. A
FRACTIONAL SEG carries the same float map (8 bits, ``MaximumFractionalValue`` 255) and highdicom builds it on a
DX source the way it builds the binary SEG (:mod:`pipelines.dicom_out.seg`).

One SEG per source image that has ``ImageResult.heatmaps``, one segment per map (e.g. "C4-C5 cord compression
Grad-CAM"): the fraction is ``probability x Grad-CAM`` (each Grad-CAM normalised to its maximum), so it is high
only where a segment the model calls likely compressed draws its evidence. Fractional type PROBABILITY.

Transfer syntax RLE Lossless (``pipelines.dicom_out.rle``): the maps are zero outside their crops, so a study's
maps take a few hundred kB instead of 10-30 MB uncompressed (encode, store and every delivery pay for the bytes).
"""

from __future__ import annotations

import highdicom as hd
import numpy as np

from pipelines.dicom_out import codes
from pipelines.dicom_out._sources import Sources
from pipelines.dicom_out.identity import Provenance, new_uid
from pipelines.dicom_out.rle import set_rle_pixel_data
from pipelines.dicom_out.seg import _copy_if_no_plane
from pipelines.results import HeatMap, ImageResult, StudyResult


def weighted(h: HeatMap, rows: int, columns: int) -> np.ndarray:
    """(rows, columns) float32 in [0, 1]: ``probability x map`` (probability 1 when the map has none)."""
    w = 1.0 if h.probability is None else float(h.probability)
    return np.clip(h.full(rows, columns) * w, 0.0, 1.0)


def _weighted_patch(h: HeatMap, rows: int, columns: int) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """``weighted`` of ``h`` where it can be non-zero: (rows slice, columns slice) of a ``rows x columns`` image and
    the float32 values there (the map's patch clipped to the image); None when the patch lies outside it."""
    w = 1.0 if h.probability is None else float(h.probability)
    r0, c0 = h.origin
    r1, c1 = min(r0 + h.array.shape[0], rows), min(c0 + h.array.shape[1], columns)
    if r1 <= r0 or c1 <= c0:
        return None
    return (slice(r0, r1), slice(c0, c1)), np.clip(np.asarray(h.array[: r1 - r0, : c1 - c0], np.float32) * w, 0.0, 1.0)


def combined_map(image: ImageResult) -> np.ndarray:
    """(rows, columns) float32: per pixel the maximum of ``probability x map`` over the image's heat maps (``weighted``
    of each, taken patch by patch: a map is 0 outside its patch, so no full-size copy per map)."""
    out = np.zeros((image.rows, image.columns), dtype=np.float32)
    for h in image.heatmaps:
        if (wp := _weighted_patch(h, image.rows, image.columns)) is not None:
            view = out[wp[0]]
            np.maximum(view, wp[1], out=view)
    return out


def _quantised(maps: list[HeatMap], rows: int, columns: int, max_value: int = 255) -> np.ndarray:
    """(rows, columns, maps) uint8: ``weighted`` of each map as SEG fractional values (``round(value x
    max_value)``, as highdicom quantises), written patch by patch (no full-size float copies)."""
    arr = np.zeros((rows, columns, len(maps)), dtype=np.uint8)
    for i, h in enumerate(maps):
        if (wp := _weighted_patch(h, rows, columns)) is not None:
            arr[(*wp[0], i)] = np.around(wp[1] * float(max_value)).astype(np.uint8)
    return arr


def build_heatmap_segs(result: StudyResult, sources: Sources, prov: Provenance, *, series_uid: str,
                       series_number: int) -> list[hd.seg.Segmentation]:
    """One FRACTIONAL SEG per source image with heat maps; empty when there are none."""
    out: list[hd.seg.Segmentation] = []
    alg = hd.AlgorithmIdentificationSequence(name=prov.model_name, family=codes.ALGORITHM_FAMILY,
                                             version=prov.software_version)
    for n, image in enumerate(img for img in result.images if img.heatmaps):
        src = sources[image.image_uid]
        rows, cols = int(src.Rows), int(src.Columns)
        maps = [h for h in image.heatmaps if np.asarray(h.array).size]
        if not maps:
            continue
        values = _quantised(maps, rows, cols)
        present = [k + 1 for k in range(len(maps)) if values[:, :, k].any()]
        if not present:
            continue
        # highdicom makes the frames (one per non-empty segment) and their functional groups from a label map that
        # marks one pixel of each non-empty segment (a float stack costs it a sort of every pixel, a bool stack a
        # sum over segments); the fractional values replace its pixel data below, RLE encoded
        arr = np.zeros((1, rows, cols), dtype=np.uint8)
        arr[0, 0, : len(present)] = present
        descriptions = [
            hd.seg.SegmentDescription(
                segment_number=i + 1,
                segment_label=h.label[:64],
                segmented_property_category=codes.ANATOMICAL_STRUCTURE,
                segmented_property_type=codes.SPINAL_CORD if h.key == "cord_compression" else codes.site_codes(h.site)[0],
                algorithm_type="AUTOMATIC",
                algorithm_identification=alg,
                tracking_uid=new_uid(),
                tracking_id=h.label[:64],
            )
            for i, h in enumerate(maps)
        ]
        seg = hd.seg.Segmentation(
            source_images=[src],
            pixel_array=arr,
            segmentation_type="FRACTIONAL",
            fractional_type="PROBABILITY",
            max_fractional_value=255,
            segment_descriptions=descriptions,
            content_label="GRADCAM",
            content_description="AI explanation map (Grad-CAM x probability), research use only"[:64],
            **prov.object_attributes("map", series_uid=series_uid, series_number=series_number, index=n),
        )
        _copy_if_no_plane(seg, src)
        set_rle_pixel_data(seg, (values[:, :, k - 1] for k in _frame_segments(seg)))
        if len(maps) > 1:
            seg.SegmentsOverlap = "UNDEFINED"  # as highdicom says of several truly fractional segments
        out.append(seg)
    return out


def _frame_segments(seg: hd.seg.Segmentation) -> list[int]:
    """The segment number of each frame of ``seg``, in frame order (per frame, or shared when there is one)."""
    shared = seg.SharedFunctionalGroupsSequence[0]
    if "SegmentIdentificationSequence" in shared:
        return [int(shared.SegmentIdentificationSequence[0].ReferencedSegmentNumber)] * int(seg.NumberOfFrames)
    return [int(f.SegmentIdentificationSequence[0].ReferencedSegmentNumber) for f in seg.PerFrameFunctionalGroupsSequence]
