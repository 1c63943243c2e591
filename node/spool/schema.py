"""The SQLite index of the spool: its tables (DDL) and how a connection is opened.

Tables: ``instances`` (one row per stored SOP instance), ``studies`` (state machine, generations and analysis
attempts, ``node.spool.attempts``), ``associations`` and ``study_associations`` (release markers for assembly),
``outbox`` (one row per result object and destination), ``results`` (typed result files per analysed generation,
keyed by patient), ``dead_letters`` (analyses and deliveries that gave up), ``stage_times`` (seconds per study
generation and stage, ``node.spool.stages``). The TEXT state columns hold the values of the enums in
``node.spool.states``.

Durability: WAL journal with ``synchronous=FULL``, so a committed transaction survives a crash.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA = """
CREATE TABLE IF NOT EXISTS instances (
    sop_instance_uid TEXT PRIMARY KEY,
    study_uid TEXT NOT NULL,
    series_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    transfer_syntax TEXT NOT NULL DEFAULT '',
    modality TEXT NOT NULL DEFAULT '',
    body_part TEXT NOT NULL DEFAULT '',
    view_position TEXT NOT NULL DEFAULT '',
    series_description TEXT NOT NULL DEFAULT '',
    image_orientation TEXT NOT NULL DEFAULT '[]',
    path TEXT NOT NULL,
    size INTEGER NOT NULL,
    sha256 TEXT NOT NULL DEFAULT '',
    calling_aet TEXT NOT NULL DEFAULT '',
    assoc_id TEXT NOT NULL DEFAULT '',
    received_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS instances_study ON instances(study_uid);
CREATE TABLE IF NOT EXISTS studies (
    study_uid TEXT PRIMARY KEY,
    state TEXT NOT NULL,
    generation INTEGER NOT NULL DEFAULT 0,
    dispatched_generation INTEGER NOT NULL DEFAULT 0,
    analyzed_generation INTEGER NOT NULL DEFAULT 0,
    n_instances INTEGER NOT NULL DEFAULT 0,
    first_received_at REAL NOT NULL,
    last_received_at REAL NOT NULL,
    ready_at REAL,
    dispatched_at REAL,
    analysis_started_at REAL,
    analyzed_at REAL,
    task_id TEXT NOT NULL DEFAULT '',
    reason TEXT NOT NULL DEFAULT '',
    summary TEXT NOT NULL DEFAULT '',
    attempts INTEGER NOT NULL DEFAULT 0,
    worker_deaths INTEGER NOT NULL DEFAULT 0,
    attempt_id TEXT NOT NULL DEFAULT '',
    retry_at REAL,
    last_error TEXT NOT NULL DEFAULT '',
    batch_started_at REAL
);
CREATE TABLE IF NOT EXISTS associations (
    id TEXT PRIMARY KEY,
    calling_aet TEXT NOT NULL,
    peer TEXT NOT NULL,
    opened_at REAL NOT NULL,
    closed_at REAL,
    how TEXT NOT NULL DEFAULT ''
);
CREATE TABLE IF NOT EXISTS study_associations (
    study_uid TEXT NOT NULL,
    assoc_id TEXT NOT NULL,
    PRIMARY KEY (study_uid, assoc_id)
);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    study_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    destination TEXT NOT NULL,
    sop_instance_uid TEXT NOT NULL,
    sop_class_uid TEXT NOT NULL,
    path TEXT NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    last_error TEXT NOT NULL DEFAULT '',
    created_at REAL NOT NULL,
    updated_at REAL NOT NULL,
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_pending ON outbox(state, destination, study_uid);
CREATE TABLE IF NOT EXISTS results (
    study_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    pipeline TEXT NOT NULL,
    patient_key TEXT NOT NULL DEFAULT '',
    study_time REAL,
    path TEXT NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (study_uid, generation, pipeline)
);
CREATE INDEX IF NOT EXISTS results_patient ON results(patient_key, pipeline);
CREATE TABLE IF NOT EXISTS stage_times (
    study_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    stage TEXT NOT NULL,
    seconds REAL NOT NULL,
    recorded_at REAL NOT NULL,
    PRIMARY KEY (study_uid, generation, stage)
);
CREATE INDEX IF NOT EXISTS stage_times_recorded ON stage_times(recorded_at);
CREATE TABLE IF NOT EXISTS dead_letters (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    kind TEXT NOT NULL,
    study_uid TEXT NOT NULL,
    generation INTEGER NOT NULL,
    destination TEXT NOT NULL DEFAULT '',
    task_id TEXT NOT NULL DEFAULT '',
    error TEXT NOT NULL,
    created_at REAL NOT NULL
);
"""


def connect(path: Path) -> sqlite3.Connection:
    """A connection to the index at ``path`` (autocommit; transactions are explicit ``BEGIN IMMEDIATE``),
    rows as ``sqlite3.Row``, WAL + synchronous=FULL, waiting up to 60 s for a lock."""
    db = sqlite3.connect(path, timeout=60.0, isolation_level=None, check_same_thread=True)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA busy_timeout=60000")
    return db


ADDED_COLUMNS: dict[str, tuple[tuple[str, str], ...]] = {
    "studies": (("attempts", "INTEGER NOT NULL DEFAULT 0"), ("worker_deaths", "INTEGER NOT NULL DEFAULT 0"),
                ("attempt_id", "TEXT NOT NULL DEFAULT ''"), ("retry_at", "REAL"),
                ("last_error", "TEXT NOT NULL DEFAULT ''"), ("batch_started_at", "REAL")),
}
"""Columns added after the first release: ``create`` adds them to an index that predates them."""


def create(db: sqlite3.Connection) -> None:
    """Create the tables and indexes that do not exist yet, and the ``ADDED_COLUMNS`` an older index lacks
    (idempotent; two processes doing it at once are fine)."""
    db.executescript(SCHEMA)
    for table, columns in ADDED_COLUMNS.items():
        have = {r[1] for r in db.execute(f"PRAGMA table_info({table})")}
        for name, decl in columns:
            if name not in have:
                try:
                    db.execute(f"ALTER TABLE {table} ADD COLUMN {name} {decl}")
                except sqlite3.OperationalError as e:  # another process added it first
                    if "duplicate column" not in str(e):
                        raise
