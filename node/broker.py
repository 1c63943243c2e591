"""The embedded broker: kombu's filesystem transport, each message file written whole before a worker can see it.

kombu's filesystem transport creates a message file under its final name and then writes it, under an ``flock``
that the reading side never takes: a worker polling the folder can move and read the file while it is still empty,
and Celery's worker then stops on the ``JSONDecodeError`` ("Unrecoverable error"). ``serve`` restarted the worker
and dispatched the study again (nothing was lost), but the study waited for the new worker: 8.9-11.2 s instead of
~2.5 s, about one study in fifteen in ``bench/node_latency.py``. Here a message is written under a name the reader
skips (``<name>.part``: its queue suffix is not ``<queue>.msg``) and then renamed to its final name, which is atomic
on one file system.

``TRANSPORT`` is the URL scheme ``node.tasks`` gives the embedded broker; importing this module registers it with
kombu. The folders, the file names, the order and the reading side are kombu's.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path

from kombu.exceptions import ChannelError
from kombu.transport import TRANSPORT_ALIASES, filesystem
from kombu.utils.encoding import str_to_bytes
from kombu.utils.json import dumps

TRANSPORT = "cspinefs"
PART = ".part"


class Channel(filesystem.Channel):
    def _put(self, queue: str, payload: dict, **kwargs: object) -> None:
        """Put ``payload`` onto ``queue``: written to ``<name>.part``, then renamed to ``<name>``."""
        name = f"{int(round(time.monotonic() * 1000))}_{uuid.uuid4()}.{queue}.msg"
        final = os.path.join(self.data_folder_out, name)
        part = final + PART
        try:
            with open(part, "wb") as f:
                f.write(str_to_bytes(dumps(payload)))
            os.replace(part, final)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(part)
            raise ChannelError(f"Cannot add file {final!r} to directory") from exc


class Transport(filesystem.Transport):
    Channel = Channel


def remove_stale_parts(folder: Path | str, older_than_s: float = 60.0, now: float | None = None) -> int:
    """Remove the ``.part`` files a writer left in the queue ``folder`` when it died between writing and renaming
    (``serve`` at start, with its recovery, which dispatches their studies again anyway); files younger than
    ``older_than_s`` may still be being written and stay. Returns how many were removed."""
    now = time.time() if now is None else now
    removed = 0
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if entry.name.endswith(PART):
                with contextlib.suppress(FileNotFoundError):
                    if now - entry.stat().st_mtime > older_than_s:
                        os.unlink(entry.path)
                        removed += 1
    return removed


TRANSPORT_ALIASES.setdefault(TRANSPORT, f"{__name__}:Transport")
