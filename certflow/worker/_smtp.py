"""The SMTP handler: one e-mail per effect routed to it, to every ``to`` address."""

from __future__ import annotations

import smtplib
import ssl
from datetime import datetime

from certflow.store import Store, StoredEffect
from certflow.worker._config import SmtpSettings
from certflow.worker._mail import compose
from certflow.worker._payload import DeliveryFailed

__all__ = ["SmtpHandler"]


class SmtpHandler:
    """Sends :func:`~certflow.worker.compose`'s message through ``settings.host``: a new
    connection per message (notices are few, and a long-lived SMTP session would
    outlive the server's idle timeout between them), upgraded with STARTTLS (or TLS
    from the start, ``tls``) against the system's CAs or ``ca_file``, then
    authenticated if a username is set. The server accepting the message for every
    recipient is delivered; anything else raises :class:`DeliveryFailed`."""

    name = "smtp"

    def __init__(self, settings: SmtpSettings) -> None:
        self.settings = settings
        ca = None if settings.ca_file is None else str(settings.ca_file)
        self._context = ssl.create_default_context(cafile=ca)

    def __call__(self, stored: StoredEffect, store: Store, now: datetime) -> None:
        s = self.settings
        message = compose(stored, store, now, sender=s.sender, to=s.to)
        where = f"SMTP server {s.host}:{s.port}"
        timeout = s.timeout.total_seconds()
        try:
            client = (
                smtplib.SMTP_SSL(s.host, s.port, timeout=timeout, context=self._context)
                if s.tls
                else smtplib.SMTP(s.host, s.port, timeout=timeout)
            )
            with client:
                if s.starttls:
                    client.starttls(context=self._context)
                if s.username is not None and s.password is not None:
                    client.login(s.username, s.password)
                refused = client.send_message(message, from_addr=s.sender, to_addrs=list(s.to))
        except smtplib.SMTPAuthenticationError as error:
            raise DeliveryFailed(
                f"{where}: authentication as {s.username!r} refused ({error.smtp_code})"
            ) from None
        except smtplib.SMTPRecipientsRefused as error:
            raise DeliveryFailed(
                f"{where}: refused every recipient: {', '.join(error.recipients)}"
            ) from None
        except smtplib.SMTPResponseException as error:
            said = (
                error.smtp_error.decode("utf-8", "replace")
                if isinstance(error.smtp_error, bytes)
                else str(error.smtp_error)
            )
            raise DeliveryFailed(f"{where}: answered {error.smtp_code} {said}") from None
        except smtplib.SMTPNotSupportedError as error:
            raise DeliveryFailed(f"{where}: {error}") from None
        except TimeoutError:
            raise DeliveryFailed(f"{where}: no answer within {timeout:g}s") from None
        except ssl.SSLError as error:
            raise DeliveryFailed(f"{where}: TLS failed: {error.reason or error}") from None
        except (OSError, smtplib.SMTPException) as error:
            reason = getattr(error, "strerror", None) or str(error) or type(error).__name__
            raise DeliveryFailed(f"{where}: {reason}") from None
        if refused:
            raise DeliveryFailed(f"{where}: refused {', '.join(sorted(refused))}")
