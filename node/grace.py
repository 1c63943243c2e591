"""The release grace, held by the worker: a study is dispatched when its sender releases the association, and its
analysis's results wait for the end of the grace before anything is written, queued or sent.

``release_grace_s`` (default 0.5 s) is room for a sender that sends one study over two associations, one after the
other. With ``dispatch_at_release`` (the default) the assembler does not wait for it (``node.assembly``); the worker
analyses at once and, when the first results are ready (``GraceHold.check``, called before the first SR and SEGs are
written and again before the rest), waits for whatever is left of the grace (usually nothing: an analysis takes
longer), then looks at the study again:

* no newer instance: the analysis goes on as before (the grace overlapped the pipeline instead of preceding it);
* an instance arrived meanwhile (a second association within the grace, or any instance while the analysis ran),
  or a second association of the study is open and sending: ``SetAside`` is raised and the analysis is set aside,
  with nothing of it written or sent; its attempt is closed without counting (``Spool.set_aside``), and the study,
  waiting again, is dispatched with all its instances once that association ends.

An instance after the first results were written re-triggers the analysis as it always did (a new generation; its
results supersede the older ones still pending). A study dispatched while an association is open because it
brought nothing for ``open_association_age_s`` (a sender that keeps its association) has no grace to wait for; it
is set aside only for an instance that arrived during its analysis.
"""

from __future__ import annotations

import logging
import time

from node.logs import log
from node.spool import Spool

LOG = logging.getLogger("node.grace")


class SetAside(Exception):  # noqa: N818 - an outcome, not an error
    """Newer instances of the study arrived, or are still arriving, before this analysis's results were written:
    they are not written."""


class GraceHold:
    """The hold of one analysis of ``generation`` (``release_grace_s`` 0: no hold, ``check`` returns at once)."""

    def __init__(self, sp: Spool, study_uid: str, generation: int, release_grace_s: float,
                 open_association_age_s: float = 60.0) -> None:
        self.sp, self.study_uid, self.generation, self.grace_s = sp, study_uid, generation, release_grace_s
        self.open_age_s = open_association_age_s
        self.waited_s = 0.0
        """Seconds the results waited for the end of the grace (the ``hold`` stage)."""
        self.set_aside: str | None = None
        self._checked = release_grace_s <= 0

    def check(self) -> None:
        """Wait for the end of the grace (once), then raise ``SetAside`` if the study has newer instances or is still
        receiving them; every later call raises it again for an analysis set aside, and returns at once otherwise."""
        if self.set_aside is not None:
            raise SetAside(self.set_aside)
        if self._checked:
            return
        self._checked = True
        generation, until, receiving = self.sp.hold_until(self.study_uid, self.grace_s, self.open_age_s, time.time())
        if until is not None and generation <= self.generation:
            wait = min(until - time.time(), self.grace_s)
            if wait > 0:
                time.sleep(wait)
                self.waited_s = wait
            generation, _, receiving = self.sp.hold_until(self.study_uid, self.grace_s, self.open_age_s, time.time())
        if generation > self.generation or receiving:
            self.set_aside = (
                f"newer instances of the study arrived within the release grace ({self.grace_s:g} s) or during the "
                f"analysis (generation {generation} after {self.generation})" if generation > self.generation else
                "a second association of the study is still sending: analysed again once it is released")
            log(LOG, "analysis set aside", study_uid=self.study_uid, generation=self.generation,
                newer_generation=generation, waited_s=round(self.waited_s, 3), reason=self.set_aside)
            raise SetAside(self.set_aside)
