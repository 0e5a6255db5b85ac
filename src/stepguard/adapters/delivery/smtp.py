"""Email over SMTP with aiosmtplib: STARTTLS required by default, implicit TLS optional.

``SmtpSecurity.STARTTLS`` refuses a server that does not offer STARTTLS (aiosmtplib's
``start_tls=True``); certificates are always verified, against the system store or the
operator's ``ca_file``. ``NONE`` (plaintext) is accepted by the composition root only for a
relay on the loopback interface or in dev mode. Messages are ``multipart/alternative`` with a
text and an HTML part (:mod:`.render`).
"""

from __future__ import annotations

import email.utils
import ssl
from email.message import EmailMessage
from enum import StrEnum
from pathlib import Path

import aiosmtplib

from stepguard.adapters.delivery.render import EmailContent, Renderer
from stepguard.core.secret import Secret
from stepguard.service.ports import CodeMessage, NoticeMessage, SendError

__all__ = ["SmtpEmailSender", "SmtpSecurity"]


class SmtpSecurity(StrEnum):
    STARTTLS = "starttls"
    TLS = "tls"  # implicit TLS (SMTPS, usually port 465)
    NONE = "none"


class SmtpEmailSender:
    def __init__(
        self,
        *,
        host: str,
        port: int,
        sender: str,
        security: SmtpSecurity = SmtpSecurity.STARTTLS,
        username: str | None = None,
        password: Secret[str] | None = None,
        timeout_seconds: float = 10.0,
        ca_file: Path | None = None,
        renderer: Renderer | None = None,
    ) -> None:
        self._host = host
        self._port = port
        self._sender = sender
        self._security = security
        self._username = username
        self._password = password
        self._timeout = timeout_seconds
        self._tls = ssl.create_default_context(cafile=str(ca_file) if ca_file else None)
        self._renderer = renderer or Renderer()

    def __repr__(self) -> str:
        return f"SmtpEmailSender(host={self._host!r}, port={self._port}, security={self._security})"

    async def send_code(self, message: CodeMessage) -> None:
        await self._send(message.to, self._renderer.code_email(message))

    async def send_notice(self, message: NoticeMessage) -> None:
        await self._send(message.to, self._renderer.notice_email(message))

    def build(self, to: str, content: EmailContent) -> EmailMessage:
        mail = EmailMessage()
        mail["From"] = self._sender
        mail["To"] = to
        mail["Subject"] = content.subject
        mail["Date"] = email.utils.formatdate(usegmt=True)
        mail["Message-ID"] = email.utils.make_msgid(domain="stepguard.invalid")
        mail["Auto-Submitted"] = "auto-generated"  # RFC 3834: no auto-replies
        mail.set_content(content.text)
        mail.add_alternative(content.html, subtype="html")
        return mail

    async def _send(self, to: str, content: EmailContent) -> None:
        mail = self.build(to, content)
        try:
            await aiosmtplib.send(
                mail,
                hostname=self._host,
                port=self._port,
                username=self._username,
                password=self._password.reveal() if self._password else None,
                use_tls=self._security is SmtpSecurity.TLS,
                start_tls=self._security is SmtpSecurity.STARTTLS,
                validate_certs=True,
                tls_context=self._tls if self._security is not SmtpSecurity.NONE else None,
                timeout=self._timeout,
            )
        except aiosmtplib.SMTPTimeoutError:
            raise SendError("smtp timeout") from None
        except aiosmtplib.SMTPResponseException as error:
            # The status code only: a server's text may echo what it was sent.
            raise SendError(f"smtp {type(error).__name__} {error.code}") from None
        except aiosmtplib.SMTPException as error:
            raise SendError(f"smtp {type(error).__name__}") from None
        except (OSError, ssl.SSLError) as error:
            raise SendError(f"smtp connection failed ({type(error).__name__})") from None
