"""The one-page report (after paper 002 fig. 8): annotated views on top, tables of values and findings.

Rendered once as pixels (``pipelines.dicom_out.page``; Pillow draws the annotated views, the text and the tables),
delivered twice:

* a Secondary Capture image (RGB) - every PACS viewer shows an image;
* an Encapsulated PDF of the same pixels - for printing and for viewers with a PDF viewer (OHIF has one); its
  text is also in the PDF as a text layer (searchable, selectable, extractable).

The page carries no patient identifiers (BurnedInAnnotation NO): the DICOM header identifies the patient.
"""

from __future__ import annotations

from datetime import datetime

import highdicom as hd
import matplotlib
import numpy as np
from contourpy import contour_generator
from PIL import Image, ImageDraw
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian

from pipelines.dicom_out._sources import Sources
from pipelines.dicom_out.graphics import figure_graphics, headline, vertebra_labels
from pipelines.dicom_out.identity import RESEARCH_STATEMENT, SERIES_DESCRIPTIONS, Provenance, new_uid
from pipelines.dicom_out.page import DPI, Page, RenderedPage, font
from pipelines.dicom_out.sr import view_label
from pipelines.dicom_out.sr_compare import comparison_table
from pipelines.patient.compare import Comparison
from pipelines.raster import bounding_box
from pipelines.results import ImageResult, StudyResult

ENCAPSULATED_PDF_STORAGE = "1.2.840.10008.5.1.4.1.1.104.1"


def display_pixels(src: Dataset, max_size: int = 700) -> tuple[np.ndarray, int]:
    """Source pixels as float 0..1 for display, decimated to at most ``max_size`` px a side (returns the
    decimation step): rescaled, windowed at the 1-99 % range, MONOCHROME1 inverted."""
    px = src.pixel_array
    if px.ndim == 3 and int(src.get("SamplesPerPixel", 1)) == 1:
        px = px[0]
    slope, intercept = float(src.get("RescaleSlope", 1)), float(src.get("RescaleIntercept", 0))
    if px.ndim == 3:
        px = px.astype(np.float32) * slope + intercept
        return np.clip(px / max(px.max(), 1.0), 0, 1), 1
    step = max(1, int(np.ceil(max(px.shape) / max_size)))
    px = px[::step, ::step].astype(np.float32) * slope + intercept  # decimate first: a picture needs no more
    lo, hi = np.percentile(px, [1, 99])
    out = np.clip((px - lo) / max(hi - lo, 1e-6), 0, 1)
    return (1.0 - out if src.get("PhotometricInterpretation", "") == "MONOCHROME1" else out), step


_KEYPOINTS, _LINES, _POINTS, _OUTLINES = "#ffd400", "#00e5ff", "#ff5ad2", "#7CFC00"
_SUPERSAMPLE = 3
"""Overlays are drawn at this multiple of the panel's pixels and filtered down: antialiased lines."""


def _pt(points: float) -> float:
    """Points -> page pixels."""
    return points * DPI / 72


def draw_panel(page: Page, rect: tuple[float, float, float, float], image: ImageResult, result: StudyResult,
               src: Dataset, title: str) -> None:
    """One annotated view in ``rect`` (figure fractions) of ``page``, the picture fitted and centred in it: outlines,
    spinolaminar points, Cobb lines, SVA plumb line, mask outlines, explanation maps, vertebra labels, the key values
    and the view's title (text through the page, so that it is also in the PDF's text layer)."""
    left, top, bw, bh = page.box_px(rect)
    px, step = display_pixels(src)
    scale = min(bw / max(image.columns, 1), bh / max(image.rows, 1))
    w, h = max(1, round(image.columns * scale)), max(1, round(image.rows * scale))
    ox, oy = (bw - w) // 2, (bh - h) // 2  # centred in the box, as an equal-aspect picture
    grey = (np.clip(px, 0, 1) * 255 + 0.5).astype(np.uint8)
    picture = Image.fromarray(grey).convert("RGB").resize((w, h), Image.Resampling.LANCZOS).convert("RGBA")
    if image.heatmaps:
        picture = Image.alpha_composite(picture, _heatmap_layer(image, (w, h)))
    ss = _SUPERSAMPLE
    layer = Image.new("RGBA", (w * ss, h * ss), (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)

    def to_px(points: np.ndarray) -> list[tuple[float, float]]:  # results coordinates -> supersampled pixels
        return [tuple(p) for p in (np.asarray(points, dtype=float).reshape(-1, 2) + 0.5) * scale * ss]

    for name, g in figure_graphics(image, result.measurements):
        pts = to_px(g.closed_points())
        if len(pts) > 1:
            draw.line(pts, fill=_KEYPOINTS if name == "keypoints" else _LINES, width=max(1, round(_pt(0.8) * ss)),
                      joint="curve")
        if g.kind == "POINT" or name == "keypoints":
            r = _pt(1.6 + 1.0) / 2 * ss  # matplotlib's "o" of size 1.6 pt with its 1 pt edge
            for x, y in to_px(g.points):
                draw.ellipse((x - r, y - r, x + r, y + r), fill=_POINTS)
    for line in _mask_outlines(image, step):  # the pipeline's own masks (MRI discs, canal, bodies)
        draw.line(to_px(line), fill=_OUTLINES, width=max(1, round(_pt(0.6) * ss)))
    picture = Image.alpha_composite(picture, layer.resize((w, h), Image.Resampling.BOX))
    labels = headline(image, result.measurements)
    if labels:  # the key values on a dark box in the top-left corner
        f = font(round(_pt(6)))
        text = "\n".join(labels)
        x0, y0 = 0.03 * w, 0.03 * h
        box = ImageDraw.Draw(picture).multiline_textbbox((x0, y0), text, font=f, anchor="la", spacing=2)
        shade = Image.new("RGBA", picture.size, (0, 0, 0, 0))
        ImageDraw.Draw(shade).rectangle((box[0] - 2, box[1] - 2, box[2] + 2, box[3] + 2), fill=(0, 0, 0, 153))
        picture = Image.alpha_composite(picture, shade)
        page.text_px(left + ox + x0, top + oy + y0, text, 6, va="top", color=_LINES)
    page.picture(left + ox, top + oy, np.asarray(picture.convert("RGB")))
    for v, anchor in vertebra_labels(image):
        x, y = (anchor + 0.5) * scale
        page.text_px(left + ox + x, top + oy + y, v, 6, ha="center", va="center", color="white")
    for x, y, text in _heatmap_labels(image, result):
        page.text_px(left + ox + (x + 0.5) * scale, top + oy + (y + 0.5) * scale, text, 5, ha="center",
                     va="center", color="#ff3030")
    page.text_px(left + ox + w / 2, top + oy - 3, title, 8, ha="center", va="bottom")


def _mask_outlines(image: ImageResult, step: int) -> list[np.ndarray]:
    """The 0.5 contour lines of the image's masks (results coordinates), traced on the masks decimated by ``step``
    (the resolution of the picture) with the algorithm of matplotlib's line contours (mpl2014)."""
    out = []
    for mask in image.masks:
        arr = np.asarray(mask.array)
        small = (arr if arr.ndim == 2 else arr[0])[::step, ::step]
        box = bounding_box(small)
        if box is not None:
            r0, r1, c0, c1 = max(box[0].start - 1, 0), box[0].stop + 1, max(box[1].start - 1, 0), box[1].stop + 1
            lines, _ = contour_generator(np.arange(c0, min(c1, small.shape[1])) * step,
                                         np.arange(r0, min(r1, small.shape[0])) * step,
                                         small[r0:r1, c0:c1].astype(np.float32), name="mpl2014").lines(0.5)
            out += [np.asarray(v) for v in lines if len(v) > 1]
    return out


def _heatmap_layer(image: ImageResult, size: tuple[int, int]) -> Image.Image:
    """The image's explanation maps (Grad-CAM x probability, all segments) as an RGBA layer of ``size``: inferno
    colours, transparent where low (alpha up to 0.65)."""
    from pipelines.dicom_out.heatmap import combined_map

    full = combined_map(image)
    step = max(1, int(np.ceil(max(full.shape) / (2 * max(size)))))
    small = full[::step, ::step]
    rgba = matplotlib.colormaps["inferno"](np.clip(small / 0.9, 0, 1))
    rgba[..., 3] = np.clip((small - 0.1) / 0.5, 0, 0.65)
    layer = Image.fromarray((rgba * 255 + 0.5).astype(np.uint8), "RGBA")
    return layer.resize(size, Image.Resampling.BILINEAR)


def _heatmap_labels(image: ImageResult, result: StudyResult) -> list[tuple[float, float, str]]:
    """(x, y, text) naming each segment whose finding is present next to its map (results coordinates)."""
    present = {(f.key, f.site) for f in result.findings if f.value == "present"}
    out = []
    for hm in image.heatmaps:
        if (hm.key, hm.site) in present and hm.array.size:
            yy, xx = np.nonzero(hm.array > 0.5 * float(hm.array.max()))
            if len(xx):
                out.append((hm.origin[1] + float(np.median(xx)), hm.origin[0] + float(np.median(yy)),
                            f"{hm.site} p={hm.probability or 0:.2f}"))
    return out


def _fmt(v: float | None, unit: str) -> str:
    if v is None:
        return "n/m"
    u = "" if unit == "1" else ("°" if unit == "deg" else f" {unit}")
    return f"{v:.2f}{u}" if unit == "1" else f"{v:.1f}{u}"


def measurement_rows(result: StudyResult) -> list[list[str]]:
    """Table rows: measurement, view, values per site (one row per measurement kind and view)."""
    rows: dict[tuple[str, str], list[str]] = {}
    names: dict[tuple[str, str], str] = {}
    for m in result.measurements:
        view = m.view.value if m.view is not None else "flex-ext"
        key = (m.key, view)
        names[key] = m.name
        rows.setdefault(key, []).append(_fmt(m.value, m.unit) if m.site in ("C2-C7", "") else f"{m.site} {_fmt(m.value, m.unit)}")
    return [[names[k][:48], k[1], "  ".join(v)] for k, v in rows.items()]


def finding_rows(result: StudyResult) -> list[list[str]]:
    out = []
    for f in result.findings:
        prob = f" (p={f.probability:.2f})" if f.probability is not None else ""
        out.append([f.name[:40], f.site, f.value + prob, "; ".join(f.evidence)[:90]])
    return out


def render(result: StudyResult, sources: Sources, comparison: Comparison | None = None) -> RenderedPage:
    """The report page: (rows, columns, 3) uint8 RGB pixels and its text (``pipelines.dicom_out.page``: A4 at
    ``DPI``); with a ``comparison``, a "Compared with <date>" table between the measurements and the findings
    (``sr_compare``)."""
    page = Page()
    title = "Cervical spine AI analysis - lateral radiographs" if result.pipeline == "xray" else "Cervical spine AI analysis - MRI"
    page.text(0.5, 0.985, title, 12, ha="center", va="top", bold=True)
    page.text(0.5, 0.965, f"{result.algorithm.name} {result.algorithm.version}", 7, ha="center", va="top")
    images = [i for i in result.images][:3]
    n = max(len(images), 1)
    for i, image in enumerate(images):
        draw_panel(page, (0.02 + i * 0.96 / n, 0.6, 0.96 / n - 0.01, 0.34), image, result,
                   sources.full(image.image_uid), view_label(image, i))
    mrows = measurement_rows(result)
    frows = finding_rows(result)
    # the tables share 0.06..0.575 of the page in proportion to their rows (0.03 for each later title)
    ctable = comparison_table(comparison) if comparison is not None else None
    n_m, n_f, n_c = len(mrows) + 2, len(frows) + 2, len(ctable[2]) + 2 if ctable else 0
    room = 0.485 - (0.03 if ctable else 0.0)
    h_m, h_c = room * n_m / (n_m + n_f + n_c), room * n_c / (n_m + n_f + n_c)
    page.table((0.04, 0.575 - h_m, 0.92, h_m), ["Measurement", "View", "Values"], mrows,
               [0.27, 0.07, 0.66], "Measurements")
    if ctable:
        title, header, rows, widths, marked = ctable
        page.table((0.04, 0.545 - h_m - h_c, 0.92, h_c), header, rows, widths, title, highlight=marked)
        h_m += h_c + 0.03
    page.table((0.04, 0.06, 0.92, 0.485 - h_m), ["Finding", "Site", "Result", "Evidence"], frows,
               [0.25, 0.08, 0.14, 0.53], "Findings",
               highlight=[any(w in r[2].lower() for w in ("present", "unstable")) for r in frows])
    notes = "; ".join(result.warnings)
    page.text(0.5, 0.035, RESEARCH_STATEMENT, 7, ha="center", bold=True, color="#b00000", wrap=0.9)
    if notes:
        page.text(0.5, 0.012, f"Warnings: {notes}"[:200], 6, ha="center")
    return page.render()


def build_sc(result: StudyResult, sources: Sources, prov: Provenance, page: RenderedPage, *, series_uid: str,
             series_number: int) -> hd.sc.SCImage:
    """The report ``page`` (its RGB pixels) as a Secondary Capture image (RGB, 8 bit) in the study of the
    source images."""
    ref = sources[result.images[0].image_uid]
    sc = hd.sc.SCImage.from_ref_dataset(
        ref_dataset=ref,
        pixel_array=page.pixels,
        photometric_interpretation="RGB",
        bits_allocated=8,
        coordinate_system="PATIENT",
        series_instance_uid=series_uid,
        series_number=series_number,
        sop_instance_uid=new_uid(),
        instance_number=prov.instance_base,
        manufacturer=result.algorithm.manufacturer[:64],
        patient_orientation=("A", "F"),
        transfer_syntax_uid=ExplicitVRLittleEndian,
        contributing_equipment=prov.contributing_equipment(),
        series_description=SERIES_DESCRIPTIONS["report"],
    )
    sc.Laterality = ref.get("Laterality", "")  # General Series Type 2C
    sc.BurnedInAnnotation = "NO"
    sc.ImageComments = "AI report page - RESEARCH USE ONLY, NOT FOR DIAGNOSIS"
    sc.ConversionType = "WSD"
    return sc


_PATIENT_STUDY = (
    "PatientName", "PatientID", "IssuerOfPatientID", "PatientBirthDate", "PatientSex", "OtherPatientIDsSequence",
    "StudyInstanceUID", "StudyDate", "StudyTime", "ReferringPhysicianName", "StudyID", "AccessionNumber",
    "IssuerOfAccessionNumberSequence", "StudyDescription",
)


def build_pdf(result: StudyResult, sources: Sources, prov: Provenance, page: RenderedPage, *, series_uid: str,
              series_number: int) -> Dataset:
    """The report ``page`` as an Encapsulated PDF (modality DOC): one A4 page holding its pixels, with its text as
    a text layer (``RenderedPage.pdf``)."""
    ref = sources[result.images[0].image_uid]
    pdf = page.pdf()
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.SpecificCharacterSet = ref.get("SpecificCharacterSet", "ISO_IR 192")
    ds.SOPClassUID = ENCAPSULATED_PDF_STORAGE
    ds.SOPInstanceUID = new_uid()
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    for kw in _PATIENT_STUDY:
        if kw in ref:
            setattr(ds, kw, ref.data_element(kw).value)
    for kw in ("PatientName", "PatientID", "PatientBirthDate", "PatientSex", "StudyDate", "StudyTime",
               "ReferringPhysicianName", "StudyID", "AccessionNumber"):
        if kw not in ds:
            setattr(ds, kw, "")
    created: datetime = prov.created
    ds.Modality = "DOC"
    ds.SeriesInstanceUID = series_uid
    ds.SeriesNumber = series_number
    ds.SeriesDescription = SERIES_DESCRIPTIONS["report"]
    ds.Manufacturer = result.algorithm.manufacturer[:64]
    ds.ManufacturerModelName = prov.model_name
    ds.SoftwareVersions = prov.software_version
    ds.ConversionType = "WSD"
    ds.InstanceNumber = prov.instance_base
    ds.ContentDate = created.strftime("%Y%m%d")
    ds.ContentTime = created.strftime("%H%M%S")
    ds.AcquisitionDateTime = created.strftime("%Y%m%d%H%M%S")
    ds.BurnedInAnnotation = "NO"
    ds.DocumentTitle = "Cervical spine AI report - research use only"
    ds.ConceptNameCodeSequence = []
    ds.MIMETypeOfEncapsulatedDocument = "application/pdf"
    ds.EncapsulatedDocument = pdf + (b"\0" if len(pdf) % 2 else b"")
    ds.EncapsulatedDocumentLength = len(pdf)
    ds.ContributingEquipmentSequence = prov.contributing_equipment()
    ds.InstanceCreationDate = ds.ContentDate
    ds.InstanceCreationTime = ds.ContentTime
    return ds
