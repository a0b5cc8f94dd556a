"""The exec handler: a command run per effect, the effect's JSON on standard input."""

from __future__ import annotations

import os
import subprocess
from datetime import datetime

from certflow.store import Store, StoredEffect
from certflow.worker._config import ExecSettings
from certflow.worker._payload import DeliveryFailed, effect_body

__all__ = ["ExecHandler"]

# How much of a failing command's standard error the delivery record keeps (its end:
# the last lines say why).
_STDERR_SHOWN = 500


class ExecHandler:
    """Runs ``settings.command`` with :func:`~certflow.worker.effect_body` on standard
    input and ``CERTFLOW_EFFECT_ID``, ``CERTFLOW_EFFECT_KIND`` and ``CERTFLOW_ROLLOUT`` in
    its environment (beside the worker's own). Exit 0 is delivered; another exit status,
    a signal, or running past ``settings.timeout`` (the command is killed) raises
    :class:`DeliveryFailed` with the end of its standard error."""

    name = "exec"

    def __init__(self, settings: ExecSettings) -> None:
        self.settings = settings

    def __call__(self, stored: StoredEffect, store: Store, now: datetime) -> None:
        environment = {
            **os.environ,
            "CERTFLOW_EFFECT_ID": stored.id,
            "CERTFLOW_EFFECT_KIND": type(stored.effect).__name__,
            "CERTFLOW_ROLLOUT": stored.rollout,
        }
        program = self.settings.command[0]
        limit = self.settings.timeout.total_seconds()
        try:
            done = subprocess.run(
                self.settings.command,
                input=effect_body(stored),
                capture_output=True,
                env=environment,
                timeout=limit,
                check=False,
            )
        except subprocess.TimeoutExpired as error:
            raise DeliveryFailed(
                f"{program}: still running after {limit:g}s, killed{_said(error.stderr)}"
            ) from None
        except OSError as error:
            raise DeliveryFailed(f"{program}: cannot run it: {error.strerror or error}") from None
        if done.returncode != 0:
            status = (
                f"killed by signal {-done.returncode}"
                if done.returncode < 0
                else f"exit status {done.returncode}"
            )
            raise DeliveryFailed(f"{program}: {status}{_said(done.stderr)}")


def _said(stderr: bytes | str | None) -> str:
    if not stderr:
        return ""
    text = stderr.decode("utf-8", "replace") if isinstance(stderr, bytes) else stderr
    text = " ".join(text.split())
    if len(text) > _STDERR_SHOWN:
        text = "..." + text[-_STDERR_SHOWN:]
    return f": {text}" if text else ""
