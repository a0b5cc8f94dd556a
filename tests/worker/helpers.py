"""Configurations for the worker's tests, written as an operator would write them."""

from __future__ import annotations

from pathlib import Path

from certflow.worker import Config, read_config

__all__ = ["config_text", "make_config"]


def config_text(
    folder: Path,
    *,
    webhook_url: str | None = None,
    sink: Path | None = None,
    smtp_port: int | None = None,
    ca_file: Path | None = None,
    routes: str = '"*" = ["webhook"]',
    worker: str = "",
    webhook_timeout: str = "1s",
) -> str:
    """A configuration: ``[worker]`` (``worker`` lines), the handlers given, ``routes``.
    Secrets go in files beside it."""
    (folder / "webhook-secret").write_text("whk-7c1f9a-s3cret\n")
    (folder / "smtp-password").write_text("smtp-s3cret-Pa55\n")
    parts = [f'[worker]\nbackoff = "30s"\nlease = "5m"\n{worker}\n']
    if webhook_url is not None:
        parts.append(
            f'[webhook]\nurl = "{webhook_url}"\nsecret_file = "webhook-secret"\n'
            f'timeout = "{webhook_timeout}"\n'
        )
    if sink is not None:
        parts.append(f'[exec]\ncommand = ["{sink}"]\ntimeout = "5s"\n')
    if smtp_port is not None:
        parts.append(
            f'[smtp]\nhost = "127.0.0.1"\nport = {smtp_port}\nusername = "certflow"\n'
            f'password_file = "smtp-password"\nfrom = "certflow@example.com"\n'
            f'to = ["mdm-admins@example.com"]\nca_file = "{ca_file}"\ntimeout = "2s"\n'
        )
    parts.append(f"[routes]\n{routes}\n")
    return "\n".join(parts)


def make_config(folder: Path, **options: object) -> Config:
    text = config_text(folder, **options)  # type: ignore[arg-type]
    (folder / "worker.toml").write_text(text)
    return read_config(text, source=str(folder / "worker.toml"), base=folder)
