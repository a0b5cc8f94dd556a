"""How far a rollout has got: its in-scope devices, and how many trust the root.

One definition for every place that states progress (the view details, a notice, the
store's overview): devices count by the device machine's declared flags (``in_scope``,
``trusts``), and a publicly trusted root counts every in-scope device as trusting, since
devices trust such a root already and nothing needs distributing.
"""

from __future__ import annotations

from collections.abc import Mapping

import attrs

from certflow.core.plan import DeviceState, Plan

__all__ = ["Progress"]


@attrs.frozen
class Progress:
    """In-scope devices, those that trust the root, those whose push failed, and those
    pushed and not answered yet; ``public_root``: the root is publicly trusted, so no
    distribution is needed."""

    in_scope: int
    trusting: int
    failed: int
    unanswered: int
    public_root: bool

    @classmethod
    def of(cls, plan: Plan, counts: Mapping[str, int]) -> Progress:
        """The progress of a rollout of ``plan`` with ``counts`` devices per state name."""
        in_scope = trusting = 0
        for state in DeviceState:
            n = counts.get(state.value, 0)
            if state.in_scope:
                in_scope += n
                if state.trusts:
                    trusting += n
        public = plan.root_publicly_trusted
        return cls(
            in_scope=in_scope,
            trusting=in_scope if public else trusting,
            failed=0 if public else counts.get(DeviceState.FAILED.value, 0),
            unanswered=0 if public else counts.get(DeviceState.PUSHED.value, 0),
            public_root=public,
        )

    @property
    def untrusting(self) -> int:
        """In-scope devices that do not trust the root yet."""
        return self.in_scope - self.trusting

    @property
    def percent(self) -> float:
        """Trusting devices as a percentage of the scope (an empty scope is complete)."""
        return 100.0 if self.in_scope == 0 else 100.0 * self.trusting / self.in_scope
