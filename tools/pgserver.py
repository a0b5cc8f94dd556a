"""A throwaway PostgreSQL server for the tests: a real server, never a mock.

``LocalPostgres`` runs ``initdb`` into a fresh temporary folder (in memory, under /dev/shm,
when there is room) and starts the server on a free port of 127.0.0.1 with durability
switched off (the data is thrown away, so fsync only costs time); ``settings`` overrides
that (``benchmarks/bench_store.py`` switches fsync back on). ``tests/conftest.py`` starts
one per test session and gives each test a database of its own.

``initdb`` and ``pg_ctl`` refuse to run as root, so as root they run as the ``postgres``
user. The server is stopped and its folder removed by ``stop()``, at interpreter exit
(atexit), and, if this process dies without running either (SIGKILL, SIGTERM, a crash in C
code), by a small watchdog process that notices the end of its pipe from this one.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import pwd
import re
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.parse
from collections.abc import Mapping
from pathlib import Path
from types import TracebackType
from typing import IO, TYPE_CHECKING, Self

if TYPE_CHECKING:
    from psycopg.sql import Composed

__all__ = ["LocalPostgres", "PostgresUnavailable", "find_bindir"]

HOST = "127.0.0.1"
USER = "certflow"
SERVICE_USER = "postgres"
BINDIR_VARIABLE = "CERTFLOW_PG_BINDIR"
DEBIAN_ROOT = Path("/usr/lib/postgresql")
HOW_TO_GET = (
    "install the server (Debian/Ubuntu: `apt-get install postgresql`) "
    f"or set {BINDIR_VARIABLE} to the folder holding initdb and pg_ctl"
)
LOG_TAIL_BYTES = 4096
# Memory-backed /dev/shm when it has room: on a disk, creating and dropping a database per
# test costs ~80 ms (the file system, even with fsync off); in memory ~8 ms.
SHM = Path("/dev/shm")
SHM_MINIMUM_FREE = 2 << 30
START_TIMEOUT = 30
PORT_ATTEMPTS = 3
# Durability off (the data is thrown away); TCP on loopback only; room for the fault tests'
# many clients.
SERVER_SETTINGS = (
    "-c fsync=off -c synchronous_commit=off -c full_page_writes=off "
    f"-c listen_addresses={HOST} -c max_connections=200"
)
_DATABASE_PREFIX = re.compile(r"[a-z_][a-z0-9_]{0,39}")
_SETTING_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]*")


class PostgresUnavailable(Exception):
    """No PostgreSQL server can be started here; the message says why and what to do."""


def _has_server(folder: Path) -> bool:
    return (folder / "initdb").is_file() and (folder / "pg_ctl").is_file()


def _debian_version(folder: Path) -> tuple[int, ...]:
    try:
        return tuple(int(part) for part in folder.name.split("."))
    except ValueError:
        return ()


def find_bindir() -> Path:
    """The folder of ``initdb``/``pg_ctl``: ``$CERTFLOW_PG_BINDIR``, else Debian's newest
    ``/usr/lib/postgresql/<version>/bin``, else ``pg_config --bindir``, else ``initdb`` on
    the PATH (Debian puts only client programs on the PATH, hence the search)."""
    chosen = os.environ.get(BINDIR_VARIABLE)
    if chosen:
        folder = Path(chosen)
        if _has_server(folder):
            return folder
        raise PostgresUnavailable(
            f"{BINDIR_VARIABLE}={chosen}: no initdb and pg_ctl in that folder; "
            f"point it at a PostgreSQL bin folder, or unset it and {HOW_TO_GET}"
        )
    looked = []
    if DEBIAN_ROOT.is_dir():
        versions = [p for p in DEBIAN_ROOT.iterdir() if _debian_version(p)]
        for version in sorted(versions, key=_debian_version, reverse=True):
            if _has_server(version / "bin"):
                return version / "bin"
    looked.append(f"{DEBIAN_ROOT}/<version>/bin")
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            out = subprocess.run(
                [pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True
            )
            if _has_server(Path(out.stdout.strip())):
                return Path(out.stdout.strip())
        looked.append(f"`pg_config --bindir` ({pg_config})")
    initdb = shutil.which("initdb")
    if initdb:
        # Resolve a symbolic link: pg_ctl sits next to the real initdb, not the link.
        folder = Path(initdb).resolve().parent
        if _has_server(folder):
            return folder
    looked.append("initdb on the PATH")
    raise PostgresUnavailable(
        f"no PostgreSQL server programs (initdb, pg_ctl) found: looked in {', '.join(looked)}; "
        + HOW_TO_GET
    )


def _default_parent() -> Path | None:
    """Where to make the temporary folder: ``/dev/shm`` if it has room (a small one, such
    as Docker's 64 MB default, would fill up), else ``None``: tempfile's choice ($TMPDIR)."""
    try:
        space = os.statvfs(SHM)
    except OSError:
        return None
    roomy = space.f_bavail * space.f_frsize >= SHM_MINIMUM_FREE
    return SHM if roomy and os.access(SHM, os.W_OK | os.X_OK) else None


def _service_account() -> tuple[int, int] | None:
    """The uid and gid to run initdb/pg_ctl as: the ``postgres`` user when we are root
    (both refuse to run as root), else ``None`` for ourselves."""
    if os.geteuid() != 0:
        return None
    try:
        account = pwd.getpwnam(SERVICE_USER)
    except KeyError:
        raise PostgresUnavailable(
            f"running as root, and initdb/pg_ctl refuse to run as root, but there is no "
            f"{SERVICE_USER!r} user to run them as: create one (`useradd --system "
            f"{SERVICE_USER}`, which `apt-get install postgresql` does) or run the tests "
            "as another user"
        ) from None
    return account.pw_uid, account.pw_gid


def _clean_environment() -> dict[str, str]:
    """Our environment without ``PG*`` variables, which would change libpq's and the
    server's defaults (PGPORT, PGDATA, PGOPTIONS...)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PG")}


def _run(
    bindir: Path,
    account: tuple[int, int] | None,
    cwd: Path,
    program: str,
    *args: str,
    timeout: float = START_TIMEOUT + 15,
) -> subprocess.CompletedProcess[str]:
    """``program`` from ``bindir``, as the service account if there is one; never raises
    on a non-zero exit (the caller reads the output)."""
    user, group = account if account is not None else (None, None)
    extra_groups: list[int] | None = None if account is None else []
    return subprocess.run(
        [str(bindir / program), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=_clean_environment(),
        timeout=timeout,
        check=False,
        user=user,
        group=group,
        extra_groups=extra_groups,
    )


def _free_port() -> int:
    """A port nobody listens on right now (another process may take it before the server
    does: the caller retries)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def _tail(path: Path, size: int = LOG_TAIL_BYTES) -> str:
    """The last ``size`` bytes of ``path`` as text (a log may be large)."""
    try:
        with path.open("rb") as file:
            file.seek(0, os.SEEK_END)
            file.seek(max(0, file.tell() - size))
            return file.read().decode("utf-8", "replace")
    except OSError as error:
        return f"(no log: {error})"


def _stop_server(bindir: Path, account: tuple[int, int] | None, root: Path, mode: str) -> None:
    """Stop the server of ``root`` if one runs, then remove ``root``. Used by ``stop()``
    and by the watchdog, so it must work from either process."""
    data = root / "data"
    if (data / "postmaster.pid").exists():
        result = _run(bindir, account, root, "pg_ctl", "stop", "-D", str(data), "-m", mode, "-w")
        if result.returncode != 0 and (data / "postmaster.pid").exists():
            _run(bindir, account, root, "pg_ctl", "stop", "-D", str(data), "-m", "immediate")
    shutil.rmtree(root, ignore_errors=True)


class LocalPostgres:
    """A PostgreSQL server of its own in a temporary folder, for tests.

    Use it as a context manager, or call ``start()`` and ``stop()``. Connect as the
    superuser ``certflow`` without a password (``trust``) at ``url()``, or to a fresh
    database made by ``create_database()``.
    """

    def __init__(
        self,
        bindir: Path | None = None,
        parent: Path | None = None,
        settings: Mapping[str, str] | None = None,
    ) -> None:
        """``bindir``: the folder of initdb and pg_ctl (default: ``find_bindir()``);
        ``parent``: where to make the temporary folder (default: /dev/shm if roomy, else
        $TMPDIR); ``settings``: server settings (``{"fsync": "on"}``), each passed as
        ``-c name=value`` after the defaults (``SERVER_SETTINGS``), so overriding them."""
        self._bindir = bindir
        self._parent = parent
        self._settings = dict(settings or {})
        for name in self._settings:
            if not _SETTING_NAME.fullmatch(name):
                raise ValueError(f"server setting {name!r}: letters, digits, _ and .")
        self._root: Path | None = None
        self._port: int | None = None
        self._account: tuple[int, int] | None = None
        self._watchdog: subprocess.Popen[bytes] | None = None
        self._owner = os.getpid()
        self.startup_seconds: float | None = None

    # -- life cycle ------------------------------------------------------------------

    def start(self) -> Self:
        """Create the cluster and start the server; raise ``PostgresUnavailable`` with the
        reason (and the server log's tail) if that cannot be done."""
        if self._root is not None:
            raise RuntimeError("this LocalPostgres is already started")
        began = time.perf_counter()
        try:
            import psycopg  # noqa: F401  (fail here, with a hint, rather than on first use)
        except ImportError as error:
            raise PostgresUnavailable(
                f"psycopg is not installed ({error}): pip install 'psycopg[binary]>=3.2'"
            ) from None
        bindir = self._bindir or find_bindir()
        if not _has_server(bindir):
            raise PostgresUnavailable(f"{bindir}: no initdb and pg_ctl there; {HOW_TO_GET}")
        self._bindir = bindir
        self._account = _service_account()
        self._owner = os.getpid()
        # mkdtemp, not pytest's tmp_path: the server user must be able to reach the folder.
        parent = self._parent or _default_parent()
        self._root = Path(tempfile.mkdtemp(prefix="certflow-pg-", dir=parent))
        atexit.register(self.stop)
        try:
            self._prepare_folder()
            self._watchdog = self._start_watchdog()
            self._initdb()
            self._start_on_free_port()
        except BaseException:
            self.stop()
            raise
        self.startup_seconds = time.perf_counter() - began
        return self

    def stop(self) -> None:
        """Stop the server (fast shutdown: clients are disconnected) and remove its folder.
        Safe to call twice, or on a server that never started. Does nothing in a forked
        child (its atexit runs this too): the server is its parent's."""
        if os.getpid() != self._owner:
            return
        atexit.unregister(self.stop)
        root, self._root, self._port = self._root, None, None
        if root is not None and self._bindir is not None:
            _stop_server(self._bindir, self._account, root, "fast")
        if self._watchdog is not None:
            # The folder is gone, so the watchdog finds nothing to do and exits.
            watchdog, self._watchdog = self._watchdog, None
            if watchdog.stdin is not None:
                with contextlib.suppress(OSError):
                    watchdog.stdin.close()
            try:
                watchdog.wait(timeout=10)
            except subprocess.TimeoutExpired:
                watchdog.kill()
                watchdog.wait()

    def restart(self) -> None:
        """Restart the server on the same port (fast shutdown: clients are disconnected and
        must reconnect), as a fault test does while clients write."""
        root = self._started()
        result = self._pg_ctl("restart", "-m", "fast", *self._start_options(root, self.port))
        if result.returncode != 0:
            raise PostgresUnavailable(self._failure("pg_ctl restart", result))

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        kind: type[BaseException] | None,
        error: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses -------------------------------------------------------------------

    @property
    def host(self) -> str:
        """The address the server listens on (TCP on loopback only)."""
        return HOST

    @property
    def port(self) -> int:
        """The server's TCP port."""
        if self._port is None:
            raise RuntimeError("the server is not started")
        return self._port

    @property
    def folder(self) -> Path:
        """The temporary folder holding the cluster, socket and log (removed by stop())."""
        return self._started()

    @property
    def log_path(self) -> Path:
        """The server's log file."""
        return self._started() / "server.log"

    def url(self, dbname: str = "postgres", password: str | None = None) -> str:
        """``postgresql://certflow@127.0.0.1:PORT/DBNAME``; with ``password``, in the URL
        (percent-encoded) although the server trusts every local connection: for testing
        that a password never shows in messages."""
        user = USER
        if password is not None:
            user += ":" + urllib.parse.quote(password, safe="")
        return f"postgresql://{user}@{HOST}:{self.port}/{urllib.parse.quote(dbname, safe='')}"

    # -- databases -------------------------------------------------------------------

    def create_database(self, prefix: str = "t") -> str:
        """A new, empty database with a unique name starting with ``prefix``; its URL.

        Copied from ``template0``, which nobody can connect to or change, so the copy is
        always empty and never blocked by a client of the template; with FILE_COPY, which
        measured ~20% faster here than WAL_LOG, PostgreSQL 15's default (fsync is off).
        """
        if not _DATABASE_PREFIX.fullmatch(prefix):
            raise ValueError(f"database prefix {prefix!r}: lower-case letters, digits and _")
        from psycopg import sql

        name = f"{prefix}_{secrets.token_hex(6)}"
        create = "CREATE DATABASE {} TEMPLATE template0 STRATEGY FILE_COPY"
        self._admin(sql.SQL(create).format(sql.Identifier(name)))
        return self.url(name)

    def drop_database(self, name: str) -> None:
        """Drop database ``name`` if it exists, disconnecting its clients (WITH (FORCE))."""
        from psycopg import sql

        drop = "DROP DATABASE IF EXISTS {} WITH (FORCE)"
        self._admin(sql.SQL(drop).format(sql.Identifier(name)))

    def _admin(self, statement: Composed) -> None:
        # psycopg is imported on use, so that importing this module (conftest.py does) works
        # without it. CREATE/DROP DATABASE cannot run in a transaction: autocommit.
        import psycopg

        with psycopg.connect(self.url(), autocommit=True, connect_timeout=10) as connection:
            connection.execute(statement)

    # -- internals -------------------------------------------------------------------

    def _started(self) -> Path:
        if self._root is None:
            raise RuntimeError("the server is not started")
        return self._root

    def _prepare_folder(self) -> None:
        """``ROOT`` (0755, reachable by the server user) holds ``data`` (0700, as initdb
        requires), the socket folder and the log, all owned by the server's user."""
        root = self._started()
        root.chmod(0o755)
        (root / "data").mkdir(mode=0o700)
        (root / "socket").mkdir(mode=0o700)
        if self._account is not None:
            uid, gid = self._account
            for path in (root, root / "data", root / "socket"):
                os.chown(path, uid, gid)
            # The server user must reach the folder through every parent ($TMPDIR may be
            # private to root): say so rather than let initdb fail obscurely.
            for parent in root.parents:
                if not parent.stat().st_mode & 0o001:
                    raise PostgresUnavailable(
                        f"{parent} is not searchable by other users, so the {SERVICE_USER} "
                        f"user cannot reach {root}: set TMPDIR to a folder it can reach "
                        "(such as /tmp)"
                    )

    def _start_watchdog(self) -> subprocess.Popen[bytes]:
        """A process that stops the server and removes the folder once its stdin closes
        with the folder still there: when this process died without cleaning up. Its own
        session: a Ctrl-C at the terminal does not reach it."""
        root = self._started()
        assert self._bindir is not None
        account = "" if self._account is None else f"{self._account[0]}:{self._account[1]}"
        return subprocess.Popen(
            [sys.executable, "-I", __file__, "--watchdog", str(self._bindir), str(root), account],
            stdin=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )

    def _pg_ctl(self, *args: str) -> subprocess.CompletedProcess[str]:
        assert self._bindir is not None
        return _run(self._bindir, self._account, self._started(), "pg_ctl", *args)

    def _initdb(self) -> None:
        assert self._bindir is not None
        root = self._started()
        result = _run(
            self._bindir,
            self._account,
            root,
            "initdb",
            "--no-sync",
            "--no-instructions",
            "-D",
            str(root / "data"),
            "-U",
            USER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--locale=C",
        )
        if result.returncode != 0:
            raise PostgresUnavailable(self._failure("initdb", result))

    def _start_options(self, root: Path, port: int) -> tuple[str, ...]:
        # pg_ctl hands -o to a shell: quote the path and the values in it. Of two -c for
        # one setting, the later wins.
        options = f"{SERVER_SETTINGS} -p {port} -k {shlex.quote(str(root / 'socket'))}"
        for name, value in self._settings.items():
            options += f" -c {shlex.quote(f'{name}={value}')}"
        data, log = str(root / "data"), str(root / "server.log")
        return ("-D", data, "-w", "-t", str(START_TIMEOUT), "-l", log, "-o", options)

    def _start_on_free_port(self) -> None:
        """Start on a free port, trying another if someone took it in the meantime."""
        root, log = self._started(), self.log_path
        for attempt in range(1, PORT_ATTEMPTS + 1):
            port = _free_port()
            log_size = log.stat().st_size if log.exists() else 0
            result = self._pg_ctl("start", *self._start_options(root, port))
            if result.returncode == 0:
                self._port = port
                return
            with log.open("rb") as file:
                file.seek(log_size)
                taken = b"Address already in use" in file.read(1 << 20)
            if not taken or attempt == PORT_ATTEMPTS:
                raise PostgresUnavailable(self._failure("pg_ctl start", result))

    def _failure(self, what: str, result: subprocess.CompletedProcess[str]) -> str:
        root = self._started()
        output = (result.stdout + result.stderr).strip()[-LOG_TAIL_BYTES:]
        message = f"{what} (in {self._bindir}) failed with exit status {result.returncode}"
        if output:
            message += f":\n{output}"
        if (root / "server.log").exists():
            message += f"\n--- end of the server log ---\n{_tail(root / 'server.log')}"
        return message


def _watchdog(bindir: str, root: str, account: str) -> None:
    """Wait for the end of stdin (the parent closed it, or died), then clean up if the
    parent did not."""
    stdin: IO[bytes] = sys.stdin.buffer
    while stdin.read(65536):
        pass
    if Path(root).exists():
        owner = None
        if account:
            uid, gid = account.split(":")
            owner = (int(uid), int(gid))
        _stop_server(Path(bindir), owner, Path(root), "immediate")


if __name__ == "__main__":
    if sys.argv[1:2] == ["--watchdog"] and len(sys.argv) == 5:
        _watchdog(*sys.argv[2:5])
    else:
        with LocalPostgres() as server:
            print(f"{server.url()}  (started in {server.startup_seconds:.2f} s; Enter stops it)")
            with contextlib.suppress(KeyboardInterrupt, EOFError):
                input()
