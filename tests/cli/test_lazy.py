"""The command line imports what a command needs when it runs (issue 18, item 7): importing
``certflow.cli`` imports no command, ``rollout report`` neither the certificate stack nor
numpy nor the worker, and every command is still found, the tree as it was.

What a process loads is read in a new interpreter: in this one, other tests have loaded
everything already. The speed itself is measured by ``benchmarks/bench_cli.py``.
"""

from __future__ import annotations

import importlib
import json
import pkgutil
import subprocess
import sys
from pathlib import Path

import click
import pytest

import certflow as cf
import certflow.cli
from certflow.cli import main
from certflow.cli._lazy import SUBCOMMANDS, subcommands
from certflow.store import SqliteStore
from tests.core.strategies import HOUR, T0, build

#: What no start-up path loads: the packages a few commands need (charts, certificates,
#: PostgreSQL, HTTP, the console) and certflow's packages built on them.
HEAVY = (
    "numpy",
    "matplotlib",
    "cryptography",
    "psycopg",
    "httpx",
    "starlette",
    "prometheus_client",
    "certflow.sim",
    "certflow.certs",
    "certflow.web",
    "certflow.worker",
)
#: The modules of certflow.cli that are no command: the group and its lazy loading.
NO_COMMAND = {"certflow.cli", "certflow.cli._app", "certflow.cli._lazy"}
#: Every command as it was registered before the commands loaded lazily (groups end in
#: " *"): the same tree, found by walking the group.
TREE = {
    "cert *", "cert check", "cert export", "cert inspect",
    "csr *", "csr new", "csr openssl-config", "csr show",
    "key *", "key decrypt", "key encrypt",
    "rollout *", "rollout ack", "rollout cancel", "rollout distribute", "rollout effects",
    "rollout enroll", "rollout export", "rollout extend", "rollout forecast",
    "rollout history", "rollout import-now", "rollout list", "rollout new",
    "rollout proceed", "rollout reenrolled", "rollout report", "rollout restarted",
    "rollout retry", "rollout status", "rollout tick", "rollout unenroll",
    "serve", "simulate", "worker",
}  # fmt: skip

# Run in the new interpreter first: at its exit (after the command's sys.exit), the names
# of the modules it loaded go to the file named by the first argument.
PROLOGUE = """\
import atexit, json, sys
_where = sys.argv.pop(1)
def _modules():
    with open(_where, "w") as out:
        json.dump(sorted(sys.modules), out)
atexit.register(_modules)
"""
CERTFLOW = "from certflow.cli import main; sys.exit(main())"  # what the `certflow` script runs


def _run(
    tmp_path: Path, code: str, *args: str
) -> tuple[subprocess.CompletedProcess[str], set[str]]:
    """Run ``code`` with ``args`` in a new interpreter: how it ended, and the modules it had
    loaded."""
    where = tmp_path / "modules.json"
    done = subprocess.run(
        [sys.executable, "-c", PROLOGUE + code, str(where), *args],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done, set(json.loads(where.read_text()))


def _heavy(modules: set[str]) -> set[str]:
    return {m for m in modules for h in HEAVY if m == h or m.startswith(h + ".")}


def test_importing_the_command_line_imports_no_command(tmp_path: Path) -> None:
    _, modules = _run(tmp_path, "import certflow.cli")
    assert _heavy(modules) == set()
    assert {m for m in modules if m.startswith("certflow.cli")} == NO_COMMAND


def test_version_imports_no_command_and_no_store(tmp_path: Path) -> None:
    done, modules = _run(tmp_path, CERTFLOW, "--version")
    assert done.stdout.startswith("certflow, version ")
    assert _heavy(modules) == set()
    assert {m for m in modules if m.startswith("certflow.cli")} == NO_COMMAND
    assert "certflow.store" not in modules


def test_rollout_report_imports_neither_certificates_nor_numpy_nor_the_worker(
    tmp_path: Path,
) -> None:
    db = tmp_path / "r.db"
    with SqliteStore(db) as store:
        store.create("r", build(3))
        store.apply("r", cf.DistributeRoot(), T0)
    now = (T0 + HOUR).isoformat()
    args = ("rollout", "report", "r", "d0", "installed", "--db", str(db), "--now", now)
    _, modules = _run(tmp_path, CERTFLOW, *args)
    assert _heavy(modules) == set()
    assert "certflow.cli._rollout_devices" in modules
    with SqliteStore(db, create=False) as store:  # the report was applied
        assert store.device("r", "d0").state is cf.DeviceState.INSTALLED


@pytest.mark.parametrize("group", [(), ("rollout",)], ids=["certflow", "rollout"])
def test_help_lists_every_command_with_its_short_help_and_no_heavy_import(
    tmp_path: Path, group: tuple[str, ...]
) -> None:
    """The command modules stay light: ``--help`` imports each of them for its short help,
    and loads none of what only a command needs."""
    done, modules = _run(tmp_path, CERTFLOW, *group, "--help")
    assert _heavy(modules) == set()
    listing = done.stdout.split("\nCommands:\n", 1)[1].splitlines()
    shown = {line.split()[0]: line.split(None, 1)[1] for line in listing if line.strip()}
    command: click.Command = main
    for name in group:
        assert isinstance(command, click.Group)
        command = subcommands(command)[name]
    assert isinstance(command, click.Group)
    expected = subcommands(command)
    assert set(shown) == set(expected)
    for name, text in shown.items():  # click cuts a short help to the terminal's width
        assert expected[name].get_short_help_str(limit=1000).startswith(text.rstrip(".")), name


def test_the_command_tree_is_the_same() -> None:
    def walk(group: click.Group, path: str) -> set[str]:
        found: set[str] = set()
        for name, command in subcommands(group).items():
            spelled = f"{path} {name}".strip()
            if isinstance(command, click.Group):
                found |= {f"{spelled} *"} | walk(command, spelled)
            else:
                found.add(spelled)
        return found

    assert walk(main, "") == TREE


def test_the_table_names_the_module_of_every_command_found_outside_its_group() -> None:
    """Once every module of the command line is imported, each group holds exactly what
    it lists: a command that its group's module does not define is in
    :data:`SUBCOMMANDS`, with the module that defines it (or it would never be found)."""
    for module in pkgutil.iter_modules(certflow.cli.__path__, "certflow.cli."):
        importlib.import_module(module.name)

    def check(group: click.Group) -> None:
        table = SUBCOMMANDS.get(group.name or "", {})
        assert set(table) <= set(group.commands), group.name
        home = group.callback.__module__ if group.callback else ""
        for name, command in group.commands.items():
            defined_in = command.callback.__module__ if command.callback else ""
            assert defined_in == table.get(name, home), f"{group.name} {name}"
            if isinstance(command, click.Group):
                check(command)

    check(main)


def test_a_table_entry_whose_module_defines_no_such_command_is_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from certflow.cli._rollout import rollout_group

    monkeypatch.setitem(SUBCOMMANDS["rollout"], "nosuch", "certflow.cli._rollout_read")
    with pytest.raises(
        RuntimeError, match=r"^certflow\.cli\._rollout_read does not define rollout nosuch$"
    ):
        rollout_group.get_command(click.Context(rollout_group), "nosuch")


def test_the_library_imports_no_command_line_and_no_heavy_stack(tmp_path: Path) -> None:
    _, modules = _run(tmp_path, "import certflow")
    assert _heavy(modules) == set()
    assert "click" not in modules
    assert not any(m.startswith("certflow.cli") for m in modules)
