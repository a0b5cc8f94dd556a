"""Writing files without losing what was there: backups first, then atomic replacement."""

from __future__ import annotations

import contextlib
import os
import tempfile
from pathlib import Path


def backup(path: Path) -> Path | None:
    """Copy ``path`` to the first free ``NAME.bak``, ``NAME.bak.1``, ... ; ``None`` if absent.

    An earlier backup is never overwritten: the copy is created exclusively (``O_EXCL``),
    and it keeps the permissions of the original (a key stays owner-only).
    """
    try:
        data = path.read_bytes()
        mode = path.stat().st_mode & 0o777
    except FileNotFoundError:
        return None
    index = 0
    while True:
        target = path.with_name(f"{path.name}.bak" + (f".{index}" if index else ""))
        try:
            fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
        except FileExistsError:
            index += 1
            continue
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(target, mode)  # O_CREAT's mode is filtered by the umask
        return target


def atomic_write(path: Path, data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``, with ``mode``.

    Readers see the old file or the new one, never a half-written one; the temporary file
    is created owner-only, so a key is never readable by others, not even briefly.
    """
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
