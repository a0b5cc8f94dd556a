"""certflow worker: keeps a store's time and delivers its effects (``docs/worker.md``).

The command is ``certflow worker``; everything it runs is importable, so that a host
can run the same loop, or one handler, in its own process::

    from certflow.worker import Worker, load_config, open_worker_store
    config = load_config("/etc/certflow/worker.toml")
    with open_worker_store("rollouts.db", config.worker) as store:
        Worker(store, config).run()
"""

from certflow.worker._config import (
    EFFECT_KINDS,
    HANDLER_NAMES,
    Config,
    ConfigError,
    ExecSettings,
    SmtpSettings,
    WebhookSettings,
    WorkerSettings,
    load_config,
    parse_duration,
    read_config,
)
from certflow.worker._deliver import (
    Attempt,
    Delivery,
    Retry,
    Unacknowledged,
    deliver,
    delivered_by,
    failure_record,
)
from certflow.worker._exec import ExecHandler
from certflow.worker._log import EventLog, LogFormat
from certflow.worker._loop import (
    PASS_BUDGET,
    REAL_CLOCK_SKEW,
    UNAVAILABLE_PAUSE,
    PassReport,
    Worker,
    build_handlers,
    open_worker_store,
    real_clock,
)
from certflow.worker._mail import UNTRUSTING, compose, effect_id_of, message_id
from certflow.worker._metrics import Metrics, StoreCollector
from certflow.worker._payload import (
    DeliveryFailed,
    Handler,
    effect_body,
    effect_document,
    sign,
    verify,
)
from certflow.worker._sinks import BodyLog, MailFolder
from certflow.worker._smtp import SmtpHandler
from certflow.worker._webhook import WebhookHandler

__all__ = [
    "EFFECT_KINDS",
    "HANDLER_NAMES",
    "PASS_BUDGET",
    "REAL_CLOCK_SKEW",
    "UNAVAILABLE_PAUSE",
    "UNTRUSTING",
    "Attempt",
    "BodyLog",
    "Config",
    "ConfigError",
    "Delivery",
    "DeliveryFailed",
    "EventLog",
    "ExecHandler",
    "ExecSettings",
    "Handler",
    "LogFormat",
    "MailFolder",
    "Metrics",
    "PassReport",
    "Retry",
    "SmtpHandler",
    "SmtpSettings",
    "StoreCollector",
    "Unacknowledged",
    "WebhookHandler",
    "WebhookSettings",
    "Worker",
    "WorkerSettings",
    "build_handlers",
    "compose",
    "deliver",
    "delivered_by",
    "effect_body",
    "effect_document",
    "effect_id_of",
    "failure_record",
    "load_config",
    "message_id",
    "open_worker_store",
    "parse_duration",
    "read_config",
    "real_clock",
    "sign",
    "verify",
]
