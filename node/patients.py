"""The node's part of the patient level: salted patient keys, the typed results kept in the spool, and
``SpoolHistory``, the ``pipelines.patient.PatientHistory`` over the node's index.

1. A study is keyed by patient: ``patient_key`` = HMAC-SHA256 of (Issuer of) Patient ID with a secret salt
   kept in the spool (``patient_key.salt``, created once, mode 0600). The index stores only that key and the
   study date/time; the Patient ID itself is never stored outside the received files, nor logged.
2. ``save_results`` writes each typed ``StudyResult`` as JSON (fsync'd; codec ``pipelines.results_json``) under
   ``results/<study>/<generation>/``, returned as ``ResultRow``s that ``Spool.finish_analysis`` indexes in the
   same transaction as the analysis.
3. ``SpoolHistory.partner`` finds the newest *other-modality* analysed study with the same key whose study date
   lies within ``patient_window_days`` of this one (both dates are needed; a study without StudyDate is never
   paired). ``pipelines.analyze`` builds the report from it (``pipelines.patient``).

Limitation: with several Redis workers, two studies of one patient analysed at the same moment may both miss
each other (each looks before the other is recorded); the next analysis of either makes the report. Lookup in
the PACS (C-FIND/QIDO-RS) is not done here.
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

import pydicom

from node.spool import ResultRow, Spool, write_atomic
from pipelines.results import StudyResult
from pipelines.results_json import result_from_json, result_to_json
from pipelines.study import Instance, Study
from pipelines.vocabulary import PipelineName

LOG = logging.getLogger("node.patients")
SALT_NAME = "patient_key.salt"


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


class SpoolHistory:
    """``pipelines.patient.PatientHistory`` over the node's index: the newest analysed study of the other
    modality with the same salted patient key whose study date lies within ``window_days`` of this one."""

    def __init__(self, sp: Spool, window_days: float) -> None:
        self.sp = sp
        self.window_days = window_days
        self._identities: dict[str, StudyIdentity] = {}

    def identity(self, study: Study) -> StudyIdentity:
        """The study's patient key and time (read from its headers once per study)."""
        if study.study_uid not in self._identities:
            self._identities[study.study_uid] = study_identity(study, patient_salt(self.sp))
        return self._identities[study.study_uid]

    def partner(self, study: Study, pipeline: PipelineName) -> tuple[Study, StudyResult] | None:
        if self.window_days <= 0:
            return None
        ident = self.identity(study)
        row = find_partner(self.sp, ident, study.study_uid, pipeline, self.window_days)
        if row is None:
            return None
        return spool_study(self.sp, row.study_uid), load_result(row)
