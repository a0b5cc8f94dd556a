"""``certflow rollout export``: the rollout's public certificates, written from the database.

The files are ``certflow cert export``'s, named as it names them and written by the same
code (:func:`certflow.certs.export`, from :func:`certflow.certs.material_of` of the
rollout's identity): the root to distribute (``root.pem``, ``root.cer``), the chain
(``chain.pem``, ``fullchain.pem``) and the leaf (``server.crt``). A rollout holds no key,
so there is never a ``server.pfx``. A read: the database is opened read-only. It registers
on the rollout group when imported.
"""

from __future__ import annotations

from pathlib import Path

import attrs
import click

from certflow.cli._app import EXIT_OK, parse_now, writing
from certflow.cli._certs import out_folder, print_exported
from certflow.cli._rollout import _common, _name, rollout_group
from certflow.cli._rollout_store import store_for
from certflow.core.errors import InvalidInput


@rollout_group.command("export")
@_name
@click.option(
    "--out",
    required=True,
    metavar="DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="The folder to write the files into (it must exist); existing files are backed up first.",
)
@_common
def rollout_export(name: str, out: Path, db: str, now: str | None, as_json: bool) -> int:
    """Write the rollout's public certificates from the database into --out.

    root.pem and root.cer (DER): the root to distribute to devices; chain.pem (the
    intermediates), fullchain.pem (the certificate and them) and server.crt (the
    certificate), as `certflow cert export` names them. Existing files are backed up
    first. A rollout made without certificates (from dates alone) has nothing to export:
    an error, and nothing is written.
    """
    from certflow import certs  # cryptography: not for `rollout --help`, which loads this

    parse_now(now)
    out_folder(out)
    with store_for(db, real_clock=now is None, read_only=True) as store:
        identity = store.plan(name).identity
    if identity is None:
        raise InvalidInput(
            f"rollout {name} has no identity (it was made from dates alone), so the "
            "database holds no certificate to export; nothing was written"
        )
    with writing(f"writing files into {out}"):
        exported = certs.export(certs.material_of(identity), out)
    # The rollout never holds a key: no server.pfx is expected, so none is reported missing.
    skipped = tuple(item for item in exported.skipped if item[0] != certs.SERVER_PFX)
    exported = attrs.evolve(exported, skipped=skipped)
    print_exported(exported, out, as_json, rollout=name)
    return EXIT_OK
