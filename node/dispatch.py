"""Hand work to the queue: one ``Dispatcher`` interface, Celery behind it.

``CeleryDispatcher`` publishes ``cspine.analyze_study`` / ``cspine.deliver`` by name with the app that
``node.tasks.configure`` set up (Redis or the embedded filesystem broker). A publish that fails (broker
down) raises; the caller leaves the study undispatched and tries again on its next tick.
"""

from __future__ import annotations

from typing import Protocol

from node.tasks import ANALYZE_TASK, DELIVER_TASK, app


class Dispatcher(Protocol):
    def analyze(self, study_uid: str, generation: int) -> str:
        """Queue an analysis; returns the task id."""
        ...

    def deliver(self, study_uid: str, destination: str) -> str:
        """Queue a delivery of the study's pending results to one destination; returns the task id."""
        ...


class CeleryDispatcher:
    """Publishes the node's tasks through Celery."""

    def analyze(self, study_uid: str, generation: int) -> str:
        return app.send_task(ANALYZE_TASK, args=(study_uid, generation)).id

    def deliver(self, study_uid: str, destination: str) -> str:
        return app.send_task(DELIVER_TASK, args=(study_uid, destination)).id
