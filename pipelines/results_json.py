"""Typed results (``pipelines.results.StudyResult``) as JSON and back (masks left out).

The node keeps every analysis' results as this JSON so that a later study of the same patient can be
reported together with it (``node.patients``); the format is versioned by ``FORMAT``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, fields, replace
from typing import Any

from pipelines.results import AlgorithmInfo, Finding, ImageResult, Keypoint, Measurement, StudyResult, View

FORMAT = 1
"""Version of the result JSON written by ``result_to_json``."""


def result_to_json(result: StudyResult) -> bytes:
    """JSON of a ``StudyResult`` without mask arrays (labels and geometry-free parts are all kept)."""
    slim = replace(result, images=[replace(i, masks=[], heatmaps=[]) for i in result.images])
    d = asdict(slim)
    d["format"] = FORMAT
    return json.dumps(d, separators=(",", ":")).encode()


def _tuple(v: Any) -> tuple | None:
    return tuple(v) if v is not None else None


def _view(v: str | None) -> View | None:
    return View(v) if v else None


def result_from_json(data: bytes | str) -> StudyResult:
    """Inverse of ``result_to_json`` (masks come back empty)."""
    d = json.loads(data)
    if d.get("format") != FORMAT:
        raise ValueError(f"unknown result format {d.get('format')!r}")
    extra: dict[str, Any] = {}
    if "contributors" in d and "contributors" in {f.name for f in fields(StudyResult)}:
        extra["contributors"] = [AlgorithmInfo(**a) for a in d["contributors"]]
    return StudyResult(
        study_uid=d["study_uid"], pipeline=d["pipeline"], algorithm=AlgorithmInfo(**d["algorithm"]),
        images=[ImageResult(image_uid=i["image_uid"], series_uid=i["series_uid"], view=_view(i["view"]),
                            rows=i["rows"], columns=i["columns"], pixel_spacing_mm=_tuple(i["pixel_spacing_mm"]),
                            keypoints=[Keypoint(**k) for k in i["keypoints"]], rejected=i.get("rejected", ""),
                            canal_rejected=i.get("canal_rejected", ""))
                for i in d["images"]],
        measurements=[Measurement(**{**m, "view": _view(m["view"]), "interval": _tuple(m["interval"]),
                                     "image_uids": tuple(m["image_uids"]), "keypoints": tuple(m["keypoints"])})
                      for m in d["measurements"]],
        findings=[Finding(**{**f, "evidence": tuple(f["evidence"]),
                             "measurement_keys": tuple(tuple(x) for x in f["measurement_keys"])})
                  for f in d["findings"]],
        warnings=list(d["warnings"]),
        **extra,
    )
