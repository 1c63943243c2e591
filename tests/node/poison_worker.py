"""Test-only entry point: ``python -m tests.node.poison_worker serve|worker ...`` is ``cspine-node`` whose workers
kill themselves (SIGKILL, like the kernel's OOM killer) when they analyse a study listed in a file, mid-analysis:
after ``Spool.begin_analysis`` recorded the attempt, inside ``pipelines.analyze``.

``POISON_STUDIES_FILE``: the file of Study Instance UIDs (one a line); each death is appended to
``<that file>.deaths`` (``time pid study_uid``) before the kill. ``serve`` starts its embedded worker through this
module too. The node never imports it: nothing of this is in a production path.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from pathlib import Path

import pipelines
from node import cli, embedded

POISON_ENV = "POISON_STUDIES_FILE"  # not CSPINE_*: the node passes no CSPINE_* variable to its worker child
_analyze = pipelines.analyze


def _poisoned(study_uid: str) -> Path | None:
    name = os.environ.get(POISON_ENV)
    if not name or not Path(name).is_file():
        return None
    return Path(name) if study_uid in Path(name).read_text().split() else None


def analyze(study, models, history=None, **kwargs):  # noqa: ANN001, ANN003, ANN201 - pipelines.analyze's signature
    poison = _poisoned(study.study_uid)
    if poison is not None:
        with open(f"{poison}.deaths", "a") as f:
            f.write(f"{time.time():.3f} {os.getpid()} {study.study_uid}\n")
            f.flush()
            os.fsync(f.fileno())
        os.kill(os.getpid(), signal.SIGKILL)
    return _analyze(study, models, history, **kwargs)


def worker_command(pool: str = "solo", concurrency: int = 1) -> list[str]:
    return [sys.executable, "-m", "tests.node.poison_worker", "worker", "--pool", pool, "--concurrency",
            str(concurrency)]


pipelines.analyze = analyze
embedded.worker_command = worker_command

if __name__ == "__main__":
    raise SystemExit(cli.main())
