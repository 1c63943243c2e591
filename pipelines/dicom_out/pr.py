"""Grayscale Softcopy Presentation States: the drawing every viewer shows on the radiograph itself.

One GSPS per source image (views differ in size). Layers: ``KEYPOINTS`` (vertebral body outlines,
spinolaminar points), ``LINES`` (Cobb endplate lines, SVA plumb line) and ``LABELS`` (vertebra names,
the key values and the research-use statement). Graphic data use PIXEL units with DICOM's origin at the
top-left corner of the top-left pixel (results coordinates + 0.5).
"""

from __future__ import annotations

from dataclasses import replace

import highdicom as hd
import numpy as np
from pydicom.dataset import Dataset

from pipelines.dicom_out._sources import Sources
from pipelines.dicom_out.graphics import figure_graphics, headline, vertebra_labels
from pipelines.dicom_out.identity import Provenance
from pipelines.results import ImageResult, StudyResult

_YELLOW = hd.color.CIELabColor(97.1, -21.6, 94.5)
_CYAN = hd.color.CIELabColor(91.1, -48.1, -14.1)
_WHITE = hd.color.CIELabColor(100.0, 0.0, 0.0)


def _voi(src: Dataset, sources: Sources) -> hd.pr.SoftcopyVOILUTTransformation:
    """The source's own window when it has one, else the 1st..99th percentile of its stored values."""
    if "WindowCenter" in src and "WindowWidth" in src:
        c, w = src.WindowCenter, src.WindowWidth
        c = float(c[0] if hasattr(c, "__len__") and not isinstance(c, str) else c)
        w = float(w[0] if hasattr(w, "__len__") and not isinstance(w, str) else w)
    else:
        px = sources.full(src.SOPInstanceUID).pixel_array.astype(float) * float(src.get("RescaleSlope", 1)) + float(src.get("RescaleIntercept", 0))
        lo, hi = np.percentile(px, [1, 99])
        c, w = (lo + hi) / 2, max(hi - lo, 1.0)
    return hd.pr.SoftcopyVOILUTTransformation(window_center=c, window_width=w, window_explanation="AI report window")


def _annotation(image: ImageResult, result: StudyResult, src: Dataset, layers: dict[str, hd.pr.GraphicLayer]) -> list[hd.pr.GraphicAnnotation]:
    objects: dict[str, list[hd.pr.GraphicObject]] = {"KEYPOINTS": [], "LINES": []}
    for layer, g in figure_graphics(image, result.measurements):
        pts = g.dicom_points(image.rows, image.columns)
        name = layer.upper()
        if g.kind != "POINT":
            objects[name].append(hd.pr.GraphicObject("POLYLINE", pts, "PIXEL"))
        if g.kind == "POINT" or layer == "keypoints":  # every keypoint as a small filled dot
            r = max(2.0, 0.004 * max(image.rows, image.columns))
            dots = replace(g, closed=False).dicom_points(image.rows, image.columns)
            for p in dots:
                edge = p + [r, 0] if p[0] + r <= image.columns else p - [r, 0]
                objects[name].append(hd.pr.GraphicObject("CIRCLE", np.array([p, edge]), "PIXEL", is_filled=True))
    texts = []
    for v, anchor in vertebra_labels(image):
        x, y = np.clip(anchor + 0.5, 1, [image.columns - 1, image.rows - 1])
        texts.append(hd.pr.TextObject(v, "PIXEL", anchor_point=(float(x), float(y)), anchor_point_visible=False))
    w, h = image.columns, image.rows
    lines = headline(image, result.measurements) + ["RESEARCH USE ONLY - NOT FOR DIAGNOSIS"]
    for i, line in enumerate(lines):
        top = 0.02 * h + i * 0.04 * h
        texts.append(hd.pr.TextObject(line, "PIXEL", bounding_box=(0.02 * w, top, 0.98 * w, top + 0.035 * h), text_justification="LEFT"))
    out = [
        hd.pr.GraphicAnnotation(referenced_images=[src], graphic_layer=layers[name], graphic_objects=objs)
        for name, objs in objects.items() if objs
    ]
    out.append(hd.pr.GraphicAnnotation(referenced_images=[src], graphic_layer=layers["LABELS"], text_objects=texts))
    return out


def build_gsps(result: StudyResult, sources: Sources, prov: Provenance, *, series_uid: str, series_number: int) -> list[hd.pr.GrayscaleSoftcopyPresentationState]:
    """One GSPS per image that has keypoints (an image with nothing to draw gets none)."""
    layers = {
        "KEYPOINTS": hd.pr.GraphicLayer("KEYPOINTS", 1, "Vertebral corners and spinolaminar points", _YELLOW),
        "LINES": hd.pr.GraphicLayer("LINES", 2, "Cobb endplate lines and SVA plumb line", _CYAN),
        "LABELS": hd.pr.GraphicLayer("LABELS", 3, "Vertebra names and key values", _WHITE),
    }
    out: list[hd.pr.GrayscaleSoftcopyPresentationState] = []
    for n, image in enumerate(i for i in result.images if i.keypoints):
        src = sources[image.image_uid]
        if int(src.get("SamplesPerPixel", 1)) != 1:
            continue
        annotations = _annotation(image, result, src, layers)
        used = {a.GraphicLayer for a in annotations}
        pr = hd.pr.GrayscaleSoftcopyPresentationState(
                referenced_images=[src],
                content_label="AI_ANNOTATION",
                content_description=f"AI annotation {image.view.value if image.view else ''} - research use only"[:64],
                graphic_annotations=annotations,
                graphic_layers=[layer for name, layer in layers.items() if name in used],
                voi_lut_transformations=[_voi(src, sources)],
                **prov.object_attributes("pr", series_uid=series_uid, series_number=series_number, index=n),
            )
        # General Series Laterality is Type 2C (dciodvfy requires it here): copy the source's, else empty
        pr.Laterality = src.get("Laterality", "")
        out.append(pr)
    return out
