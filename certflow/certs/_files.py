"""Reading and writing files: one bounded reader, backups first, then atomic replacement."""

from __future__ import annotations

import contextlib
import errno
import io
import os
import stat
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import BinaryIO

from certflow.certs._errors import PATH, MaterialError, expect, expect_iterable, expect_optional
from certflow.core.errors import InvalidInput

#: The most bytes read from one file of certificate material (and from a file that is about
#: to be backed up and replaced). Certificates, chains and keys are a few KiB; anything larger
#: is refused after reading at most ``LIMIT + 1`` bytes, never more.
LIMIT = 1024 * 1024
#: The most bytes read from a password (or passphrase) file: one line of text.
PASSWORD_LIMIT = 4096

_CHUNK = 64 * 1024
_KINDS = (
    (stat.S_ISCHR, "a character device"),
    (stat.S_ISBLK, "a block device"),
    (stat.S_ISFIFO, "a FIFO (named pipe)"),
    (stat.S_ISSOCK, "a socket"),
    (stat.S_ISDIR, "a folder"),
)


def _kind(mode: int) -> str:
    return next((text for test, text in _KINDS if test(mode)), "not a regular file")


def _size(limit: int) -> str:
    if limit % LIMIT == 0:
        return f"{limit // LIMIT} MiB"
    return f"{limit // 1024} KiB" if limit % 1024 == 0 else f"{limit} bytes"


def _read(
    path: str | os.PathLike[str], name: str, limit: int, regular_only: bool, hint: str
) -> tuple[bytes, os.stat_result]:
    try:
        # O_NONBLOCK: opening a FIFO that no one writes to returns at once instead of hanging.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except FileNotFoundError:
        raise MaterialError(name, "unreadable", "no such file") from None
    except IsADirectoryError:
        raise MaterialError(name, "unreadable", "is a folder, not a file") from None
    except PermissionError:
        raise MaterialError(name, "unreadable", "permission denied") from None
    except OSError as error:
        raise MaterialError(name, "unreadable", error.strerror or str(error)) from None
    try:
        info = os.fstat(fd)  # the file opened, so no link can be swapped in after a check
        if stat.S_ISDIR(info.st_mode):
            raise MaterialError(name, "unreadable", "is a folder, not a file")
        if regular_only and not stat.S_ISREG(info.st_mode):
            raise MaterialError(name, "unreadable", f"is {_kind(info.st_mode)}, not a regular file")
        too_large = MaterialError(name, "too_large", f"larger than {_size(limit)}{hint}")
        if stat.S_ISREG(info.st_mode) and info.st_size > limit:
            raise too_large  # known from its size, so not even LIMIT bytes are read
        if not stat.S_ISREG(info.st_mode):
            os.set_blocking(fd, True)  # a pipe with a writer is read as it comes
        chunks: list[bytes] = []
        remaining = limit + 1  # one byte more than allowed tells "too large" from "just fits"
        try:
            while remaining > 0:
                chunk = os.read(fd, min(remaining, _CHUNK))
                if not chunk:
                    break
                chunks.append(chunk)
                remaining -= len(chunk)
        except OSError as error:
            raise MaterialError(name, "unreadable", error.strerror or str(error)) from None
        if remaining <= 0:
            raise too_large
        return b"".join(chunks), info
    finally:
        os.close(fd)


def read_bounded(
    path: str | os.PathLike[str],
    *,
    limit: int = LIMIT,
    name: str | None = None,
    regular_only: bool = False,
    hint: str = "",
) -> bytes:
    """The bytes of the file at ``path``; at most ``limit + 1`` bytes are ever read.

    This is the one reader of certflow: certificate material, keys, CSRs, password files and
    files about to be backed up all come through it. Every failure raises
    :class:`MaterialError` naming the file (``name``, default the path): ``unreadable`` (no
    such file, a folder, no permission, and with ``regular_only`` a device, FIFO or socket)
    or ``too_large`` (more than ``limit`` bytes; ``hint`` is added to the message). Opening
    never blocks: a FIFO without a writer reads as empty.
    """
    expect("path", path, (str, os.PathLike), PATH)
    if not isinstance(limit, int) or isinstance(limit, bool) or limit < 0:
        raise InvalidInput(f"limit must be a number of bytes (an int >= 0), got {limit!r}")
    expect_optional("name", name, str, "a str")
    expect("hint", hint, str, "a str")
    label = os.fspath(path) if name is None else name
    return _read(path, str(label), limit, regular_only, hint)[0]


def read_password(source: str | os.PathLike[str] | BinaryIO, *, name: str | None = None) -> str:
    """The password in the first line of a file, or of a binary stream such as standard input.

    At most :data:`PASSWORD_LIMIT` bytes are read; the text must be UTF-8 (a clear
    :class:`MaterialError` otherwise) and the line end is not part of the password. An empty
    file gives ``""``.
    """
    expect("source", source, (str, os.PathLike, io.IOBase), f"{PATH} or a binary stream")
    expect_optional("name", name, str, "a str")
    if isinstance(source, str | os.PathLike):
        label = os.fspath(source) if name is None else name
        data = _read(source, str(label), PASSWORD_LIMIT, False, _PASSWORD_HINT)[0]
    else:
        label = name or "standard input"
        data = source.readline(PASSWORD_LIMIT + 1)  # a stream is read up to its first line
        if len(data) > PASSWORD_LIMIT:
            raise MaterialError(
                label, "too_large", f"larger than {_size(PASSWORD_LIMIT)}{_PASSWORD_HINT}"
            )
    line = data.split(b"\n", 1)[0].removesuffix(b"\r")
    try:
        return line.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MaterialError(
            str(label),
            "unparseable",
            f"the password is not UTF-8 text (byte 0x{line[error.start]:02x} at offset "
            f"{error.start}); save the file as UTF-8",
        ) from None


_PASSWORD_HINT = "; a password file holds one line of text"


def _backup_name(path: Path, index: int) -> Path:
    return path.with_name(f"{path.name}.bak" + (f".{index}" if index else ""))


def _existing(path: Path) -> tuple[bytes, int] | None:
    """The content and permissions of the file ``path`` replaces, ``None`` if there is none."""
    if not os.path.exists(path):  # nothing there, or a link to nothing: nothing to keep
        return None
    try:
        data, info = _read(
            path, str(path), LIMIT, True, ", so it is no certificate, key or CSR file"
        )
    except MaterialError as error:
        raise InvalidInput(
            f"{path} exists and {error.problem}: certflow only replaces regular files, after "
            "backing them up; choose another name or move it away"
        ) from None
    return data, stat.S_IMODE(info.st_mode)


def backup_together(paths: Sequence[str | os.PathLike[str]]) -> tuple[Path | None, ...]:
    """Back up the existing files among ``paths`` under one shared number.

    Each existing file is copied to ``NAME.bak`` (or ``NAME.bak.1``, ``NAME.bak.2``...), the
    same suffix for all of them: the first one that is free for every path, so backups made
    by one run belong together. An earlier backup is never overwritten (each copy is created
    with ``O_EXCL``), and a copy keeps the original's permissions (a key stays owner-only).

    Only regular files are backed up: a device, FIFO, socket or folder in the place of one of
    ``paths`` raises :class:`~certflow.core.errors.InvalidInput` before anything is written.
    So does a file larger than :data:`LIMIT`. Returns the backup of each path (``None``
    where there was no file).
    """
    expect_iterable("paths", paths, "a sequence of file paths")
    for path in paths:
        expect("paths", path, (str, os.PathLike), f"a sequence of {PATH}s")
    targets = [Path(p) for p in paths]
    contents = [_existing(target) for target in targets]
    index = 0
    while True:
        names = [_backup_name(target, index) for target in targets]
        if any(os.path.lexists(n) for n in names):
            index += 1
            continue
        made: list[Path] = []
        try:
            for content, backup_path in zip(contents, names, strict=True):
                if content is not None:
                    _write_new(backup_path, *content)
                    made.append(backup_path)
        except FileExistsError:  # another process took the number meanwhile: take the next
            for path in made:
                with contextlib.suppress(FileNotFoundError):
                    os.unlink(path)
            index += 1
            continue
        return tuple(
            None if content is None else n for content, n in zip(contents, names, strict=True)
        )


def backup(path: str | os.PathLike[str]) -> Path | None:
    """Copy ``path`` to the first free ``NAME.bak``, ``NAME.bak.1``...; ``None`` if absent.

    See :func:`backup_together`, which backs up several files under one number.
    """
    expect("path", path, (str, os.PathLike), PATH)
    return backup_together([path])[0]


def _write_new(path: Path, data: bytes, mode: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, mode)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    os.chmod(path, mode)  # O_CREAT's mode is filtered by the umask


def check_target(path: str | os.PathLike[str]) -> Path:
    """``path`` as a place :func:`atomic_write` can write to, or a clear ``InvalidInput``.

    Its folder must exist, and whatever is there already must be a regular file: certflow
    never replaces a device, a FIFO or a folder.
    """
    expect("path", path, (str, os.PathLike), PATH)
    target = Path(path)
    folder = target.parent
    if not folder.is_dir():
        raise InvalidInput(f"{target}: cannot write it: the folder {folder} does not exist")
    try:
        info = target.stat()  # follows links: a link to /dev/zero is a device
    except FileNotFoundError:
        return target
    except OSError as error:
        raise InvalidInput(f"{target}: cannot write it: {error.strerror or error}") from None
    if not stat.S_ISREG(info.st_mode):
        raise InvalidInput(
            f"{target} exists and is {_kind(info.st_mode)}, not a regular file: certflow only "
            "replaces regular files; choose another name or move it away"
        )
    return target


def atomic_write(path: str | os.PathLike[str], data: bytes, *, mode: int) -> None:
    """Write ``data`` to ``path`` via a temporary file and ``os.replace``, with ``mode``.

    Readers see the old file or the new one, never a half-written one; the temporary file
    is created owner-only, so a key is never readable by others, not even briefly. A missing
    folder, or a device, FIFO or folder at ``path``, raises
    :class:`~certflow.core.errors.InvalidInput`; other failures raise :class:`OSError` whose
    ``filename`` is ``path``, never the temporary file.
    """
    target = check_target(path)
    expect("data", data, bytes, "bytes")
    if not isinstance(mode, int) or isinstance(mode, bool):
        raise InvalidInput(f"mode must be an int such as 0o600, got {mode!r}")
    try:
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    except OSError as error:
        raise _about(error, target) from None
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        os.chmod(tmp, mode)
        os.replace(tmp, target)
    except BaseException as error:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        if isinstance(error, OSError):
            raise _about(error, target) from None
        raise


def _about(error: OSError, target: Path) -> OSError:
    """``error`` told about ``target`` (the file the user named), not a temporary file."""
    code = error.errno if error.errno is not None else errno.EIO
    return OSError(code, error.strerror or str(error), str(target))
