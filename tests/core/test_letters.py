"""The e-mails' words (:func:`certflow.core.letters.describe_letter`): each effect as a
letter's subject and first paragraphs, in the words of :mod:`certflow.core.wording` and
the command line's spellings."""

from __future__ import annotations

import certflow as cf
from certflow.core.letters import CLI_COMMANDS, CLI_NAMES, describe_letter
from certflow.core.wording import describe_trust
from tests.core.strategies import day

FORCED = cf.ImportCertificate(forced=True, due_at=day(21))


def test_a_notice_letter_says_the_checkpoint_the_progress_and_what_comes() -> None:
    notice = cf.Notify(
        1,
        day(7),
        False,
        day(6),
        in_scope=2000,
        trusting=1879,
        failed=21,
        unanswered=100,
        outcome="postpone",
        extension_available=True,
    )
    subject, lines = describe_letter(notice, "r1", 3, names=CLI_COMMANDS)
    assert subject == "checkpoint 1 of 3 on 2026-07-08 09:00 UTC"
    assert lines == [
        "Rollout r1. Checkpoint 1 of 3 is on 2026-07-08 09:00 UTC: the new certificate is "
        "imported then if the import condition holds.",
        "",
        # The share in the words the command line's story uses (describe_trust).
        "Progress on 2026-07-07 09:00 UTC: 1,879 of 2,000 in-scope devices trust the root "
        "(94.0%); 21 failed; 100 pushed and not answered yet.",
        "If nothing changes: the import is postponed to the next checkpoint.",
        "A manual extension is available now (`certflow rollout extend r1`).",
        "",
    ]
    assert describe_trust(1879, 2000) in lines[2]
    # In the API's words, the extension is the command's class.
    _, api = describe_letter(notice, "r1", 3)
    assert api[4] == "A manual extension is available now (ExtendManually)."


def test_the_deadline_and_expiry_letters_say_what_decides_the_import() -> None:
    deadline = cf.Notify(
        3, day(21), True, day(20), in_scope=5, trusting=1, outcome="forced import", cut_off=4
    )
    subject, lines = describe_letter(deadline, "r1", 3)
    assert subject == "the deadline is 2026-07-22 09:00 UTC"
    assert lines[0] == (
        "Rollout r1. Checkpoint 3 of 3 on 2026-07-22 09:00 UTC is the deadline: the new "
        "certificate is imported then, whatever the state of the fleet."
    )
    assert lines[3] == (
        "If nothing changes: the new certificate is imported by force; 4 devices that do "
        "not trust the root lose contact and must re-enrol."
    )
    assert lines[4] == "A manual extension is not available now."
    expiry = cf.Notify(2, day(14), False, day(13), expiry=True)
    subject, lines = describe_letter(expiry, "r1", 3)
    assert subject == "the current certificate expires on 2026-07-15 09:00 UTC"
    # Stored before notices carried the progress: no progress, no forecast.
    assert lines == [
        "Rollout r1. The current certificate expires on 2026-07-15 09:00 UTC: the new one "
        "is imported then.",
        "",
        "",
    ]


def test_the_end_of_a_rollout_is_a_letter_of_its_own() -> None:
    subject, lines = describe_letter(FORCED, "r1", 3)
    assert subject == "the new certificate was imported, FORCED"
    assert lines[0].startswith("Rollout r1 ended at 2026-07-22 09:00 UTC: the deadline came")
    assert lines[1] == "Restart the server once the certificate is imported."
    subject, lines = describe_letter(cf.ImportCertificate(forced=False, due_at=day(7)), "r1", 3)
    assert subject == "the new certificate is to be imported"
    assert "every device in scope trusts the new root" in lines[0]
    subject, lines = describe_letter(cf.ReenrollmentRequired(("a", "b"), day(21)), "r1", 3)
    assert subject == "2 devices must re-enrol"
    assert lines[0] == (
        "Rollout r1 imported the new certificate by force at 2026-07-22 09:00 UTC. 2 devices "
        "did not trust the root then: they can no longer reach the server and must re-enrol."
    )
    subject, _ = describe_letter(cf.ReenrollmentRequired(("a",), day(21)), "r1", 3)
    assert subject == "1 device must re-enrol"
    subject, lines = describe_letter(cf.RolloutCancelled(day(2)), "r1", 3)
    assert subject == "the rollout was cancelled"
    assert lines[0].startswith("Rollout r1 was cancelled at 2026-07-03 09:00 UTC.")
    # Any other effect: its one line, as the command line words it.
    push = cf.PushRoot(("a",), 1, day(0))
    subject, lines = describe_letter(push, "r1", 3, names=CLI_NAMES)
    assert subject == cf.describe_effect(push, names=CLI_NAMES)
    assert lines == [f"Rollout r1, 2026-07-01 09:00 UTC: {subject}."]
