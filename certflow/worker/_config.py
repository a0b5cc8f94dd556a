"""The worker's configuration: a TOML file (``docs/worker.md``), checked whole before
anything is delivered.

Every error is one :class:`ConfigError` line naming the file and the key
(``[smtp] password_file``) with what is wrong. Secrets (the SMTP password, the webhook
secret) are read from the files the configuration names, never from the configuration
or the command line, and are kept out of every ``repr``.
"""

from __future__ import annotations

import os
import re
import shutil
import tomllib
from collections.abc import Callable, Mapping
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar

import attrs

from certflow.core import effects as effects_module
from certflow.core.errors import CertflowError

__all__ = [
    "EFFECT_KINDS",
    "HANDLER_NAMES",
    "Config",
    "ConfigError",
    "ExecSettings",
    "SmtpSettings",
    "WebhookSettings",
    "WorkerSettings",
    "load_config",
    "parse_duration",
    "read_config",
]

#: The effect kinds a route may name (besides ``"*"``): the effect class names.
EFFECT_KINDS = frozenset(name for name in effects_module.__all__ if name != "Effect")
#: The handlers a configuration can set up, by their section.
HANDLER_NAMES = ("smtp", "webhook", "exec")

T = TypeVar("T")


class ConfigError(CertflowError):
    """The configuration cannot be used: one line naming the file, the key and the problem."""


@attrs.frozen
class WorkerSettings:
    """``[worker]``: the loop and the delivery record.

    ``backoff`` and ``backoff_limit`` and ``max_attempts`` become the store's
    ``retry_backoff``, ``retry_backoff_limit`` and ``max_attempts``. ``lease`` is how long
    a worker keeps the effects it claimed before another may take them over; ``batch``
    how many it claims at a time.
    """

    poll_interval: timedelta = timedelta(seconds=60)
    max_attempts: int = 10
    backoff: timedelta = timedelta(seconds=30)
    backoff_limit: timedelta = timedelta(hours=1)
    lease: timedelta = timedelta(minutes=5)
    batch: int = 20


@attrs.frozen
class SmtpSettings:
    """``[smtp]``: e-mail to administrators."""

    host: str
    sender: str
    to: tuple[str, ...]
    port: int = 587
    starttls: bool = True
    tls: bool = False
    username: str | None = None
    password: str | None = attrs.field(default=None, repr=False)
    timeout: timedelta = timedelta(seconds=30)
    ca_file: Path | None = None


@attrs.frozen
class WebhookSettings:
    """``[webhook]``: every effect routed to it, POSTed as signed JSON."""

    url: str
    secret: bytes = attrs.field(repr=False)
    timeout: timedelta = timedelta(seconds=10)
    ca_file: Path | None = None


@attrs.frozen
class ExecSettings:
    """``[exec]``: a command run per effect, the effect's JSON on standard input."""

    command: tuple[str, ...]
    timeout: timedelta = timedelta(seconds=60)


@attrs.frozen
class Config:
    """A whole configuration: the loop's settings, the handlers set up, and the routes
    (effect kind or ``"*"`` → handler names, in order)."""

    worker: WorkerSettings
    routes: Mapping[str, tuple[str, ...]]
    smtp: SmtpSettings | None = None
    webhook: WebhookSettings | None = None
    exec: ExecSettings | None = None
    source: str = "configuration"

    def route(self, kind: str) -> tuple[str, ...]:
        """The handlers of an effect kind: its own route, else ``"*"``'s, else none."""
        return self.routes.get(kind, self.routes.get("*", ()))

    @property
    def secrets(self) -> tuple[str, ...]:
        """Every secret the configuration holds, as text: what logs must never show."""
        found: list[str] = []
        if self.smtp is not None and self.smtp.password:
            found.append(self.smtp.password)
        if self.webhook is not None and self.webhook.secret:
            found.append(self.webhook.secret.decode("utf-8", "replace"))
        return tuple(found)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: object) -> timedelta:
    """``"60s"``, ``"5m"``, ``"1h30m"``, ``"500ms"``, ``"1d"`` as a positive timedelta;
    :class:`ValueError` otherwise."""
    if not isinstance(text, str) or not text.strip():
        raise ValueError(f'{text!r} is not a duration; write one like "60s", "5m" or "1h"')
    spelled = text.strip()
    parts = list(_DURATION.finditer(spelled))
    if not parts or "".join(p.group(0) for p in parts) != spelled:
        raise ValueError(f'{text!r} is not a duration; write one like "60s", "5m" or "1h"')
    seconds = sum(float(p.group(1)) * _UNITS[p.group(2)] for p in parts)
    if seconds <= 0:
        raise ValueError(f"{text!r} must be longer than zero")
    return timedelta(seconds=seconds)


def load_config(path: str | os.PathLike[str]) -> Config:
    """The configuration in the TOML file at ``path``, checked whole; secret files are
    read now. :class:`ConfigError` (one line, naming the key) otherwise."""
    where = os.fspath(path)
    try:
        text = Path(where).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        problem = error.strerror if isinstance(error, OSError) and error.strerror else error
        raise ConfigError(f"configuration {where}: cannot read it: {problem}") from None
    return read_config(text, source=where, base=Path(where).parent)


def read_config(text: str, *, source: str = "configuration", base: Path | None = None) -> Config:
    """The configuration written in ``text`` (TOML); relative file names are taken from
    ``base`` (the configuration's folder). :class:`ConfigError` as :func:`load_config`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as error:
        raise ConfigError(f"configuration {source}: not valid TOML: {error}") from None
    reader = _Reader(source, base or Path("."))
    reader.known(data, "", ("worker", "routes", *HANDLER_NAMES))
    worker = reader.worker(reader.table(data, "worker"))
    smtp = reader.smtp(data["smtp"]) if "smtp" in data else None
    webhook = reader.webhook(data["webhook"]) if "webhook" in data else None
    command = reader.exec(data["exec"]) if "exec" in data else None
    configured = {
        name for name, value in zip(HANDLER_NAMES, (smtp, webhook, command), strict=True) if value
    }
    if "routes" not in data:
        raise reader.error(
            "[routes]",
            'is missing: say which handlers take which effect kinds, e.g. "*" = ["webhook"]',
        )
    routes = reader.routes(reader.table(data, "routes"), configured)
    return Config(worker, routes, smtp, webhook, command, source)


class _Reader:
    """Reads the sections, each key checked, every error naming the key."""

    def __init__(self, source: str, base: Path) -> None:
        self.source = source
        self.base = base

    def error(self, key: str, problem: str) -> ConfigError:
        return ConfigError(f"configuration {self.source}: {key} {problem}")

    def table(self, data: Mapping[str, Any], section: str) -> dict[str, Any]:
        value = data.get(section, {})
        if not isinstance(value, dict):
            raise self.error(f"[{section}]", "must be a table")
        return value

    def known(self, data: Mapping[str, Any], section: str, keys: tuple[str, ...]) -> None:
        for key in data:
            if key not in keys:
                where = f"[{section}] {key}" if section else f"[{key}]"
                raise self.error(where, f"is not a known key (known: {', '.join(keys)})")

    def get(
        self,
        data: Mapping[str, Any],
        section: str,
        key: str,
        convert: Callable[[Any], T],
        default: T | None = None,
        *,
        required: bool = False,
    ) -> T:
        if key not in data:
            if required:
                raise self.error(f"[{section}] {key}", "is missing")
            return default  # type: ignore[return-value]
        try:
            return convert(data[key])
        except (ValueError, TypeError) as error:
            raise self.error(f"[{section}] {key}", str(error)) from None

    def file(self, section: str, key: str, value: object) -> Path:
        if not isinstance(value, str) or not value:
            raise self.error(f"[{section}] {key}", "must be a file name")
        path = Path(value) if Path(value).is_absolute() else self.base / value
        if not path.is_file():
            raise self.error(f"[{section}] {key}", f"{path}: no such file")
        return path

    def secret(self, data: Mapping[str, Any], section: str, key: str) -> str:
        path = self.file(section, key, data.get(key))
        try:
            # One trailing newline is the editor's, not the secret's.
            text = path.read_text(encoding="utf-8").removesuffix("\n").removesuffix("\r")
        except (OSError, UnicodeDecodeError) as error:
            problem = error.strerror if isinstance(error, OSError) and error.strerror else error
            raise self.error(f"[{section}] {key}", f"{path}: cannot read it: {problem}") from None
        if not text:
            raise self.error(f"[{section}] {key}", f"{path}: the file is empty")
        return text

    def worker(self, data: dict[str, Any]) -> WorkerSettings:
        self.known(
            data,
            "worker",
            ("poll_interval", "max_attempts", "backoff", "backoff_limit", "lease", "batch"),
        )
        d = WorkerSettings()
        return WorkerSettings(
            poll_interval=self.get(
                data, "worker", "poll_interval", parse_duration, d.poll_interval
            ),
            max_attempts=self.get(data, "worker", "max_attempts", _count, d.max_attempts),
            backoff=self.get(data, "worker", "backoff", parse_duration, d.backoff),
            backoff_limit=self.get(
                data, "worker", "backoff_limit", parse_duration, d.backoff_limit
            ),
            lease=self.get(data, "worker", "lease", parse_duration, d.lease),
            batch=self.get(data, "worker", "batch", _count, d.batch),
        )

    def smtp(self, raw: object) -> SmtpSettings:
        data = self.table({"smtp": raw}, "smtp")
        keys = ("host", "port", "starttls", "tls", "username", "password_file", "from", "to",
                "timeout", "ca_file", "allow_plaintext_auth")  # fmt: skip
        self.known(data, "smtp", keys)
        username = self.get(data, "smtp", "username", _text, None)
        if (username is None) != ("password_file" not in data):
            missing = "password_file" if username is not None else "username"
            raise self.error(
                f"[smtp] {missing}", "is missing: give username and password_file together"
            )
        starttls = self.get(data, "smtp", "starttls", _flag, True)
        tls = self.get(data, "smtp", "tls", _flag, False)
        if starttls and tls and "starttls" in data:
            raise self.error("[smtp] tls", "and starttls exclude each other: choose one")
        # Without TLS the password would cross the network as readable as the mail: only
        # on the operator's word (a relay on the same host, or a trusted private link).
        plaintext = self.get(data, "smtp", "allow_plaintext_auth", _flag, False)
        if username is not None and not starttls and not tls and not plaintext:
            raise self.error(
                "[smtp] username",
                "needs starttls or tls: the password would be sent unencrypted "
                "(set allow_plaintext_auth = true to allow it)",
            )
        return SmtpSettings(
            host=self.get(data, "smtp", "host", _text, required=True),
            sender=self.get(data, "smtp", "from", _address, required=True),
            to=self.get(data, "smtp", "to", _addresses, required=True),
            port=self.get(data, "smtp", "port", _port, 465 if tls else 587),
            starttls=starttls and not tls,
            tls=tls,
            username=username,
            password=self.secret(data, "smtp", "password_file") if username else None,
            timeout=self.get(data, "smtp", "timeout", parse_duration, timedelta(seconds=30)),
            ca_file=self.file("smtp", "ca_file", data["ca_file"]) if "ca_file" in data else None,
        )

    def webhook(self, raw: object) -> WebhookSettings:
        data = self.table({"webhook": raw}, "webhook")
        self.known(data, "webhook", ("url", "secret_file", "timeout", "ca_file"))
        if "secret_file" not in data:
            raise self.error("[webhook] secret_file", "is missing: the body is signed with it")
        return WebhookSettings(
            url=self.get(data, "webhook", "url", _url, required=True),
            secret=self.secret(data, "webhook", "secret_file").encode("utf-8"),
            timeout=self.get(data, "webhook", "timeout", parse_duration, timedelta(seconds=10)),
            ca_file=(
                self.file("webhook", "ca_file", data["ca_file"]) if "ca_file" in data else None
            ),
        )

    def exec(self, raw: object) -> ExecSettings:
        data = self.table({"exec": raw}, "exec")
        self.known(data, "exec", ("command", "timeout"))
        command = self.get(data, "exec", "command", _command, required=True)
        program = command[0]
        found = shutil.which(program) if os.sep not in program else program
        if found is None or not os.access(found, os.X_OK) or not Path(found).is_file():
            raise self.error("[exec] command", f"{program}: no such executable file")
        return ExecSettings(
            command=command,
            timeout=self.get(data, "exec", "timeout", parse_duration, timedelta(seconds=60)),
        )

    def routes(self, data: dict[str, Any], configured: set[str]) -> dict[str, tuple[str, ...]]:
        routes: dict[str, tuple[str, ...]] = {}
        for kind, names in data.items():
            key = f"[routes] {kind if kind.isidentifier() else repr(kind)}"
            if kind != "*" and kind not in EFFECT_KINDS:
                raise self.error(
                    key, f'is no effect kind (kinds: {", ".join(sorted(EFFECT_KINDS))}, or "*")'
                )
            if not isinstance(names, list) or not all(isinstance(n, str) for n in names):
                raise self.error(key, 'must be a list of handler names, e.g. ["smtp", "webhook"]')
            for name in names:
                if name not in HANDLER_NAMES:
                    raise self.error(
                        key, f"names {name!r}, no handler (handlers: smtp, webhook, exec)"
                    )
                if name not in configured:
                    raise self.error(key, f"names {name!r}, but the configuration has no [{name}]")
            if len(set(names)) != len(names):
                raise self.error(key, "names a handler twice")
            routes[kind] = tuple(names)
        if not any(routes.values()):
            raise self.error("[routes]", "routes no effect kind to any handler")
        return routes


def _count(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"must be a whole number of at least 1, got {value!r}")
    return value


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ValueError(f"must be a port number from 1 to 65535, got {value!r}")
    return value


def _flag(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _text(value: object) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ValueError(f"must be a non-empty string, got {value!r}")
    return value


def _address(value: object) -> str:
    text = _text(value)
    if "@" not in text or any(c.isspace() for c in text.strip()):
        raise ValueError(f"must be an e-mail address, got {value!r}")
    return text.strip()


def _addresses(value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value:
        raise ValueError("must be a list of e-mail addresses")
    return tuple(_address(v) for v in value)


def _url(value: object) -> str:
    text = _text(value)
    if not re.match(r"^https?://[^/\s]+", text):
        raise ValueError(f"must be an http:// or https:// URL, got {shown_url(text)!r}")
    return text


def shown_url(text: str) -> str:
    """``text`` (a URL, or what was meant for one) as an error or the log may show it:
    its userinfo (``user:password@``) masked, its query and fragment cut off (a token
    is often passed as ``?token=...``). The one rule for every place that shows a URL."""
    masked = re.sub(r"//[^/@\s]*@", "//***@", text)
    return re.split(r"[?#]", masked, maxsplit=1)[0]


def _command(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise ValueError('must be a non-empty list of strings, e.g. ["/usr/local/bin/mdm-push"]')
    return tuple(value)
