"""The rollout, device and restart machines, declared once, as data.

Theory of operation
-------------------
Rule 1: every rule of a rollout lives in these declarations. A *rollout* (the import of
one new server certificate) is the machine :data:`ROLLOUT_MACHINE`; each managed
*device* has a sub-machine, :data:`DEVICE_MACHINE`; the "restart required" flag is the
two-state :data:`RESTART_MACHINE` (as h11 declares its extra booleans beside its
tables). :data:`RULES` bundles the three.

Each machine declares, in the XState manner:

* its **states**; a rollout state also lists its **timers** (what time does while the
  rollout is in it, in the order they fire at one instant) and its **gates** (which
  device triggers it lets through, with their guards and the triggers that follow them
  at once, such as "enrolled while distributing, so pushed");
* its **triggers**, each with the hint a refusal gives when the current state has no
  row for it;
* its **rows** ``source --trigger [guards] / actions--> dest``. Rows of one source and
  trigger are tried in order; the first whose guards all hold is taken; the unguarded
  default comes last. When none holds, the command is refused with the hint of the
  last row's first failing guard;
* its **guards**, **actions** and **timers** by name, with what each checks, emits or
  changes. Their meaning (a few lines of code each) lives with the drivers:
  :mod:`certflow.core.guards` and :mod:`certflow.core.timeline` for all drivers,
  :mod:`certflow.core.interpreter` for the rollout's actions;
* **ignored** pairs ``(state, trigger)``: duplicates that change nothing and emit
  nothing (a device that reports "installed" twice);
* its **waits** (the device machine's acknowledgement of a push): which action starts
  one, the states in which the device awaits it, and the trigger it fires when it runs
  out. Validation holds every row to that life (no row enters an awaiting state without
  starting the wait, none starts it into a state that does not await it, and the wait's
  own trigger always ends it). Every driver, the serialisation and the store's activity
  keep the wait from here, and its span is the policy field it names (``after``);
* a device action's **writes** (``assigns``): ``attempts := attempts + 1``,
  ``last_failure_reason := the command's reason``. The fields and values are a small
  fixed vocabulary (:data:`ASSIGNABLE`) that every driver implements; which action
  writes what is declared here, and no driver knows an action by its name.

Everything else is derived: the interpreter's tables, the device kernel's tables per
rollout state, the fleet-wide ``from -> to`` mappings (:meth:`Rules.fleet_mapping`) a
store applies as one set-based statement, the Mermaid diagrams and ``docs/machines.md``.

What is *not* in the declarations, and why: the storage of devices (a driver's
business), the wording of effects, and the arithmetic of instants (the timeline module
computes them from the policy; the timers here only name them). :func:`Rules.validate`
runs at import and proves the declarations well formed; each driver proves, when it
binds its implementations, that every guard, action and timer name has exactly one
implementation and none is unused.

The vocabulary and its validation live in :mod:`certflow.core._vocabulary`, the
diagrams page in :mod:`certflow.core._diagrams`; both are re-exported here. No I/O;
``make docs`` writes :func:`diagrams_page` to the docs.
"""

from __future__ import annotations

from certflow.core import _diagrams
from certflow.core._vocabulary import (
    ASSIGNABLE,
    Action,
    Assign,
    Call,
    Fire,
    Gate,
    Guard,
    MachineSpec,
    Rules,
    Source,
    State,
    Timer,
    Transition,
    Trigger,
    Wait,
    call,
    placeholders,
)

__all__ = [
    "ASSIGNABLE",
    "DEVICE_MACHINE",
    "RESTART_MACHINE",
    "ROLLOUT_MACHINE",
    "RULES",
    "Action",
    "Assign",
    "Call",
    "Fire",
    "Gate",
    "Guard",
    "MachineSpec",
    "Rules",
    "Source",
    "State",
    "Timer",
    "Transition",
    "Trigger",
    "Wait",
    "call",
    "diagrams_page",
    "placeholders",
]


# --- The rules of rollout-rules.md ----------------------------------------------------------


# What every import does, whatever triggered it; the outcome (imported or forced) is the
# row's destination, decided by trust alone (the all_trust guard), and the destination
# alone says whether the import was forced (its state's `forced` flag).
_IMPORT = (
    call("import_certificate"),
    call("mark_stragglers"),
    call("require_restart"),
    call("end"),
)


_RUNNING_TIMERS = ("ack_timeout", "notice", "checkpoint", "expiry", "deadline")
# A row that changes which decision comes next announces it at once when its notice
# instant has passed already (an expiry close ahead, a checkpoint that extends).
_LATE = call("announce_if_late")
_CANCEL = (call("announce_cancel"), call("end"))
_RUNNING_GATES = (
    Gate("report_installed"),
    Gate("report_failed"),
    Gate("retry", guards=("kind_allows_retry",)),
    Gate("enroll", then=("push",)),
    Gate("unenroll"),
)
_IMPORTED_GATES = (
    Gate("report_installed"),
    # Enrolling after the import is enrolling against the new certificate.
    Gate("enroll", then=("report_installed",)),
    Gate("unenroll"),
    Gate("reenrolled"),
)


def _running_rows(
    state: str,
) -> tuple[Transition, ...]:  # pragma: no mutate block
    return (
        Transition(state, "ack_timeout", state, actions=(call("time_out_pushes"),)),
        Transition(state, "notify", state, actions=(call("announce"),)),
        Transition(state, "checkpoint", "imported", ("import_condition", "all_trust"), _IMPORT),
        Transition(state, "checkpoint", "forced", ("import_condition",), _IMPORT),
        Transition(state, "checkpoint", "extended", actions=(call("postpone"), _LATE)),
        Transition(state, "expiry", "imported", ("all_trust",), _IMPORT),
        Transition(state, "expiry", "forced", actions=_IMPORT),
        Transition(state, "deadline", "imported", ("all_trust",), _IMPORT),
        Transition(state, "deadline", "forced", actions=_IMPORT),
        Transition(state, "import_now", "imported", ("all_trust",), _IMPORT),
        Transition(state, "import_now", "forced", actions=_IMPORT),
        Transition(
            state,
            "extend_manually",
            state,
            ("extension_open", "valid_through_moved_deadline"),
            (call("extend"), _LATE),
        ),
        Transition(
            state, "retry_all_failed", state, ("kind_allows_retry",), (call("retry_failed"),)
        ),
        Transition(state, "cancel", "cancelled", actions=_CANCEL),
    )


ROLLOUT_MACHINE = MachineSpec(
    name="rollout",
    states=(
        State(
            "pending",
            note="created; waiting for the administrator to choose how to import",
            gates=(Gate("report_installed"), Gate("enroll"), Gate("unenroll")),
        ),
        State(
            "distributing",
            note="the root is being pushed; the first checkpoint is ahead",
            timers=_RUNNING_TIMERS,
            gates=_RUNNING_GATES,
        ),
        State(
            "extended",
            note="a checkpoint found the fleet not ready; the import waits for the next one",
            timers=_RUNNING_TIMERS,
            gates=_RUNNING_GATES,
        ),
        State(
            "imported",
            terminal=True,
            note="imported, and every in-scope device trusted the root",
            gates=_IMPORTED_GATES,
        ),
        State(
            "forced",
            terminal=True,
            forced=True,
            note="imported although some in-scope devices did not trust the root",
            gates=_IMPORTED_GATES,
        ),
        State(
            "cancelled",
            terminal=True,
            note="abandoned; the old certificate stays",
            gate_hint="the rollout was cancelled; start a new rollout",
        ),
    ),
    initial="pending",
    triggers=(
        Trigger(
            "distribute_root",
            "administrator",
            "DistributeRoot",
            hint="distribution starts from pending",
        ),
        Trigger(
            "proceed_to_import",
            "administrator",
            "ProceedToImport",
            hint="it applies to a pending rollout",
            hints=(
                ("distributing", "use ImportNow"),
                ("extended", "use ImportNow"),
            ),
        ),
        Trigger(
            "import_now",
            "administrator",
            "ImportNow",
            hint="it applies while distributing or extended",
            hints=(("pending", "use ProceedToImport"),),
        ),
        Trigger(
            "extend_manually",
            "administrator",
            "ExtendManually",
            hint="it applies while distributing or extended",
            hints=(("pending", "distribute the root first"),),
        ),
        Trigger(
            "retry_all_failed",
            "administrator",
            "RetryAllFailed",
            hint="retries are allowed while distributing or extended",
        ),
        Trigger(
            "cancel",
            "administrator",
            "Cancel",
            hint="only a rollout that has not ended can be cancelled",
        ),
        Trigger("ack_timeout", "time"),
        Trigger("notify", "time"),
        Trigger("checkpoint", "time"),
        Trigger("expiry", "time"),
        Trigger("deadline", "time"),
    ),
    transitions=(
        Transition(
            "pending",
            "distribute_root",
            "distributing",
            ("valid_at_start", "valid_through_deadline"),
            (call("start_distribution"), call("push_pending"), _LATE),
        ),
        Transition(
            "pending",
            "proceed_to_import",
            "imported",
            ("valid_at_start", "not_expired", "all_trust"),
            _IMPORT,
        ),
        Transition(
            "pending",
            "proceed_to_import",
            "forced",
            ("valid_at_start", "not_expired"),
            _IMPORT,
        ),
        Transition("pending", "cancel", "cancelled", actions=_CANCEL),
        *_running_rows("distributing"),
        *_running_rows("extended"),
    ),
    guards=(
        Guard(
            "valid_at_start",
            "the new certificate is not valid yet at {now}: it becomes valid at "
            "{new_not_before}; start at or after that instant",
            allowed_from="new_not_before",
            note="the new certificate's validity has begun",
        ),
        Guard(
            "valid_through_deadline",
            "the new certificate expires at {new_not_after}, before the deadline "
            "{deadline_from_now} of a distribution started at {now}; get a certificate "
            "valid through the deadline",
            note="the new certificate stays valid through the deadline of a distribution "
            "started now",
        ),
        Guard(
            "not_expired",
            "the new certificate expired at {new_not_after}; get a new certificate",
            note="the new certificate has not expired",
        ),
        Guard(
            "all_trust",
            "{untrusting} in-scope device(s) do not trust the root yet",
            note="every in-scope device trusts the root (an empty scope does), or the root "
            "is publicly trusted",
        ),
        Guard(
            "import_condition",
            "the import condition ({import_rule}) does not hold",
            note="the policy's import rule: distribution complete or (and, with "
            "distributed_and_expired) the existing certificate expired",
        ),
        Guard(
            "extension_open",
            "manual extension opens on day {extension_opens_day}, {extension_opens_at} "
            "({extension_wait} from now)",
            allowed_from="extension_opens_at",
            note="manual extension has opened (day 6 by default)",
        ),
        Guard(
            "valid_through_moved_deadline",
            "the new certificate expires at {new_not_after}, before the moved deadline "
            "{moved_deadline}; import by {deadline} instead",
            note="the new certificate stays valid through the deadline an extension would set",
        ),
        Guard(
            "kind_allows_retry",
            "retry applies only to MDM server certificates, and this rollout replaces "
            "{kind_with_article} certificate",
            note="the rollout replaces an MDM server certificate",
        ),
    ),
    actions=(
        Action("start_distribution", note="t0 := now"),
        Action("push_pending", emits=("PushRoot",), fires=Fire("device", "push")),
        Action(
            "announce",
            emits=("Notify",),
            note="the next decision (checkpoint, or the expiry) is announced, with what it "
            "will do if nothing changes",
        ),
        Action(
            "announce_if_late",
            emits=("Notify",),
            note="announce the next decision now, if its notice instant has passed already",
        ),
        Action("announce_cancel", emits=("RolloutCancelled",)),
        Action(
            "postpone",
            emits=("ImportPostponed",),
            note="one more checkpoint done; the next one is ahead",
        ),
        Action(
            "import_certificate",
            emits=("ImportCertificate",),
            note="the certificate is imported; forced when the row ends in a forced state",
        ),
        Action(
            "mark_stragglers",
            emits=("ReenrollmentRequired",),
            fires=Fire("device", "import"),
        ),
        Action("require_restart", fires=Fire("restart", "import")),
        Action("end", note="ended_at := now; pending acknowledgement timers are dropped"),
        Action(
            "extend",
            note="every later checkpoint and the deadline move by manual_extension",
        ),
        Action(
            "retry_failed",
            emits=("PushRoot",),
            fires=Fire("device", "retry", only=("failed",)),
        ),
        Action(
            "time_out_pushes",
            emits=("AcknowledgementTimedOut",),
            fires=Fire("device", "ack_timeout", selection="due"),
        ),
    ),
    timers=(
        Timer(
            "ack_timeout",
            "ack_timeout",
            consumed_by=("time_out_pushes",),
            note="the earliest unanswered push + the acknowledgement wait's span",
        ),
        Timer(
            "notice",
            "notify",
            consumed_by=("announce",),
            note="next checkpoint - policy.notice_before, once for each checkpoint instant",
        ),
        Timer(
            "checkpoint",
            "checkpoint",
            consumed_by=("postpone",),
            note="t0 + the next of policy.checkpoints (+ extensions), unless it is the last",
        ),
        Timer(
            "expiry",
            "expiry",
            note="existing_not_after, when it falls strictly after t0 and before the deadline "
            "(import rule distributed_or_expired only; extensions do not move it)",
        ),
        Timer("deadline", "deadline", note="t0 + the last of policy.checkpoints (+ extensions)"),
    ),
)

DEVICE_MACHINE = MachineSpec(
    name="device",
    states=(
        State(
            "pending",
            note="in scope, not pushed yet (it may already trust the root)",
            hint="the root has not been pushed to it yet; start the distribution first",
        ),
        State(
            "pushed",
            note="the root was pushed; no answer yet",
            hint="it has been pushed the root and no failure was reported",
        ),
        State(
            "installed",
            trusts=True,
            note="trusts the root",
            hint="it already trusts the root",
        ),
        State(
            "failed",
            note="its latest push failed (reason kept)",
            hint="its last push failed; retry it first",
        ),
        State(
            "removed",
            in_scope=False,
            note="unenrolled: out of scope",
            hint="it was unenrolled; send Enroll if it came back",
        ),
        State(
            "reenroll_required",
            note="cut off by the import; must re-enrol",
            hint="it lost contact at the import; send Reenrolled once it re-enrolled",
        ),
    ),
    initial="pending",
    triggers=(
        Trigger(
            "report_installed",
            "device",
            "DeviceInstalled",
            hint="device reports are not taken in this state",
            phrase="report the root installed",
        ),
        Trigger(
            "report_failed",
            "device",
            "DeviceFailed",
            hint="failures are reported while distributing",
            phrase="report a failure",
            carries=("reason",),
        ),
        Trigger(
            "retry",
            "administrator",
            "Retry",
            hint="retries are allowed while distributing or extended",
            phrase="be retried",
        ),
        Trigger(
            "enroll",
            "host",
            "Enroll",
            hint="enrolments are not taken in this state",
            phrase="enrol",
            introduces=True,
        ),
        Trigger(
            "unenroll",
            "host",
            "Unenroll",
            hint="unenrolments are not taken in this state",
            phrase="unenrol",
        ),
        Trigger(
            "reenrolled",
            "host",
            "Reenrolled",
            hint="re-enrolment applies after the import",
            phrase="be re-enrolled",
        ),
        Trigger("push", "rollout", phrase="be pushed the root"),
        Trigger("ack_timeout", "time", phrase="time out"),
        Trigger("import", "rollout", phrase="be cut off"),
    ),
    transitions=(
        Transition("pending", "push", "pushed", actions=(call("push_root"),)),
        Transition("pushed", "report_installed", "installed"),
        Transition("pending", "report_installed", "installed", note="already trusts the root"),
        Transition("failed", "report_installed", "installed", note="late confirmation"),
        Transition("pushed", "report_failed", "failed", actions=(call("keep_reason"),)),
        Transition("pushed", "ack_timeout", "failed", actions=(call("record_timeout"),)),
        Transition("failed", "retry", "pushed", actions=(call("push_root"),)),
        Transition(
            "pushed", "retry", "pushed", actions=(call("push_root"),), note="it never answered"
        ),
        *(
            Transition(state, "unenroll", "removed")
            for state in ("pending", "pushed", "installed", "failed", "reenroll_required")
        ),
        Transition("removed", "enroll", "pending", note="enrols again"),
        *(
            Transition(state, "import", "reenroll_required")
            for state in ("pending", "pushed", "failed")
        ),
        Transition("reenroll_required", "reenrolled", "installed"),
    ),
    actions=(
        Action(
            "push_root",
            emits=("PushRoot",),
            assigns=(Assign("attempts", "attempts + 1"),),
            note="this push is the latest: its acknowledgement wait starts",
        ),
        Action(
            "keep_reason",
            assigns=(Assign("last_failure_reason", "the command's reason"),),
        ),
        Action(
            "record_timeout",
            assigns=(Assign("last_failure_reason", "the wait's timeout"),),
        ),
    ),
    waits=(
        Wait(
            "acknowledgement",
            started_by="push_root",
            in_states=("pushed",),
            fires="ack_timeout",
            after="ack_timeout",
        ),
    ),
    ignored=(
        ("installed", "report_installed"),
        ("failed", "report_failed"),
        ("removed", "unenroll"),
        *(
            (state, "enroll")
            for state in ("pending", "pushed", "installed", "failed", "reenroll_required")
        ),
        ("installed", "reenrolled"),
    ),
)

RESTART_MACHINE = MachineSpec(
    name="restart",
    states=(
        State("not_required", note="the server serves the certificate it has"),
        State("required", note="the certificate was imported; the server must restart"),
    ),
    initial="not_required",
    triggers=(
        Trigger("import", "rollout"),
        Trigger("server_restarted", "host", "ServerRestarted"),
    ),
    transitions=(
        Transition("not_required", "import", "required", actions=(call("announce_restart"),)),
        Transition("required", "server_restarted", "not_required"),
    ),
    actions=(Action("announce_restart", emits=("RestartRequired",)),),
    ignored=(("not_required", "server_restarted"),),
)


RULES = Rules(ROLLOUT_MACHINE, DEVICE_MACHINE, RESTART_MACHINE)
RULES.validate()


def diagrams_page(rules: Rules = RULES) -> str:
    """The Markdown of ``docs/machines.md``: every machine, generated from the data."""
    return _diagrams.page(rules)
