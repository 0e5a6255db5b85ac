"""Email and SMS codes on the hosted step-up page, on SQLite and PostgreSQL: the "Email me a
code" / "Text me a code" buttons send through ``DeliveryService`` (a real SMTP server,
aiosmtpd with STARTTLS; a local HTTP server standing in for the SMS provider), the code
field, resend, and one generic message for send limits and provider outages."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from support.harness import Harness, start_harness
from support.outbound import HttpPeer, SmtpPeer, smtp_server

PUBLIC = "https://login.example"
POLICY = """
version: 1
rules:
  - id: email-reverify
    match: {actions: ["profile.view"]}
    step_up: {acr: aal1, max_age: 300, methods: [email_otp]}
    summary: "Show your profile"
  - id: sms-transfer
    match: {actions: ["payments.transfer"]}
    step_up: {acr: aal2, max_age: 300, methods: [sms_otp]}
    summary: "Transfer money"
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300, methods: [sms_otp]}
default:
  deny: true
"""


@dataclass
class Env:
    api: Harness
    smtp: SmtpPeer
    sms: HttpPeer


@pytest.fixture
async def env(database_url: str, tmp_path: Path) -> AsyncIterator[Env]:
    with smtp_server(tmp_path) as smtp, HttpPeer() as sms:
        api, runtime = await start_harness(
            database_url,
            policy=POLICY,
            settings_overrides={
                "public_url": PUBLIC,
                "email_backend": "smtp",
                "smtp_host": smtp.host,
                "smtp_port": smtp.port,
                "smtp_ca_file": smtp.ca_file,
                "sms_backend": "twilio",
                "twilio_base_url": sms.url,
                "twilio_account_sid": "AC123",
                "twilio_auth_token": "twilio-token",
                "twilio_from": "+15005550006",
                "sms_timeout_seconds": 1.0,
            },
        )
        try:
            await api.put_subject("alice", email="alice@example.com")
            yield Env(api=api, smtp=smtp, sms=sms)
        finally:
            await runtime.services.notifications.drain()
            await api.client.aclose()
            await api.anon.aclose()
            await runtime.store.close()


def csrf_of(page: httpx.Response) -> str:
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert match, page.text
    return match.group(1)


async def opened(env: Env, action: str, b: httpx.AsyncClient) -> tuple[str, httpx.Response]:
    session_id = await env.api.open_session()
    decision = await env.api.decide(session_id, action)
    challenge = decision["challenge"]
    response = await b.get(challenge["page_url"][len(PUBLIC) :])
    assert response.status_code == 303, response.text
    page = await b.get(response.headers["location"])
    assert page.status_code == 200, page.text
    return challenge["id"], page


async def enroll_email(env: Env) -> str:
    response = await env.api.client.post(
        "/v1/subjects/alice/factors", json={"type": "email_otp", "address": "alice@example.com"}
    )
    factor_id: str = response.json()["factor"]["id"]
    confirm = await env.api.client.post(
        f"/v1/subjects/alice/factors/{factor_id}/confirm", json={"code": env.smtp.mailbox.code()}
    )
    assert confirm.status_code == 200, confirm.text
    await env.api.runtime.services.notifications.drain()
    return factor_id


def browser(env: Env) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=env.api.anon._transport, base_url=PUBLIC)


async def test_email_me_a_code_sends_it_and_the_code_field_verifies_it(env: Env) -> None:
    factor_id = await enroll_email(env)
    async with browser(env) as b:
        challenge_id, page = await opened(env, "profile.view", b)
        assert "Email me a code" in page.text
        assert "Text me a code" not in page.text
        before = len(env.smtp.mailbox.messages)
        sent = await b.post(
            f"/challenge/{challenge_id}/send",
            data={"csrf": csrf_of(page), "factor_id": factor_id, "return_to": ""},
        )
        assert sent.status_code == 200, sent.text
        assert "We emailed a code to a***@example.com" in sent.text
        assert "alice@example.com" not in sent.text
        assert len(env.smtp.mailbox.messages) == before + 1
        code = env.smtp.mailbox.code()
        assert "Show your profile" in env.smtp.mailbox.text()

        # Resend replaces the code: the first one no longer works.
        resent = await b.post(
            f"/challenge/{challenge_id}/send",
            data={"csrf": csrf_of(sent), "factor_id": factor_id, "return_to": ""},
        )
        assert resent.status_code == 200
        fresh = env.smtp.mailbox.code()
        form = {"csrf": csrf_of(resent), "factor_id": factor_id, "method": "oob"}
        stale = await b.post(f"/challenge/{challenge_id}/verify", data={**form, "code": code})
        assert stale.status_code == 403
        ok = await b.post(
            f"/challenge/{challenge_id}/verify",
            data={**form, "csrf": csrf_of(stale), "code": fresh},
        )
        assert ok.status_code == 303, ok.text
        status = (await env.api.client.get(f"/v1/challenges/{challenge_id}")).json()
        assert status["status"] == "satisfied"


async def test_send_limits_and_outages_get_one_generic_page(env: Env) -> None:
    factor_id = await enroll_email(env)
    response = await env.api.client.post(
        "/v1/subjects/alice/factors", json={"type": "sms_otp", "phone": "+4915112345678"}
    )
    sms_factor = response.json()["factor"]["id"]
    # The SMS factor stays pending: a pending factor gets no button and no code.
    async with browser(env) as b:
        challenge_id, page = await opened(env, "profile.view", b)
        assert f'value="{sms_factor}"' not in page.text
        csrf = csrf_of(page)
        for _ in range(3):  # the two enrollment codes were the first of five per window
            sent = await b.post(
                f"/challenge/{challenge_id}/send", data={"csrf": csrf, "factor_id": factor_id}
            )
            assert sent.status_code == 200, sent.text
            csrf = csrf_of(sent)
        limited = await b.post(
            f"/challenge/{challenge_id}/send", data={"csrf": csrf, "factor_id": factor_id}
        )
        assert limited.status_code == 429
        assert "send a code right now" in limited.text
        assert "a***@example.com" not in limited.text

        other = await b.post(
            f"/challenge/{challenge_id}/send",
            data={"csrf": csrf, "factor_id": sms_factor},
        )
        assert other.status_code == 429  # a factor that cannot serve: the same page
        assert "send a code right now" in other.text

        forged = await b.post(
            f"/challenge/{challenge_id}/send", data={"csrf": "0" * 64, "factor_id": factor_id}
        )
        assert forged.status_code == 403


async def test_text_me_a_code_and_a_provider_outage(env: Env) -> None:
    response = await env.api.client.post(
        "/v1/subjects/alice/factors", json={"type": "sms_otp", "phone": "+4915112345678"}
    )
    sms_factor = response.json()["factor"]["id"]
    body = env.sms.requests[-1].form()["Body"]
    code = re.search(r"([0-9]{6})", body)
    assert code is not None
    confirm = await env.api.client.post(
        f"/v1/subjects/alice/factors/{sms_factor}/confirm", json={"code": code.group(1)}
    )
    assert confirm.status_code == 200, confirm.text
    await env.api.runtime.services.notifications.drain()
    async with browser(env) as b:
        challenge_id, page = await opened(env, "payments.transfer", b)
        assert "Text me a code" in page.text
        env.sms.statuses = [503]
        failed = await b.post(
            f"/challenge/{challenge_id}/send",
            data={"csrf": csrf_of(page), "factor_id": sms_factor},
        )
        assert failed.status_code == 429
        assert "send a code right now" in failed.text
        assert "+49" not in failed.text
        env.sms.statuses = [201]
        sent = await b.post(
            f"/challenge/{challenge_id}/send",
            data={"csrf": csrf_of(page), "factor_id": sms_factor},
        )
        assert sent.status_code == 200, sent.text
        assert "We texted a code to" in sent.text
