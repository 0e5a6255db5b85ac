"""The "step-up satisfied from a new device" notice, on SQLite and PostgreSQL: the live risk
engine's ``new_device`` signal on the decision that opened a challenge, once the step-up is
satisfied, sends the notice (through a real SMTP server); a known device sends none."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from support.harness import Harness, start_harness
from support.outbound import SmtpPeer, smtp_server

CHROME = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/124.0.0.0 Safari/537.36"
)
TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}


@pytest.fixture
async def env(database_url: str, tmp_path: Path) -> AsyncIterator[tuple[Harness, SmtpPeer]]:
    with smtp_server(tmp_path) as smtp:
        api, runtime = await start_harness(
            database_url,
            settings_overrides={
                "risk_engine": "live",
                "risk_cache_seconds": 0,
                "risk_population_cache_seconds": 0,
                "risk_source_timeout_seconds": 10.0,
                "risk_timeout_seconds": 20.0,
                "email_backend": "smtp",
                "smtp_host": smtp.host,
                "smtp_port": smtp.port,
                "smtp_ca_file": smtp.ca_file,
            },
        )
        try:
            await api.put_subject("alice", email="alice@example.com")
            yield api, smtp
        finally:
            await runtime.services.notifications.drain()
            await api.client.aclose()
            await api.anon.aclose()
            await runtime.store.close()


async def step_up(api: Harness, secret: bytes, factor_id: str, device_id: str) -> None:
    response = await api.client.post(
        "/v1/sessions",
        json={"subject_id": "alice", "amr": ["pwd"], "user_agent": CHROME, "device_id": "dev-1"},
    )
    session_id = response.json()["session_id"]
    extra: dict[str, Any] = {"context": TRANSFER, "user_agent": CHROME, "device_id": device_id}
    decision = await api.decide(session_id, "payments.transfer", **extra)
    assert decision["decision"] == "step_up", decision
    verified = await api.verify(decision["challenge"]["id"], factor_id, api.code(secret))
    assert verified.status_code == 200, verified.text
    api.clock.advance(30)
    await api.runtime.services.notifications.drain()


def new_device_mails(smtp: SmtpPeer) -> list[str]:
    return [str(m) for m in smtp.mailbox.messages if "from a new device" in str(m)]


async def test_a_step_up_from_a_new_device_tells_the_user_once(
    env: tuple[Harness, SmtpPeer],
) -> None:
    api, smtp = env
    factor_id, secret = await api.enroll_totp()

    await step_up(api, secret, factor_id, device_id="dev-1")  # the session's own device
    assert new_device_mails(smtp) == []

    await step_up(api, secret, factor_id, device_id="dev-2")  # never seen: noticed
    [mail] = new_device_mails(smtp)
    assert "Chrome" in mail
    assert "Linux" in mail
    [sent] = [
        e
        for e in await api.audit(type="notice.sent")
        if e["details"]["notice"] == ("new_device_step_up")
    ]
    assert sent["subject_id"] == "alice"

    await step_up(api, secret, factor_id, device_id="dev-2")  # learned by the step-up
    assert len(new_device_mails(smtp)) == 1
