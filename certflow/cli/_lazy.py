"""Subcommands imported on first use: click's "lazily loading subcommands" pattern.

``certflow --version`` needs none of the commands, and ``certflow rollout report`` one
module of them; importing every command module at start-up cost more than the command
itself (issue 18, item 7: a start-up of at most 0.25 s). So a group lists its commands
from :data:`SUBCOMMANDS` and imports a command's module only when the command is asked
for (to run it, or to show its short help in ``--help``). The module's decorators
register the command on its group, as they did when every module was imported up front.

A command module stays light to import: what only a command needs (the certificate
stack, numpy, the worker, the web console) is imported inside that command's code, so
``--help``, which imports every module of the group it lists, stays fast too.
"""

from __future__ import annotations

import importlib

import click

__all__ = ["SUBCOMMANDS", "LazyGroup", "subcommands"]

#: For each group, by its name (the top-level group is ``main``), the module that defines
#: each of its subcommands. A command missing here is never found; a test compares this
#: table with what the modules register.
SUBCOMMANDS: dict[str, dict[str, str]] = {
    "main": {
        "cert": "certflow.cli._certs",
        "csr": "certflow.cli._csr",
        "key": "certflow.cli._key",
        "rollout": "certflow.cli._rollout",
        "serve": "certflow.cli._serve",
        "simulate": "certflow.cli._simulate",
        "worker": "certflow.cli._worker",
    },
    "rollout": {
        **dict.fromkeys(
            ["new", "distribute", "proceed", "import-now", "extend", "cancel"],
            "certflow.cli._rollout",
        ),
        **dict.fromkeys(
            ["report", "retry", "enroll", "unenroll", "reenrolled", "restarted"],
            "certflow.cli._rollout_devices",
        ),
        **dict.fromkeys(["tick", "effects", "ack"], "certflow.cli._rollout_outbox"),
        **dict.fromkeys(["status", "history", "list", "forecast"], "certflow.cli._rollout_read"),
        "export": "certflow.cli._rollout_export",
    },
}


class LazyGroup(click.Group):
    """A group whose subcommands are imported when first asked for (:data:`SUBCOMMANDS`).

    Its own ``group()`` decorator makes lazy groups too (``group_class``), so
    ``@main.group()`` in a command module needs nothing more."""

    # click: a group made by `group()` is of this group's own class.
    group_class: type[click.Group | type] | None = type

    def _modules(self) -> dict[str, str]:
        return SUBCOMMANDS.get(self.name or "", {})

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(self.commands.keys() | self._modules().keys())

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        module = self._modules().get(cmd_name)
        if cmd_name not in self.commands and module is not None:
            importlib.import_module(module)  # its decorators add the command to this group
            if cmd_name not in self.commands:  # the table is wrong: a bug, not bad input
                raise RuntimeError(f"{module} does not define {self.name} {cmd_name}")
        return super().get_command(ctx, cmd_name)


def subcommands(group: click.Group) -> dict[str, click.Command]:
    """Every subcommand of ``group``, by name, each module imported. What walks the
    command tree (the tests, the docs) reads this: ``group.commands`` holds only the
    commands loaded so far."""
    context = click.Context(group)
    found: dict[str, click.Command] = {}
    for name in group.list_commands(context):
        command = group.get_command(context, name)
        if command is None:  # a plain group's list and its commands disagree: a bug
            raise RuntimeError(f"{group.name} lists {name} but has no such command")
        found[name] = command
    return found
