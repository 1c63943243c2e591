"""When a study is complete enough to dispatch, from the state in the index (``Spool.ready_studies``).

A study waits while it has instances newer than its last dispatch (``generation > dispatched_generation``). It is
ready (its *due* time has come):

* as soon as every association that brought its instances has ended (the release/abort markers the SCP writes),
  plus ``release_grace_s`` after the later of that release and its last instance (default 0.5 s: a sender that
  sends one study over two associations, back to back, opens the second within it), and at least
  ``stable_age_s`` after its last instance (default 0: the release decides);
* or ``open_association_age_s`` after its last instance even while an association is still open (a sender that
  keeps its association open is not waited for forever);
* never before its ``retry_at`` (backing off after a failed analysis attempt).

A late instance bumps the generation, so the study waits and is dispatched again. ``next_ready_at`` is the
earliest due time of the studies still waiting, so the assembler can wake exactly then.

With ``dispatch_at_release`` the assembler passes no grace, and the worker asks ``hold_until`` when the grace of the
study it analyses ends (``node.grace.GraceHold``).
"""

from __future__ import annotations

import sqlite3
from typing import Any

_ASSOCIATIONS = (
    "EXISTS("
    "  SELECT 1 FROM study_associations sa JOIN associations a ON a.id = sa.assoc_id"
    "  WHERE sa.study_uid = s.study_uid AND a.closed_at IS NULL) AS open_assoc, ("
    "  SELECT MAX(a.closed_at) FROM study_associations sa JOIN associations a ON a.id = sa.assoc_id"
    "  WHERE sa.study_uid = s.study_uid) AS released_at"
)
"""Columns of a study row ``s``: an association that brought its instances is still open; the latest release."""
_WAITING = ("SELECT s.study_uid, s.generation, s.last_received_at, s.retry_at, " + _ASSOCIATIONS
            + " FROM studies s WHERE s.generation > s.dispatched_generation ORDER BY s.last_received_at")
_ONE = "SELECT s.generation, s.last_received_at, " + _ASSOCIATIONS + " FROM studies s WHERE s.study_uid = ?"


def grace_end(row: Any, release_grace_s: float) -> float:  # noqa: ANN401 - a sqlite3.Row or a mapping
    """``release_grace_s`` after the later of the study's last release and its last instance (POSIX seconds)."""
    last = float(row["last_received_at"])
    released = float(row["released_at"]) if row["released_at"] is not None else last
    return max(last, released) + release_grace_s


def due_at(row: Any, stable_age_s: float, open_association_age_s: float, release_grace_s: float) -> float:  # noqa: ANN401 - a sqlite3.Row or a mapping
    """When the waiting study of ``row`` becomes ready (POSIX seconds; see the module docstring)."""
    last = float(row["last_received_at"])
    if row["open_assoc"]:
        due = last + open_association_age_s
    else:
        due = max(last + stable_age_s, grace_end(row, release_grace_s))
    return max(due, float(row["retry_at"])) if row["retry_at"] is not None else due


class StudyReadiness:
    """``ready_studies`` and ``next_ready_at``. The class using it provides ``_db()`` (``Spool``)."""

    def _db(self) -> sqlite3.Connection:  # pragma: no cover - provided by Spool
        raise NotImplementedError

    def _due(self, stable_age_s: float, open_association_age_s: float,
             release_grace_s: float) -> list[tuple[str, int, float]]:
        return [(r["study_uid"], int(r["generation"]),
                 due_at(r, stable_age_s, open_association_age_s, release_grace_s))
                for r in self._db().execute(_WAITING)]

    def ready_studies(self, now: float, stable_age_s: float, open_association_age_s: float,
                      release_grace_s: float = 0.0) -> list[tuple[str, int]]:
        """``(study_uid, generation)`` of the studies to dispatch now, longest waiting first."""
        return [(uid, gen) for uid, gen, due in self._due(stable_age_s, open_association_age_s, release_grace_s)
                if due <= now]

    def hold_until(self, study_uid: str, release_grace_s: float, open_association_age_s: float,
                   now: float) -> tuple[int, float | None, bool]:
        """``(generation, until, receiving)``: the study's newest generation; when the release grace of its last
        release ends (``release_grace_s`` after the later of that release and its last instance; POSIX seconds),
        None while an association that brought its instances is open; and whether it is still receiving (such an
        association is open and brought an instance less than ``open_association_age_s`` before ``now``: more may
        come, and the study is dispatched again at its release). A study not in the index: ``(0, None, False)``."""
        r = self._db().execute(_ONE, (study_uid,)).fetchone()
        if r is None:
            return 0, None, False
        if r["open_assoc"]:
            return int(r["generation"]), None, now - float(r["last_received_at"]) < open_association_age_s
        return int(r["generation"]), grace_end(r, release_grace_s), False

    def next_ready_at(self, stable_age_s: float, open_association_age_s: float,
                      release_grace_s: float = 0.0) -> float | None:
        """The earliest due time of a waiting study (maybe past), or None when no study waits."""
        return min((due for _, _, due in self._due(stable_age_s, open_association_age_s, release_grace_s)),
                   default=None)
