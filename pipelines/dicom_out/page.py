"""A report page as pixels: matplotlib (Agg) draws the pictures, Pillow the text and the tables.

matplotlib renders text glyph by glyph from Python (a page of tables, ~7 000 glyphs, took most of a second here);
Pillow renders a whole string in C. A ``Page`` is an A4 figure whose pictures are matplotlib axes, plus text and
tables recorded in figure coordinates (fractions, origin bottom left, sizes in points, as in matplotlib) and drawn
by Pillow onto the rendered canvas in ``pixels()``. The same pixels become the secondary capture and, through
``pdf_bytes``, the PDF page: the page is rendered once, at the resolution a viewer shows (``DPI``).
"""

from __future__ import annotations

import io
import textwrap
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image, ImageDraw, ImageFont  # noqa: E402

PAGE_INCHES = (8.27, 11.69)  # A4 portrait
DPI = 110
_FONTS = Path(matplotlib.get_data_path()) / "fonts" / "ttf"


@lru_cache(maxsize=32)
def font(size_px: int, bold: bool = False) -> ImageFont.FreeTypeFont:
    """matplotlib's own DejaVu Sans (always installed with it) at ``size_px`` pixels."""
    return ImageFont.truetype(str(_FONTS / ("DejaVuSans-Bold.ttf" if bold else "DejaVuSans.ttf")), max(size_px, 1))


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

    fig: Figure = field(default_factory=lambda: plt.figure(figsize=PAGE_INCHES, dpi=DPI))
    _texts: list[_Text] = field(default_factory=list)
    _tables: list[_Table] = field(default_factory=list)

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

    def pixels(self) -> np.ndarray:
        """The page as (rows, columns, 3) uint8 RGB; closes the figure."""
        try:
            self.fig.canvas.draw()
            image = Image.fromarray(np.asarray(self.fig.canvas.buffer_rgba())[..., :3].copy())
        finally:
            plt.close(self.fig)
        draw = ImageDraw.Draw(image)
        for t in self._tables:
            self._draw_table(draw, image.size, t)
        for t in self._texts:
            self._draw_text(draw, image.size, t)
        return np.asarray(image)

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

    def _draw_table(self, draw: ImageDraw.ImageDraw, size: tuple[int, int], t: _Table) -> None:
        w, h = size
        left, bottom, width, height = t.rect
        x0, x1, y0 = left * w, (left + width) * w, (1 - bottom - height) * h
        draw.text((x0, y0 - 3), t.title, font=font(self._px(8)), fill="black", anchor="ld")
        if not t.rows:
            draw.text((x0, y0 + 3), "none", font=font(self._px(7)), fill="black", anchor="la")
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


def _fit(text: str, f: ImageFont.FreeTypeFont, room: float) -> str:
    """``text`` cut to ``room`` pixels (the cut marked with an ellipsis)."""
    if f.getlength(text) <= room:
        return text
    n = max(0, int(len(text) * room / max(f.getlength(text), 1.0)))
    while n > 0 and f.getlength(text[:n] + "…") > room:
        n -= 1
    return text[:n] + "…" if n else ""


def pdf_bytes(rgb: np.ndarray, dpi: int = DPI) -> bytes:
    """A one-page PDF of the page pixels (page size from ``dpi``: A4 for a page of ``PAGE_INCHES``)."""
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PDF", resolution=float(dpi), quality=92)
    return buf.getvalue()
