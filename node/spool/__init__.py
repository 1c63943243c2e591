"""The spool: every received instance as a file on disk, indexed in SQLite, durable before acknowledgement.

Layout under ``root``::

    index.sqlite3                      SQLite index (WAL journal, synchronous=FULL)
    tmp/                               partial writes (removed at start-up)
    instances/<study>/<sop>.dcm        received instances (DICOM Part 10 files as sent)
    outbox/<study>/<generation>/...    result objects waiting for / done with delivery
    results/<study>/<generation>/<pipeline>.json   typed results of an analysis (``node.patients``)
    patient_key.salt                   secret salt of the patient keys (created once, never logged)
    broker/                            the embedded Celery broker's message folders (see ``node.tasks``)

Durability: ``store`` writes a temp file, fsyncs it, renames it into place, fsyncs the directory, and
commits the index row (WAL + synchronous=FULL) before it returns; only then does the SCP answer Success.
A crash in between leaves either nothing or a complete file, which ``recover`` indexes at start-up.

Study bookkeeping: each study has a *generation* that grows with every new (or changed) instance.
``dispatched_generation`` and ``analyzed_generation`` say what was queued and what was analysed; a study
with ``generation > dispatched_generation`` is waiting to be (re)dispatched, which is how late instances
re-trigger analysis. Outbox rows of an older generation are marked ``superseded`` when a newer analysis
finishes, so only the newest results are delivered.

Duplicates are idempotent: the same SOP Instance UID with the same bytes (SHA-256, computed only when a
UID arrives again) is acknowledged and ignored; with different bytes it replaces the earlier file and
bumps the generation.

Modules: ``store`` (the ``Spool`` state machine), ``queries`` (read-only status queries), ``schema`` (the SQLite
tables), ``durable`` (fsync'd atomic files), ``headers`` (the index fields of a DICOM header), ``states`` (the
enums of the state columns), ``rows`` (typed query rows).
"""

from node.spool.durable import fsync_dir, safe_name, write_atomic
from node.spool.headers import InstanceHeader, header_from_dataset
from node.spool.rows import OutboxRow, ResultRow, StudyRow
from node.spool.schema import SCHEMA
from node.spool.states import AssociationEnd, DeadLetterKind, OutboxState, StoreOutcome, StudyState
from node.spool.store import Spool

__all__ = [
    "SCHEMA",
    "AssociationEnd",
    "DeadLetterKind",
    "InstanceHeader",
    "OutboxRow",
    "OutboxState",
    "ResultRow",
    "Spool",
    "StoreOutcome",
    "StudyRow",
    "StudyState",
    "fsync_dir",
    "header_from_dataset",
    "safe_name",
    "write_atomic",
]
