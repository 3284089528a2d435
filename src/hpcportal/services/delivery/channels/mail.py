"""Email over the site's SMTP server: plain text and HTML in one message.

STARTTLS (port 587) or TLS from the first byte (465), certificate checked against the
system's CAs or ``delivery_smtp_ca_file``; login when a user name is set (the password
read from its file at each send, so it can be changed in place). The Message-ID derives
from the outbox's idempotency key: the one message a leader change may send twice
carries the same Message-ID twice, and mail clients and archives drop the repeat.
The text arrives rendered in the channel's language (``Content-Language`` says which).
"""

from __future__ import annotations

import smtplib
import ssl
from email.message import EmailMessage
from email.utils import format_datetime, formatdate

from starlette.concurrency import run_in_threadpool

from hpcportal.config import Settings
from hpcportal.config_sources import read_secret_file
from hpcportal.services.delivery import signature
from hpcportal.services.delivery.channels import DeliveryFailed, Destination, Outgoing


def message_id(settings: Settings, delivery: str) -> str:
    domain = settings.delivery_from.rpartition("@")[2] or "hpcportal"
    return f"<{delivery}@{domain}>"


def build(settings: Settings, to: Destination, message: Outgoing) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = settings.delivery_from
    mail["To"] = to.target
    mail["Subject"] = message.subject
    mail["Message-ID"] = message_id(settings, message.delivery_id)
    mail["Date"] = format_datetime(message.created_at) if message.created_at else formatdate()
    mail["Auto-Submitted"] = "auto-generated"
    mail[signature.DELIVERY_HEADER] = message.delivery_id
    mail.set_content(message.body_text)
    if message.body_html:
        mail.add_alternative(message.body_html, subtype="html")
    mail["Content-Language"] = to.language  # after the body: set_content drops Content-*
    return mail


class EmailSender:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings

    async def send(self, to: Destination, message: Outgoing) -> None:
        if not self.settings.delivery_smtp_host:
            raise DeliveryFailed("no SMTP server configured (delivery_smtp_host)")
        mail = build(self.settings, to, message)
        await run_in_threadpool(self._send, mail)

    def _tls(self) -> ssl.SSLContext:
        ca = self.settings.delivery_smtp_ca_file
        return ssl.create_default_context(cafile=str(ca) if ca else None)

    def _password(self) -> str:
        s = self.settings
        if s.delivery_smtp_password_file is not None:
            return read_secret_file(s.delivery_smtp_password_file)
        return s.delivery_smtp_password.get_secret_value() if s.delivery_smtp_password else ""

    def _send(self, mail: EmailMessage) -> None:
        s = self.settings
        host, port, timeout = (
            s.delivery_smtp_host or "",
            s.delivery_smtp_port,
            s.delivery_send_timeout_seconds,
        )
        try:
            smtp: smtplib.SMTP
            if s.delivery_smtp_security == "tls":
                smtp = smtplib.SMTP_SSL(host, port, timeout=timeout, context=self._tls())
            else:
                smtp = smtplib.SMTP(host, port, timeout=timeout)
            with smtp:
                smtp.ehlo()
                if s.delivery_smtp_security == "starttls":
                    smtp.starttls(context=self._tls())
                    smtp.ehlo()
                if s.delivery_smtp_username:
                    smtp.login(s.delivery_smtp_username, self._password())
                smtp.send_message(mail)
        except smtplib.SMTPAuthenticationError as exc:  # the site's settings: fixable
            raise DeliveryFailed(f"SMTP login refused: {exc.smtp_code}"[:500]) from exc
        except (smtplib.SMTPRecipientsRefused, smtplib.SMTPSenderRefused) as exc:
            raise DeliveryFailed(f"SMTP refused: {exc}"[:500], permanent=True) from exc
        except smtplib.SMTPResponseException as exc:
            raise DeliveryFailed(
                f"SMTP {exc.smtp_code}: {exc.smtp_error!r}"[:500], permanent=exc.smtp_code >= 500
            ) from exc
        except (smtplib.SMTPException, OSError) as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}"[:500]) from exc
