"""The delivery adapters against real peers: aiosmtpd with STARTTLS, and a local HTTP server
standing in for the Twilio Messages API and for an SMS webhook."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest

from stepguard.adapters.delivery import (
    SmtpEmailSender,
    SmtpSecurity,
    TwilioSmsSender,
    WebhookSmsSender,
)
from stepguard.core.errors import ConfigurationError
from stepguard.core.factors.oob import CodePurpose
from stepguard.core.notices import NoticeType
from stepguard.core.secret import Secret
from stepguard.service.ports import CodeMessage, NoticeMessage, SendError
from support.outbound import SMTP_PASSWORD, SMTP_USER, HttpPeer, SmtpPeer, smtp_server
from support.services import free_port

AT = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
SUMMARY = 'Transfer EUR 900 to <b>Mallory</b> & "evil.example"'


def code_message(to: str, code: str = "493817") -> CodeMessage:
    return CodeMessage(
        to=to,
        code=Secret(code),
        purpose=CodePurpose.STEP_UP,
        summary=SUMMARY,
        action="payments.transfer",
        expires_at=AT,
        ttl_minutes=10,
        issuer="Acme Bank",
    )


def smtp_sender(peer: SmtpPeer, **options: object) -> SmtpEmailSender:
    kwargs: dict[str, object] = {
        "host": peer.host,
        "port": peer.port,
        "sender": "Acme Bank <security@acme.example>",
        "ca_file": peer.ca_file,
        "timeout_seconds": 5.0,
        **options,
    }
    return SmtpEmailSender(**kwargs)  # type: ignore[arg-type]


# --- SMTP --------------------------------------------------------------------------------


async def test_smtp_delivers_a_code_over_starttls_with_a_text_and_an_html_part(
    tmp_path: Path,
) -> None:
    with smtp_server(tmp_path) as peer:
        await smtp_sender(peer).send_code(code_message("alice@example.com"))
    mailbox = peer.mailbox
    assert len(mailbox.messages) == 1
    mail = mailbox.messages[0]
    assert mail["To"] == "alice@example.com"
    assert mail["From"] == "Acme Bank <security@acme.example>"
    assert mail["Subject"] == "Acme Bank: your verification code"
    assert "493817" not in mail["Subject"]
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail.get_content_type() == "multipart/alternative"
    _, recipients, over_tls, _ = mailbox.envelopes[0]
    assert recipients == ["alice@example.com"]
    assert over_tls  # the server required STARTTLS and the client did it
    text, html = mailbox.text(), mailbox.html()
    assert mailbox.code() == "493817"
    assert SUMMARY in text  # what is being approved, verbatim in the text part
    assert "10 minutes" in text
    # HTML: escaped, and nothing clickable, not even an auto-linked domain.
    assert "<b>Mallory</b>" not in html
    assert "&lt;b&gt;Mallory&lt;/b&gt;" in html
    assert "evil<span>.</span>example" in html
    assert "<a " not in html.lower()
    assert "href" not in html.lower()
    assert "493817" in html


async def test_smtp_authenticates_when_configured(tmp_path: Path) -> None:
    with smtp_server(tmp_path, require_auth=True) as peer:
        sender = smtp_sender(peer, username=SMTP_USER, password=Secret(SMTP_PASSWORD))
        await sender.send_code(code_message("alice@example.com"))
        wrong = smtp_sender(peer, username=SMTP_USER, password=Secret("wrong"))
        with pytest.raises(SendError) as failed:
            await wrong.send_code(code_message("alice@example.com", code="111222"))
    assert len(peer.mailbox.messages) == 1
    assert peer.mailbox.envelopes[0][3] is not None  # the delivered one was authenticated
    assert "wrong" not in failed.value.reason
    assert "111222" not in failed.value.reason


async def test_starttls_is_required_a_server_without_it_gets_nothing(tmp_path: Path) -> None:
    with smtp_server(tmp_path, starttls=False) as peer, pytest.raises(SendError):
        await smtp_sender(peer).send_code(code_message("alice@example.com"))
    assert peer.mailbox.messages == []


async def test_an_untrusted_certificate_is_refused(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as peer:
        sender = smtp_sender(peer, ca_file=None)  # the system store does not know the cert
        with pytest.raises(SendError, match=r"^smtp "):
            await sender.send_code(code_message("alice@example.com"))
    assert peer.mailbox.messages == []


async def test_implicit_tls_against_a_starttls_server_fails_safely(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as peer, pytest.raises(SendError):
        await smtp_sender(peer, security=SmtpSecurity.TLS).send_code(
            code_message("alice@example.com")
        )


async def test_smtp_connection_refused_is_a_send_error() -> None:
    sender = SmtpEmailSender(host="127.0.0.1", port=free_port(), sender="s@x.example")
    with pytest.raises(SendError, match="SMTPConnectError"):
        await sender.send_code(code_message("alice@example.com"))


async def test_notices_carry_no_code_and_no_link(tmp_path: Path) -> None:
    with smtp_server(tmp_path) as peer:
        await smtp_sender(peer).send_notice(
            NoticeMessage(
                to="alice@example.com",
                type=NoticeType.FACTOR_REMOVED,
                at=AT,
                issuer="Acme Bank",
                details={"factor_type": "totp"},
            )
        )
    text, html = peer.mailbox.text(), peer.mailbox.html()
    assert "A sign-in method was removed" in text
    assert "authenticator app" in text
    assert "2026-11-28 12:00 UTC" in text
    assert "href" not in html.lower()


# --- Twilio-compatible API -----------------------------------------------------------------


def twilio(peer: HttpPeer, **options: object) -> TwilioSmsSender:
    kwargs: dict[str, object] = {
        "account_sid": "AC123",
        "auth_token": Secret("twilio-token"),
        "from_number": "+15005550006",
        "base_url": peer.url,
        "timeout_seconds": 2.0,
        **options,
    }
    return TwilioSmsSender(**kwargs)  # type: ignore[arg-type]


async def test_twilio_request_shape_and_basic_auth() -> None:
    with HttpPeer() as peer:
        await twilio(peer).send_code(code_message("+4915112345678"))
    [request] = peer.requests
    assert request.method == "POST"
    assert request.path == "/2010-04-01/Accounts/AC123/Messages.json"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    expected = base64.b64encode(b"AC123:twilio-token").decode()
    assert request.headers["authorization"] == f"Basic {expected}"
    form = request.form()
    assert set(form) == {"To", "From", "Body"}
    assert form["To"] == "+4915112345678"
    assert form["From"] == "+15005550006"
    assert form["Body"].startswith("493817 is your Acme Bank code to approve: Transfer EUR 900")


async def test_twilio_with_a_messaging_service_sends_no_from() -> None:
    with HttpPeer() as peer:
        await twilio(peer, from_number=None, messaging_service_sid="MG9").send_code(
            code_message("+4915112345678")
        )
    form = peer.requests[0].form()
    assert form["MessagingServiceSid"] == "MG9"
    assert "From" not in form


def test_twilio_needs_exactly_one_sender() -> None:
    with pytest.raises(ConfigurationError):
        TwilioSmsSender(account_sid="AC1", auth_token=Secret("t"))
    with pytest.raises(ConfigurationError):
        TwilioSmsSender(
            account_sid="AC1", auth_token=Secret("t"), from_number="+1", messaging_service_sid="M"
        )


async def test_a_5xx_is_retried_once_and_then_succeeds() -> None:
    with HttpPeer() as peer:
        peer.statuses = [503, 201]
        await twilio(peer).send_code(code_message("+4915112345678"))
    assert len(peer.requests) == 2
    assert peer.requests[0].body == peer.requests[1].body


async def test_a_persistent_5xx_fails_after_one_retry_without_leaking() -> None:
    with HttpPeer() as peer:
        peer.statuses = [503]
        with pytest.raises(SendError) as failed:
            await twilio(peer).send_code(code_message("+4915112345678"))
    assert len(peer.requests) == 2
    assert failed.value.reason == "sms provider http 503"


async def test_a_4xx_is_never_retried() -> None:
    with HttpPeer() as peer:
        peer.statuses = [400]
        with pytest.raises(SendError, match="http 400"):
            await twilio(peer).send_code(code_message("+4915112345678"))
    assert len(peer.requests) == 1


class CountingTransport(httpx.AsyncHTTPTransport):
    """httpx's real transport, counting the attempts that go through it."""

    def __init__(self) -> None:
        super().__init__()
        self.attempts = 0

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.attempts += 1
        return await super().handle_async_request(request)


@pytest.mark.parametrize("kind", ["twilio", "webhook"])
async def test_connection_refused_is_retried_once_then_fails(kind: str) -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    transport = CountingTransport()
    sender: TwilioSmsSender | WebhookSmsSender
    if kind == "twilio":
        sender = TwilioSmsSender(
            account_sid="AC1",
            auth_token=Secret("t"),
            from_number="+15005550006",
            base_url=url,
            timeout_seconds=1.0,
            transport=transport,
        )
    else:
        sender = WebhookSmsSender(url=url, timeout_seconds=1.0, transport=transport)
    with pytest.raises(SendError, match="unreachable"):
        await sender.send_code(code_message("+4915112345678"))
    assert transport.attempts == 2


async def test_a_5xx_notice_is_retried_once() -> None:
    with HttpPeer() as peer:
        peer.statuses = [502, 201]
        await twilio(peer).send_notice(
            NoticeMessage(
                to="+4915112345678", type=NoticeType.LOCKOUT_REACHED, at=AT, issuer="Acme Bank"
            )
        )
    assert len(peer.requests) == 2
    assert "locked" in peer.requests[1].form()["Body"]


async def test_a_slow_provider_times_out_and_is_not_retried() -> None:
    with HttpPeer() as peer:
        peer.delay = 1.5
        sender = twilio(peer, timeout_seconds=0.3)
        with pytest.raises(SendError, match="timeout"):
            await sender.send_code(code_message("+4915112345678"))
        recorded = len(peer.requests)
    assert recorded == 1  # the provider may have sent it: a retry could send it twice


# --- webhook -------------------------------------------------------------------------------


async def test_webhook_fills_the_json_template_safely_and_sends_the_auth_header() -> None:
    template = json.dumps(
        {"message": {"recipient": "{to}", "text": "{body}"}, "meta": ["{to}", 7, True]}
    )
    nasty = 'Pay "x", "to": "+1999"} {to} {body} \\u0000'
    with HttpPeer() as peer:
        sender = WebhookSmsSender(
            url=f"{peer.url}/send",
            body_template=template,
            auth_header="X-Api-Key",
            auth_value=Secret("hook-secret"),
        )
        message = CodeMessage(
            to="+4915112345678",
            code=Secret("123456"),
            purpose=CodePurpose.STEP_UP,
            summary=nasty,
            action=None,
            expires_at=AT,
            ttl_minutes=5,
            issuer="Acme",
        )
        await sender.send_code(message)
    [request] = peer.requests
    assert request.path == "/send"
    assert request.headers["x-api-key"] == "hook-secret"
    assert request.headers["content-type"] == "application/json"
    body = request.json()
    assert body["message"]["recipient"] == "+4915112345678"
    assert body["meta"] == ["+4915112345678", 7, True]
    text = body["message"]["text"]
    assert text.startswith("123456 is your Acme code")
    assert '"to": "+1999"} {to} {body}' in text  # literal: no injection, no second pass
    assert set(body) == {"message", "meta"}


@pytest.mark.parametrize("template", ["not json", "[1]", '{"to": "{to}"}', '{"body": "{body}"}'])
def test_bad_webhook_templates_are_refused_at_startup(template: str) -> None:
    with pytest.raises(ConfigurationError):
        WebhookSmsSender(url="https://sms.example/send", body_template=template)


async def test_webhook_retries_a_5xx_once_and_never_a_4xx() -> None:
    with HttpPeer() as peer:
        peer.statuses = [500, 200]
        sender = WebhookSmsSender(url=peer.url)
        await sender.send_code(code_message("+4915112345678"))
        assert len(peer.requests) == 2
        peer.requests.clear()
        peer.statuses = [422]
        with pytest.raises(SendError):
            await sender.send_code(code_message("+4915112345678"))
        assert len(peer.requests) == 1
