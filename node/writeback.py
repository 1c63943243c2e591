"""Received C-STORE data sets start going to disk while they arrive, so that the fsync before Success waits for little.

pynetdicom writes each received data set to a temporary file as its P-DATA fragments arrive
(``STORE_RECV_CHUNKED_DATASET``) and flushes each fragment to the kernel; the kernel then holds the pages dirty until
its writeback timer (~30 s) or our fsync (``node.spool.durable.move_atomic``) before the Success. So the fsync wrote
the whole file while the sender waited (10 MB written and fsync'd by ``dd``: 20-30 ms here, against ~60 ms to receive
them). With :func:`receive_to_files`, every MiB flushed is handed to the kernel's writeback at once
(``sync_file_range(SYNC_FILE_RANGE_WRITE)``: it starts the writes and returns), so the disk writes the data set while
the rest of it arrives and the fsync waits for the last MiB and the metadata. Durability is unchanged: Success still
comes only after the fsync of the file and its directory and the index commit.

Linux only (``sync_file_range``); elsewhere the files are written as before.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys
import tempfile
from typing import IO, Any

__all__ = ["receive_to_files"]

CHUNK = 1 << 20
"""Bytes flushed between two writeback starts."""
_SYNC_FILE_RANGE_WRITE = 2


def _sync_file_range() -> Any:  # noqa: ANN401 - a ctypes function, or None
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(ctypes.util.find_library("c") or None, use_errno=True).sync_file_range
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_int64, ctypes.c_int64, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


_SYNC = _sync_file_range()


class _WritebackFile:
    """A file object whose ``flush`` also starts the writeback of what was written since the last start, once that is
    at least ``CHUNK`` bytes. Everything else is the wrapped file's."""

    def __init__(self, f: IO[bytes]) -> None:
        self._f = f
        self._started = 0

    def write(self, data: bytes) -> int:
        return self._f.write(data)

    def flush(self) -> None:
        self._f.flush()
        end = self._f.tell()
        if end - self._started >= CHUNK:
            _SYNC(self._f.fileno(), self._started, end - self._started, _SYNC_FILE_RANGE_WRITE)  # a hint: errors ignored
            self._started = end

    def __getattr__(self, name: str) -> Any:  # noqa: ANN401 - the wrapped file's attributes
        return getattr(self._f, name)


def named_temporary_file(*args: Any, **kwargs: Any) -> Any:  # noqa: ANN401 - tempfile's own wrapper
    """``tempfile.NamedTemporaryFile`` whose file starts its writeback every ``CHUNK`` bytes flushed."""
    tmp = tempfile.NamedTemporaryFile(*args, **kwargs)  # noqa: SIM115 - returned open, as pynetdicom expects
    tmp.file = _WritebackFile(tmp.file)
    return tmp


def receive_to_files() -> bool:
    """Have pynetdicom write each received C-STORE data set to a temporary file as it arrives
    (``STORE_RECV_CHUNKED_DATASET``), each file starting its writeback as it grows (module docstring). Returns whether
    the early writeback is in place (False where ``sync_file_range`` is missing: the files are written as before)."""
    from pynetdicom import _config, dimse_messages

    _config.STORE_RECV_CHUNKED_DATASET = True
    if _SYNC is None:
        return False
    dimse_messages.NamedTemporaryFile = named_temporary_file
    return True
