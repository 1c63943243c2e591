"""Training arrays of the neck-pain model from a site's own patients (fine-tuning on user data).

A table (CSV with a header row, or a JSON list of objects) with one row per patient:

    patient,xray,mri,age,female,duration_months,ndi,vas,recovered
    site-001,site-001/xray,site-001/mri,63,0,18,42,7,1

* ``xray``: the patient's lateral radiograph study, a DICOM file (the neutral view) or a folder (every DICOM file
  under it; the X-ray pipeline finds the neutral view); ``mri``: a folder with the sagittal MR study (the MRI
  pipeline picks the T2 series). Relative paths are relative to the table.
* ``age``, ``female`` (1/0, or F/M), ``duration_months``, ``ndi``, ``vas``: the clinical variables of
  :data:`pipelines.vocabulary.CLINICAL_VARIABLES`; an empty cell is unknown (masked, as in the node).
* ``recovered``: the outcome, 1 or 0 (postoperative neck-pain recovery).
* ``patient`` (optional): any unique key; it is only hashed (to keep one patient's rows out of both training and
  validation) and never written or printed. Messages name the table row.

Image inputs are made exactly as in the node (``pipelines.patient.assemble.neck_pain_inputs``): the studies are
routed and analysed by the node's own X-ray and MRI pipelines with the shipped (or given) keypoint and MRI
weights; their 24 vertebral corners of the neutral view and five MRI disc centres give the crops
(:mod:`models.neck_pain.inputs`). ``copies`` > 1 adds jittered copies of each patient (the jitter of ``data.py``).
The arrays are those of ``data.prepare`` (``p_true`` NaN: a real outcome has no known probability; ``seeds``
negative hashes), so a site file and phantom files go to ``train.py --data`` together.

    python -m models.neck_pain.user_data --table patients.csv --out /tmp/site.npz --copies 4
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np

from models.common.images import to_u8
from models.neck_pain.data import jittered, similarity
from models.neck_pain.inputs import (
    clinical_vector,
    mri_crop,
    mri_unit,
    xray_anterior_right,
    xray_crop,
    xray_disc_centres,
)
from pipelines.vocabulary import CLINICAL_VARIABLES

COLUMNS = ("xray", "mri", "recovered")
"""Required columns (``patient`` and the clinical variables are optional)."""


class UserTableError(ValueError):
    """The table or a row of it cannot be used (the message names the table and the row)."""


def _number(where: str, key: str, raw: object) -> float | None:
    if raw is None or (isinstance(raw, str) and not raw.strip()):
        return None
    if key == "female" and isinstance(raw, str) and raw.strip().upper() in ("F", "M"):
        return float(raw.strip().upper() == "F")
    try:
        v = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError) as exc:
        raise UserTableError(f"{where}: {key} must be a number or empty, got {raw!r}") from exc
    if not np.isfinite(v) or (key == "female" and v not in (0.0, 1.0)):
        raise UserTableError(f"{where}: {key} must be {'0 or 1' if key == 'female' else 'finite'}, got {raw!r}")
    return v


def read_table(path: Path) -> list[dict]:
    """``[{"row": n, "xray": Path, "mri": Path, "clinical": {...}, "recovered": 0|1, "key": int}]``."""
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise UserTableError(f"{path}: not readable ({exc})") from exc
    if path.suffix.lower() == ".json":
        try:
            rows = json.loads(text)
        except json.JSONDecodeError as exc:
            raise UserTableError(f"{path}: not readable as JSON ({exc})") from exc
        if not isinstance(rows, list) or not all(isinstance(r, dict) for r in rows):
            raise UserTableError(f"{path}: a JSON table is a list of objects, one per patient")
    else:
        rows = list(csv.DictReader(text.splitlines()))
    if not rows:
        raise UserTableError(f"{path}: no patients")
    missing = [c for c in COLUMNS if c not in rows[0]]
    if missing:
        raise UserTableError(f"{path}: missing column(s) {missing} (need {list(COLUMNS)}, optional patient and "
                             f"{list(CLINICAL_VARIABLES)})")
    out, keys = [], set()
    for n, r in enumerate(rows, start=1):
        where = f"{path}: row {n}"
        rec = str(r.get("recovered", "")).strip()
        if rec not in ("0", "1", "0.0", "1.0", "True", "False", "true", "false"):
            raise UserTableError(f"{where}: recovered must be 1 or 0, got {r.get('recovered')!r}")
        files = {}
        for c in ("xray", "mri"):
            p = Path(str(r.get(c) or ""))
            p = p if p.is_absolute() else path.parent / p
            if not str(r.get(c) or "").strip() or not p.exists():
                raise UserTableError(f"{where}: {c} study {r.get(c)!r} not found")
            files[c] = p
        ident = str(r.get("patient") or "").strip() or str(files["xray"].resolve())
        key = -1 - int.from_bytes(hashlib.sha256(ident.encode()).digest()[:5], "big")
        if key in keys:
            raise UserTableError(f"{where}: the same patient as an earlier row")
        keys.add(key)
        clinical = {k: _number(where, k, r.get(k)) for k in CLINICAL_VARIABLES}
        out.append({"row": n, **files, "clinical": clinical, "recovered": int(rec in ("1", "1.0", "True", "true")),
                    "key": key})
    return out


def _dicom_files(p: Path) -> list[Path]:
    from models.mri.user_data import dicom_files

    return dicom_files([p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file()))


class FeatureExtractor:
    """The node's X-ray and MRI pipelines (keypoint and MRI models only) -> ``NeckPainInputs`` of one patient."""

    def __init__(self, keypoints_weights: Path | None = None, mri_weights: Path | None = None,
                 device: str = "cpu") -> None:
        from models.registry import entry
        from pipelines.interfaces import ModelSet

        self.models = ModelSet(keypoints=entry("keypoints").load(keypoints_weights, device),
                               mri=entry("mri").load(mri_weights, device))

    def _run(self, files: list[Path], pipeline: str, what: str):  # noqa: ANN202 - (Study, StudyResult)
        from pipelines import pipeline_for, route
        from pipelines.study import Study

        studies = Study.from_paths(files)
        if len(studies) != 1:
            raise ValueError(f"{what}: {len(studies)} DICOM studies found (need exactly one)")
        routes = [r for r in route(studies[0]) if r.pipeline == pipeline]
        if not routes:
            raise ValueError(f"{what}: no {pipeline} images in the study")
        return studies[0], pipeline_for(pipeline, self.models).run(studies[0], routes[0].instances)

    def inputs(self, xray: Path, mri: Path):  # noqa: ANN201 - pipelines.patient.assemble.NeckPainInputs
        from pipelines.dicom_out._sources import Sources, load_sources
        from pipelines.patient.assemble import neck_pain_inputs

        xs, xr = self._run(_dicom_files(xray), "xray", "xray")
        ms, mr = self._run(_dicom_files(mri), "mri", "mri")
        a, b = load_sources(xs, xr), load_sources(ms, mr)
        return neck_pain_inputs(xr, mr, Sources({**a.datasets, **b.datasets}, {**a.paths, **b.paths}))


def patient_arrays(inp, row: dict, copies: int, rng: np.random.Generator) -> list[dict]:  # noqa: ANN001
    """``copies`` examples of one patient (the first unjittered) in ``data.render_case``'s layout."""
    x_c = xray_disc_centres(inp.corners)
    m_c = np.asarray(inp.disc_centres, float)
    x_img, m_img = np.asarray(inp.xray, np.float32), mri_unit(np.asarray(inp.mri_slice))
    vals, mask = clinical_vector(row["clinical"])
    out = []
    for k in range(copies):
        xc = xray_crop(x_c, xray_anterior_right(inp.corners))
        mc = mri_crop(m_c, inp.mri_spacing_mm)
        if k:
            xc, mc = jittered(xc, rng, 0.06, 0.12, 4.0), jittered(mc, rng, 0.10, 0.2, 10.0)
        out.append({"xray": xc.sample(x_img), "mri": mc.sample(m_img), "theta": similarity(xc.to_crop(x_c), mc.to_crop(m_c)),
                    "label": row["recovered"], "p_true": np.nan, "clinical": vals, "clinical_mask": mask,
                    "seed": row["key"]})
    return out


def prepare(table: Path, out: Path, copies: int = 1, seed: int = 0, extractor: FeatureExtractor | None = None,
            log: bool = True) -> dict:
    """Read ``table``, analyse every patient's studies, write the arrays to ``out`` (``data.prepare`` layout).
    Patients whose studies the pipelines cannot use (no neutral view, no corners, no disc centres) are left out
    and listed in ``dropped`` (by row); :class:`UserTableError` when the table is bad or nobody is left."""
    rows = read_table(table)
    ext = extractor or FeatureExtractor()
    rng = np.random.default_rng([seed, 77])
    got, dropped = [], []
    for r in rows:
        try:
            inp = ext.inputs(r["xray"], r["mri"])
        except (ValueError, OSError) as exc:
            dropped.append(f"row {r['row']}: {str(exc)[:200]}")
            if log:
                print(f"  left out {dropped[-1]}", file=sys.stderr, flush=True)
            continue
        got += patient_arrays(inp, r, copies, rng)
    if not got:
        raise UserTableError(f"{table}: no usable patient ({'; '.join(dropped[:3])})")
    arrays = {
        "xray": np.stack([to_u8(g["xray"]) for g in got]), "mri": np.stack([to_u8(g["mri"]) for g in got]),
        "theta": np.stack([g["theta"] for g in got]), "label": np.array([g["label"] for g in got]),
        "p_true": np.array([g["p_true"] for g in got], np.float32), "seeds": np.array([g["seed"] for g in got], np.int64),
        "clinical": np.stack([g["clinical"] for g in got]), "clinical_mask": np.stack([g["clinical_mask"] for g in got]),
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(out, **arrays)
    return {"patients": len(rows) - len(dropped), "examples": len(got), "dropped": dropped,
            "recovered": float(arrays["label"].mean()), "path": str(out)}


def cli(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m models.neck_pain.user_data", description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--table", type=Path, required=True, help="patients.csv or .json (layout above)")
    ap.add_argument("--out", type=Path, required=True)
    ap.add_argument("--copies", type=int, default=1, help="examples per patient (the first unjittered)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keypoints-weights", type=Path, default=None, help="X-ray keypoint weights (default shipped)")
    ap.add_argument("--mri-weights", type=Path, default=None, help="MRI weights (default shipped)")
    args = ap.parse_args(argv)
    t0 = time.time()
    try:
        read_table(args.table)  # a bad table stops before the models are loaded
        meta = prepare(args.table, args.out, args.copies, args.seed,
                       FeatureExtractor(args.keypoints_weights, args.mri_weights))
    except UserTableError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(json.dumps({**meta, "seconds": round(time.time() - t0, 1)}))
    return 0


if __name__ == "__main__":
    raise SystemExit(cli())
