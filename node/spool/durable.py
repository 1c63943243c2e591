"""Durable files: names from UIDs, atomic fsync'd writes, directory fsync.

A write is durable when it returns: the bytes go to a temp file under ``tmp_dir`` (same file system), which is
fsync'd, renamed into place, and the directory fsync'd, so a crash leaves either nothing or the complete file.
A file received to disk (a large C-STORE data set) is moved the same way (``move_atomic``), never read whole.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
import shutil
import uuid
from collections.abc import Callable
from pathlib import Path

CHUNK = 1 << 20
"""Bytes read at a time when hashing or copying a file."""

_SAFE_UID = re.compile(r"^[0-9][0-9.]{0,63}$")


def safe_name(uid: str) -> str:
    """A file-system-safe name for a UID (the UID itself when it is digits and dots)."""
    return uid if _SAFE_UID.match(uid) else hashlib.sha1(uid.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes, read in chunks; ``""`` when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            while chunk := f.read(CHUNK):
                h.update(chunk)
    except OSError:
        return ""
    return h.hexdigest()


def fsync_dir(path: Path) -> None:
    """fsync a directory so that a rename or create inside it survives a crash."""
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def private(path: Path, mode: int) -> None:
    """chmod ``path`` to ``mode`` (0700 folders, 0600 files: the spool holds patient data) when it exists and is
    ours; a mount point or file owned by someone else keeps its mode."""
    try:
        if path.exists() and path.stat().st_uid == os.geteuid():
            path.chmod(mode)
    except OSError:
        pass


def write_atomic(data: bytes, dst: Path, tmp_dir: Path) -> None:
    """Write ``data`` to ``dst`` atomically and durably: temp file, fsync, rename, fsync directory."""
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)

    def fill(fd: int) -> None:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]

    os.replace(_durable_temp(tmp_dir, fill), dst)
    fsync_dir(dst.parent)


def _durable_temp(tmp_dir: Path, fill: Callable[[int], None]) -> Path:
    """A new 0600 temp file under ``tmp_dir`` written by ``fill(fd)`` and fsync'd; removed again if that fails."""
    tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # instances and results hold patient data
    try:
        fill(fd)
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    return tmp


def move_atomic(src: Path, dst: Path, tmp_dir: Path) -> None:
    """Move the complete file ``src`` to ``dst`` atomically and durably: fsync it, rename it into place, fsync the
    directory. A file on another file system is copied (in chunks) to a temp file under ``tmp_dir`` and renamed
    from there; ``src`` then stays for its owner to remove."""
    dst.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd = os.open(src, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.replace(src, dst)
    except OSError as e:
        if e.errno != errno.EXDEV:
            raise

        def copy(out: int) -> None:
            with open(src, "rb") as f, os.fdopen(out, "wb", closefd=False) as w:
                shutil.copyfileobj(f, w, CHUNK)

        os.replace(_durable_temp(tmp_dir, copy), dst)
    fsync_dir(dst.parent)
