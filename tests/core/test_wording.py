"""Effects and refusals are put into words in one place, certflow.core.wording, for every
front end: the command line, the simulator's story, the example host and the API."""

from __future__ import annotations

import io
import re
import subprocess
import sys
import typing
from datetime import datetime
from pathlib import Path
from typing import Any

import attrs
import click
import pytest

import certflow as cf
from certflow.cli._rollout import describe, rollout_group
from certflow.core import effects, wording
from certflow.core.letters import CLI_COMMANDS, CLI_NAMES, CLI_SPELLINGS
from certflow.core.wording import COMMAND_NAMES, DEVICE
from certflow.demo import run as run_demo
from certflow.sim.fleet import simulate
from certflow.sim.models import Setup
from certflow.store import open_store
from tests.cli.test_rollout import at, cli, new_args, upload  # noqa: F401  (upload: a fixture)
from tests.core.strategies import (
    ADMIN_COMMANDS,
    DAY,
    DEVICE_COMMANDS,
    T0,
    build,
    day,
    distributing,
)

FORCED = cf.ImportCertificate(forced=True, due_at=day(21))
API_NAME = re.compile(r"\b(" + "|".join(COMMAND_NAMES) + r")\b")


def effect_classes() -> list[type]:
    """Every effect class, from the module's ``__all__``; the union must name the same."""
    declared = [getattr(effects, name) for name in effects.__all__ if name != "Effect"]
    assert set(declared) == set(typing.get_args(cf.Effect))
    return declared


def sample(kind: type) -> Any:
    """An instance of an effect class, its fields filled by type: a new class needs no
    edit here, only words."""
    values: dict[object, object] = {
        int: 2,
        bool: True,
        datetime: day(7),
        tuple[str, ...]: ("a", "b"),
        str: "forced import",
        str | None: "ab" * 32,  # a fingerprint the effect names
    }
    fields = attrs.fields(attrs.resolve_types(kind))
    return kind(**{field.name: values[field.type] for field in fields})


# --- effects ---------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", effect_classes(), ids=lambda kind: kind.__name__)
def test_every_effect_class_is_put_into_words(kind: type) -> None:
    effect = sample(kind)
    line = cf.describe_effect(effect)
    assert line
    assert "\n" not in line
    assert kind.__name__ not in line  # words, not a repr
    assert "due_at" not in line


def test_every_effect_class_has_words_of_its_own() -> None:
    lines = [cf.describe_effect(sample(kind)) for kind in effect_classes()]
    assert len(set(lines)) == len(lines)


def test_a_value_that_is_no_effect_has_no_words_rather_than_a_repr() -> None:
    with pytest.raises(AssertionError):
        cf.describe_effect(object())  # type: ignore[arg-type]


def test_each_effect_reads_as_one_line_for_an_administrator() -> None:
    lines = [
        cf.describe_effect(effect)
        for effect in (
            cf.PushRoot(("a", "b", "c", "d"), 1, T0),
            cf.PushRoot(("laptop-1",), 2, T0),
            cf.Notify(1, day(7), False, day(6)),
            cf.Notify(3, day(21), True, day(20)),
            cf.ImportPostponed(1, day(14), day(7)),
            cf.ImportCertificate(False, day(7)),
            FORCED,
            cf.RestartRequired(day(21)),
            cf.ReenrollmentRequired(("x", "y"), day(21)),
            cf.AcknowledgementTimedOut(("p", "q", "r"), day(2)),
        )
    ]
    assert lines == [
        "push root to 4 devices (attempt 1)",
        "push root to laptop-1 (attempt 2)",
        "e-mail administrators: checkpoint 1 on 2026-07-08 09:00 UTC "
        "(import then if the import condition holds)",
        "e-mail administrators: checkpoint 3 on 2026-07-22 09:00 UTC "
        "(the deadline: import then, whatever the fleet's state)",
        "checkpoint 1: the import condition does not hold; import postponed to "
        "2026-07-15 09:00 UTC",
        "import the new certificate",
        "import the new certificate (FORCED: devices not trusting the root lose contact)",
        "restart the server so that it loads the new certificate, then send ServerRestarted",
        "2 devices must re-enrol: x, y",
        "3 pushes timed out, now failed: p, q, r",
    ]


def test_push_root_and_import_certificate_name_the_certificate_when_the_rollout_has_one() -> None:
    root, leaf = "ab" * 32, "cd" * 32
    assert cf.describe_effect(cf.PushRoot(("a", "b"), 1, T0, root)) == (
        f"push root to 2 devices (attempt 1), root SHA-256 {root[:16]}…"
    )
    assert cf.describe_effect(cf.ImportCertificate(False, T0, leaf)) == (
        f"import the new certificate, certificate SHA-256 {leaf[:16]}…"
    )
    assert cf.describe_effect(cf.ImportCertificate(True, T0, leaf)) == (
        "import the new certificate (FORCED: devices not trusting the root lose contact), "
        f"certificate SHA-256 {leaf[:16]}…"
    )


def test_one_device_and_many_are_counted_in_good_english() -> None:
    one, two = ("x",), ("x", "y")
    assert cf.describe_effect(cf.ReenrollmentRequired(one, T0)) == "1 device must re-enrol: x"
    assert cf.describe_effect(cf.ReenrollmentRequired(two, T0)).startswith("2 devices must")
    assert cf.describe_effect(cf.AcknowledgementTimedOut(one, T0)).startswith("1 push timed")
    assert cf.describe_effect(cf.AcknowledgementTimedOut(two, T0)).startswith("2 pushes timed")
    assert cf.describe_effect(cf.PushRoot(two, 1, T0)) == "push root to 2 devices (attempt 1)"
    assert cf.describe_trust(1, 1) == "1 of 1 in-scope device trusts the root (100.0%)"
    assert cf.describe_trust(1, 2) == "1 of 2 in-scope devices trusts the root (50.0%)"
    assert cf.describe_trust(0, 0) == "0 of 0 in-scope devices trust the root (100.0%)"
    assert cf.describe_trust(1_879, 2_000) == (
        "1,879 of 2,000 in-scope devices trust the root (94.0%)"
    )


def test_a_long_list_of_devices_is_cut_short_and_counted() -> None:
    ids = tuple(f"dev-{n:05d}" for n in range(5_000))
    cut_off = cf.ReenrollmentRequired(ids, day(21))
    assert cf.describe_effect(cut_off) == (
        "5,000 devices must re-enrol: dev-00000, dev-00001, dev-00002, ... (4,997 more)"
    )
    assert cf.describe_effect(cut_off, shown=1).endswith(": dev-00000, ... (4,999 more)")
    assert cf.describe_effect(cut_off, shown=0) == "5,000 devices must re-enrol"
    assert cf.describe_effect(cf.PushRoot(ids, 1, T0)) == "push root to 5,000 devices (attempt 1)"
    three = cf.AcknowledgementTimedOut(ids[:3], day(2))
    assert cf.describe_effect(three).endswith("dev-00000, dev-00001, dev-00002")  # no "more"


def test_the_story_tells_the_fleet_s_trust_where_trust_decided() -> None:
    def told(effect: cf.Effect) -> str:
        return cf.narrate(effect, trusted=1_879, in_scope=2_000)

    trust = "; 1,879 of 2,000 in-scope devices trust the root (94.0%)"
    assert told(FORCED) == cf.describe_effect(FORCED) + trust
    postponed = cf.ImportPostponed(1, day(14), day(7))
    assert told(postponed) == cf.describe_effect(postponed) + trust
    for kind in effect_classes():
        if kind not in (cf.ImportCertificate, cf.ImportPostponed):
            assert told(sample(kind)) == cf.describe_effect(sample(kind))


def test_an_effect_names_the_command_a_host_sends_next_in_the_front_end_s_words() -> None:
    restart = cf.RestartRequired(day(21))
    assert cf.describe_effect(restart).endswith("then send ServerRestarted")
    assert describe(restart).endswith("then send `restarted`")


# --- one source: the command line, the simulator and the example word effects alike ----------


def test_the_forced_import_is_worded_once_for_the_command_line_the_simulator_and_the_example(
    tmp_path: Path,
) -> None:
    words = cf.describe_effect(FORCED)
    assert describe(FORCED) == words  # the command line's outbox and --json "text"

    story = io.StringIO()
    result = run_demo(devices=300, seed=3, out=story)  # some devices never answer
    assert result.forced
    # The demo rolls out a real certificate: its import names it, in the same words.
    (imported,) = [e for e in result.effects if isinstance(e, cf.ImportCertificate)]
    demo_words = cf.describe_effect(imported)
    assert demo_words.startswith(words)
    assert imported.certificate_fingerprint is not None
    assert imported.certificate_fingerprint[:16] in demo_words
    (told,) = [line for line in story.getvalue().splitlines() if demo_words in line]
    assert told.startswith(f"day {result.import_day:4.1f}  {demo_words}; ")

    forced_run = simulate(Setup(devices=300), seed=1)
    assert forced_run.outcome.forced
    assert forced_run.timeline()[-1] == (forced_run.outcome.import_day, words)

    root = Path(__file__).resolve().parents[2]
    db = tmp_path / "host.db"
    example = [sys.executable, "examples/embedded_host.py", "--devices", "60", "--workers", "1"]
    done = subprocess.run(
        [*example, "--db", str(db)], cwd=root, capture_output=True, text=True, check=True
    )
    assert re.search(rf"^  effect   \w+ \d+ \d\d:\d\d  {re.escape(words)}$", done.stdout, re.M)


# --- refusals --------------------------------------------------------------------------------


def refusal(rollout: cf.Rollout, command: cf.Command, now: datetime) -> cf.CommandRefused:
    with pytest.raises(cf.CommandRefused) as refused:
        cf.apply(rollout, command, now)
    return refused.value


def every_refusal() -> list[cf.CommandRefused | cf.UnknownDevice]:
    """A refusal of every kind: by the rollout's state, by a guard, by a device's state,
    by a gate, and an unknown device, in every rollout state."""
    running = distributing(["a", "b", "c"])
    running, _ = cf.apply_all(running, [cf.DeviceInstalled("a"), cf.DeviceFailed("b", "x")], day(1))
    rollouts = [
        build(["a", "b", "c"]),
        running,
        cf.advance(running, day(8)).rollout,  # extended
        cf.apply(running, cf.ImportNow(), day(2)).rollout,  # forced
        cf.apply(running, cf.Cancel(), day(2)).rollout,
        cf.apply(build(kind=cf.CertificateKind.AGENT_SERVER), cf.DistributeRoot(), T0).rollout,
    ]
    commands = [
        *ADMIN_COMMANDS,
        *(make(device) for make in DEVICE_COMMANDS for device in "ac"),
        cf.DeviceInstalled("nobody"),
    ]
    found: list[cf.CommandRefused | cf.UnknownDevice] = []
    for rollout in rollouts:
        for command in commands:
            try:
                cf.apply(rollout, command, rollout.clock + DAY / 24)
            except (cf.CommandRefused, cf.UnknownDevice) as error:
                found.append(error)
    return found


def test_in_the_api_s_words_a_refusal_reads_as_its_message() -> None:
    refusals = every_refusal()
    assert len(refusals) > 40
    assert {getattr(r, "reason", "") for r in refusals} >= {
        "rollout_state",
        "device_state",
        "extension_open",
        "kind_allows_retry",
    }
    for refused in refusals:
        assert cf.describe_refusal(refused) == str(refused)
        assert cf.describe_refusal(refused, names=cf.API_NAMES) == str(refused)


def test_in_the_command_line_s_words_a_refusal_names_no_api_command() -> None:
    for refused in every_refusal():
        text = cf.describe_refusal(refused, names=CLI_NAMES)
        assert not API_NAME.search(text), text


def test_a_refusal_s_hint_in_both_vocabularies() -> None:
    proceed = refusal(distributing(), cf.ProceedToImport(), T0 + DAY)
    assert str(proceed) == (
        "ProceedToImport refused: the rollout is distributing; use ImportNow "
        "(allowed while distributing or extended)"
    )
    assert cf.describe_refusal(proceed, names=CLI_NAMES) == (
        "`proceed` refused: the rollout is distributing; use `import-now` "
        "(allowed while distributing or extended)"
    )
    # The structured fields stay as they were: a host acts on them, not on words.
    assert (proceed.command, proceed.state, proceed.reason) == (
        "ProceedToImport",
        "distributing",
        "rollout_state",
    )

    early = refusal(distributing(), cf.ExtendManually(), T0 + DAY)
    assert cf.describe_refusal(early, names=CLI_NAMES).startswith(
        "`extend` refused: manual extension opens on day 6, 2026-07-07 09:00 UTC"
    )
    assert early.allowed_at == day(6)


def test_a_hint_naming_another_command_says_where_the_declarations_allow_it() -> None:
    """The states come from the rows, not from words written beside them: import-now is
    allowed while extended too, and an extended rollout is told so."""
    extended = cf.advance(distributing(), day(8)).rollout
    assert extended.state is cf.RolloutState.EXTENDED
    proceed = refusal(extended, cf.ProceedToImport(), day(8))
    assert proceed.hint == "use ImportNow (allowed while distributing or extended)"
    allowed = {
        state for state in cf.RolloutState if cf.RULES.rollout.rows(state.value, "import_now")
    }
    assert allowed == {cf.RolloutState.DISTRIBUTING, cf.RolloutState.EXTENDED}
    now = refusal(build(), cf.ImportNow(), T0)
    assert now.hint == "use ProceedToImport (allowed while pending)"


def test_the_hint_is_data_that_ends_the_message() -> None:
    for refused in every_refusal():
        if getattr(refused, "reason", "") == "restart_state":
            assert refused.hint is None  # "the restart is required": nothing to do
            continue
        assert refused.hint, refused
        text = str(refused)
        assert text.rfind(refused.hint) + len(refused.hint) >= len(text) - 1, text
        assert refused.device_id is not None or isinstance(refused, cf.CommandRefused)
    unknown = every_refusal()[-1]
    assert isinstance(unknown, cf.UnknownDevice)
    assert (unknown.device_id, unknown.hint) == ("nobody", "send Enroll first if it just enrolled")
    assert (
        wording.describe_hint(unknown, names=CLI_NAMES)
        == "send `enroll nobody` first if it just enrolled"
    )


def test_a_front_end_spells_the_hint_s_commands_as_command_lines_of_the_rollout() -> None:
    running = distributing(["a", "c"])
    cut_off = refusal(cf.apply(running, cf.ImportNow(), T0 + DAY).rollout, cf.DeviceInstalled("c"), T0 + 2 * DAY)  # fmt: skip
    assert describe_refusal_cli(cut_off) == (
        "device 'c' cannot report the root installed: it is reenroll_required; it lost contact "
        "at the import; send `certflow rollout reenrolled r1 c` once it re-enrolled"
    )
    with pytest.raises(cf.UnknownDevice) as unknown:
        cf.apply(running, cf.Retry("nosuch"), T0 + DAY)
    assert describe_refusal_cli(unknown.value) == (
        "unknown device 'nosuch': it is not in this rollout "
        "(send `certflow rollout enroll r1 nosuch` first if it just enrolled)"
    )


def describe_refusal_cli(error: cf.CommandRefused | cf.UnknownDevice) -> str:
    return cf.describe_refusal(error, names=CLI_NAMES, hint_names=CLI_COMMANDS, rollout="r1")


def test_wording_a_refusal_compiles_no_pattern_of_its_device(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A pattern compiled per device id cost 35 s for a file of 200,000 refused lines."""
    imported = cf.apply(distributing([f"d{n}" for n in range(50)]), cf.ImportNow(), T0 + DAY)
    refusals = [
        refusal(imported.rollout, cf.DeviceInstalled(f"d{n}"), T0 + 2 * DAY) for n in range(50)
    ]
    compiled: list[str] = []
    real = re.compile

    def counting(pattern: str, flags: int = 0) -> re.Pattern[str]:
        compiled.append(pattern)
        return real(pattern, flags)

    monkeypatch.setattr(re, "compile", counting)  # the module wording uses
    worded = [cf.describe_refusal(r, names=CLI_NAMES) for r in refusals]
    assert compiled == []
    assert worded[7].endswith("send `reenrolled d7` once it re-enrolled")


def test_a_device_command_names_its_device_in_the_front_end_s_words() -> None:
    running = distributing(["a", "c"])
    imported = cf.apply(running, cf.ImportNow(), T0 + DAY).rollout
    cut_off = refusal(imported, cf.DeviceInstalled("c"), T0 + 2 * DAY)
    assert str(cut_off).endswith("send Reenrolled once it re-enrolled")
    assert cf.describe_refusal(cut_off, names=CLI_NAMES).endswith(
        "send `reenrolled c` once it re-enrolled"
    )
    early = refusal(build(["a"]), cf.Retry("a"), T0)
    assert str(early).startswith("Retry('a') refused: ")
    assert cf.describe_refusal(early, names=CLI_NAMES).startswith("`retry a` refused: ")
    with pytest.raises(cf.UnknownDevice) as unknown:
        cf.apply(running, cf.DeviceInstalled("z"), T0 + DAY)
    assert cf.describe_refusal(unknown.value, names=CLI_NAMES, device_id="z").endswith(
        "(send `enroll z` first if it just enrolled)"  # the error does not carry its device
    )


def test_a_device_whose_id_reads_like_a_command_keeps_its_id() -> None:
    named = ["ImportNow", "Retry"]
    cut_off = refusal(cf.apply(distributing(named), cf.ImportNow(), T0 + DAY).rollout,
                      cf.DeviceInstalled("Retry"), T0 + 2 * DAY)  # fmt: skip
    assert cf.describe_refusal(cut_off, names=CLI_NAMES) == (
        "device 'Retry' cannot report the root installed: it is reenroll_required; it lost "
        "contact at the import; send `reenrolled Retry` once it re-enrolled"
    )
    early = refusal(build(named), cf.Retry("ImportNow"), T0)
    assert cf.describe_refusal(early, names=CLI_NAMES).startswith("`retry ImportNow` refused")
    assert cf.describe_refusal(early) == str(early)


def test_names_must_spell_every_command() -> None:
    partial = {name: name.lower() for name in COMMAND_NAMES if name != "Enroll"}
    refused = refusal(distributing(), cf.ProceedToImport(), T0 + DAY)
    with pytest.raises(cf.InvalidInput, match="missing: Enroll"):
        cf.describe_refusal(refused, names=partial)
    with pytest.raises(cf.InvalidInput, match="missing: Enroll"):
        cf.describe_effect(FORCED, names=partial)


# --- the command line's words ------------------------------------------------------------------


def test_the_command_line_spells_every_command_with_a_real_subcommand() -> None:
    assert set(CLI_SPELLINGS) == set(COMMAND_NAMES)
    assert {name: f"`{spelling}`" for name, spelling in CLI_SPELLINGS.items()} == CLI_NAMES
    context = click.Context(rollout_group)
    for name, spelling in CLI_SPELLINGS.items():
        subcommand, *words = spelling.split()
        found = rollout_group.get_command(context, subcommand)
        assert found is not None, f"{name}: no subcommand {subcommand!r}"
        options = {o for p in found.params for o in getattr(p, "opts", ())}
        arguments = [p for p in found.params if isinstance(p, click.Argument)]
        choices = {
            choice
            for p in arguments
            if isinstance(p.type, click.Choice)
            for choice in p.type.choices
        }
        for word in words:
            if word.startswith("--"):
                assert word in options, f"{name}: {subcommand} has no option {word}"
            elif word == DEVICE:
                assert any(p.name == "device" for p in arguments), f"{name}: no DEVICE"
            else:
                assert word in choices, f"{name}: {subcommand} takes no {word!r}"


def test_the_command_line_prints_a_refusal_in_its_words_and_the_api_keeps_its_own(
    upload: Path,  # noqa: F811  (the fixture imported above)
    tmp_path: Path,
) -> None:
    db = str(tmp_path / "words.db")
    cli(*new_args(upload, db))
    cli("rollout", "distribute", "r1", "--db", db, "--now", at())

    proceed = cli("rollout", "proceed", "r1", "--db", db, "--now", at(hours=1), expect=1)
    assert proceed.stderr == (
        "certflow: refused: `proceed` refused: the rollout is distributing; "
        "use `certflow rollout import-now r1` (allowed while distributing or extended)\n"
    )
    early = cli("rollout", "extend", "r1", "--db", db, "--now", at(days=5), expect=1)
    assert early.stderr.startswith("certflow: refused: `extend` refused: manual extension opens")
    unknown = cli("rollout", "report", "r1", "d9", "installed", "--db", db, expect=2)
    assert "(send `certflow rollout enroll r1 d9` first if it just enrolled)" in unknown.stderr
    after = cli("rollout", "status", "r1", "--after", "nosuch", "--db", db, expect=2)
    assert after.stderr == (
        "certflow: error: unknown device 'nosuch': it is not in this rollout "
        "(send `certflow rollout enroll r1 nosuch` first if it just enrolled)\n"
    )
    for result in (proceed, early, unknown, after):
        assert not API_NAME.search(result.stderr), result.stderr

    # The same refusal through the Python API still names the API's commands.
    with open_store(db, create=False) as store:
        when = datetime.fromisoformat(at(hours=1))
        refused = store.refusal("r1", cf.ProceedToImport(), when)
    assert refused is not None
    assert str(refused).endswith("use ImportNow (allowed while distributing or extended)")
    assert refused.command == "ProceedToImport"


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_a_notice_says_what_it_foresees_in_words() -> None:
    def notice(**facts: Any) -> str:
        return cf.describe_effect(cf.Notify(1, day(7), False, day(6), **facts))

    head = (
        "e-mail administrators: checkpoint 1 on 2026-07-08 09:00 UTC "
        "(import then if the import condition holds)"
    )
    assert notice(
        in_scope=5, trusting=3, outcome="forced import", cut_off=2, extension_available=True
    ) == (
        f"{head}; 3 of 5 devices in scope trust the root; if nothing changes: a FORCED import "
        "cutting off 2 devices; a manual extension is available"
    )
    assert notice(in_scope=1, trusting=1, outcome="import") == (
        f"{head}; 1 of 1 device in scope trust the root; if nothing changes: the import"
    )
    assert notice(in_scope=2_000, trusting=1_500, outcome="postpone") == (
        f"{head}; 1,500 of 2,000 devices in scope trust the root; if nothing changes: "
        "the import postponed"
    )
    # an outcome this certflow has no words for is shown as it was stored
    assert notice(in_scope=2, trusting=0, outcome="a later word").endswith(
        "if nothing changes: a later word"
    )
    assert notice() == head  # a notice stored before notices said what they foresee


def test_the_expiry_notice_and_the_cancellation_read_in_words() -> None:
    expiry = cf.Notify(2, day(30), False, day(29), expiry=True)
    assert cf.describe_effect(expiry) == (
        "e-mail administrators: the current certificate expires on 2026-07-31 09:00 UTC: "
        "import then"
    )
    assert cf.describe_effect(cf.RolloutCancelled(day(3))) == (
        "the rollout was cancelled: the current certificate stays"
    )


def test_a_value_that_is_no_effect_is_named_in_the_error() -> None:
    with pytest.raises(AssertionError, match="'PushRoot'"):
        cf.describe_effect("PushRoot")  # type: ignore[arg-type]


def test_the_story_speaks_the_front_end_s_words_and_names_as_many_devices_as_asked() -> None:
    names = {name: name.lower() for name in COMMAND_NAMES}
    restart = cf.RestartRequired(day(21))
    assert cf.narrate(restart, trusted=1, in_scope=2, names=names).endswith(
        "then send serverrestarted"
    )
    cut_off = cf.ReenrollmentRequired(("a", "b", "c", "d", "e"), day(21))
    assert cf.narrate(cut_off, trusted=0, in_scope=5, shown=1) == (
        "5 devices must re-enrol: a, ... (4 more)"
    )


def test_one_device_left_over_is_counted_too() -> None:
    four = cf.ReenrollmentRequired(("a", "b", "c", "d"), day(21))
    assert cf.describe_effect(four) == "4 devices must re-enrol: a, b, c, ... (1 more)"


def test_names_missing_several_commands_name_each() -> None:
    names = {name: name for name in COMMAND_NAMES if name not in ("Retry", "Cancel")}
    with pytest.raises(cf.InvalidInput, match=r"missing: (Cancel, Retry|Retry, Cancel)$"):
        cf.describe_effect(FORCED, names=names)


# --- Mutation survivors of 2026-12-07 ----------------------------------------------------------


def test_a_refusal_without_a_hint_is_spelled_whole_in_the_front_end_s_words() -> None:
    restart = cf.CommandRefused("ServerRestarted refused: the restart is not_required")
    assert restart.hint is None
    assert cf.describe_refusal(restart) == str(restart)
    assert cf.describe_refusal(restart, names=CLI_NAMES) == (
        "`restarted` refused: the restart is not_required"
    )
    assert cf.describe_refusal(restart, names=CLI_COMMANDS, rollout="r1") == (
        "`certflow rollout restarted r1` refused: the restart is not_required"
    )
    assert wording.describe_hint(restart, names=CLI_NAMES) is None
    retry = cf.CommandRefused("Retry('a') refused: the restart is required", device_id="a")
    assert cf.describe_refusal(retry, names=CLI_NAMES) == (
        "`retry a` refused: the restart is required"
    )


def test_a_hint_the_message_does_not_hold_adds_nothing_to_it() -> None:
    refused = cf.CommandRefused("ImportNow refused: no", hint="use Retry")
    assert cf.describe_refusal(refused, names=CLI_NAMES, hint_names=CLI_COMMANDS) == (
        "`import-now` refused: no"
    )


def test_the_hint_is_the_message_s_last_occurrence_of_it_even_at_its_start() -> None:
    whole = cf.CommandRefused("use ImportNow", hint="use ImportNow")
    twice = cf.CommandRefused("use ImportNow; use ImportNow", hint="use ImportNow")
    for refused, worded in (
        (whole, "use `certflow rollout import-now r1`"),
        (twice, "use `import-now`; use `certflow rollout import-now r1`"),
    ):
        assert describe_refusal_cli(refused) == worded


def test_the_words_before_and_after_the_hint_name_the_rollout_and_the_device() -> None:
    proceed = refusal(distributing(), cf.ProceedToImport(), T0 + DAY)
    assert cf.describe_refusal(proceed, names=CLI_COMMANDS, rollout="r1") == (
        "`certflow rollout proceed r1` refused: the rollout is distributing; use "
        "`certflow rollout import-now r1` (allowed while distributing or extended)"
    )
    assert wording.describe_hint(proceed, names=CLI_COMMANDS, rollout="r1") == (
        "use `certflow rollout import-now r1` (allowed while distributing or extended)"
    )
    early = refusal(build(["a"]), cf.Retry("a"), T0)
    assert cf.describe_refusal(early, names=CLI_COMMANDS, rollout="r1").startswith(
        "`certflow rollout retry r1 a` refused: "
    )
    middle = cf.CommandRefused("Cancel refused: use ImportNow, or Retry('a')", hint="use ImportNow", device_id="a")  # fmt: skip
    assert cf.describe_refusal(middle, names=CLI_COMMANDS, rollout="r1") == (
        "`certflow rollout cancel r1` refused: use `certflow rollout import-now r1`, "
        "or `certflow rollout retry r1 a`"
    )


def test_only_a_call_closed_right_after_the_device_s_id_is_spelled_as_a_call() -> None:
    twice = cf.CommandRefused("Retry('a') refused: device 'a' is pending", device_id="a")
    assert cf.describe_refusal(twice, names=CLI_NAMES) == (
        "`retry a` refused: device 'a' is pending"
    )
    open_call = cf.CommandRefused("Retry('a' refused", device_id="a")
    assert cf.describe_refusal(open_call, names=CLI_NAMES) == "`retry a`('a' refused"
