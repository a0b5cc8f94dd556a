"""The exec handler: the effect's JSON on standard input, its id, kind and rollout in the
environment; a failing or slow command is a failure with its standard error, cut."""

from __future__ import annotations

import json
import time
from datetime import timedelta
from pathlib import Path

import pytest

from certflow.worker import DeliveryFailed, ExecHandler, ExecSettings, effect_document
from tests.worker.timeline import NO_STORE, T0, effect


def test_the_command_reads_the_effect_and_its_environment(sink_script: Path) -> None:
    stored = effect(effect_id="mdm:4:1")
    ExecHandler(ExecSettings((str(sink_script),)))(stored, NO_STORE, T0)
    [line] = (sink_script.parent / "sink.log").read_text().splitlines()
    assert json.loads(line) == ["mdm:4:1", "PushRoot", "mdm", effect_document(stored)]


def test_a_nonzero_exit_is_a_failure_with_the_end_of_stderr(sink_script: Path) -> None:
    (sink_script.parent / "FAIL").touch()
    with pytest.raises(DeliveryFailed, match=r"sink.py: exit status 3: mdm-push: cannot reach"):
        ExecHandler(ExecSettings((str(sink_script),)))(effect(), NO_STORE, T0)
    assert not (sink_script.parent / "sink.log").exists()


def test_stderr_is_cut(tmp_path: Path) -> None:
    script = tmp_path / "noisy.sh"
    script.write_text("#!/bin/sh\nhead -c 5000 /dev/zero | tr '\\0' x >&2\necho END >&2\nexit 1\n")
    script.chmod(0o755)
    with pytest.raises(DeliveryFailed) as caught:
        ExecHandler(ExecSettings((str(script),)))(effect(), NO_STORE, T0)
    message = str(caught.value)
    assert message.endswith("END")
    assert len(message) < 600


def test_a_command_past_its_timeout_is_killed(tmp_path: Path) -> None:
    script = tmp_path / "slow.sh"
    script.write_text("#!/bin/sh\nexec sleep 5\n")
    script.chmod(0o755)
    started = time.monotonic()
    with pytest.raises(DeliveryFailed, match=r"slow.sh: still running after 0.3s, killed"):
        ExecHandler(ExecSettings((str(script),), timedelta(seconds=0.3)))(effect(), NO_STORE, T0)
    assert time.monotonic() - started < 2
