"""DICOM SEG of the structures a pipeline outlined (vertebral bodies C2-C7, the canal, MRI discs ...).

Masks come from ``ImageResult.masks`` when the pipeline made them (empty masks are skipped). On an X-ray
result, structures the pipeline did not outline are derived from its keypoints: each vertebral body is
the quadrilateral of its four corners, the canal is the band between the posterior walls and the
spinolaminar points (only where those points exist); nothing is derived from a rejected view's keypoints
(``ImageResult.rejected``), so such a radiograph gets no SEG.

One SEG per source series: a radiograph (no plane geometry, no Frame of Reference) gets its own SEG
with one frame per segment referencing it; MR slices of one series share one SEG (highdicom places
frames by the slices' plane positions); a multi-frame source maps mask frames to its frames.
"""

from __future__ import annotations

from collections.abc import Iterator

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from pipelines.dicom_out import codes
from pipelines.dicom_out._sources import Sources
from pipelines.dicom_out.graphics import keypoints_by_name, vertebra_polygon
from pipelines.dicom_out.identity import Provenance, new_uid
from pipelines.raster import bounding_box, fill_polygon
from pipelines.results import VERTEBRAE, ImageResult, Mask, StudyResult


def rasterize(polygon: np.ndarray, rows: int, cols: int) -> np.ndarray:
    """Bool mask of the pixels whose centres lie inside ``polygon`` ((n, 2) x, y in pixel coordinates)."""
    return fill_polygon(polygon, rows, cols)


def canal_polygon(image: ImageResult) -> np.ndarray | None:
    """Spinal canal band on a lateral radiograph: posterior walls top-down, spinolaminar points bottom-up."""
    kp = keypoints_by_name(image)
    wall = [kp[f"{v} {r}"] for v in VERTEBRAE for r in ("postero-superior", "postero-inferior") if f"{v} {r}" in kp]
    lam = [kp[f"{v} spinolaminar"] for v in VERTEBRAE if f"{v} spinolaminar" in kp]
    if len(wall) < 2 or len(lam) < 2:
        return None
    pts = [(k.x, k.y) for k in wall] + [(k.x, k.y) for k in reversed(lam)]
    return np.asarray(pts, dtype=float)


def keypoint_masks(image: ImageResult, skip: frozenset[str] | set[str] = frozenset()) -> list[Mask]:
    """Masks derived from X-ray corner keypoints (vertebral bodies C2-C7 and the canal), except the labels in
    ``skip`` (structures the pipeline outlined itself)."""
    kp = keypoints_by_name(image)
    masks = []
    for v in VERTEBRAE:
        poly = vertebra_polygon(kp, v) if f"{v} vertebral body" not in skip else None
        if poly is not None:
            masks.append(Mask(f"{v} vertebral body", image.image_uid, rasterize(poly, image.rows, image.columns)))
    canal = canal_polygon(image) if "spinal canal" not in skip else None
    if canal is not None:
        masks.append(Mask("spinal canal", image.image_uid, rasterize(canal, image.rows, image.columns)))
    return [m for m in masks if m.array.any()]


def _segment_type(label: str) -> hd.sr.CodedConcept:
    level = label.split()[0]
    low = label.lower()
    if "canal" in low:
        return codes.SPINAL_CANAL
    if "disc" in low and level in codes.DISC_CODES:
        return codes.DISC_CODES[level]
    if level in codes.VERTEBRA_CODES:
        return codes.VERTEBRA_CODES[level]
    return codes.site_codes(label)[0]


def _series_groups(result: StudyResult, sources: Sources) -> dict[str, list[Mask]]:
    groups: dict[str, list[Mask]] = {}
    for image in result.images:
        masks = list(image.masks)
        if result.pipeline == "xray":  # outline what the keypoints give and the pipeline did not
            have = {m.label for m in masks}
            masks += keypoint_masks(image, skip=have)
        for m in masks:
            if not np.asarray(m.array).any():
                continue
            src = sources[m.image_uid]
            # a source without plane geometry cannot share a SEG with another image
            key = str(src.SeriesInstanceUID) if "FrameOfReferenceUID" in src else str(src.SOPInstanceUID)
            groups.setdefault(key, []).append(m)
    return groups


def iter_segs(result: StudyResult, sources: Sources, prov: Provenance, *, series_uid: str,
              series_number: int) -> Iterator[hd.seg.Segmentation]:
    """One SEG per source series (per image for radiographs; none when there are no masks), each yielded as soon
    as it is built: ``pipelines.dicom_out.encode`` hands the first to the node while it builds the others."""
    alg = hd.AlgorithmIdentificationSequence(name=prov.model_name, family=codes.ALGORITHM_FAMILY, version=prov.software_version)
    for n, masks in enumerate(_series_groups(result, sources).values()):
        labels = list(dict.fromkeys(m.label for m in masks))
        src_uids = list(dict.fromkeys(m.image_uid for m in masks))
        src = [sources[u] for u in src_uids]
        first = src[0]
        rows, cols = int(first.Rows), int(first.Columns)
        if len(src) == 1 and sources.is_multiframe(src_uids[0]):
            placed = [(slice(0, None), m.array if m.array.ndim == 3 else m.array[None], m.label) for m in masks]
            shape = (int(first.NumberOfFrames), rows, cols)
        else:
            placed = [(src_uids.index(m.image_uid), m.array if m.array.ndim == 2 else m.array[0], m.label)
                      for m in masks]
            shape = (len(src), rows, cols)
        arr = _pixel_array(shape, placed, labels)
        descriptions = [
            hd.seg.SegmentDescription(
                segment_number=i + 1,
                segment_label=label[:64],
                segmented_property_category=codes.ANATOMICAL_STRUCTURE,
                segmented_property_type=_segment_type(label),
                algorithm_type="AUTOMATIC",
                algorithm_identification=alg,
                tracking_uid=new_uid(),
                tracking_id=label[:64],
            )
            for i, label in enumerate(labels)
        ]
        seg = hd.seg.Segmentation(
            source_images=src,
            pixel_array=arr,
            segmentation_type="BINARY",
            segment_descriptions=descriptions,
            content_label="AISEG",
            content_description="AI segmentation, research use only"[:64],
            **prov.object_attributes("seg", series_uid=series_uid, series_number=series_number, index=n),
        )
        _copy_if_no_plane(seg, first)
        yield seg


def _pixel_array(shape: tuple[int, int, int], placed: list[tuple[int | slice, np.ndarray, str]],
                 labels: list[str]) -> np.ndarray:
    """The SEG's pixel array: a label map (frames, rows, cols) of segment numbers when no two masks overlap (most
    often: highdicom splits it into the same BINARY frames, several times faster than from a stack), else the
    (frames, rows, cols, segments) bool stack. ``placed``: (frame index or slice, bool mask, label) per mask."""
    label_map = np.zeros(shape, dtype=np.uint8 if len(labels) < 256 else np.uint16)
    for where, mask, label in placed:
        target = label_map[where] if isinstance(where, int) else label_map[: mask.shape[0]]
        mask = mask.astype(bool, copy=False)
        box = bounding_box(mask)  # a body or a disc covers a small part of the image: work inside its box
        if box is None:
            continue
        target, mask = target[box], mask[box]
        number = labels.index(label) + 1
        taken = target[mask]
        if np.any((taken != 0) & (taken != number)):
            break
        target[mask] = number
    else:
        return label_map
    stack = np.zeros((*shape, len(labels)), dtype=bool)
    for where, mask, label in placed:
        k = labels.index(label)
        if isinstance(where, int):
            stack[where, :, :, k] |= mask.astype(bool)
        else:
            stack[: mask.shape[0], :, :, k] |= mask.astype(bool)
    return stack


def _copy_if_no_plane(seg: Dataset, source: Dataset) -> None:
    """Radiograph SEG fix-ups (no Frame of Reference):

    * General Image Patient Orientation is Type 2C without plane geometry: copy the source's;
    * highdicom copies the radiograph's Pixel Spacing into a Pixel Measures functional group without
      Slice Thickness, which its own reader (and volume-minded viewers) reject; the group is only required
      with a Frame of Reference, so drop it (the spacing stays on the referenced source image).
    """
    if "FrameOfReferenceUID" in seg:
        return
    if "PatientOrientation" not in seg:
        seg.PatientOrientation = source.get("PatientOrientation", "")
    for item in seg.get("SharedFunctionalGroupsSequence", []):
        if "PixelMeasuresSequence" in item and "SliceThickness" not in item.PixelMeasuresSequence[0]:
            del item.PixelMeasuresSequence
