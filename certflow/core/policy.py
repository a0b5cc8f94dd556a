"""What a rollout may do and when: the certificate kind and the timeline policy."""

from __future__ import annotations

from datetime import timedelta
from enum import StrEnum

import attrs

from certflow.core.errors import InvalidInput

__all__ = ["CertificateKind", "ImportRule", "Policy"]


class CertificateKind(StrEnum):
    """Which server certificate a rollout replaces.

    The source document allows retrying a failed root push only for MDM server
    certificates; :attr:`retry_allowed` answers that.
    """

    MDM_SERVER = "mdm_server"
    AGENT_SERVER = "agent_server"

    @property
    def retry_allowed(self) -> bool:
        """Whether failed pushes of the root may be retried for this kind."""
        return self is CertificateKind.MDM_SERVER

    @property
    def label(self) -> str:
        """The kind as administrators say it: ``MDM server``, ``agent server``."""
        return {"mdm_server": "MDM server", "agent_server": "agent server"}[self.value]

    @property
    def label_with_article(self) -> str:
        """The label with its indefinite article: ``an MDM server``, ``an agent server``."""
        return f"an {self.label}"  # both labels start with a vowel sound


class ImportRule(StrEnum):
    """When a checkpoint may import: the spec's default, or the source text read literally."""

    DISTRIBUTED_OR_EXPIRED = "distributed_or_expired"
    DISTRIBUTED_AND_EXPIRED = "distributed_and_expired"


_DAY = timedelta(days=1)


@attrs.frozen
class Policy:
    """The timeline of a rollout, every duration measured from t0 (distribution start).

    The defaults are the spec's: checkpoints on day 7, 14 and 21 (the last is the
    deadline), a notice one day before each, manual extension by 7 days from day 6, the
    ``distributed_or_expired`` rule, and no acknowledgement timeout.
    """

    checkpoints: tuple[timedelta, ...] = (7 * _DAY, 14 * _DAY, 21 * _DAY)
    notice_before: timedelta = _DAY
    manual_extension: timedelta = 7 * _DAY
    manual_extension_opens: timedelta = 6 * _DAY
    import_rule: ImportRule = ImportRule.DISTRIBUTED_OR_EXPIRED
    ack_timeout: timedelta | None = None

    def __attrs_post_init__(self) -> None:
        problems = list(self._problems())
        if problems:
            raise InvalidInput("invalid Policy: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        found: list[str] = []
        spans = {
            "notice_before": self.notice_before,
            "manual_extension": self.manual_extension,
            "manual_extension_opens": self.manual_extension_opens,
        }
        if self.ack_timeout is not None:
            spans["ack_timeout"] = self.ack_timeout
        for name, span in spans.items():
            if not isinstance(span, timedelta):
                found.append(f"{name} must be a timedelta, got {span!r}")
            elif span <= timedelta(0):
                found.append(f"{name} must be positive, got {span}")
        if not isinstance(self.import_rule, ImportRule):
            found.append(f"import_rule must be an ImportRule, got {self.import_rule!r}")
        if not self.checkpoints or not all(isinstance(c, timedelta) for c in self.checkpoints):
            return [*found, "checkpoints must be a non-empty tuple of timedelta"]
        if found:
            return found
        previous = timedelta(0)
        for checkpoint in self.checkpoints:
            # A notice must fall after the previous checkpoint, or it would be due in
            # the past the moment that checkpoint extends the rollout.
            if checkpoint - previous <= self.notice_before:
                found.append(
                    f"checkpoint {checkpoint} must come more than notice_before "
                    f"({self.notice_before}) after {previous or 't0'}"
                )
            previous = checkpoint
        # Likewise an extension made just before a checkpoint must not move its notice
        # into the past.
        if self.manual_extension <= self.notice_before:
            found.append("manual_extension must be longer than notice_before")
        return found

    @property
    def deadline(self) -> timedelta:
        """The last checkpoint: the import happens then whatever the condition."""
        return self.checkpoints[-1]
