"""Durable files: names from UIDs, atomic fsync'd writes, directory fsync.

A write is durable when it returns: the bytes go to a temp file under ``tmp_dir`` (same file system), which is
fsync'd, renamed into place, and the directory fsync'd, so a crash leaves either nothing or the complete file.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

_SAFE_UID = re.compile(r"^[0-9][0-9.]{0,63}$")


def safe_name(uid: str) -> str:
    """A file-system-safe name for a UID (the UID itself when it is digits and dots)."""
    return uid if _SAFE_UID.match(uid) else hashlib.sha1(uid.encode()).hexdigest()


def file_sha256(path: Path) -> str:
    """SHA-256 (hex) of a file's bytes; ``""`` when it cannot be read."""
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return ""


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
    tmp = tmp_dir / f"{uuid.uuid4().hex}.part"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)  # instances and results hold patient data
    try:
        view = memoryview(data)
        while view:
            n = os.write(fd, view)
            view = view[n:]
        os.fsync(fd)
    except BaseException:
        os.close(fd)
        tmp.unlink(missing_ok=True)
        raise
    os.close(fd)
    os.replace(tmp, dst)
    fsync_dir(dst.parent)
