"""Patient-level pairing: an X-ray and an MRI study of one patient -> one combined report (issue 6).

After every successful analysis ``node.tasks.run_analysis`` calls ``patient_report_objects``, which

1. keys the study by patient: ``patient_key`` = HMAC-SHA256 of (Issuer of) Patient ID with a secret salt
   kept in the spool (``patient_key.salt``, created once). The index stores only that key and the study
   date/time; the Patient ID itself is never stored outside the received files, nor logged;
2. writes each typed ``StudyResult`` as JSON (fsync'd) under ``results/<study>/<generation>/`` (masks are
   left out: the patient report needs findings, images and keypoints only), returned as ``ResultRow``s that
   ``Spool.finish_analysis`` indexes in the same transaction as the analysis;
3. looks in the index for the newest *other-modality* analysed study with the same key whose study date
   lies within ``patient_window_days`` of this one (both dates are needed; a study without StudyDate is
   never paired), and when found
4. hands both studies to ``pipelines.patient.build_patient_objects``: the rule-based report
   (``pipelines.mri.correlate.patient_report``), the postoperative neck-pain recovery model on the neutral
   radiograph + T2 sagittal MRI (``models.neck_pain``; a failure is a warning in the report), encoded
   (``pipelines.dicom_out.patient.encode_patient``: TID 1500 SR + PDF) into the study whose analysis
   completed the pair (this one, the later). The objects go to the outbox with the study's other results.

This module keeps only the node's part (keys, spool, lookup); the JSON codec of the typed results is
``pipelines.results_json``.

A study that holds both X-ray and MRI images pairs with itself. A re-analysis re-creates the report (new
SOP Instance UIDs in the same series). Limitation: with several Redis workers, two studies of one patient
analysed at the same moment may both miss each other (each looks before the other is recorded); the next
analysis of either makes the report. Lookup in the PACS (C-FIND/QIDO-RS) is not done here.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import os
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pydicom

from node.logs import log
from node.spool import ResultRow, Spool, write_atomic
from pipelines.results import StudyResult
from pipelines.results_json import FORMAT, result_from_json, result_to_json
from pipelines.study import Instance, Study

if TYPE_CHECKING:
    from pydicom.dataset import Dataset

__all__ = ["FORMAT", "result_from_json", "result_to_json"]  # the codec lives in pipelines.results_json

LOG = logging.getLogger("node.patients")
SALT_NAME = "patient_key.salt"
PAIRED = ("xray", "mri")


# -- patient key ---------------------------------------------------------------------------------------


def patient_salt(sp: Spool) -> bytes:
    """The spool's secret salt (32 random bytes, written once with mode 0600)."""
    path = sp.root / SALT_NAME
    try:
        data = path.read_bytes()
        if len(data) >= 16:
            return data
    except FileNotFoundError:
        pass
    salt = secrets.token_bytes(32)
    tmp = sp.tmp_dir / f"{SALT_NAME}.{os.getpid()}.part"
    tmp.write_bytes(salt)
    os.chmod(tmp, 0o600)
    try:
        os.link(tmp, path)  # first writer wins; a concurrent worker reads the winner's salt
    except FileExistsError:
        pass
    finally:
        tmp.unlink(missing_ok=True)
    return path.read_bytes()


def patient_key(patient_id: str, issuer: str, salt: bytes) -> str:
    """Salted hash (HMAC-SHA256, 32 hex digits) of a Patient ID and its issuer; "" for an empty ID."""
    pid = patient_id.strip()
    if not pid:
        return ""
    return hmac.new(salt, f"{issuer.strip()}\x00{pid}".encode(), hashlib.sha256).hexdigest()[:32]


def study_time(date: str, time: str = "") -> float | None:
    """DICOM StudyDate (YYYYMMDD) + StudyTime (HHMMSS.ffffff, parts optional) as POSIX seconds (read as
    UTC: only differences matter); None when the date is missing or malformed."""
    date = (date or "").strip()
    time = (time or "").strip().split(".")[0]
    try:
        day = datetime.strptime(date, "%Y%m%d")
    except ValueError:
        return None
    digits = "".join(c for c in time if c.isdigit())[:6].ljust(6, "0")
    try:
        when = day.replace(hour=int(digits[:2]), minute=int(digits[2:4]), second=int(digits[4:6]))
    except ValueError:
        when = day
    return when.replace(tzinfo=UTC).timestamp()


@dataclass(frozen=True)
class StudyIdentity:
    patient_key: str
    study_time: float | None


def study_identity(study: Study, salt: bytes) -> StudyIdentity:
    """Patient key and study time of a study, from the first instance that has a Patient ID."""
    tags = ["PatientID", "IssuerOfPatientID", "StudyDate", "StudyTime"]
    first: StudyIdentity | None = None
    for inst in study.instances:
        try:
            ds = pydicom.dcmread(inst.path, stop_before_pixels=True, specific_tags=tags)
        except Exception:  # noqa: BLE001 - an unreadable file just does not identify the patient
            continue
        ident = StudyIdentity(patient_key(str(ds.get("PatientID", "") or ""), str(ds.get("IssuerOfPatientID", "") or ""), salt),
                              study_time(str(ds.get("StudyDate", "") or ""), str(ds.get("StudyTime", "") or "")))
        if ident.patient_key:
            return ident
        first = first or ident
    return first or StudyIdentity("", None)


# -- typed results (JSON codec: ``pipelines.results_json``) -------------------------------------------


def load_result(row: ResultRow) -> StudyResult:
    return result_from_json(Path(row.path).read_bytes())


def save_results(sp: Spool, study_uid: str, generation: int, results: list[StudyResult],
                 ident: StudyIdentity) -> list[ResultRow]:
    """Write each result as JSON (atomic, fsync'd); the rows for ``Spool.finish_analysis``."""
    rows = []
    for r in results:
        path = sp.result_path(study_uid, generation, r.pipeline)
        write_atomic(result_to_json(r), path, sp.tmp_dir)
        rows.append(ResultRow(study_uid, generation, r.pipeline, ident.patient_key, ident.study_time, str(path)))
    return rows


# -- pairing -------------------------------------------------------------------------------------------


def find_partner(sp: Spool, ident: StudyIdentity, study_uid: str, pipeline: str, window_days: float) -> ResultRow | None:
    """The newest analysed ``pipeline`` result of another study of the same patient within the window."""
    if not ident.patient_key or ident.study_time is None or window_days <= 0:
        return None
    for row in sp.patient_results(ident.patient_key, pipeline, exclude_study=study_uid):
        if row.study_time is not None and abs(row.study_time - ident.study_time) <= window_days * 86400.0:
            return row
    return None


def spool_study(sp: Spool, study_uid: str) -> Study:
    """A read-only ``Study`` of the instances the spool holds for ``study_uid``."""
    rows = sp.instance_rows(study_uid)
    return Study(study_uid, tuple(
        Instance(path=Path(r["path"]), sop_instance_uid=r["sop_instance_uid"], sop_class_uid=r["sop_class_uid"],
                 series_uid=r["series_uid"], modality=r["modality"], body_part=r["body_part"],
                 view_position=r["view_position"], series_description=r["series_description"],
                 image_orientation=tuple(json.loads(r["image_orientation"])))
        for r in sorted(rows, key=lambda r: (r["series_uid"], r["path"]))))


def build_patient_objects(sp: Spool, study: Study, mine: dict[str, StudyResult], partner: tuple[Study, StudyResult] | None,
                          now: datetime | None = None) -> list[Dataset]:
    """Encode the patient report (``pipelines.patient.build_patient_objects``: rules, the neck-pain model,
    SR + PDF) of ``mine`` (this study's results by pipeline) and ``partner`` in this study. Images of the
    partner that are no longer readable are left out of the evidence (its study UID stays in the text)."""
    from pipelines.patient import build_patient_objects as build

    def partner_unreadable(exc: Exception) -> None:
        log(LOG, "partner images not readable: referenced by study UID only", logging.WARNING,
            study_uid=study.study_uid, partner_study_uid=partner[1].study_uid if partner else "", error=type(exc).__name__)

    return build(study, mine, partner, now, on_partner_error=partner_unreadable)


def patient_report_objects(sp: Spool, study: Study, generation: int, results: list[StudyResult],
                           window_days: float, now: datetime | None = None) -> tuple[list[ResultRow], list[Dataset]]:
    """Persist this analysis' typed results and, when a partner study of the other modality is found, build
    the patient-level SR + PDF. Returns ``(result rows to index, patient objects to deliver)``.

    Saving the results may raise (like writing any result); building the report never does: a failure is
    logged and the study's own results go out without it.
    """
    ident = study_identity(study, patient_salt(sp))
    rows = save_results(sp, study.study_uid, generation, results, ident)
    mine = {r.pipeline: r for r in results if r.pipeline in PAIRED and r.images}
    if not mine or window_days <= 0:
        return rows, []
    try:
        if len(mine) == len(PAIRED):
            objects = build_patient_objects(sp, study, mine, None, now)
            partner_uid = study.study_uid
        else:
            (pipeline,) = mine
            other = "mri" if pipeline == "xray" else "xray"
            row = find_partner(sp, ident, study.study_uid, other, window_days)
            if row is None:
                return rows, []
            partner = (spool_study(sp, row.study_uid), load_result(row))
            objects = build_patient_objects(sp, study, mine, partner, now)
            partner_uid = row.study_uid
    except Exception as exc:  # noqa: BLE001 - the study's own results must still go out
        log(LOG, "patient report failed", logging.WARNING, study_uid=study.study_uid,
            error=f"{type(exc).__name__}: {exc}"[:500])
        return rows, []
    log(LOG, "patient report", study_uid=study.study_uid, partner_study_uid=partner_uid, objects=len(objects))
    return rows, objects
