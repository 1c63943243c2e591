"""Polling the DICOMweb archive for correction SRs (``corrections_poll_s`` > 0; off by default).

For a PACS that does not route SRs to the node: every ``corrections_poll_s`` seconds, for each ``stow`` destination
and each study the node analysed within ``corrections_poll_window_days`` (the spool's ``analyzed_at``), a QIDO-RS
search ``/studies/{study}/instances?Modality=SR`` (dicomweb-client) lists the SRs there. An SR that the node made
(its outbox), or that it has already seen (inbox, done, rejected, or ``corrections_sr/seen.txt`` for SRs that were
not corrections), is skipped; a new one is fetched with WADO-RS and goes the way a C-STORE'd SR goes
(``CorrectionsStore.receive``). So "newer than the last poll" is "not seen before", which survives restarts and
clock changes. A destination that cannot be reached is logged and tried again at the next poll.
"""

from __future__ import annotations

import logging
import time
from io import BytesIO

from node.corrections import CorrectionsStore, Kind
from node.logs import log
from node.settings import Destination, DestinationKind
from pipelines.corrections import UnreadableSR

LOG = logging.getLogger("node.corrections")
SOP_INSTANCE_UID = "00080018"
SERIES_INSTANCE_UID = "0020000E"


def client_for(dest: Destination):  # noqa: ANN201 - dicomweb_client.api.DICOMwebClient
    """A DICOMweb client with the destination's authentication and TLS settings (as ``node.deliver`` makes them)."""
    from dicomweb_client.api import DICOMwebClient
    from dicomweb_client.session_utils import create_session, create_session_from_user_pass

    session = create_session_from_user_pass(dest.username, dest.password) if dest.username else create_session()
    if dest.token:
        session.headers["Authorization"] = f"Bearer {dest.token}"
    if dest.tls_ca_bundle is not None:
        session.verify = str(dest.tls_ca_bundle)
    if dest.tls_certificate is not None:
        session.cert = (str(dest.tls_certificate), str(dest.tls_private_key)) if dest.tls_private_key \
            else str(dest.tls_certificate)
    client = DICOMwebClient(dest.url, headers=dest.headers or None, session=session)
    client.set_http_retry_params(retry=False)
    return client


def _value(d: dict, tag: str) -> str:
    v = (d.get(tag) or {}).get("Value") or [""]
    return str(v[0])


def _seen(store: CorrectionsStore) -> set[str]:
    path = store.sr_root / "seen.txt"
    return set(path.read_text().split()) if path.exists() else set()


def _remember(store: CorrectionsStore, sop: str) -> None:
    store.sr_root.mkdir(mode=0o700, parents=True, exist_ok=True)
    with open(store.sr_root / "seen.txt", "a") as f:
        f.write(sop + "\n")


def recent_studies(store: CorrectionsStore, now: float) -> list[str]:
    since = now - store.settings.corrections_poll_window_days * 86400.0
    return [s.study_uid for s in store.spool.studies() if s.analyzed_at and s.analyzed_at >= since]


def poll_once(store: CorrectionsStore, now: float | None = None, client_factory=client_for) -> dict[str, int]:  # noqa: ANN001
    """One poll of every stow destination; counts of ``listed``, ``fetched`` (kept as corrections), ``other``
    (own or unrelated SRs, remembered as seen) and ``errors``."""
    now = time.time() if now is None else now
    counts = {"listed": 0, "fetched": 0, "other": 0, "errors": 0}
    studies = recent_studies(store, now)
    if not studies:
        return counts
    seen = _seen(store)
    for dest in store.settings.destinations:
        if dest.kind is not DestinationKind.STOW:
            continue
        client = client_factory(dest)
        for study in studies:
            own = {r.sop_instance_uid for r in store.spool.outbox(study)}
            try:
                found = client.search_for_instances(study_instance_uid=study, search_filters={"Modality": "SR"})
            except Exception as e:  # noqa: BLE001 - unreachable, 4xx/5xx: next poll
                counts["errors"] += 1
                log(LOG, "corrections poll failed", logging.WARNING, destination=dest.name, error=f"{type(e).__name__}: {str(e)[:200]}")
                break
            for d in found:
                sop, series = _value(d, SOP_INSTANCE_UID), _value(d, SERIES_INSTANCE_UID)
                counts["listed"] += 1
                if not sop or sop in own or sop in seen or store.known(sop):
                    continue
                try:
                    ds = client.retrieve_instance(study, series, sop)
                    buf = BytesIO()
                    ds.save_as(buf, enforce_file_format=True)
                    kind = store.receive(buf.getvalue(), sop)
                except UnreadableSR as e:
                    kind = None
                    log(LOG, "polled SR unreadable", logging.WARNING, sop_instance_uid=sop, reason=str(e))
                except Exception as e:  # noqa: BLE001 - next poll
                    counts["errors"] += 1
                    log(LOG, "corrections fetch failed", logging.WARNING, destination=dest.name, sop_instance_uid=sop,
                        error=f"{type(e).__name__}: {str(e)[:200]}")
                    continue
                if kind is Kind.CORRECTION:
                    counts["fetched"] += 1
                else:
                    counts["other"] += 1
                    seen.add(sop)
                    _remember(store, sop)
    if counts["fetched"] or counts["errors"]:
        log(LOG, "corrections polled", studies=len(studies), **counts)
    return counts
