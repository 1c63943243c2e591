"""Prior-study lookup (issue 17): the patient's earlier studies that this node analysed, for the comparison
(``pipelines.patient.compare``) and for the X-ray/MRI pairing of the patient-level report.

``PriorHistory`` is the node's ``SpoolHistory`` plus ``priors(study, pipeline)``:

1. the node's own index first (the salted patient key, ``node.patients``): the newest earlier analysed study of
   the same pipeline, with its typed result as saved;
2. when the index has none, each destination with ``priors: true``, in the order configured:
   * ``stow`` (DICOMweb): QIDO-RS studies by Patient ID (+ Issuer), then the SR instances of each earlier study
     (Modality SR), the newest of each SR series retrieved by WADO-RS;
   * ``dimse``: C-FIND (Study Root) at study and series level (Modality SR), then C-GET of each SR series on the
     same association, its newest instance kept (the PACS must allow our AE title to C-FIND and C-GET);
   each SR is read back by ``pipelines.dicom_out.sr_read`` (this node's own codes); one from another vendor, a
   corrupt one, or an earlier study of the pipeline's modality without any SR gives a note instead.
   Each destination has ``priors_timeout_s``; an unreachable or slow PACS gives a note, never a failed study.

The SRs read for one study are kept for its analysis, so the same query also answers ``partner``: when the index
holds no study of the other modality, an SR of this node of the other pipeline in the PACS (within
``patient_window_days``) pairs with this one for the patient-level report (its result carries no images: the
report is built from its measurements and findings; image-based models say they could not run).

The Patient ID read from the study's headers is used only in the query; it is never logged or stored.
"""

from __future__ import annotations

import logging
import re
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO

import pydicom
from pydicom.dataset import Dataset

from node import tls
from node.logs import log
from node.patients import SpoolHistory, load_result
from node.settings import Destination, DestinationKind
from node.spool import Spool
from pipelines.dicom_out.sr_read import SR_CLASSES, prior_from_dataset
from pipelines.patient.compare import PriorStudy, years_between
from pipelines.results import StudyResult
from pipelines.study import Study
from pipelines.vocabulary import PipelineName

LOG = logging.getLogger("node.priors")

MODALITIES: dict[str, frozenset[str]] = {"xray": frozenset({"CR", "DX", "RG", "XA"}), "mri": frozenset({"MR"})}
"""The image modalities of each pipeline (an earlier study of these without an SR of ours gets a note)."""
MAX_STUDIES = 10
"""Earlier studies of the patient looked at per destination, newest first."""


@dataclass(frozen=True)
class Query:
    """What identifies the patient and the study in a PACS query (never logged)."""

    patient_id: str
    issuer: str
    study_uid: str
    study_date: str


@dataclass
class Found:
    """What one destination holds for a patient: readable SRs of this node (any pipeline) and notes per study."""

    priors: list[PriorStudy] = field(default_factory=list)
    error: str = ""


def study_query(study: Study) -> Query | None:
    """Patient ID, issuer and date of a study from its first instance that has a Patient ID."""
    for inst in study.instances:
        try:
            ds = pydicom.dcmread(inst.path, stop_before_pixels=True,
                                 specific_tags=["PatientID", "IssuerOfPatientID", "StudyDate"])
        except Exception:  # noqa: BLE001 - an unreadable file does not identify the patient
            continue
        pid = str(ds.get("PatientID", "") or "").strip()
        if pid:
            return Query(pid, str(ds.get("IssuerOfPatientID", "") or "").strip(), study.study_uid,
                         str(ds.get("StudyDate", "") or "").strip())
    return None


def redact(text: str, q: Query) -> str:
    """``text`` (an error message) without the query's Patient ID or issuer, and URLs without their query string
    (a failed QIDO-RS request names its URL, whose query holds the Patient ID)."""
    text = re.sub(r"\?[^\s)'\"]*", "?...", text)
    for secret in (q.patient_id, q.issuer):
        if secret:
            text = text.replace(secret, "***")
    return text


def _date(t: float | None) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y%m%d") if t is not None else ""


def _candidates(studies: list[Dataset], q: Query) -> list[Dataset]:
    """The patient's other studies not later than this one, newest first (at most ``MAX_STUDIES``)."""
    out = [s for s in studies if str(s.get("StudyInstanceUID", "")) != q.study_uid
           and (not q.study_date or str(s.get("StudyDate", "") or "") <= q.study_date)]
    out.sort(key=lambda s: str(s.get("StudyDate", "") or ""), reverse=True)
    return out[:MAX_STUDIES]


def _modalities(s: Dataset) -> set[str]:
    value = s.get("ModalitiesInStudy", "") or ""
    return {str(v) for v in (value if isinstance(value, (list, pydicom.multival.MultiValue)) else [value]) if str(v)}


def _read_study(uid: str, date: str, modalities: set[str], srs: list[Dataset | bytes], source: str) -> list[PriorStudy]:
    """The priors of one earlier study from its SRs (newest of each series): results of this node's per-study SRs,
    notes for foreign or corrupt ones; a note when a study of an analysed modality has no SR at all."""
    out: list[PriorStudy] = []
    foreign: list[PriorStudy] = []
    for sr in srs:
        if isinstance(sr, bytes):
            try:
                sr = pydicom.dcmread(BytesIO(sr))
            except Exception as exc:  # noqa: BLE001 - a corrupt object is a note
                foreign.append(PriorStudy(uid, date, None, source, f"prior SR unreadable ({type(exc).__name__}): not compared"))
                continue
        p = prior_from_dataset(sr, source)
        if p is None:
            continue  # this node's patient-level SR: not a study prior
        p = PriorStudy(uid, p.study_date or date, p.result, p.source, p.note)
        (out if p.result is not None else foreign).append(p)
    if out:
        return out
    if foreign:
        return foreign[:1]
    concerned = tuple(p for p, m in MODALITIES.items() if m & modalities) if modalities else tuple(MODALITIES)
    if concerned:
        return [PriorStudy(uid, date, None, source, "no SR of this node in that study (not analysed by the node): "
                           "not compared", concerned)]
    return []


# -- QIDO-RS / WADO-RS -----------------------------------------------------------------------------------


def web_client(dest: Destination, timeout_s: float):  # noqa: ANN201 - dicomweb_client.api.DICOMwebClient
    """A DICOMweb client of a ``stow`` destination (its authentication and TLS), without retries."""
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session, create_session_from_user_pass

    session = create_session_from_user_pass(dest.username, dest.password) if dest.username else create_session()
    if dest.token:
        session.headers["Authorization"] = f"Bearer {dest.token}"
    if dest.tls_certificate is not None:
        session.cert = (str(dest.tls_certificate), str(dest.tls_private_key)) if dest.tls_private_key \
            else str(dest.tls_certificate)
    request = session.request

    def bounded(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        kwargs.setdefault("timeout", timeout_s)
        if dest.tls_ca_bundle is not None:
            kwargs.setdefault("verify", str(dest.tls_ca_bundle))
        return request(*args, **kwargs)

    session.request = bounded  # type: ignore[method-assign]
    client = DICOMwebClient(dest.url, headers=dest.headers or None, session=session)
    client.set_http_retry_params(retry=False)
    return client


def qido_priors(dest: Destination, q: Query, deadline: float) -> Found:
    client = web_client(dest, max(dest.priors_timeout_s, 0.1))
    source = f"{dest.name} (QIDO-RS)"
    filters = {"PatientID": q.patient_id}
    if q.issuer:
        filters["IssuerOfPatientID"] = q.issuer
    studies = [Dataset.from_json(s) for s in client.search_for_studies(
        search_filters=filters, fields=["StudyDate", "ModalitiesInStudy"])]
    found = Found()
    for s in _candidates(studies, q):
        if time.monotonic() > deadline:
            found.error = f"{dest.name}: prior lookup stopped after {dest.priors_timeout_s:g} s"
            break
        uid, date = str(s.StudyInstanceUID), str(s.get("StudyDate", "") or "")
        srs: list[Dataset | bytes] = []
        # one query for the study's SR instances (a PACS that ignores the Modality filter answers every instance:
        # the SOP class sorts them), then the newest instance of each SR series
        newest: dict[str, Dataset] = {}
        for i in map(Dataset.from_json, client.search_for_instances(
                uid, search_filters={"Modality": "SR"}, fields=["SeriesInstanceUID", "InstanceNumber"])):
            if str(i.get("SOPClassUID", "")) not in SR_CLASSES or "SeriesInstanceUID" not in i:
                continue
            old = newest.get(str(i.SeriesInstanceUID))
            if old is None or int(i.get("InstanceNumber", 0) or 0) > int(old.get("InstanceNumber", 0) or 0):
                newest[str(i.SeriesInstanceUID)] = i
        for series_uid, i in newest.items():
            srs.append(client.retrieve_instance(uid, series_uid, str(i.SOPInstanceUID)))
        found.priors += _read_study(uid, date, _modalities(s), srs, source)
    return found


# -- C-FIND / C-GET --------------------------------------------------------------------------------------


def cfind_priors(dest: Destination, q: Query, deadline: float, calling_aet: str) -> Found:
    from pynetdicom import AE, build_role, evt
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelFind as FIND,
    )
    from pynetdicom.sop_class import (
        StudyRootQueryRetrieveInformationModelGet as GET,
    )

    source = f"{dest.name} (C-FIND)"
    received: list[Dataset | bytes] = []

    def on_store(event) -> int:  # noqa: ANN001 - pynetdicom event
        try:
            ds = event.dataset
            ds.file_meta = event.file_meta
            received.append(ds)
        except Exception:  # noqa: BLE001 - a data set that does not decode is a corrupt prior
            received.append(b"")
        return 0x0000

    timeout = max(dest.priors_timeout_s, 0.1)
    ae = AE(ae_title=calling_aet)
    ae.acse_timeout = ae.dimse_timeout = ae.network_timeout = timeout
    ae.add_requested_context(FIND)
    ae.add_requested_context(GET)
    for sop_class in SR_CLASSES:
        ae.add_requested_context(sop_class)
    roles = [build_role(sop_class, scp_role=True) for sop_class in SR_CLASSES]
    tls_args = None
    if dest.tls:
        tls_args = (tls.client_context(dest.tls_ca_bundle, dest.tls_certificate, dest.tls_private_key),
                    dest.tls_server_name or dest.host)
    assoc = ae.associate(dest.host, dest.port, ae_title=dest.ae_title, ext_neg=roles, tls_args=tls_args,
                         evt_handlers=[(evt.EVT_C_STORE, on_store)])
    if not assoc.is_established:
        raise ConnectionError(f"association {'rejected' if assoc.is_rejected else 'failed'}")
    found = Found()
    try:
        def find(level: str, **keys: str) -> list[Dataset]:
            ident = Dataset()
            ident.QueryRetrieveLevel = level
            for k, v in keys.items():
                setattr(ident, k, v)
            out = []
            for status, match in assoc.send_c_find(ident, FIND):
                code = int(status.Status) if status and "Status" in status else -1
                if code in (0xFF00, 0xFF01) and match is not None:
                    out.append(match)
                elif code not in (0x0000, 0xFF00, 0xFF01):
                    raise ConnectionError(f"C-FIND {level} status 0x{code:04X}" if code >= 0 else f"C-FIND {level}: no response")
            return out

        keys = {"PatientID": q.patient_id, "StudyInstanceUID": "", "StudyDate": "", "ModalitiesInStudy": ""}
        if q.issuer:
            keys["IssuerOfPatientID"] = q.issuer
        for s in _candidates(find("STUDY", **keys), q):
            if time.monotonic() > deadline:
                found.error = f"{dest.name}: prior lookup stopped after {dest.priors_timeout_s:g} s"
                break
            uid, date = str(s.StudyInstanceUID), str(s.get("StudyDate", "") or "")
            received.clear()
            for series in find("SERIES", StudyInstanceUID=uid, SeriesInstanceUID="", Modality="SR"):
                ident = Dataset()  # the whole SR series (its versions; the newest is kept below)
                ident.QueryRetrieveLevel = "SERIES"
                ident.StudyInstanceUID, ident.SeriesInstanceUID = uid, str(series.SeriesInstanceUID)
                for _status, _ in assoc.send_c_get(ident, GET):
                    pass
            found.priors += _read_study(uid, date, _modalities(s), _newest_per_series(received), source)
    finally:
        if assoc.is_established:
            assoc.release()
    return found


def _newest_per_series(objects: list[Dataset | bytes]) -> list[Dataset | bytes]:
    """The instance with the highest InstanceNumber of each series (undecodable ones kept: they become notes)."""
    newest: dict[str, Dataset] = {}
    rest: list[Dataset | bytes] = []
    for o in objects:
        if not isinstance(o, Dataset) or "SeriesInstanceUID" not in o:
            rest.append(o)
            continue
        old = newest.get(str(o.SeriesInstanceUID))
        if old is None or int(o.get("InstanceNumber", 0) or 0) > int(old.get("InstanceNumber", 0) or 0):
            newest[str(o.SeriesInstanceUID)] = o
    return [*newest.values(), *rest]


# -- the history -----------------------------------------------------------------------------------------


class PriorHistory(SpoolHistory):
    """``SpoolHistory`` (the pairing over the node's index) plus ``priors`` (``PriorHistory`` of
    ``pipelines.patient.compare``) over the index and the destinations with ``priors: true``."""

    def __init__(self, sp: Spool, window_days: float, destinations: list[Destination] | tuple = (), *,
                 calling_aet: str = "CSPINE") -> None:
        super().__init__(sp, window_days)
        self.destinations = [d for d in destinations if d.priors]
        self.calling_aet = calling_aet
        self._pacs: dict[str, tuple[list[PriorStudy], list[str]]] = {}
        self.lookup_s: dict[str, float] = {}
        """Seconds of the PACS lookup per destination (the last study's), for the benchmark and the logs."""

    @property
    def priors_limit_s(self) -> float:
        """The longest an analysis waits for ``priors`` after its pipeline (every destination's timeout, + 2 s)."""
        return sum(d.priors_timeout_s for d in self.destinations) + 2.0

    def _own(self, study: Study, pipeline: PipelineName) -> list[PriorStudy]:
        ident = self.identity(study)
        for row in self.sp.patient_results(ident.patient_key, str(pipeline), exclude_study=study.study_uid):
            if ident.study_time is not None and row.study_time is not None and row.study_time > ident.study_time:
                continue
            try:
                result = load_result(row)
            except Exception as exc:  # noqa: BLE001 - a damaged result file is a note
                return [PriorStudy(row.study_uid, _date(row.study_time), None, "node index",
                                   f"saved result unreadable ({type(exc).__name__}): not compared")]
            return [PriorStudy(row.study_uid, _date(row.study_time), result, "node index")]
        return []

    def pacs(self, study: Study) -> tuple[list[PriorStudy], list[str]]:
        """Every prior the destinations hold for the study's patient (any pipeline) and the lookup errors; asked
        once per study (``priors`` and ``partner`` share it)."""
        if study.study_uid in self._pacs:
            return self._pacs[study.study_uid]
        priors: list[PriorStudy] = []
        errors: list[str] = []
        q = study_query(study) if self.destinations else None
        for dest in self.destinations if q is not None else []:
            t = time.perf_counter()
            try:
                if dest.kind is DestinationKind.STOW:
                    found = qido_priors(dest, q, time.monotonic() + dest.priors_timeout_s)
                else:
                    found = cfind_priors(dest, q, time.monotonic() + dest.priors_timeout_s, self.calling_aet)
            except Exception as exc:  # noqa: BLE001 - a PACS that fails is a note, never a failed study
                found = Found(error=f"{dest.name}: prior lookup failed ({type(exc).__name__}: {redact(str(exc), q)[:160]})")
            self.lookup_s[dest.name] = time.perf_counter() - t
            log(LOG, "prior lookup", destination=dest.name, study_uid=study.study_uid, found=len(found.priors),
                comparable=sum(p.result is not None for p in found.priors), seconds=round(self.lookup_s[dest.name], 3),
                **({"error": found.error} if found.error else {}))
            priors += found.priors
            if found.error:
                errors.append(found.error)
            if any(p.result is not None for p in found.priors):
                break
        self._pacs[study.study_uid] = (priors, errors)
        return priors, errors

    def priors(self, study: Study, pipeline: PipelineName) -> list[PriorStudy]:
        own = self._own(study, pipeline)
        if own and own[0].result is not None:
            return own
        found, errors = self.pacs(study)
        mine = [p for p in found if (p.result.pipeline == pipeline if p.result is not None
                                     else not p.pipelines or pipeline in p.pipelines)]
        notes = [PriorStudy("", "", None, "prior lookup", e) for e in errors]
        return own + mine + notes

    def partner(self, study: Study, pipeline: PipelineName) -> tuple[Study, StudyResult] | None:
        own = super().partner(study, pipeline)
        if own is not None or self.window_days <= 0 or not self.destinations:
            return own
        q = study_query(study)
        found, _ = self.pacs(study)
        for p in found:
            if p.result is None or p.result.pipeline != pipeline:
                continue
            years = years_between(p.study_date, q.study_date if q else "")
            if years is not None and abs(years) * 365.25 <= self.window_days:
                return Study(p.study_uid, ()), p.result
        return None
