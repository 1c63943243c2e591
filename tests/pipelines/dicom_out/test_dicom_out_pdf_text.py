"""The report PDF has a text layer: the measurements' names, values and the research statement are PDF text
(invisible, over the page image), read back from the content stream and by Ghostscript's text extraction; the page
image in the PDF is the report page (Ghostscript renders it back within JPEG error)."""

from __future__ import annotations

import re
import shutil
import subprocess
import zlib
from io import BytesIO
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydicom.dataset import Dataset

from pipelines.dicom_out._sources import load_sources
from pipelines.dicom_out.identity import RESEARCH_STATEMENT
from pipelines.dicom_out.page import DPI, TextRun, _pdf_string, pdf_bytes
from pipelines.dicom_out.report import measurement_rows, render


def _pdf(objects: list[Dataset]) -> bytes:
    (doc,) = [o for o in objects if o.Modality == "DOC"]
    return bytes(doc.EncapsulatedDocument)[: int(doc.EncapsulatedDocumentLength)]


def _content_strings(pdf: bytes) -> list[str]:
    """The strings shown by Tj in the PDF's Flate-compressed content stream."""
    m = re.search(rb"/Filter /FlateDecode >>\nstream\n", pdf)
    assert m is not None
    length = int(re.search(rb"/Length (\d+) /Filter /FlateDecode", pdf).group(1))
    content = zlib.decompress(pdf[m.end(): m.end() + length])
    assert b"3 Tr" in content  # invisible text (over the image)
    return [s.decode("cp1252").replace("\\(", "(").replace("\\)", ")")
            for s in re.findall(rb"\(((?:[^()\\]|\\.)*)\) Tj", content)]


def test_measurements_are_text_in_the_pdf(xray_case, xray_objects) -> None:
    _, result = xray_case
    text = "\n".join(_content_strings(_pdf(xray_objects)))
    names = {m.name for m in result.measurements}
    assert len(names) >= 5
    for name in names:
        assert name[:30] in text, name
    assert "Measurements" in text and "Findings" in text
    assert "Cervical spine AI analysis" in text
    assert RESEARCH_STATEMENT.split(";")[0][:30] in text
    for row in measurement_rows(result)[:5]:  # values as drawn in the table
        assert row[2].split("  ")[0] in text


@pytest.mark.skipif(shutil.which("gs") is None, reason="Ghostscript (gs) not installed")
def test_ghostscript_extracts_the_text_and_renders_the_page(xray_case, tmp_path: Path) -> None:
    study, result = xray_case
    page = render(result, load_sources(study, result))
    path = tmp_path / "report.pdf"
    path.write_bytes(page.pdf())
    out = subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=txtwrite", "-o", "-", str(path)],
                         capture_output=True, text=True, check=True, timeout=60).stdout
    for name in ("C2-C7 Cobb angle", "Pavlov ratio", "Measurements", "Findings"):
        assert name in out
    png = tmp_path / "page.png"
    subprocess.run(["gs", "-q", "-dNOPAUSE", "-dBATCH", "-sDEVICE=png16m", f"-r{DPI}", "-o", str(png), str(path)],
                   check=True, timeout=60)
    back = np.asarray(Image.open(png).convert("RGB")).astype(int)
    rows, cols = min(back.shape[0], page.pixels.shape[0]), min(back.shape[1], page.pixels.shape[1])
    assert abs(back.shape[0] - page.pixels.shape[0]) <= 1 and abs(back.shape[1] - page.pixels.shape[1]) <= 1
    assert np.abs(back[:rows, :cols] - page.pixels[:rows, :cols].astype(int)).mean() < 4


def test_pdf_strings_are_escaped_and_win_ansi() -> None:
    assert _pdf_string("a (b) \\ c") == b"(a \\(b\\) \\\\ c)"
    assert _pdf_string("32.2° ≥ 3") == b"(32.2\xb0 >= 3)"
    assert _pdf_string("中") == b"(?)"
    pdf = pdf_bytes(np.full((20, 30, 3), 255, np.uint8), [TextRun(2, 10, 8, "x (y)")])
    assert pdf.startswith(b"%PDF-1.4") and pdf.rstrip().endswith(b"%%EOF")
    xref = int(pdf.rsplit(b"startxref\n", 1)[1].split()[0])
    assert pdf[xref:].startswith(b"xref")
    for n, offset in enumerate(re.findall(rb"(\d{10}) 00000 n", pdf), start=1):
        assert pdf[int(offset):].startswith(b"%d 0 obj" % n)
    assert Image.open(BytesIO(pdf[pdf.index(b"\xff\xd8"):])).size == (30, 20)
