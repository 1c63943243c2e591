"""Typed rows of the spool index (what the queries return)."""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from node.spool.states import OutboxState, StudyState


@dataclass(frozen=True)
class StudyRow:
    """One study: its state, generations and times (POSIX seconds)."""

    study_uid: str
    state: StudyState
    generation: int
    dispatched_generation: int
    analyzed_generation: int
    n_instances: int
    first_received_at: float
    last_received_at: float
    ready_at: float | None
    dispatched_at: float | None
    analysis_started_at: float | None
    analyzed_at: float | None
    task_id: str
    reason: str
    summary: str
    attempts: int = 0
    """Analysis attempts begun on the newest generation, worker deaths included (``node.spool.attempts``)."""
    worker_deaths: int = 0
    attempt_id: str = ""
    """The attempt now open (its task id); ``""`` when none is."""
    retry_at: float | None = None
    last_error: str = ""
    batch_started_at: float | None = None
    """When the first instance not yet dispatched arrived (the ``receive`` stage starts, ``node.spool.stages``)."""

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> StudyRow:
        return cls(**{**dict(r), "state": StudyState(r["state"])})


@dataclass(frozen=True)
class ResultRow:
    """Typed results of one pipeline run on one analysed generation (a JSON file), keyed by patient.

    ``patient_key`` is a salted hash of the Patient ID (``node.patients``), never the ID itself;
    ``study_time`` is StudyDate/StudyTime as POSIX seconds (None when the study has no date)."""

    study_uid: str
    generation: int
    pipeline: str
    patient_key: str
    study_time: float | None
    path: str
    created_at: float = 0.0

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> ResultRow:
        return cls(**dict(r))


@dataclass(frozen=True)
class OutboxRow:
    """One result object for one destination, with its delivery state."""

    id: int
    study_uid: str
    generation: int
    destination: str
    sop_instance_uid: str
    sop_class_uid: str
    path: str
    state: OutboxState
    attempts: int
    last_error: str
    created_at: float
    updated_at: float
    sent_at: float | None

    @classmethod
    def from_row(cls, r: sqlite3.Row) -> OutboxRow:
        return cls(**{**dict(r), "state": OutboxState(r["state"])})
