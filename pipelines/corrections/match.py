"""Which of the node's keypoints a radiologist's annotations correct.

Given the node's X-ray result of a study (``StudyResult``: the 24 vertebral corners it found on each radiograph)
and the annotations of an SR saved in a viewer (``sr_annotations.read_annotations``):

* a **point** (OHIF ``Probe``, an ``ArrowAnnotate`` tip: the first of its two points, any ``POINT``) moves one
  corner: the one its label names
  (``"C4 antero-inferior"``, ``"C4 AI"``, ``"C4 anteroinferior"``; within ``label_max_mm`` of the node's point) or
  else the node's corner nearest to it, when that is within ``max_mm``;
* a **line** (OHIF ``Length``, a two-point ``POLYLINE``) redraws one side of a vertebral body, the corner pair that a
  measurement figure draws: superior or inferior endplate (antero-superior + postero-superior, antero-inferior +
  postero-inferior: Cobb and segmental angles, listhesis), anterior or posterior wall (SDVB, SDVC); the pair and
  orientation whose farther endpoint is nearest, when that is within ``max_mm``; both corners move to its ends;
  ``CobbAngle`` and ``Bidirectional`` (four points) are two such lines;
* the node's own corner polyline (``Vertebral corners C2-C7 [view]``: per vertebra AS, PS, PI, AI, as
  ``pipelines.dicom_out`` writes it) re-saved by a viewer that could edit it: each vertex is its corner, and a
  vertex more than ``MOVED_PX`` from the node's point moves it (the others are confirmed);
* anything else (an ellipse, a point far from every corner, a line along no body side, an annotation on an image the
  node did not analyse) is ignored with a note.

When two annotations move one corner, the one that lands nearer to the node's point wins (a note says so). The
measurements a correction touches are those of the same image derived from a moved corner.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

import numpy as np

from pipelines.corrections.sr_annotations import Annotation, SrAnnotations
from pipelines.results import ImageResult, StudyResult
from pipelines.vocabulary import CORNER_ROLES, VERTEBRAE

__all__ = ["CORNER_NAMES", "ImageCorrection", "MatchResult", "keypoint_from_label", "match_corrections"]

CORNER_NAMES: tuple[str, ...] = tuple(f"{v} {r}" for v in VERTEBRAE for r in CORNER_ROLES)
"""The 24 vertebral corners, ``KEYPOINT_NAMES`` order (what a correction can move)."""

_SIDES: tuple[tuple[str, str], ...] = (("antero-superior", "postero-superior"), ("antero-inferior", "postero-inferior"),
                                       ("antero-superior", "antero-inferior"), ("postero-superior", "postero-inferior"))
CORNER_PAIRS: tuple[tuple[str, str], ...] = tuple((f"{v} {a}", f"{v} {b}") for v in VERTEBRAE for a, b in _SIDES)
"""The body sides a line can redraw: per vertebra both endplates and both walls."""

_ROLE_WORDS = {"as": "antero-superior", "ai": "antero-inferior", "ps": "postero-superior", "pi": "postero-inferior"}
_LINE_TOOLS = {"Length", "Bidirectional", "CobbAngle"}
_POINT_TOOLS = {"Probe", "ArrowAnnotate", "DragProbe", "Point"}
DEFAULT_MAX_MM = 5.0
MOVED_PX = 0.05
"""A vertex of the node's own corner polyline that differs from the node's point by more than this (pixels) moved."""
CORNER_GROUP_PREFIX = "Vertebral corners "
_POLYLINE_ROLES = ("antero-superior", "postero-superior", "postero-inferior", "antero-inferior")
DEFAULT_LABEL_MAX_MM = 40.0
"""A labelled point moves the corner it names when within this distance (mm): about two and a half vertebral levels, so
that a miss by a level is corrected and only a label on the wrong end of the spine is refused."""
FALLBACK_SPACING_MM = 0.1
"""mm per pixel assumed for an image whose pixel spacing the node did not know."""


def keypoint_from_label(label: str) -> str | None:
    """The corner a free-text label names (``"C4 antero-inferior"``, ``"c4 AI"``, ``"C4 anteroinferior"``), else None."""
    m = re.fullmatch(r"\s*(c[2-7])[\s_-]*(.+?)\s*", label.lower())
    if not m:
        return None
    role = m.group(2).replace(" ", "").replace("_", "-")
    role = _ROLE_WORDS.get(role.replace("-", ""), role)
    role = {"anterosuperior": "antero-superior", "anteroinferior": "antero-inferior",
            "posterosuperior": "postero-superior", "posteroinferior": "postero-inferior"}.get(role, role)
    name = f"{m.group(1).upper()} {role}"
    return name if name in CORNER_NAMES else None


@dataclass
class ImageCorrection:
    """The corners an SR moves on one radiograph."""

    image_uid: str
    moved: dict[str, tuple[float, float]] = field(default_factory=dict)
    """Corner name -> corrected (x, y), pixel-centre image coordinates."""
    moved_mm: dict[str, float] = field(default_factory=dict)
    """How far each corner moved from the node's point (mm)."""
    sources: dict[str, str] = field(default_factory=dict)
    """Corner name -> the annotation that moved it (tool and tracking UID)."""
    measurements: list[tuple[str, str]] = field(default_factory=list)
    """(key, site) of the node's measurements on this image derived from a moved corner."""


@dataclass
class MatchResult:
    images: dict[str, ImageCorrection] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def n_moved(self) -> int:
        return sum(len(c.moved) for c in self.images.values())


def _corner_names(a: Annotation) -> list[str] | None:
    """The corner of each vertex of the node's own corner polyline (its identifier names the span), else None."""
    if not a.tracking_identifier.startswith(CORNER_GROUP_PREFIX) or a.graphic_type != "POLYLINE":
        return None
    m = re.match(r"(C[2-7])(?:-(C[2-7]))?\b", a.tracking_identifier[len(CORNER_GROUP_PREFIX):])
    if not m:
        return None
    first, last = VERTEBRAE.index(m.group(1)), VERTEBRAE.index(m.group(2) or m.group(1))
    names = [f"{v} {r}" for v in VERTEBRAE[first:last + 1] for r in _POLYLINE_ROLES]
    return names if len(names) == len(a.points) else None


def _kind(a: Annotation) -> str:
    if a.tracking_identifier.startswith(CORNER_GROUP_PREFIX):
        return "corners" if _corner_names(a) else "other"
    if a.tool in _LINE_TOOLS or (not a.tool and a.graphic_type == "POLYLINE" and len(a.points) in (2, 4)):
        return "line" if len(a.points) in (2, 4) else "other"
    if a.tool in _POINT_TOOLS or a.graphic_type in ("POINT", "MULTIPOINT"):
        return "point" if len(a.points) >= 1 and a.graphic_type in ("POINT", "MULTIPOINT", "POLYLINE") else "other"
    return "other"


def _describe(a: Annotation) -> str:
    return f"{a.tool or a.graphic_type} {a.tracking_uid or ''}".strip()


class _Image:
    def __init__(self, image: ImageResult):
        self.result = image
        self.kp = {k.name: np.array([k.x, k.y], float) for k in image.keypoints if k.name in CORNER_NAMES}
        sp = image.pixel_spacing_mm
        self.mm = float(np.sqrt(sp[0] * sp[1])) if sp else FALLBACK_SPACING_MM

    def dist_mm(self, name: str, p: np.ndarray) -> float:
        return float(np.hypot(*(self.kp[name] - p))) * self.mm


def _match_point(img: _Image, a: Annotation, p: np.ndarray, max_mm: float, label_max_mm: float
                 ) -> tuple[list[tuple[str, np.ndarray]], str]:
    named = keypoint_from_label(a.label) if a.label else None
    if named is not None:
        if named not in img.kp:
            return [], f"{_describe(a)}: its label names {named}, which the node did not find on this image"
        d = img.dist_mm(named, p)
        if d > label_max_mm:
            return [], f"{_describe(a)}: labelled {named} but {d:.1f} mm from it (> {label_max_mm:g} mm), ignored"
        return [(named, p)], ""
    if not img.kp:
        return [], f"{_describe(a)}: the node found no corners on this image"
    name = min(img.kp, key=lambda n: img.dist_mm(n, p))
    d = img.dist_mm(name, p)
    if d > max_mm:
        return [], f"{_describe(a)}: nearest corner {name} is {d:.1f} mm away (> {max_mm:g} mm), not a correction"
    return [(name, p)], ""


def _match_line(img: _Image, a: Annotation, ends: np.ndarray, max_mm: float) -> tuple[list[tuple[str, np.ndarray]], str]:
    best: tuple[float, str, str, bool] | None = None
    for n1, n2 in CORNER_PAIRS:
        if n1 not in img.kp or n2 not in img.kp:
            continue
        for flip in (False, True):
            p, q = (ends[1], ends[0]) if flip else (ends[0], ends[1])
            worst = max(img.dist_mm(n1, p), img.dist_mm(n2, q))
            if best is None or worst < best[0]:
                best = (worst, n1, n2, flip)
    if best is None:
        return [], f"{_describe(a)}: the node found no corner pairs on this image"
    worst, n1, n2, flip = best
    if worst > max_mm:
        return [], f"{_describe(a)}: nearest body side {n1} - {n2} is {worst:.1f} mm away (> {max_mm:g} mm), ignored"
    p, q = (ends[1], ends[0]) if flip else (ends[0], ends[1])
    return [(n1, p), (n2, q)], ""


def match_corrections(sr: SrAnnotations, result: StudyResult, *, max_mm: float = DEFAULT_MAX_MM,
                      label_max_mm: float = DEFAULT_LABEL_MAX_MM) -> MatchResult:
    """The corners that the annotations of ``sr`` move on the node's ``result`` (see the module docstring)."""
    images = {i.image_uid: _Image(i) for i in result.images}
    out = MatchResult(notes=list(sr.notes))
    # (image, corner) -> (distance from the node's point in mm, new point, annotation text)
    chosen: dict[tuple[str, str], tuple[float, np.ndarray, str]] = {}
    for a in sr.annotations:
        img = images.get(a.image_uid)
        if img is None:
            out.notes.append(f"{_describe(a)}: on an image the node did not analyse, ignored")
            continue
        kind = _kind(a)
        moves: list[tuple[str, np.ndarray]] = []
        if kind == "point":
            for p in (a.points[:1] if a.tool == "ArrowAnnotate" else a.points):
                found, note = _match_point(img, a, p, max_mm, label_max_mm)
                moves += found
                if note:
                    out.notes.append(note)
        elif kind == "corners":
            for name, p in zip(_corner_names(a) or [], a.points, strict=True):
                if name in img.kp and np.hypot(*(img.kp[name] - p)) > MOVED_PX:
                    moves.append((name, p))
        elif kind == "line":
            for k in range(0, len(a.points), 2):
                found, note = _match_line(img, a, a.points[k:k + 2], max_mm)
                moves += found
                if note:
                    out.notes.append(note)
        else:
            out.notes.append(f"{_describe(a)}: a {a.graphic_type} with {len(a.points)} points is no keypoint "
                             "correction, ignored")
        for name, p in moves:
            d = img.dist_mm(name, p)
            key = (a.image_uid, name)
            if key in chosen:
                keep = chosen[key] if chosen[key][0] <= d else (d, p, _describe(a))
                out.notes.append(f"{name}: moved by two annotations; kept {keep[2]}")
                chosen[key] = keep
            else:
                chosen[key] = (d, p, _describe(a))
    for (uid, name), (d, p, src) in chosen.items():
        c = out.images.setdefault(uid, ImageCorrection(uid))
        c.moved[name] = (float(p[0]), float(p[1]))
        c.moved_mm[name] = round(d, 3)
        c.sources[name] = src
    for uid, c in out.images.items():
        c.measurements = sorted({(m.key, m.site) for m in result.measurements
                                 if uid in m.image_uids and set(m.keypoints) & set(c.moved)})
    return out
