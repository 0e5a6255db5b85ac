"""Email and SMS codes end to end, on SQLite and PostgreSQL: the real app and store, a real
SMTP server (aiosmtpd with STARTTLS) and a local HTTP server standing in for the Twilio API.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stepguard.core.factors.oob import CodePurpose
from stepguard.service.attempts import RejectedAttemptError, check_code
from support.harness import Harness, start_harness
from support.outbound import HttpPeer, SmtpPeer, smtp_server

POLICY = """
version: 1
rules:
  - id: email-reverify
    match: {actions: ["profile.view"]}
    step_up: {acr: aal1, max_age: 300, methods: [email_otp]}
    summary: "Show your profile section {context.section}"
  - id: sms-transfer
    match: {actions: ["payments.transfer"]}
    step_up: {acr: aal2, max_age: 300, bind: true, methods: [sms_otp, totp]}
    summary: "Transfer {context.currency} {context.amount} to {context.payee}"
  - id: settings
    match: {actions: ["settings.*"]}
    step_up: {acr: aal2, max_age: 300}
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300, methods: [totp, recovery_code, sms_otp]}
default:
  deny: true
"""
TRANSFER = {"currency": "EUR", "amount": 900, "payee": "Bob"}


@dataclass
class Oob:
    api: Harness
    smtp: SmtpPeer
    sms: HttpPeer

    @property
    def mail(self) -> Any:
        return self.smtp.mailbox

    async def settle(self) -> None:
        """Wait for the notices scheduled so far (they are sent after the response)."""
        await self.api.runtime.services.notifications.drain()

    async def enroll_email(
        self, subject: str = "alice", address: str = "alice@example.com", **body: Any
    ) -> str:
        response = await self.api.client.post(
            f"/v1/subjects/{subject}/factors",
            json={"type": "email_otp", "address": address, **body},
        )
        assert response.status_code == 201, response.text
        data = response.json()
        assert data["factor"]["status"] == "pending"
        factor_id: str = data["factor"]["id"]
        response = await self.api.client.post(
            f"/v1/subjects/{subject}/factors/{factor_id}/confirm", json={"code": self.mail.code()}
        )
        assert response.status_code == 200, response.text
        return factor_id

    async def enroll_sms(self, subject: str = "alice", phone: str = "+4915112345678") -> str:
        response = await self.api.client.post(
            f"/v1/subjects/{subject}/factors", json={"type": "sms_otp", "phone": phone}
        )
        assert response.status_code == 201, response.text
        factor_id: str = response.json()["factor"]["id"]
        response = await self.api.client.post(
            f"/v1/subjects/{subject}/factors/{factor_id}/confirm",
            json={"code": self.sms.sms_code()},
        )
        assert response.status_code == 200, response.text
        await self.settle()  # the "factor added" notice is an SMS too
        return factor_id

    async def challenge(self, action: str, subject: str = "alice", **extra: Any) -> str:
        session_id = await self.api.open_session(subject)
        decision = await self.api.decide(session_id, action, **extra)
        assert decision["decision"] == "step_up", decision
        return str(decision["challenge"]["id"])

    async def deliver(self, challenge_id: str, factor_id: str) -> Any:
        return await self.api.client.post(
            f"/v1/challenges/{challenge_id}/deliveries", json={"factor_id": factor_id}
        )


async def _start(database_url: str, tmp_path: Path, **settings: Any) -> AsyncIterator[Oob]:
    with smtp_server(tmp_path) as smtp, HttpPeer() as sms:
        api, runtime = await start_harness(
            database_url,
            policy=POLICY,
            settings_overrides={
                "email_backend": "smtp",
                "smtp_host": smtp.host,
                "smtp_port": smtp.port,
                "smtp_ca_file": smtp.ca_file,
                "smtp_from": "Acme <security@acme.example>",
                "sms_backend": "twilio",
                "twilio_base_url": sms.url,
                "twilio_account_sid": "AC123",
                "twilio_auth_token": "twilio-token",
                "twilio_from": "+15005550006",
                "sms_timeout_seconds": 2.0,
                "totp_issuer": "Acme",
                **settings,
            },
        )
        try:
            await api.put_subject("alice", email="alice@example.com")
            yield Oob(api=api, smtp=smtp, sms=sms)
        finally:
            await runtime.services.notifications.drain()
            await api.client.aclose()
            await api.anon.aclose()
            await runtime.store.close()


@pytest.fixture
async def oob(database_url: str, tmp_path: Path) -> AsyncIterator[Oob]:
    async for started in _start(database_url, tmp_path):
        yield started


def codes(oob: Oob) -> int:
    return sum(1 for m in oob.mail.messages if "verification code" in str(m["Subject"]))


# --- enrollment ----------------------------------------------------------------------------


async def test_email_enrollment_sends_a_code_that_activates_the_factor_once(oob: Oob) -> None:
    response = await oob.api.client.post(
        "/v1/subjects/alice/factors", json={"type": "email_otp", "address": "alice@example.com"}
    )
    assert response.status_code == 201, response.text
    data = response.json()
    assert data["factor"]["destination"] == "a***@example.com"
    assert data["delivery"]["channel"] == "email"
    assert data["delivery"]["destination"] == "a***@example.com"
    assert "alice@example.com" not in response.text
    factor_id = data["factor"]["id"]
    code = oob.mail.code()
    assert oob.mail.to() == "alice@example.com"
    assert "confirming this address" in oob.mail.text()

    confirm = f"/v1/subjects/alice/factors/{factor_id}/confirm"
    wrong = "000000" if code != "000000" else "111111"
    assert (await oob.api.client.post(confirm, json={"code": wrong})).status_code == 403
    response = await oob.api.client.post(confirm, json={"code": code})
    assert response.status_code == 200, response.text
    assert response.json()["factor"]["status"] == "active"
    assert (await oob.api.client.post(confirm, json={"code": code})).status_code == 409

    listed = (await oob.api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert [f["destination"] for f in listed] == ["a***@example.com"]


@pytest.mark.parametrize(
    "body",
    [
        {"type": "email_otp", "address": "not-an-address"},
        {"type": "email_otp", "address": "alice@localhost"},
        {"type": "email_otp"},
        {"type": "sms_otp", "phone": "015112345678"},
        {"type": "sms_otp", "phone": "+49 151 12345678"},
        {"type": "sms_otp", "phone": "+4900000000"},
        {"type": "sms_otp", "address": "alice@example.com"},
        {"type": "email_otp", "address": "alice@example.com", "phone": "+4915112345678"},
    ],
)
async def test_destinations_are_strictly_validated(oob: Oob, body: dict[str, Any]) -> None:
    response = await oob.api.client.post("/v1/subjects/alice/factors", json=body)
    assert response.status_code == 400, response.text
    assert oob.mail.messages == []
    assert oob.sms.requests == []


async def test_the_stored_destination_is_encrypted(oob: Oob) -> None:
    await oob.enroll_email()
    from sqlalchemy import select

    from stepguard.adapters.storage.tables import delivery_codes, factors

    async with oob.api.runtime.store.read() as uow:
        rows = (await uow.execute(select(factors.c.secret_enc))).all()
        hashes = (await uow.execute(select(delivery_codes.c.code_hash))).all()
    assert rows
    assert all("alice" not in str(r.secret_enc) for r in rows)
    assert hashes
    assert all(len(h.code_hash) == 64 for h in hashes)
    assert all(oob.mail.code(0) not in h.code_hash for h in hashes)


# --- step-up codes ---------------------------------------------------------------------------


async def test_an_email_step_up_shows_what_is_approved_and_the_code_works_once(oob: Oob) -> None:
    factor_id = await oob.enroll_email()
    challenge_id = await oob.challenge("profile.view", context={"section": "billing"})
    challenge = (await oob.api.client.get(f"/v1/challenges/{challenge_id}")).json()
    assert [f["id"] for f in challenge["factors"]] == [factor_id]

    response = await oob.deliver(challenge_id, factor_id)
    assert response.status_code == 202, response.text
    sent = response.json()
    assert sent["channel"] == "email"
    assert sent["destination"] == "a***@example.com"
    assert "Show your profile section billing" in oob.mail.text()
    assert "billing" in oob.mail.html()
    code = oob.mail.code()

    verified = await oob.api.verify(challenge_id, factor_id, code)
    assert verified.status_code == 200, verified.text
    session = verified.json()["session"]
    assert session["acr"] == "aal1"
    assert session["amr"] == ["pwd", "otp", "email"]
    again = await oob.api.verify(challenge_id, factor_id, code)
    assert again.status_code == 403


async def test_a_code_is_single_use_under_concurrency(oob: Oob) -> None:
    factor_id = await oob.enroll_email()
    challenge_id = await oob.challenge("profile.view", context={"section": "x"})
    assert (await oob.deliver(challenge_id, factor_id)).status_code == 202
    code = oob.mail.code()
    results = await asyncio.gather(
        *(oob.api.verify(challenge_id, factor_id, code) for _ in range(8))
    )
    assert sorted(r.status_code for r in results) == [200] + [403] * 7


async def test_a_resend_invalidates_the_previous_code(oob: Oob) -> None:
    factor_id = await oob.enroll_email()
    challenge_id = await oob.challenge("profile.view", context={"section": "x"})
    assert (await oob.deliver(challenge_id, factor_id)).status_code == 202
    first = oob.mail.code()
    assert (await oob.deliver(challenge_id, factor_id)).status_code == 202
    second = oob.mail.code()
    if first != second:
        assert (await oob.api.verify(challenge_id, factor_id, first)).status_code == 403
    assert (await oob.api.verify(challenge_id, factor_id, second)).status_code == 200
    issued = await oob.api.audit(type="delivery.code_issued")
    assert issued[-1]["details"]["replaced_codes"] == 1


async def test_a_code_expires(database_url: str, tmp_path: Path) -> None:
    async for oob in _start(database_url, tmp_path, delivery_code_ttl_seconds=120):
        factor_id = await oob.enroll_email()
        challenge_id = await oob.challenge("profile.view", context={"section": "x"})
        response = await oob.deliver(challenge_id, factor_id)
        assert response.status_code == 202
        code = oob.mail.code()
        oob.api.clock.advance(121)
        assert (await oob.api.verify(challenge_id, factor_id, code)).status_code == 403
        failed = await oob.api.audit(type="verification.failed")
        assert "no live code" in failed[-1]["details"]["reason"]


async def test_a_code_for_one_challenge_never_satisfies_another(oob: Oob) -> None:
    factor_id = await oob.enroll_email()
    first = await oob.challenge("profile.view", context={"section": "a"})
    second = await oob.challenge("profile.view", context={"section": "b"})
    assert (await oob.deliver(first, factor_id)).status_code == 202
    code = oob.mail.code()
    assert (await oob.api.verify(second, factor_id, code)).status_code == 403
    # ...and that failure burned nothing but a guess: the code still works where it belongs.
    assert (await oob.api.verify(first, factor_id, code)).status_code == 200


async def test_a_code_for_one_purpose_never_verifies_for_another(oob: Oob) -> None:
    factor_id = await oob.enroll_email()
    challenge_id = await oob.challenge("profile.view", context={"section": "x"})
    assert (await oob.deliver(challenge_id, factor_id)).status_code == 202
    code = oob.mail.code()
    deps = oob.api.runtime.services.deps
    now = oob.api.clock.now()
    async with deps.store.transaction() as uow:
        factor = await uow.factors.get_for_update("alice", factor_id)
        assert factor is not None
        with pytest.raises(RejectedAttemptError, match="no live code"):
            await check_code(
                uow,
                factor,
                code,
                now=now,
                purpose=CodePurpose.ENROLL,
                challenge_id=None,
                oob=deps.outbound.config,
            )
    assert (await oob.api.verify(challenge_id, factor_id, code)).status_code == 200


async def test_email_cannot_satisfy_aal2_and_is_not_offered(oob: Oob) -> None:
    factor_id = await oob.enroll_email()
    challenge_id = await oob.challenge("settings.password")
    challenge = (await oob.api.client.get(f"/v1/challenges/{challenge_id}")).json()
    assert challenge["factors"] == []
    response = await oob.deliver(challenge_id, factor_id)
    assert response.status_code == 409
    assert codes(oob) == 1  # the enrollment code only: nothing was sent for this challenge


async def test_sms_is_restricted_a_rule_must_name_it(oob: Oob) -> None:
    factor_id = await oob.enroll_sms()
    # A rule that names sms_otp: satisfied, with a grant bound to the transfer.
    challenge_id = await oob.challenge("payments.transfer", context=TRANSFER)
    response = await oob.deliver(challenge_id, factor_id)
    assert response.status_code == 202, response.text
    assert response.json()["destination"] == "+49*********78"
    body = oob.sms.requests[-1].form()["Body"]
    assert "Transfer EUR 900 to Bob" in body
    verified = await oob.api.verify(challenge_id, factor_id, oob.sms.sms_code())
    assert verified.status_code == 200, verified.text
    assert verified.json()["grant"]
    assert "sms" in verified.json()["session"]["amr"]
    # The default aal2 rule does not accept a restricted authenticator.
    settings = await oob.challenge("settings.password")
    challenge = (await oob.api.client.get(f"/v1/challenges/{settings}")).json()
    assert challenge["factors"] == []
    sent = len(oob.sms.requests)
    assert (await oob.deliver(settings, factor_id)).status_code == 409
    assert len(oob.sms.requests) == sent


async def test_a_provider_outage_fails_safely(oob: Oob) -> None:
    factor_id = await oob.enroll_sms()
    challenge_id = await oob.challenge("payments.transfer", context=TRANSFER)
    oob.sms.statuses = [503]
    before = len(oob.sms.requests)
    response = await oob.deliver(challenge_id, factor_id)
    assert response.status_code == 503
    assert response.json()["error"] == "delivery_failed"
    assert len(oob.sms.requests) == before + 2  # one retry, then give up
    leaked = oob.sms.sms_code()  # what the provider saw before failing
    assert leaked not in response.text
    assert "twilio-token" not in response.text
    # The code is dead even though the provider may have delivered it.
    assert (await oob.api.verify(challenge_id, factor_id, leaked)).status_code == 403
    events = await oob.api.audit()
    failed = [e for e in events if e["type"] == "delivery.failed"]
    assert failed[-1]["details"]["reason"] == "sms provider http 503"
    assert leaked not in json.dumps(events)
    assert "twilio-token" not in json.dumps(events)


async def test_a_failed_enrollment_send_leaves_no_pending_factor(oob: Oob) -> None:
    oob.sms.statuses = [500]
    response = await oob.api.client.post(
        "/v1/subjects/alice/factors", json={"type": "sms_otp", "phone": "+4915112345678"}
    )
    assert response.status_code == 503
    assert (await oob.api.client.get("/v1/subjects/alice/factors")).json()["factors"] == []


async def test_a_channel_without_a_sender_cannot_be_enrolled(
    database_url: str, tmp_path: Path
) -> None:
    async for oob in _start(database_url, tmp_path, sms_backend="none"):
        response = await oob.api.client.post(
            "/v1/subjects/alice/factors", json={"type": "sms_otp", "phone": "+4915112345678"}
        )
        assert response.status_code == 400
        assert "not configured" in response.json()["message"]


# --- send limits ---------------------------------------------------------------------------


async def test_send_limits_per_subject_destination_and_globally_refuse_alike(
    database_url: str, tmp_path: Path
) -> None:
    async for oob in _start(
        database_url,
        tmp_path,
        delivery_limit_per_subject=3,
        delivery_limit_per_destination=4,
        delivery_global_sms_per_hour=9,
    ):
        api = oob.api
        # Every SMS counts globally, notices too: each enrollment is a code and a notice.
        alice = await oob.enroll_sms("alice")  # global 2; alice's and the number's 1st code
        challenge_id = await oob.challenge("payments.transfer", context=TRANSFER)
        for _ in range(2):
            assert (await oob.deliver(challenge_id, alice)).status_code == 202
        by_subject = await oob.deliver(challenge_id, alice)  # alice's 4th within the window
        assert by_subject.status_code == 429

        await api.put_subject("bob")
        bob = await oob.enroll_sms("bob")  # the same number's 4th code; global 6
        bob_challenge = await oob.challenge("payments.transfer", subject="bob", context=TRANSFER)
        by_destination = await oob.deliver(bob_challenge, bob)
        assert by_destination.status_code == 429

        await api.put_subject("carol")
        await oob.enroll_sms("carol", phone="+4915112345679")  # global 8
        await api.put_subject("dave")
        await oob.enroll_sms("dave", phone="+4915112345670")  # global 9 (its notice held back)
        await api.put_subject("erin")
        by_global = await api.client.post(
            "/v1/subjects/erin/factors", json={"type": "sms_otp", "phone": "+4915112345671"}
        )
        assert by_global.status_code == 429

        bodies = {r.text for r in (by_subject, by_destination, by_global)}
        assert len(bodies) == 1  # nothing tells which limit, or that the number is known
        refused = await api.audit(type="delivery.refused")
        assert [e["details"]["scope"] for e in refused] == ["subject", "destination", "global"]
        assert (await api.client.get("/v1/subjects/erin/factors")).json()["factors"] == []

        # The window slides: later, sends are allowed again.
        api.clock.advance(3601)
        assert (await oob.deliver(challenge_id, alice)).status_code in (202, 409)


# --- notifications -------------------------------------------------------------------------


def notices(oob: Oob) -> list[str]:
    return [
        oob.mail.text(i).splitlines()[2]
        for i, m in enumerate(oob.mail.messages)
        if "security notice" in str(m["Subject"])
    ]


async def test_notices_for_each_event_without_codes(oob: Oob) -> None:
    api = oob.api
    factor_id = await oob.enroll_email()
    await oob.settle()
    assert notices(oob) == ["A sign-in method was added to your account."]

    # Recovery codes: added (email does not gate the next factor), then regenerated.
    response = await api.client.post("/v1/subjects/alice/factors", json={"type": "recovery_code"})
    assert response.status_code == 201, response.text
    recovery = response.json()["recovery_codes"]
    recovery_id = response.json()["factor"]["id"]
    await oob.settle()
    assert notices(oob)[-1] == "A sign-in method was added to your account."

    session_id = await api.stepped_up_session(recovery_id, recovery[0])
    await oob.settle()
    assert notices(oob)[-1] == "One of your recovery codes was used to sign in."

    totp_id, secret = await api.enroll_totp(session_id=session_id)
    await oob.settle()
    assert notices(oob)[-1] == "A sign-in method was added to your account."
    assert "authenticator app" in oob.mail.text()
    totp_session = await api.stepped_up_session(totp_id, api.code(secret))
    response = await api.client.post(
        "/v1/subjects/alice/factors", json={"type": "recovery_code", "session_id": totp_session}
    )
    assert response.status_code == 201, response.text
    recovery += response.json()["recovery_codes"]
    await oob.settle()
    assert notices(oob)[-1] == "Your recovery codes were replaced by a new set."

    response = await api.client.delete(
        f"/v1/subjects/alice/factors/{factor_id}", params={"session_id": totp_session}
    )
    assert response.status_code == 204
    await oob.settle()
    # The email factor is gone: the notice goes to the subject's own address.
    assert notices(oob)[-1] == "A sign-in method was removed from your account."
    assert oob.mail.to() == "alice@example.com"

    # Lockout: five wrong recovery codes.
    challenge_id = await oob.challenge("settings.password")
    for _ in range(5):
        bad = await api.verify(challenge_id, recovery_id, "0000-0000-0000-0000")
        assert bad.status_code == 403
    await oob.settle()
    assert (
        notices(oob)[-1] == "A sign-in method was locked after too many wrong codes were entered."
    )

    for i, message in enumerate(oob.mail.messages):
        if "security notice" in str(message["Subject"]):
            text, html = oob.mail.text(i), oob.mail.html(i)
            assert all(code not in text for code in recovery)
            assert "href" not in html.lower()
    sent = await api.audit(type="notice.sent")
    assert {e["details"]["notice"] for e in sent} == {
        "factor_added",
        "recovery_codes_used",
        "recovery_codes_regenerated",
        "factor_removed",
        "lockout_reached",
    }


async def test_notices_are_rate_limited_and_audited(database_url: str, tmp_path: Path) -> None:
    async for oob in _start(database_url, tmp_path, notice_limit_per_hour=1):
        await oob.enroll_email()
        await oob.api.put_subject("alice", email="alice@example.com")
        response = await oob.api.client.post(
            "/v1/subjects/alice/factors", json={"type": "recovery_code"}
        )
        assert response.status_code == 201
        await oob.settle()
        assert len(notices(oob)) == 1  # the second "factor added" within the hour is held back
        suppressed = await oob.api.audit(type="notice.suppressed")
        assert [e["details"]["reason"] for e in suppressed] == ["subject limit"]


async def test_a_failing_notice_never_breaks_the_operation(oob: Oob) -> None:
    api = oob.api
    sms_id = await oob.enroll_sms()
    challenge_id = await oob.challenge("stepguard.factors.manage")
    assert (await oob.deliver(challenge_id, sms_id)).status_code == 202
    verified = await api.verify(challenge_id, sms_id, oob.sms.sms_code())
    assert verified.status_code == 200, verified.text
    session_id = verified.json()["session"]["session_id"]

    oob.sms.statuses = [500]  # the SMS provider is down from here on
    response = await api.client.post(
        "/v1/subjects/alice/factors", json={"type": "recovery_code", "session_id": session_id}
    )
    assert response.status_code == 201, response.text
    await oob.settle()
    failed = await api.audit(type="notice.failed")
    assert [(e["details"]["channel"], e["details"]["reason"]) for e in failed] == [
        ("sms", "sms provider http 500")
    ]
    sent = await api.audit(type="notice.sent")
    assert sent[-1]["details"] == {"notice": "factor_added", "channel": "email"}


async def test_send_limits_hold_across_processes(database_url: str, tmp_path: Path) -> None:
    """Two runtimes on one database (two connection pools, as two worker processes have)
    race ten sends for one subject: the limit check and the send record are serialized, so
    exactly the sends the limit allows go out."""
    async for oob in _start(database_url, tmp_path, delivery_limit_per_subject=3):
        factor_id = await oob.enroll_email()  # send 1 of 3
        challenge_id = await oob.challenge("profile.view", context={"section": "x"})
        other, other_runtime = await start_harness(
            database_url,
            policy=POLICY,
            settings_overrides={
                "secret_keys": oob.api.runtime.settings.secret_keys,
                "email_backend": "smtp",
                "smtp_host": oob.smtp.host,
                "smtp_port": oob.smtp.port,
                "smtp_ca_file": oob.smtp.ca_file,
                "delivery_limit_per_subject": 3,
            },
        )
        try:
            clients = [oob.api.client, other.client] * 5
            results = await asyncio.gather(
                *(
                    client.post(
                        f"/v1/challenges/{challenge_id}/deliveries", json={"factor_id": factor_id}
                    )
                    for client in clients
                )
            )
        finally:
            await other.client.aclose()
            await other.anon.aclose()
            await other_runtime.store.close()
        assert sorted(r.status_code for r in results) == [202, 202] + [429] * 8
        assert codes(oob) == 3


async def test_an_smtp_failure_fails_the_delivery_and_the_code_is_dead(
    database_url: str, tmp_path: Path
) -> None:
    async for oob in _start(database_url, tmp_path):
        factor_id = await oob.enroll_email()
        challenge_id = await oob.challenge("profile.view", context={"section": "x"})
        runtime = oob.api.runtime
        oob.mail.refuse_with = "451 4.3.0 Temporary local problem"  # the relay is in trouble
        response = await oob.deliver(challenge_id, factor_id)
        assert response.status_code == 503
        assert response.json()["error"] == "delivery_failed"
        failed = await oob.api.audit(type="delivery.failed")
        assert failed[-1]["details"]["reason"] == "smtp SMTPDataError 451"
        async with runtime.store.read() as uow:
            live = await uow.deliveries.live_code(
                factor_id,
                purpose=CodePurpose.STEP_UP,
                challenge_id=challenge_id,
                at=oob.api.clock.now(),
            )
        assert live is None  # invalidated: even a message that did leave would be useless


async def test_the_new_device_notice_for_the_risk_engine(oob: Oob) -> None:
    await oob.enroll_email()
    await oob.settle()
    oob.api.runtime.services.notifications.new_device_step_up("alice", device="Firefox on Linux")
    await oob.settle()
    assert notices(oob)[-1] == "A verification was completed from a new device."
    assert "Device: Firefox on Linux" in oob.mail.text()
