"""The composition root builds the delivery adapters from settings, and refuses unsafe ones."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.delivery import (
    ConsoleSender,
    SmtpEmailSender,
    TwilioSmsSender,
    WebhookSmsSender,
)
from stepguard.bootstrap import delivery_code_key, outbound
from stepguard.core.errors import ConfigurationError
from stepguard.core.factors.oob import Channel, CodePurpose
from stepguard.core.secret import Secret
from stepguard.service.ports import CodeMessage
from stepguard.settings import Settings

KEY = SecretBox.generate_key()


def settings(**values: Any) -> Settings:
    return Settings(secret_keys=[KEY], policy_file=Path("unused.yaml"), **values)  # type: ignore[list-item]


def test_nothing_is_configured_by_default() -> None:
    built = outbound(settings())
    assert built.email is None
    assert built.sms is None
    assert built.config.code_key is not None


@pytest.mark.parametrize("field", ["email_backend", "sms_backend"])
def test_the_console_sender_needs_dev_mode(field: str) -> None:
    with pytest.raises(ConfigurationError, match="STEPGUARD_DEV_MODE"):
        outbound(settings(**{field: "console"}))


async def test_in_dev_mode_the_console_sender_writes_messages_to_a_file(tmp_path: Path) -> None:
    path = tmp_path / "outbox.jsonl"
    built = outbound(
        settings(
            dev_mode=True,
            email_backend="console",
            sms_backend="console",
            console_delivery_file=path,
        )
    )
    assert isinstance(built.email, ConsoleSender)
    assert isinstance(built.sms, ConsoleSender)
    message = CodeMessage(
        to="alice@example.com",
        code=Secret("123456"),
        purpose=CodePurpose.ENROLL,
        summary="x",
        action=None,
        expires_at=datetime(2026, 1, 1, tzinfo=UTC),
        ttl_minutes=10,
        issuer="StepGuard",
    )
    await built.email.send_code(message)
    [line] = path.read_text().splitlines()
    written = json.loads(line)
    assert written["to"] == "alice@example.com"
    assert "123456" in written["text"]


def test_plaintext_smtp_only_to_a_loopback_relay_or_in_dev_mode() -> None:
    with pytest.raises(ConfigurationError, match="loopback"):
        outbound(settings(email_backend="smtp", smtp_host="mail.example.com", smtp_security="none"))
    assert isinstance(
        outbound(settings(email_backend="smtp", smtp_host="127.0.0.1", smtp_security="none")).email,
        SmtpEmailSender,
    )
    assert isinstance(
        outbound(settings(email_backend="smtp", smtp_host="mail.example.com")).email,
        SmtpEmailSender,
    )


def test_sms_providers_need_their_credentials() -> None:
    with pytest.raises(ConfigurationError):
        outbound(settings(sms_backend="twilio"))
    with pytest.raises(ConfigurationError):
        outbound(settings(sms_backend="webhook"))
    twilio = outbound(
        settings(
            sms_backend="twilio",
            twilio_account_sid="AC1",
            twilio_auth_token="token",
            twilio_from="+15005550006",
        )
    ).sms
    assert isinstance(twilio, TwilioSmsSender)
    assert "token" not in repr(twilio)
    webhook = outbound(
        settings(sms_backend="webhook", sms_webhook_url="https://sms.example/send?key=k")
    ).sms
    assert isinstance(webhook, WebhookSmsSender)
    assert "key=k" not in repr(webhook)


def test_code_lifetimes_over_ten_minutes_are_refused() -> None:
    with pytest.raises(ValueError, match="600"):
        settings(delivery_code_ttl_seconds=601)


def test_the_code_key_is_derived_and_changes_with_the_secret_key() -> None:
    one = delivery_code_key(settings())
    assert len(one) == 32
    assert one == delivery_code_key(settings())
    other = Settings(secret_keys=[SecretBox.generate_key()], policy_file=Path("x"))  # type: ignore[list-item]
    assert delivery_code_key(other) != one
    assert outbound(settings()).config.global_limits[Channel.SMS].count == 200
