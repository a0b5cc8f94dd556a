"""The one bounded reader, backups of regular files only, and writes that name their target."""

from __future__ import annotations

import ast
import io
import os
import stat
import threading
from collections.abc import Callable
from pathlib import Path

import pytest

from certflow.certs import (
    LIMIT,
    PASSWORD_LIMIT,
    MaterialError,
    atomic_write,
    backup,
    backup_together,
    read_bounded,
    read_password,
)
from certflow.core.errors import InvalidInput

# --- the reader ---------------------------------------------------------------------------


def test_reads_a_file_up_to_the_limit(tmp_path: Path) -> None:
    path = tmp_path / "f"
    path.write_bytes(b"x" * 100)
    assert read_bounded(path, limit=100) == b"x" * 100
    with pytest.raises(MaterialError) as caught:
        read_bounded(path, limit=99, hint="; a hint")
    assert (caught.value.code, str(caught.value)) == (
        "too_large",
        f"{path}: larger than 99 bytes; a hint",
    )


@pytest.mark.parametrize("device", ["/dev/zero", "/dev/urandom"])
def test_an_endless_device_is_read_only_up_to_the_limit(device: str) -> None:
    with pytest.raises(MaterialError) as caught:
        read_bounded(device)
    assert (caught.value.code, caught.value.source) == ("too_large", device)
    assert "larger than 1 MiB" in str(caught.value)


def test_a_fifo_without_a_writer_does_not_hang(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    result: list[object] = []
    reader = threading.Thread(target=lambda: result.append(_outcome(lambda: read_bounded(fifo))))
    reader.start()
    reader.join(timeout=10)
    assert not reader.is_alive(), "reading a FIFO without a writer hung"
    assert result == [("empty read", b"")]


def test_a_fifo_with_a_writer_is_read(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    writer = threading.Thread(target=lambda: fifo.write_bytes(b"pass\n"))
    writer.start()
    try:
        data = b""
        for _ in range(200):  # the writer opens the FIFO a moment later
            data = read_bounded(fifo)
            if data:
                break
            threading.Event().wait(0.01)
    finally:
        writer.join(timeout=10)
    assert data == b"pass\n"


def _outcome(call: Callable[[], bytes]) -> tuple[str, object]:
    try:
        return ("empty read", call())
    except MaterialError as error:
        return (error.code, str(error))


@pytest.mark.parametrize(
    ("make", "problem"),
    [
        (lambda p: p / "missing", "no such file"),
        (lambda p: p, "is a folder, not a file"),
    ],
)
def test_unreadable_paths_name_the_file(
    make: Callable[[Path], Path], problem: str, tmp_path: Path
) -> None:
    with pytest.raises(MaterialError) as caught:
        read_bounded(make(tmp_path))
    assert caught.value.code == "unreadable"
    assert str(caught.value) == f"{make(tmp_path)}: {problem}"


@pytest.mark.parametrize(
    ("target", "kind"), [("/dev/null", "a character device"), ("fifo", "a FIFO (named pipe)")]
)
def test_regular_only_refuses_devices_and_fifos(target: str, kind: str, tmp_path: Path) -> None:
    path = Path(target) if target.startswith("/") else tmp_path / target
    if target == "fifo":
        os.mkfifo(path)
    with pytest.raises(MaterialError) as caught:
        read_bounded(path, regular_only=True)
    assert str(caught.value) == f"{path}: is {kind}, not a regular file"


def test_the_reader_refuses_a_wrong_argument_type() -> None:
    with pytest.raises(InvalidInput, match="path must be a file path"):
        read_bounded(b"server.pem")  # type: ignore[arg-type]


# --- password files -------------------------------------------------------------------------


def test_a_password_is_the_first_line(tmp_path: Path) -> None:
    path = tmp_path / "pass.txt"
    path.write_bytes("pässword\r\nsecond line\n".encode())
    assert read_password(path) == "pässword"
    path.write_bytes(b"")
    assert read_password(path) == ""
    assert read_password(io.BytesIO(b"from stdin\nrest")) == "from stdin"


def test_a_password_from_dev_zero_is_refused_after_the_limit() -> None:
    with pytest.raises(MaterialError) as caught:
        read_password("/dev/zero")
    assert caught.value.code == "too_large"
    assert str(caught.value) == (
        "/dev/zero: larger than 4 KiB; a password file holds one line of text"
    )
    stream = io.BytesIO(b"\0" * (10 * PASSWORD_LIMIT))
    with pytest.raises(MaterialError, match=r"^standard input: larger than 4 KiB"):
        read_password(stream)
    assert stream.tell() == PASSWORD_LIMIT + 1  # never more than the bound


def test_a_password_that_is_not_utf8_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "pass.txt"
    path.write_bytes(b"p\xe4ss\n")  # Latin-1
    with pytest.raises(MaterialError) as caught:
        read_password(path)
    assert str(caught.value) == (
        f"{path}: the password is not UTF-8 text (byte 0xe4 at offset 1); save the file as UTF-8"
    )


# --- backups --------------------------------------------------------------------------------


def test_a_backup_keeps_content_and_mode(tmp_path: Path) -> None:
    key = tmp_path / "server.key"
    key.write_bytes(b"old key")
    key.chmod(0o600)
    assert backup(key) == tmp_path / "server.key.bak"
    assert (tmp_path / "server.key.bak").read_bytes() == b"old key"
    assert stat.S_IMODE((tmp_path / "server.key.bak").stat().st_mode) == 0o600
    assert backup(key) == tmp_path / "server.key.bak.1"
    assert backup(tmp_path / "absent") is None


@pytest.mark.parametrize("kind", ["fifo", "folder", "link to /dev/zero", "/dev/full"])
def test_only_regular_files_are_backed_up(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "out.key"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    elif kind == "link to /dev/zero":
        target.symlink_to("/dev/zero")
    else:
        target = Path("/dev/full")
    before = sorted(os.listdir(target.parent))
    with pytest.raises(InvalidInput) as caught:
        backup(target)
    assert str(caught.value).startswith(f"{target} exists and is ")
    assert "certflow only replaces regular files" in str(caught.value)
    assert sorted(os.listdir(target.parent)) == before  # nothing written


def test_a_target_larger_than_the_limit_is_not_backed_up(tmp_path: Path) -> None:
    big = tmp_path / "big.key"
    with big.open("wb") as handle:
        handle.truncate(LIMIT + 1)  # sparse: the reader must not need to read it
    with pytest.raises(InvalidInput, match=r"big\.key exists and larger than 1 MiB"):
        backup(big)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["big.key"]


def test_files_backed_up_together_share_one_number(tmp_path: Path) -> None:
    key, csr = tmp_path / "server.key", tmp_path / "server.csr"
    key.write_bytes(b"k")
    csr.write_bytes(b"c")
    (tmp_path / "server.csr.bak").write_bytes(b"an older csr")  # its key backup was deleted
    assert backup_together([key, csr]) == (
        tmp_path / "server.key.bak.1",
        tmp_path / "server.csr.bak.1",
    )
    assert (tmp_path / "server.csr.bak").read_bytes() == b"an older csr"
    assert not (tmp_path / "server.key.bak").exists()


# --- writes ---------------------------------------------------------------------------------


def test_a_write_into_a_missing_folder_names_the_target(tmp_path: Path) -> None:
    target = tmp_path / "no" / "such" / "server.key"
    with pytest.raises(InvalidInput) as caught:
        atomic_write(target, b"key", mode=0o600)
    assert str(caught.value) == (
        f"{target}: cannot write it: the folder {target.parent} does not exist"
    )
    assert ".tmp" not in str(caught.value)


def test_a_failed_write_names_the_target() -> None:
    # sysfs refuses new files even to root, so creating the temporary file fails there.
    with pytest.raises(PermissionError) as caught:
        atomic_write("/sys/certflow-test.key", b"key", mode=0o600)
    assert caught.value.filename == "/sys/certflow-test.key"
    assert ".tmp" not in str(caught.value)


@pytest.mark.parametrize("kind", ["fifo", "folder", "link to /dev/zero"])
def test_a_write_never_replaces_something_that_is_not_a_file(kind: str, tmp_path: Path) -> None:
    target = tmp_path / "out"
    if kind == "fifo":
        os.mkfifo(target)
    elif kind == "folder":
        target.mkdir()
    else:
        target.symlink_to("/dev/zero")
    with pytest.raises(InvalidInput, match="not a regular file"):
        atomic_write(target, b"data", mode=0o644)
    assert [p.name for p in tmp_path.iterdir()] == ["out"]


def _reads_without_the_reader(node: ast.Call) -> bool:
    """Whether a call reads a file other than through read_bounded: an ``open`` that
    may read, or a read with no bound. Writing is not reading: ``open(path, "x")`` (a
    literal mode without ``r`` or ``+``) and ``os.open(path, os.O_WRONLY)``; and a
    ``read(n)``/``readline(n)`` of a stream (standard input) is bounded by its ``n``."""
    func = node.func
    called = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
    if called in {"read", "readline"}:
        return not node.args
    if called == "open":
        flags = [*node.args[1:2], *(k.value for k in node.keywords if k.arg in {"mode", "flags"})]
        for flag in flags:
            if isinstance(flag, ast.Constant) and isinstance(flag.value, str):
                return "r" in flag.value or "+" in flag.value
            if isinstance(flag, ast.Attribute) and flag.attr == "O_WRONLY":
                return False
        return True
    return called in {"read_bytes", "read_text", "fdopen", "readlines"}


def test_only_the_reader_opens_files_for_reading() -> None:
    """Every read of the certificate tools and the command line goes through read_bounded.

    (The pure core and the simulation read no files.)
    """
    package = Path(__file__).resolve().parents[2] / "certflow"
    offences = []
    modules = [*(package / "certs").rglob("*.py"), *(package / "cli").rglob("*.py")]
    for path in sorted(modules):
        if path.name == "_files.py" and path.parent.name == "certs":
            continue  # the reader itself
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _reads_without_the_reader(node):
                offences.append(f"{path.relative_to(package.parent)}:{node.lineno}")
    assert offences == []


@pytest.mark.parametrize(
    ("call", "reads"),
    [
        ("open(p)", True),
        ("open(p, 'rb')", True),
        ("open(p, 'r+')", True),
        ("open(p, mode)", True),
        ("open(p, 'x', encoding='utf-8')", False),
        ("open(p, mode='wb')", False),
        ("os.open(os.devnull, os.O_WRONLY)", False),
        ("os.open(p, os.O_RDONLY)", True),
        ("sys.stdin.buffer.read()", True),
        ("sys.stdin.buffer.read(LIMIT + 1)", False),
        ("p.read_bytes()", True),
        ("p.read_text()", True),
        ("f.readlines()", True),
        ("os.fdopen(3)", True),
    ],
)
def test_the_rule_tells_a_read_from_a_write_and_a_bounded_read(call: str, reads: bool) -> None:
    (statement,) = ast.parse(call).body
    assert isinstance(statement, ast.Expr)
    assert isinstance(statement.value, ast.Call)
    assert _reads_without_the_reader(statement.value) is reads
