"""The vocabularies of the spool: the values its index stores in TEXT state/kind columns, and store outcomes."""

from __future__ import annotations

from enum import StrEnum


class StudyState(StrEnum):
    """``studies.state``: where a study is in receive -> assemble -> analyse."""

    RECEIVING = "receiving"
    QUEUED = "queued"
    ANALYZING = "analyzing"
    DONE = "done"
    SKIPPED = "skipped"
    FAILED = "failed"


class OutboxState(StrEnum):
    """``outbox.state``: ``pending`` -> ``sent``; ``superseded`` when a newer analysis replaced the object,
    ``failed`` when delivery retries ran out (a dead letter)."""

    PENDING = "pending"
    SENT = "sent"
    SUPERSEDED = "superseded"
    FAILED = "failed"


class DeadLetterKind(StrEnum):
    """``dead_letters.kind``: which stage gave up."""

    ANALYZE = "analyze"
    DELIVER = "deliver"


class AssociationEnd(StrEnum):
    """``associations.how``: how an association that brought instances ended."""

    RELEASED = "released"
    ABORTED = "aborted"
    LOST = "lost (restart)"
    """Still open when the node stopped; closed by ``Spool.recover`` at the next start."""


class StoreOutcome(StrEnum):
    """What ``Spool.store`` did with an instance."""

    NEW = "new"
    DUPLICATE = "duplicate"
    REPLACED = "replaced"
