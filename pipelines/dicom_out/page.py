"""A report page as pixels, drawn by Pillow: pictures, text and tables.

A ``Page`` is an A4 sheet at ``DPI``: pictures (RGB pixels made by the caller, e.g. ``report.draw_panel``) pasted
into boxes, and text and tables recorded in figure coordinates (fractions, origin bottom left, sizes in points, as
in matplotlib) and drawn in ``render()``. (Until issue 15 the pictures were matplotlib axes: a page of three
annotated radiographs cost ~0.25 s more; matplotlib also renders text glyph by glyph from Python, Pillow a whole
string in C.) The same pixels become the secondary capture and, through
``pdf_bytes``, the PDF page: the page is rendered once, at the resolution a viewer shows (``DPI``).

The PDF has a text layer: every string Pillow drew (titles, table cells, the research statement) is also written as
invisible PDF text (rendering mode 3, Helvetica) at its place over the page image, as OCR'd scans do, so a PDF
viewer finds, selects and copies it and text extraction reads it. The PDF is written here (no PDF library needed):
the page as one JPEG image XObject plus a Flate-compressed content stream.
"""

from __future__ import annotations

import io
import textwrap
import zlib
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

PAGE_INCHES = (8.27, 11.69)  # A4 portrait
DPI = 110
_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=32)
def font(size_px: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """matplotlib's own DejaVu Sans (always installed with it) at ``size_px`` pixels."""
    return ImageFont.truetype(str(_FONTS / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")), max(size_px, 1))


@dataclass(frozen=True)
class TextRun:
    """One line of text drawn on the page: left end of its baseline (pixels, origin top left), size in pixels."""

    x: float
    baseline: float
    size: float
    text: str
    bold: bool = False


@dataclass(frozen=True)
class RenderedPage:
    """A rendered report page: (rows, columns, 3) uint8 RGB ``pixels`` and the ``runs`` of text drawn on them."""

    pixels: np.ndarray
    runs: tuple[TextRun, ...] = ()

    def pdf(self) -> bytes:
        """The page as a one-page PDF with its text layer (``pdf_bytes``)."""
        return pdf_bytes(self.pixels, self.runs)


@dataclass
class _Text:
    x: float
    y: float
    text: str
    size: float
    ha: str
    va: str
    bold: bool
    color: str
    wrap: float | None


@dataclass
class _Table:
    rect: tuple[float, float, float, float]
    header: list[str]
    rows: list[list[str]]
    widths: list[float]
    title: str
    highlight: list[bool]
    shaded: set[tuple[int, int]]
    max_size: float
    align: str


@dataclass
class Page:
    """One report page: ``fig`` for the pictures (add axes to it), ``text`` and ``table`` for the rest."""

    _pictures: list[tuple[int, int, np.ndarray]] = field(default_factory=list)
    _texts: list[_Text] = field(default_factory=list)
    _tables: list[_Table] = field(default_factory=list)
    _runs: list[TextRun] = field(default_factory=list)

    @staticmethod
    def size_px() -> tuple[int, int]:
        """(width, height) of the page in pixels."""
        return int(PAGE_INCHES[0] * DPI), int(PAGE_INCHES[1] * DPI)

    @classmethod
    def box_px(cls, rect: tuple[float, float, float, float]) -> tuple[int, int, int, int]:
        """``rect`` = (left, bottom, width, height) in figure fractions -> (left, top, width, height) in pixels."""
        w, h = cls.size_px()
        left, bottom, width, height = rect
        return int(round(left * w)), int(round((1 - bottom - height) * h)), int(round(width * w)), int(round(height * h))

    def picture(self, left: int, top: int, rgb: np.ndarray) -> None:
        """Paste ``rgb`` ((rows, columns, 3) uint8) with its top-left corner at pixel (``left``, ``top``)."""
        self._pictures.append((left, top, rgb))

    def text_px(self, x: float, y: float, text: str, size: float, **kw: object) -> None:
        """:meth:`text` at pixel (x, y) of the page (origin top left)."""
        w, h = self.size_px()
        self.text(x / w, 1 - y / h, text, size, **kw)

    def text(self, x: float, y: float, text: str, size: float, *, ha: str = "left", va: str = "baseline",
             bold: bool = False, color: str = "black", wrap: float | None = None) -> None:
        """Text at figure fraction (x, y), ``size`` in points; ``ha`` left/center/right, ``va``
        top/center/baseline/bottom; ``wrap``: wrap lines wider than this fraction of the page width."""
        self._texts.append(_Text(x, y, text, size, ha, va, bold, color, wrap))

    def table(self, rect: tuple[float, float, float, float], header: list[str], rows: list[list[str]],
              widths: list[float], title: str, *, highlight: list[bool] | None = None,
              shaded: set[tuple[int, int]] | None = None, max_size: float = 5.5, align: str = "left") -> None:
        """A table filling ``rect`` = (left, bottom, width, height) in figure fractions; column ``widths`` are
        fractions of its width; rows shrink to fit (font at most ``max_size`` points); a cell may hold several
        lines; a line too long for its column is cut; ``highlight`` shades rows (e.g. a finding that is present),
        ``shaded`` single cells (row, column) of ``rows``; ``align`` left or center."""
        self._tables.append(_Table(rect, header, rows, widths, title, list(highlight or []), set(shaded or ()),
                                   max_size, align))

    def render(self) -> RenderedPage:
        """The page as (rows, columns, 3) uint8 RGB pixels with the pictures and the text runs drawn on them."""
        image = Image.new("RGB", self.size_px(), "white")
        for left, top, rgb in self._pictures:
            image.paste(Image.fromarray(rgb), (left, top))
        draw = ImageDraw.Draw(image)
        for t in self._tables:
            self._draw_table(draw, image.size, t)
        for t in self._texts:
            self._draw_text(draw, image.size, t)
        return RenderedPage(np.asarray(image), tuple(self._runs))

    def _record(self, xy: tuple[float, float], text: str, f: ImageFont.FreeTypeFont, anchor: str, spacing: int,
                bold: bool) -> None:
        """Keep the lines of ``text`` drawn at ``xy`` with Pillow's ``anchor`` as runs (left ends of their
        baselines). Pillow stacks multiline text by ``anchor``'s vertical part (top, middle or bottom of the block)
        and places every line by its horizontal part (the alignment used here matches it)."""
        lines = text.split("\n")
        step = f.getbbox("A")[3] + spacing  # Pillow's line spacing of multiline text
        n = len(lines)
        for k, line in enumerate(lines):
            if not line.strip():
                continue
            if n == 1:
                line_anchor, y = anchor, xy[1]
            else:  # place each line by its own anchor: top/middle/bottom of the block as Pillow stacks it
                line_anchor = anchor[0] + {"a": "a", "m": "m", "d": "d", "s": "d"}[anchor[1]]
                shift = {"a": k, "m": k - (n - 1) / 2, "d": k - (n - 1)}[line_anchor[1]]
                y = xy[1] + shift * step
            dx = {"l": 0.0, "m": -0.5, "r": -1.0}[line_anchor[0]] * (f.getlength(line) if line_anchor[0] != "l" else 0.0)
            self._runs.append(TextRun(xy[0] + dx, y + _baseline_offset(f, line_anchor[1]), float(f.size), line, bold))

    # -- drawing (Pillow: pixels, origin top left) ----------------------------------------------------
    @staticmethod
    def _px(size_pt: float) -> int:
        return int(round(size_pt * DPI / 72))

    def _draw_text(self, draw: ImageDraw.ImageDraw, size: tuple[int, int], t: _Text) -> None:
        w, h = size
        f = font(self._px(t.size), t.bold)
        text = t.text
        if t.wrap is not None and f.getlength(text) > t.wrap * w:
            per_line = max(8, int(len(text) * t.wrap * w / f.getlength(text)))
            text = "\n".join(textwrap.wrap(text, per_line))
        anchor = {"left": "l", "center": "m", "right": "r"}[t.ha] + {"top": "a", "center": "m", "baseline": "s",
                                                                     "bottom": "d"}[t.va]
        if "\n" in text:
            anchor = anchor[0] + {"a": "a", "m": "m", "s": "d", "d": "d"}[anchor[1]]
            draw.multiline_text((t.x * w, (1 - t.y) * h), text, font=f, fill=t.color, anchor=anchor,
                                align={"l": "left", "m": "center", "r": "right"}[anchor[0]], spacing=2)
        else:
            draw.text((t.x * w, (1 - t.y) * h), text, font=f, fill=t.color, anchor=anchor)
        self._record((t.x * w, (1 - t.y) * h), text, f, anchor, 2, t.bold)

    def _draw_table(self, draw: ImageDraw.ImageDraw, size: tuple[int, int], t: _Table) -> None:
        w, h = size
        left, bottom, width, height = t.rect
        x0, x1, y0 = left * w, (left + width) * w, (1 - bottom - height) * h
        draw.text((x0, y0 - 3), t.title, font=font(self._px(8)), fill="black", anchor="ld")
        self._record((x0, y0 - 3), t.title, font(self._px(8)), "ld", 0, False)
        if not t.rows:
            draw.text((x0, y0 + 3), "none", font=font(self._px(7)), fill="black", anchor="la")
            self._record((x0, y0 + 3), "none", font(self._px(7)), "la", 0, False)
            return
        n = len(t.rows) + 1
        row_h = height * h / n
        lines = max(str(c).count("\n") + 1 for r in [t.header, *t.rows] for c in r)
        f = font(max(4, min(self._px(t.max_size), int(row_h / (1.25 * lines)))))
        draw.rectangle((x0, y0, x1, y0 + row_h), fill="#dde6f0")
        edges = [x0]
        for frac in t.widths:
            edges.append(edges[-1] + frac * width * w)
        for i, on in enumerate(t.highlight):
            if on:
                draw.rectangle((x0, y0 + (i + 1) * row_h, x1, y0 + (i + 2) * row_h), fill="#fde2e2")
        for i, c in t.shaded:
            draw.rectangle((edges[c], y0 + (i + 1) * row_h, edges[c + 1], y0 + (i + 2) * row_h), fill="#fde2e2")
        for i in range(n + 1):
            draw.line((x0, y0 + i * row_h, x1, y0 + i * row_h), fill="#555555", width=1)
        for x in edges:
            draw.line((x, y0, x, y0 + n * row_h), fill="#555555", width=1)
        pad = 2
        centre = t.align == "center"
        for i, cells in enumerate([t.header, *t.rows]):
            y = y0 + (i + 0.5) * row_h
            for c, cell in enumerate(cells[: len(t.widths)]):
                room = edges[c + 1] - edges[c] - 2 * pad
                text = "\n".join(_fit(line, f, room) for line in str(cell).split("\n"))
                if not text.strip():
                    continue
                x = (edges[c] + edges[c + 1]) / 2 if centre else edges[c] + pad
                if "\n" in text:
                    draw.multiline_text((x, y), text, font=f, fill="black", anchor="mm" if centre else "lm",
                                        align="center" if centre else "left", spacing=1)
                else:
                    draw.text((x, y), text, font=f, fill="black", anchor="mm" if centre else "lm")
                self._record((x, y), text, f, "mm" if centre else "lm", 1, False)


@lru_cache(maxsize=256)
def _baseline_offset(f: ImageFont.FreeTypeFont, vertical: str) -> float:
    """How far below a line's anchor point its baseline lies, for Pillow's vertical anchors a (ascender), m (middle),
    s (baseline), d (descender): font metrics, the same for every text (measured once per font on "A")."""
    return float(f.getbbox("A", anchor="l" + vertical)[1] - f.getbbox("A", anchor="ls")[1])


def _fit(text: str, f: ImageFont.FreeTypeFont, room: float) -> str:
    """``text`` cut to ``room`` pixels (the cut marked with an ellipsis)."""
    if f.getlength(text) <= room:
        return text
    n = max(0, int(len(text) * room / max(f.getlength(text), 1.0)))
    while n > 0 and f.getlength(text[:n] + "…") > room:
        n -= 1
    return text[:n] + "…" if n else ""


def _pdf_string(text: str) -> bytes:
    """``text`` as a PDF literal string in WinAnsiEncoding (characters it lacks become '?')."""
    text = text.replace("≥", ">=").replace("≤", "<=").replace("\u2009", " ")
    raw = text.encode("cp1252", errors="replace")
    return b"(" + raw.replace(b"\\", b"\\\\").replace(b"(", b"\\(").replace(b")", b"\\)").replace(b"\r", b" ") + b")"


def pdf_bytes(rgb: np.ndarray, runs: tuple[TextRun, ...] | list[TextRun] = (), dpi: int = DPI) -> bytes:
    """A one-page PDF: the page pixels as a JPEG image filling the page (page size from ``dpi``: A4 for a page of
    ``PAGE_INCHES``) and ``runs`` as invisible text (rendering mode 3) at their places over it."""
    rows, columns = rgb.shape[:2]
    scale = 72.0 / dpi  # points per pixel
    width, height = columns * scale, rows * scale
    jpeg = io.BytesIO()
    Image.fromarray(rgb).save(jpeg, format="JPEG", quality=92)
    content = [b"q %.2f 0 0 %.2f 0 0 cm /Im0 Do Q" % (width, height), b"BT 3 Tr"]
    for r in runs:
        content.append(b"/F%d %.2f Tf 1 0 0 1 %.2f %.2f Tm %s Tj" % (
            2 if r.bold else 1, r.size * scale, r.x * scale, height - r.baseline * scale, _pdf_string(r.text)))
    content.append(b"ET")
    stream = zlib.compress(b"\n".join(content), 6)
    objects = [
        b"<< /Type /Catalog /Pages 2 0 R >>",
        b"<< /Type /Pages /Kids [3 0 R] /Count 1 >>",
        b"<< /Type /Page /Parent 2 0 R /MediaBox [0 0 %.2f %.2f] /Contents 4 0 R /Resources << /ProcSet [/PDF "
        b"/Text /ImageC] /XObject << /Im0 5 0 R >> /Font << /F1 6 0 R /F2 7 0 R >> >> >>" % (width, height),
        b"<< /Length %d /Filter /FlateDecode >>\nstream\n%s\nendstream" % (len(stream), stream),
        b"<< /Type /XObject /Subtype /Image /Width %d /Height %d /ColorSpace /DeviceRGB /BitsPerComponent 8 "
        b"/Filter /DCTDecode /Length %d >>\nstream\n%s\nendstream" % (columns, rows, jpeg.tell(), jpeg.getvalue()),
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica /Encoding /WinAnsiEncoding >>",
        b"<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica-Bold /Encoding /WinAnsiEncoding >>",
    ]
    out = io.BytesIO()
    out.write(b"%PDF-1.4\n%\xe2\xe3\xcf\xd3\n")
    offsets = []
    for n, body in enumerate(objects, start=1):
        offsets.append(out.tell())
        out.write(b"%d 0 obj\n%s\nendobj\n" % (n, body))
    xref = out.tell()
    out.write(b"xref\n0 %d\n0000000000 65535 f \n" % (len(objects) + 1))
    out.write(b"".join(b"%010d 00000 n \n" % o for o in offsets))
    out.write(b"trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%d\n%%%%EOF\n" % (len(objects) + 1, xref))
    return out.getvalue()
