"""COCO-keypoints export of X-ray phantom studies: the images and one JSON with the ground truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

from pipelines.phantoms.dicom import write_study
from pipelines.phantoms.xray.study import PhantomStudy
from pipelines.results import Measurement
from pipelines.xray.annotations import AnnotatedImage, write_coco_json


def write_coco(studies: list[PhantomStudy], out_dir: Path, *, image_format: str = "dcm") -> Path:
    """Write the images and one COCO-keypoints JSON (``annotations.json``) into ``out_dir``.

    ``image_format`` ``"dcm"``: the DX DICOM files (``images/<seed>/<view>.dcm``); ``"png"``: 16-bit PNG of
    the stored values converted to MONOCHROME2 (bright bone). The JSON is read by
    :func:`pipelines.xray.annotations.read_coco`.
    """
    if image_format not in ("dcm", "png"):
        raise ValueError(f"image_format must be 'dcm' or 'png', got {image_format!r}")
    out_dir = Path(out_dir)
    items: list[AnnotatedImage] = []
    for st in studies:
        folder = out_dir / "images" / f"{st.seed:06d}"
        if image_format == "dcm":
            paths = dict(zip(st.views, write_study(st, folder), strict=True))
        else:
            folder.mkdir(parents=True, exist_ok=True)
            paths = {}
            for view, pv in st.views.items():
                arr = pv.pixels
                if pv.photometric == "MONOCHROME1":
                    arr = ((1 << pv.bits_stored) - 1 - arr.astype(np.int32)).astype(np.uint16)
                arr = (arr.astype(np.uint32) << (16 - pv.bits_stored)).astype(np.uint16)
                path = folder / f"{view.value}.png"
                Image.fromarray(arr).save(path)
                paths[view] = path
        for view, pv in st.views.items():
            items.append(AnnotatedImage(
                image_path=paths[view], keypoints=pv.keypoints.copy(), visible=pv.visible.copy(),
                pixel_spacing_mm=pv.pixel_spacing_mm, view=view, measurements=list(pv.truth),
                width=pv.shape[1], height=pv.shape[0], study_uid=st.study_uid, image_uid=pv.sop_instance_uid,
                spacing_source="ImagerPixelSpacing / EstimatedRadiographicMagnificationFactor (phantom truth)"))
    return write_coco_json(items, out_dir / "annotations.json",
                           extra_info={"generator": "pipelines.phantoms.xray", "seeds": [s.seed for s in studies],
                                       "dynamic_truth": {st.study_uid: [_m_json(m) for m in st.truth if m.view is None]
                                                         for st in studies}})


def _m_json(m: Measurement) -> dict:
    return {"key": m.key, "site": m.site, "value": m.value, "unit": m.unit,
            "view": m.view.value if m.view else None}

