"""``certflow simulate``: the main job, as the command line runs it."""

from __future__ import annotations

import pytest

from certflow.cli import EXIT_OK, main


def test_simulate_quiet_prints_one_result_line(capsys: pytest.CaptureFixture[str]) -> None:
    code = main.main(["simulate", "--devices", "300", "--quiet"], standalone_mode=False)
    assert code == EXIT_OK
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 1
    assert "trust the root" in lines[0]


def test_simulate_ends_with_the_wall_time(capsys: pytest.CaptureFixture[str]) -> None:
    code = main.main(["simulate", "--devices", "200"], standalone_mode=False)
    assert code == EXIT_OK
    assert capsys.readouterr().out.splitlines()[-1].startswith("simulated ")
