"""The worker's configuration (certflow/worker/_config.py): what worker.md's example
reads as, durations, and one-line errors naming the key; secrets read from files and
kept out of every repr."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from certflow.worker import ConfigError, load_config, parse_duration, read_config


def write(folder: Path, text: str) -> Path:
    path = folder / "worker.toml"
    path.write_text(text)
    return path


@pytest.fixture
def secrets(tmp_path: Path) -> Path:
    (tmp_path / "smtp-password").write_text("pw-123\n")
    (tmp_path / "webhook-secret").write_text("hook-456")
    return tmp_path


def test_the_example_of_worker_md(secrets: Path, sink_script: Path) -> None:
    config = load_config(
        write(
            secrets,
            f"""
[worker]
poll_interval = "60s"
max_attempts = 10
backoff = "30s"

[smtp]
host = "smtp.example.com"
port = 587
starttls = true
username = "certflow"
password_file = "smtp-password"
from = "certflow@example.com"
to = ["mdm-admins@example.com"]

[webhook]
url = "https://mdm.example.com/hooks/certflow"
secret_file = "{secrets / "webhook-secret"}"
timeout = "10s"

[exec]
command = ["{sink_script}", "--from-certflow"]
timeout = "60s"

[routes]
Notify = ["smtp", "webhook"]
"*" = ["webhook"]
""",
        )
    )
    assert config.worker.poll_interval == timedelta(seconds=60)
    assert config.worker.backoff == timedelta(seconds=30)
    assert config.worker.max_attempts == 10
    assert config.smtp is not None
    assert config.smtp.password == "pw-123"
    assert config.webhook is not None
    assert config.webhook.secret == b"hook-456"
    assert config.exec is not None
    assert config.exec.timeout == timedelta(seconds=60)
    assert config.route("Notify") == ("smtp", "webhook")
    assert config.route("PushRoot") == ("webhook",)
    assert set(config.secrets) == {"pw-123", "hook-456"}
    assert "pw-123" not in repr(config)
    assert "hook-456" not in repr(config)


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("60s", 60), ("5m", 300), ("1h30m", 5400), ("500ms", 0.5), ("1d", 86400), ("1.5s", 1.5)],
)
def test_durations(text: str, seconds: float) -> None:
    assert parse_duration(text) == timedelta(seconds=seconds)


@pytest.mark.parametrize("text", ["60", "", "s", "1 h", "0s", "-5s", "5 minutes", 60])
def test_what_is_no_duration(text: object) -> None:
    with pytest.raises(ValueError, match=r"duration|longer than zero"):
        parse_duration(text)


ROUTE = '[routes]\n"*" = ["webhook"]\n'
HOOK = '[webhook]\nurl = "http://127.0.0.1:9/h"\nsecret_file = "webhook-secret"\n'


@pytest.mark.parametrize(
    ("text", "named"),
    [
        ('[worker]\npoll_intervall = "60s"\n' + HOOK + ROUTE, "[worker] poll_intervall"),
        ("[workers]\n" + HOOK + ROUTE, "[workers]"),
        ('[worker]\npoll_interval = "soon"\n' + HOOK + ROUTE, "[worker] poll_interval"),
        ("[worker]\nmax_attempts = 0\n" + HOOK + ROUTE, "[worker] max_attempts"),
        (HOOK.replace("webhook-secret", "missing-file") + ROUTE, "[webhook] secret_file"),
        (HOOK.replace('secret_file = "webhook-secret"\n', "") + ROUTE, "[webhook] secret_file"),
        (HOOK.replace("http://", "ftp://") + ROUTE, "[webhook] url"),
        (HOOK + '[webhook2]\nurl = "x"\n' + ROUTE, "[webhook2]"),
        (HOOK, "[routes]"),
        (HOOK + '[routes]\nNotice = ["webhook"]\n', "[routes] Notice"),
        (HOOK + '[routes]\nNotify = ["smtp"]\n', "[routes] Notify"),
        (HOOK + '[routes]\nNotify = ["pager"]\n', "[routes] Notify"),
        (HOOK + '[routes]\nNotify = "webhook"\n', "[routes] Notify"),
        (
            HOOK + ROUTE + '[smtp]\nhost = "h"\nfrom = "a@b"\nto = ["c@d"]\nusername = "u"\n',
            "[smtp] password_file",
        ),
        (HOOK + ROUTE + '[smtp]\nhost = "h"\nto = ["c@d"]\n', "[smtp] from"),
        (
            HOOK + ROUTE + '[smtp]\nhost = "h"\nfrom = "a@b"\nto = ["c@d"]\nport = 0\n',
            "[smtp] port",
        ),
        (HOOK + ROUTE + '[exec]\ncommand = ["/nonexistent/mdm-push"]\n', "[exec] command"),
        (HOOK + ROUTE + "[exec]\ncommand = []\n", "[exec] command"),
    ],
)
def test_an_error_is_one_line_naming_the_key(secrets: Path, text: str, named: str) -> None:
    path = write(secrets, text)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"configuration {path}: {named} ")


def test_bad_toml_names_the_file_and_the_line(tmp_path: Path) -> None:
    path = write(tmp_path, '[worker]\npoll_interval = "60s\n')
    with pytest.raises(ConfigError, match=rf"^configuration {path}: not valid TOML: .*line 2"):
        load_config(path)


def test_a_missing_configuration_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"worker\.toml: cannot read it: No such file"):
        load_config(tmp_path / "worker.toml")


def test_an_empty_secret_file_is_refused(secrets: Path) -> None:
    (secrets / "webhook-secret").write_text("\n")
    with pytest.raises(ConfigError, match=r"\[webhook\] secret_file .*the file is empty"):
        load_config(write(secrets, HOOK + ROUTE))


def test_a_secret_never_appears_in_an_error(secrets: Path) -> None:
    # The URL carries a password: the error about the URL does not show it.
    text = HOOK.replace("http://127.0.0.1:9/h", "gopher://user:hunter2@host/") + ROUTE
    with pytest.raises(ConfigError) as caught:
        load_config(write(secrets, text))
    assert "hunter2" not in str(caught.value)


def test_relative_files_are_read_beside_the_configuration(secrets: Path) -> None:
    config = read_config(HOOK + ROUTE, base=secrets)
    assert config.webhook is not None
    assert config.webhook.secret == b"hook-456"
    assert config.worker.lease == timedelta(minutes=5)
    assert config.route("Notify") == ("webhook",)


def test_an_explicit_empty_route_takes_a_kind_out_of_star(secrets: Path) -> None:
    config = read_config(HOOK + ROUTE + "PushRoot = []\n", base=secrets)
    assert config.route("PushRoot") == ()
    assert config.route("Notify") == ("webhook",)


def test_a_url_s_query_never_appears_in_an_error(secrets: Path) -> None:
    # A token passed in the query string (and a password in the userinfo) is cut off.
    bad = "ftp://user:hunter2@host/h?token=SECRET#frag"
    text = HOOK.replace("http://127.0.0.1:9/h", bad) + ROUTE
    with pytest.raises(ConfigError) as caught:
        load_config(write(secrets, text))
    message = str(caught.value)
    assert "SECRET" not in message
    assert "hunter2" not in message
    assert "'ftp://***@host/h'" in message


SMTP = (
    '[smtp]\nhost = "mail.example.com"\nfrom = "certflow@example.com"\n'
    'to = ["admins@example.com"]\nusername = "certflow"\npassword_file = "smtp-password"\n'
)
MAIL_ROUTE = '[routes]\n"*" = ["smtp"]\n'


def test_a_login_without_tls_is_refused_naming_the_key(secrets: Path) -> None:
    path = write(secrets, SMTP + "starttls = false\n" + MAIL_ROUTE)
    with pytest.raises(ConfigError) as caught:
        load_config(path)
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(f"configuration {path}: [smtp] username needs starttls or tls")
    assert "allow_plaintext_auth" in message


def test_a_login_without_tls_is_allowed_on_the_operator_s_word(secrets: Path) -> None:
    text = SMTP + "starttls = false\nallow_plaintext_auth = true\n" + MAIL_ROUTE
    config = load_config(write(secrets, text))
    assert config.smtp is not None
    assert (config.smtp.starttls, config.smtp.tls, config.smtp.username) == (
        False, False, "certflow",
    )  # fmt: skip
    # Without a login nothing secret crosses: no opt-in needed.
    plain = SMTP.replace('username = "certflow"\npassword_file = "smtp-password"\n', "")
    assert load_config(write(secrets, plain + "starttls = false\n" + MAIL_ROUTE)).smtp
