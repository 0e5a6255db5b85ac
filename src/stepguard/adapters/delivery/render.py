"""Message texts from Jinja2 templates: email (a text and an HTML part) and SMS.

The HTML environment autoescapes everything, and ``nolink`` keeps mail clients from turning
user-supplied text (a challenge summary naming ``evil.example``) into a clickable link: the
messages never contain a link to click, so a phished copy cannot borrow their look with one.
Templates receive values, never template source, so nothing a user typed is evaluated.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC

from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from markupsafe import Markup, escape

from stepguard.core.notices import NoticeType
from stepguard.service.ports import CodeMessage, NoticeMessage

__all__ = ["EmailContent", "Renderer"]

_HEADLINES: dict[NoticeType, str] = {
    NoticeType.FACTOR_ADDED: "A sign-in method was added to your account.",
    NoticeType.FACTOR_REMOVED: "A sign-in method was removed from your account.",
    NoticeType.RECOVERY_CODES_USED: "One of your recovery codes was used to sign in.",
    NoticeType.RECOVERY_CODES_REGENERATED: "Your recovery codes were replaced by a new set.",
    NoticeType.LOCKOUT_REACHED: (
        "A sign-in method was locked after too many wrong codes were entered."
    ),
    NoticeType.NEW_DEVICE_STEP_UP: "A verification was completed from a new device.",
    NoticeType.PUSH_PAUSED: (
        "Several approval requests sent to your device went unanswered or were denied, so "
        "push approval is paused for a while. If you did not ask for them, change your password."
    ),
}
_FACT_LABELS: dict[str, str] = {"factor_type": "Method", "device": "Device"}
_FACTOR_NAMES: dict[str, str] = {
    "totp": "authenticator app",
    "recovery_code": "recovery codes",
    "email_otp": "email codes",
    "sms_otp": "text message codes",
    "push": "approver device",
}


def _nolink(value: object) -> Markup:
    """Escape, then break what mail clients auto-link (``.``, ``@``, ``:``) with empty
    spans: the text reads the same, but no client recognizes a URL or address in it."""
    text = str(escape(value))
    for char in (".", "@", ":"):
        text = text.replace(char, f"<span>{char}</span>")
    return Markup(text)  # noqa: S704 - built from escaped text above


@dataclass(frozen=True, slots=True, kw_only=True)
class EmailContent:
    subject: str
    text: str
    html: str


class Renderer:
    def __init__(self) -> None:
        loader = PackageLoader("stepguard.adapters.delivery", "templates")
        self._html = Environment(
            loader=loader,
            autoescape=select_autoescape(["html.j2"], default=True),
            undefined=StrictUndefined,
        )
        self._html.filters["nolink"] = _nolink
        self._text = Environment(loader=loader, autoescape=False, undefined=StrictUndefined)  # noqa: S701 - plain text parts and SMS, never HTML
        self._text.filters["nolink"] = str

    def _code_values(self, message: CodeMessage) -> dict[str, object]:
        return {
            "issuer": message.issuer,
            "purpose": message.purpose.value,
            "summary": message.summary,
            "code": message.code.reveal(),
            "ttl_minutes": message.ttl_minutes,
        }

    def _notice_values(self, message: NoticeMessage) -> dict[str, object]:
        facts = []
        for key, value in sorted(message.details.items()):
            label = _FACT_LABELS.get(key)
            if label is not None:
                facts.append((label, _FACTOR_NAMES.get(value, value)))
        return {
            "issuer": message.issuer,
            "headline": _HEADLINES[message.type],
            "at": message.at.astimezone(UTC).strftime("%Y-%m-%d %H:%M UTC"),
            "facts": facts,
        }

    def code_email(self, message: CodeMessage) -> EmailContent:
        values = self._code_values(message)
        return EmailContent(
            subject=f"{message.issuer}: your verification code",
            text=self._text.get_template("code.txt.j2").render(values),
            html=self._html.get_template("code.html.j2").render(values),
        )

    def notice_email(self, message: NoticeMessage) -> EmailContent:
        values = self._notice_values(message)
        return EmailContent(
            subject=f"{message.issuer}: security notice",
            text=self._text.get_template("notice.txt.j2").render(values),
            html=self._html.get_template("notice.html.j2").render(values),
        )

    def code_sms(self, message: CodeMessage) -> str:
        return self._text.get_template("sms_code.txt.j2").render(self._code_values(message))

    def notice_sms(self, message: NoticeMessage) -> str:
        return self._text.get_template("sms_notice.txt.j2").render(self._notice_values(message))
