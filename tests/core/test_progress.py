"""Progress (:mod:`certflow.core.progress`): one definition of how far a rollout has got."""

from __future__ import annotations

from certflow.core.progress import Progress
from tests.core.strategies import build


def test_a_state_the_counts_do_not_name_counts_as_no_device() -> None:
    progress = Progress.of(build(3).plan, {"installed": 2, "pushed": 1})
    assert progress == Progress(in_scope=3, trusting=2, failed=0, unanswered=1, public_root=False)
    assert (progress.untrusting, round(progress.percent, 1)) == (1, 66.7)
    failing = Progress.of(build(1).plan, {"failed": 1})
    assert failing == Progress(in_scope=1, trusting=0, failed=1, unanswered=0, public_root=False)


def test_a_public_root_counts_every_in_scope_device_as_trusting() -> None:
    progress = Progress.of(build(3, public=True).plan, {"pushed": 2, "failed": 1, "removed": 4})
    assert progress == Progress(in_scope=3, trusting=3, failed=0, unanswered=0, public_root=True)
    assert progress.public_root is True
    assert progress.percent == 100.0
