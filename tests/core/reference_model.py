"""A slow, obvious reference implementation of rollout-rules.md, for the property tests.

It shares no code with the evaluator: devices live in a plain dict, every rule is
written out from the spec, time is scanned event by event, and the rollout machine is a
``transitions`` machine built from the declaration, whose guards this model answers.
The stateful test drives both with the same steps and requires the same results.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import certflow as cf
from certflow.core.effects import Effect

RUNNING = {"distributing", "extended"}
IMPORTED = {"imported", "forced"}


class Device:
    """One device: its state, pushes, last failure reason, and its latest push instant."""

    def __init__(self, state: str = "pending") -> None:
        self.state = state
        self.attempts = 0
        self.reason: str | None = None
        self.pushed_at: datetime | None = None

    def record(self, device_id: str) -> cf.DeviceRecord:
        return cf.DeviceRecord(device_id, cf.DeviceState(self.state), self.attempts, self.reason)


class Refused(Exception):
    """The model refuses the command (the evaluator must raise a CertflowError too)."""


class ReferenceRollout:
    """The reference: mutable, simple, and built from the spec's words."""

    state: str  # set by the transitions machine

    def __init__(
        self,
        ids: list[str],
        *,
        existing_not_after: datetime,
        new_not_before: datetime,
        new_not_after: datetime,
        public: bool,
        kind: cf.CertificateKind,
        policy: cf.Policy,
        created_at: datetime,
        trusted: tuple[str, ...] = (),
    ) -> None:
        self.devices: dict[str, Device] = {d: Device() for d in ids}
        for d in trusted:
            self.devices[d].state = "installed"
        self.existing_not_after = existing_not_after
        self.new_not_before = new_not_before
        self.new_not_after = new_not_after
        self.public = public
        self.kind = kind
        self.policy = policy
        self.clock = created_at
        self.t0: datetime | None = None
        self.done = 0  # checkpoints evaluated
        self.extension = timedelta(0)
        self.extensions = 0
        self.announced: set[datetime] = set()
        self.restart_required = False
        self.at = created_at  # the instant the guards are asked about
        cf.ROLLOUT_MACHINE.build_model(self)

    # --- guards, answered for the transitions machine ---------------------------------

    def in_scope(self) -> list[Device]:
        return [d for d in self.devices.values() if d.state != "removed"]

    def all_trust(self) -> bool:
        return self.public or all(d.state == "installed" for d in self.in_scope())

    def not_all_trust(self) -> bool:
        return not self.all_trust()

    def condition_holds(self) -> bool:
        distributed = self.all_trust()
        expired = self.at >= self.existing_not_after
        if self.policy.import_rule is cf.ImportRule.DISTRIBUTED_AND_EXPIRED:
            return distributed and expired
        return distributed or expired

    def condition_fails(self) -> bool:
        return not self.condition_holds()

    # --- time ------------------------------------------------------------------------

    def checkpoint_at(self) -> datetime:
        assert self.t0 is not None
        return self.t0 + self.policy.checkpoints[self.done] + self.extension

    def deadline(self) -> datetime:
        assert self.t0 is not None
        return self.t0 + self.policy.checkpoints[-1] + self.extension

    def next_event(self) -> tuple[datetime, str] | None:
        candidates: list[tuple[datetime, int, str]] = []
        if self.state in RUNNING:
            if self.policy.ack_timeout is not None:
                for device in self.devices.values():
                    if device.state == "pushed" and device.pushed_at is not None:
                        candidates.append((device.pushed_at + self.policy.ack_timeout, 0, "ack"))
            checkpoint = self.checkpoint_at()
            if checkpoint not in self.announced:
                candidates.append((checkpoint - self.policy.notice_before, 1, "notice"))
            else:
                candidates.append((checkpoint, 1, "checkpoint"))
        if not candidates:
            return None
        when, _, what = min(candidates)
        return when, what

    def advance(self, now: datetime) -> list[Effect]:
        if now < self.clock:
            raise Refused("time went backwards")
        effects: list[Effect] = []
        while (event := self.next_event()) is not None and event[0] <= now:
            when, what = event
            self.at = when
            if what == "ack":
                assert self.policy.ack_timeout is not None
                hours = self.policy.ack_timeout
                late = [
                    name
                    for name, d in self.devices.items()
                    if d.state == "pushed"
                    and d.pushed_at is not None
                    and d.pushed_at + hours == when
                ]
                for name in late:
                    self.devices[name].state = "failed"
                    self.devices[name].reason = "timeout"
                effects.append(cf.AcknowledgementTimedOut(tuple(late), when))
            elif what == "notice":
                checkpoint = self.checkpoint_at()
                self.announced.add(checkpoint)
                final = self.done == len(self.policy.checkpoints) - 1
                effects.append(cf.Notify(self.done + 1, checkpoint, final, when))
            else:
                final = self.done == len(self.policy.checkpoints) - 1
                self.trigger("deadline" if final else "checkpoint")  # type: ignore[attr-defined]
                if self.state in IMPORTED:
                    effects += self.imported(when)
                else:
                    self.done += 1
                    effects.append(cf.ImportPostponed(self.done, self.checkpoint_at(), when))
        self.clock = now
        return effects

    def imported(self, when: datetime) -> list[Effect]:
        effects: list[Effect] = [cf.ImportCertificate(self.state == "forced", when)]
        if not self.public:
            late = [
                n for n, d in self.devices.items() if d.state in ("pending", "pushed", "failed")
            ]
            for name in late:
                self.devices[name].state = "reenroll_required"
            if late:
                effects.append(cf.ReenrollmentRequired(tuple(late), when))
        effects.append(cf.RestartRequired(when))
        self.restart_required = True
        return effects

    # --- commands --------------------------------------------------------------------

    def apply(self, command: Any, now: datetime) -> list[Effect]:
        """Apply ``command``; on refusal, raise :class:`Refused` and leave self unchanged."""
        snapshot = self.snapshot()
        try:
            effects = self.advance(now)
            self.at = now
            return effects + self.command(command, now)
        except Refused:
            self.restore(snapshot)
            raise

    def snapshot(self) -> dict[str, Any]:
        state = dict(self.__dict__)
        state["devices"] = {n: dict(d.__dict__) for n, d in self.devices.items()}
        state["announced"] = set(self.announced)
        return state

    def restore(self, snapshot: dict[str, Any]) -> None:
        devices = snapshot.pop("devices")
        self.__dict__.update(snapshot)
        self.devices = {}
        for name, fields in devices.items():
            device = Device()
            device.__dict__.update(fields)
            self.devices[name] = device

    def device(self, name: str) -> Device:
        if name not in self.devices:
            raise Refused(f"unknown device {name}")
        return self.devices[name]

    def push(self, device: Device, now: datetime) -> int:
        device.state = "pushed"
        device.attempts += 1
        device.pushed_at = now
        return device.attempts

    def command(self, command: Any, now: datetime) -> list[Effect]:
        kind = type(command).__name__
        ended = self.state in IMPORTED or self.state == "cancelled"
        if kind == "DistributeRoot":
            if self.state != "pending":
                raise Refused(kind)
            if self.new_not_before > now or self.new_not_after < now + self.policy.checkpoints[-1]:
                raise Refused("certificate window")
            self.trigger("distribute_root")  # type: ignore[attr-defined]
            self.t0 = now
            pushed = [n for n, d in self.devices.items() if d.state == "pending"]
            for name in pushed:
                self.push(self.devices[name], now)
            return [cf.PushRoot(tuple(pushed), 1, now)] if pushed else []
        if kind == "ProceedToImport":
            if self.state != "pending":
                raise Refused(kind)
            if not self.new_not_before <= now <= self.new_not_after:
                raise Refused("certificate window")
            self.trigger("proceed_to_import")  # type: ignore[attr-defined]
            return self.imported(now)
        if kind == "ImportNow":
            if self.state not in RUNNING:
                raise Refused(kind)
            self.trigger("import_now")  # type: ignore[attr-defined]
            return self.imported(now)
        if kind == "ExtendManually":
            if self.state not in RUNNING:
                raise Refused(kind)
            assert self.t0 is not None
            if now < self.t0 + self.policy.manual_extension_opens:
                raise Refused("too early")
            if self.new_not_after < self.deadline() + self.policy.manual_extension:
                raise Refused("certificate expires before the moved deadline")
            self.extension += self.policy.manual_extension
            self.extensions += 1
            return []
        if kind == "Cancel":
            if self.state not in RUNNING and self.state != "pending":
                raise Refused(kind)
            self.trigger("cancel")  # type: ignore[attr-defined]
            return []
        if kind == "ServerRestarted":
            self.restart_required = False
            return []
        if kind in ("Retry", "RetryAllFailed"):
            if self.kind is not cf.CertificateKind.MDM_SERVER or self.state not in RUNNING:
                raise Refused(kind)
            if kind == "Retry":
                device = self.device(command.device_id)
                if device.state != "failed":
                    raise Refused("not failed")
                return [cf.PushRoot((command.device_id,), self.push(device, now), now)]
            groups: dict[int, list[str]] = {}
            for name, device in self.devices.items():
                if device.state == "failed":
                    groups.setdefault(self.push(device, now), []).append(name)
            return [cf.PushRoot(tuple(groups[a]), a, now) for a in sorted(groups)]
        # Device reports and enrolment.
        if self.state == "cancelled":
            if kind == "Enroll" or command.device_id in self.devices:
                raise Refused("cancelled")
            raise Refused("unknown device")
        if kind == "Enroll":
            known = self.devices.get(command.device_id)
            if known is None:
                device = self.devices[command.device_id] = Device()
            elif known.state != "removed":
                return []
            else:
                device = known
            device.state = "pending"
            if self.state in RUNNING:
                return [cf.PushRoot((command.device_id,), self.push(device, now), now)]
            if self.state in IMPORTED:
                device.state = "installed"
            return []
        device = self.device(command.device_id)
        if kind == "Unenroll":
            device.state = "removed"
            return []
        if kind == "DeviceInstalled":
            if device.state == "installed":
                return []
            if device.state in ("removed", "reenroll_required"):
                raise Refused("cannot install")
            device.state = "installed"
            return []
        if kind == "DeviceFailed":
            if self.state not in RUNNING:
                raise Refused("not distributing")
            if device.state == "failed":
                return []
            if device.state != "pushed":
                raise Refused("not pushed")
            device.state = "failed"
            device.reason = command.reason
            return []
        if kind == "Reenrolled":
            if not ended or self.state == "cancelled":
                raise Refused("not imported")
            if device.state == "installed":
                return []
            if device.state != "reenroll_required":
                raise Refused("not reenroll_required")
            device.state = "installed"
            return []
        raise AssertionError(kind)
