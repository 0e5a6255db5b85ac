"""Push approval with number matching through the API, on SQLite and PostgreSQL: pairing,
signed answers and their binding, one terminal answer under concurrent answers, expiry, the
caps and the push-bombing pause (with its notice, through a real SMTP server).

The approver device is :class:`support.approver.SoftwareApprover` (``cryptography`` signing
what ``approve.js`` signs with WebCrypto); each device has its own HTTP client and cookie.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest

from stepguard.core.model import Challenge
from stepguard.service.risk import StaticRiskAssessor
from support.approver import SoftwareApprover, pairing_token
from support.harness import Harness, start_harness
from support.outbound import SmtpPeer, smtp_server

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}


class RecordingRisk(StaticRiskAssessor):
    """The static assessor, remembering the denials it was told about (the risk port)."""

    def __init__(self) -> None:
        super().__init__()
        self.denied: list[str] = []

    def denied_push(self, *, challenge: Challenge, now: Any) -> None:
        self.denied.append(challenge.id)


@dataclass
class Device:
    approver: SoftwareApprover
    client: httpx.AsyncClient

    async def pending(self) -> list[dict[str, Any]]:
        response = await self.client.get("/approve/api/pending")
        assert response.status_code == 200, response.text
        requests: list[dict[str, Any]] = response.json()["requests"]
        return requests

    async def answer(self, request: dict[str, Any], number: int, **kwargs: Any) -> httpx.Response:
        body = self.approver.answer_body(request, number=number, **kwargs)
        return await self.client.post("/approve/api/answer", json=body)


@dataclass
class Push:
    api: Harness
    risk: RecordingRisk
    smtp: SmtpPeer
    devices: list[Device] = field(default_factory=list)

    async def pair(self, subject: str = "alice", session_id: str | None = None) -> Device:
        body: dict[str, Any] = {"type": "push", "label": "Phone"}
        if session_id:
            body["session_id"] = session_id
        response = await self.api.client.post(f"/v1/subjects/{subject}/factors", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        assert data["factor"]["status"] == "pending"
        assert data["pairing_url"].startswith("http://localhost:8000/approve#pair=sgp_")
        client = httpx.AsyncClient(
            transport=self.api.client._transport, base_url="http://stepguard.test"
        )
        approver = SoftwareApprover()
        response = await client.post(
            "/approve/api/pair", json=approver.pair_body(pairing_token(data["pairing_url"]))
        )
        assert response.status_code == 200, response.text
        approver.factor_id = response.json()["factor_id"]
        assert approver.factor_id == data["factor"]["id"]
        device = Device(approver=approver, client=client)
        self.devices.append(device)
        return device

    async def stepped_up(self, device: Device, subject: str = "alice") -> str:
        """A session that just passed the factor-management step-up with ``device``."""
        session_id = await self.api.open_session(subject)
        decision = await self.api.decide(session_id, "stepguard.factors.manage")
        challenge_id = decision["challenge"]["id"]
        started = await self.started(challenge_id)
        [request] = [r for r in await device.pending() if r["challenge_id"] == challenge_id]
        assert (await device.answer(request, started["number"])).status_code == 200
        return session_id

    async def challenge(self, subject: str = "alice") -> str:
        session_id = await self.api.open_session(subject)
        decision = await self.api.decide(session_id, "payments.transfer", context=TRANSFER)
        assert decision["decision"] == "step_up", decision
        return str(decision["challenge"]["id"])

    async def start(self, challenge_id: str) -> httpx.Response:
        return await self.api.client.post(
            f"/v1/challenges/{challenge_id}/pushes",
            json={"ip": "192.0.2.7", "user_agent": "Mozilla/5.0 (X11; Linux x86_64)"},
        )

    async def started(self, challenge_id: str) -> dict[str, Any]:
        response = await self.start(challenge_id)
        assert response.status_code == 201, response.text
        data: dict[str, Any] = response.json()
        return data

    async def status(self, challenge_id: str, push_id: str) -> str:
        response = await self.api.client.get(f"/v1/challenges/{challenge_id}/pushes/{push_id}")
        assert response.status_code == 200, response.text
        return str(response.json()["status"])

    async def challenge_status(self, challenge_id: str) -> str:
        response = await self.api.client.get(f"/v1/challenges/{challenge_id}")
        assert response.status_code == 200, response.text
        return str(response.json()["status"])


@pytest.fixture
async def push(database_url: str, tmp_path: Path) -> AsyncIterator[Push]:
    risk = RecordingRisk()
    with smtp_server(tmp_path) as smtp:
        api, runtime = await start_harness(
            database_url,
            risk=risk,
            settings_overrides={
                "email_backend": "smtp",
                "smtp_host": smtp.host,
                "smtp_port": smtp.port,
                "smtp_ca_file": smtp.ca_file,
            },
        )
        state = Push(api=api, risk=risk, smtp=smtp)
        try:
            await api.put_subject("alice", email="alice@example.com")
            yield state
        finally:
            await runtime.services.push.drain()
            await runtime.services.notifications.drain()
            for device in state.devices:
                await device.client.aclose()
            await api.client.aclose()
            await api.anon.aclose()
            await runtime.store.close()


def wrong(request: dict[str, Any], number: int) -> int:
    return int(next(c for c in request["choices"] if c != number))


# --- pairing ----------------------------------------------------------------------------------


async def test_pairing_activates_the_factor_with_the_device_key(push: Push) -> None:
    device = await push.pair()
    factors = (await push.api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert [(f["type"], f["status"]) for f in factors] == [("push", "active")]
    assert await device.pending() == []
    events = await push.api.audit(type="factor.confirmed")
    assert events[-1]["details"]["factor_type"] == "push"


async def test_a_pairing_link_works_once_and_needs_a_signature_by_the_posted_key(
    push: Push,
) -> None:
    response = await push.api.client.post("/v1/subjects/alice/factors", json={"type": "push"})
    token = pairing_token(response.json()["pairing_url"])
    transport = push.api.client._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://stepguard.test") as other:
        thief, owner = SoftwareApprover(), SoftwareApprover()
        forged = {**thief.pair_body(token), "public_key": owner.jwk()}  # signed by another key
        assert (await other.post("/approve/api/pair", json=forged)).status_code == 403
        assert (await other.post("/approve/api/pair", json=owner.pair_body(token))).status_code == (
            200
        )
        again = await other.post("/approve/api/pair", json=SoftwareApprover().pair_body(token))
        assert again.status_code == 403
        assert again.json()["error"] == "verification_failed"
    reasons = [e["details"]["reason"] for e in await push.api.audit(type="factor.confirm_failed")]
    assert reasons == ["push: the signature does not verify", "push: unknown pairing token"]


async def test_an_expired_pairing_link_is_refused(push: Push) -> None:
    response = await push.api.client.post("/v1/subjects/alice/factors", json={"type": "push"})
    token = pairing_token(response.json()["pairing_url"])
    push.api.clock.advance(601)
    async with httpx.AsyncClient(
        transport=push.api.client._transport, base_url="http://stepguard.test"
    ) as other:
        refused = await other.post("/approve/api/pair", json=SoftwareApprover().pair_body(token))
    assert refused.status_code == 403


async def test_the_device_list_needs_the_paired_device_cookie(push: Push) -> None:
    await push.pair()
    response = await push.api.anon.get("/approve/api/pending")
    assert response.status_code == 403


# --- answers ---------------------------------------------------------------------------------


async def test_the_right_number_satisfies_the_challenge_and_issues_the_grant(push: Push) -> None:
    device = await push.pair()
    challenge_id = await push.challenge()
    started = await push.started(challenge_id)
    assert 10 <= started["number"] <= 99
    [request] = await device.pending()
    assert request["push_id"] == started["push_id"]
    assert request["summary"] == "Transfer EUR 2500 to ACME GmbH"
    assert started["number"] in request["choices"]
    assert len(set(request["choices"])) == 3
    assert "number" not in request  # the device must be told it by the person

    response = await device.answer(request, started["number"])
    assert response.status_code == 200, response.text
    assert response.json() == {"push_id": started["push_id"], "status": "approved"}
    assert await push.status(challenge_id, started["push_id"]) == "approved"
    assert await push.challenge_status(challenge_id) == "satisfied"
    assert await device.pending() == []
    [event] = await push.api.audit(type="verification.succeeded")
    assert event["details"]["factor_type"] == "push"
    assert event["details"]["grant_issued"] is True
    assert event["details"]["acr"] == "aal2"


async def test_a_wrong_number_fails_counts_as_a_guess_and_closes_the_push(push: Push) -> None:
    device = await push.pair()
    challenge_id = await push.challenge()
    started = await push.started(challenge_id)
    [request] = await device.pending()

    response = await device.answer(request, wrong(request, started["number"]))
    assert response.status_code == 403
    assert response.json()["error"] == "verification_failed"
    assert await push.status(challenge_id, started["push_id"]) == "wrong_number"
    assert await push.challenge_status(challenge_id) == "pending"
    factors = (await push.api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    async with push.api.runtime.store.read() as uow:
        factor = await uow.factors.get("alice", factors[0]["id"])
    assert factor is not None
    assert factor.failed_attempts == 1
    # The right number now is too late for this push: one terminal answer.
    again = await device.answer(request, started["number"])
    assert again.status_code == 403

    retry = await push.started(challenge_id)
    [request] = await device.pending()
    assert (await device.answer(request, retry["number"])).status_code == 200
    assert await push.challenge_status(challenge_id) == "satisfied"


@pytest.mark.parametrize(
    "tamper",
    [
        {"signed_number": 0},  # signed another number than the one sent
        {"signed_answer": "deny"},  # signed a denial, sent an approval
        {"signed_digest": "0" * 64},  # signed for another transaction
    ],
)
async def test_an_answer_is_bound_by_its_signature(push: Push, tamper: dict[str, Any]) -> None:
    device = await push.pair()
    challenge_id = await push.challenge()
    started = await push.started(challenge_id)
    [request] = await device.pending()
    response = await device.answer(request, started["number"], **tamper)
    assert response.status_code == 403
    assert await push.status(challenge_id, started["push_id"]) == "pending"
    assert await push.challenge_status(challenge_id) == "pending"
    [event] = await push.api.audit(type="verification.failed")
    assert event["details"]["reason"] == "push: the signature does not verify"


async def test_another_devices_key_cannot_answer_for_this_factor(push: Push) -> None:
    device = await push.pair()
    challenge_id = await push.challenge()
    started = await push.started(challenge_id)
    [request] = await device.pending()
    impostor = SoftwareApprover(factor_id=device.approver.factor_id)
    body = impostor.answer_body(request, number=started["number"])
    response = await device.client.post("/approve/api/answer", json=body)
    assert response.status_code == 403
    assert await push.challenge_status(challenge_id) == "pending"


async def test_a_denial_closes_the_push_and_feeds_the_risk_engine(push: Push) -> None:
    device = await push.pair()
    challenge_id = await push.challenge()
    started = await push.started(challenge_id)
    [request] = await device.pending()
    response = await device.answer(request, 0, answer="deny")
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "denied"
    assert await push.status(challenge_id, started["push_id"]) == "denied"
    assert await push.challenge_status(challenge_id) == "pending"
    assert push.risk.denied == [challenge_id]
    [event] = await push.api.audit(type="push.denied")
    assert event["details"]["push_id"] == started["push_id"]


async def test_concurrent_approve_and_deny_have_one_terminal_answer(push: Push) -> None:
    phone = await push.pair()
    tablet = await push.pair(session_id=await push.stepped_up(phone))
    challenge_id = await push.challenge()
    started = await push.started(challenge_id)
    [request] = await phone.pending()
    approve, deny = await asyncio.gather(
        phone.answer(request, started["number"]), tablet.answer(request, 0, answer="deny")
    )
    outcomes = sorted(
        r.json()["status"] if r.status_code == 200 else "failed" for r in (approve, deny)
    )
    final = await push.status(challenge_id, started["push_id"])
    if final == "approved":
        assert outcomes == ["approved", "failed"]
        assert await push.challenge_status(challenge_id) == "satisfied"
    else:
        assert final == "denied"
        assert outcomes == ["denied", "failed"]
        assert await push.challenge_status(challenge_id) == "pending"


async def test_a_push_expires_unanswered(push: Push) -> None:
    device = await push.pair()
    challenge_id = await push.challenge()
    started = await push.started(challenge_id)
    [request] = await device.pending()
    push.api.clock.advance(121)
    assert await device.pending() == []
    assert await push.status(challenge_id, started["push_id"]) == "expired"
    assert (await device.answer(request, started["number"])).status_code == 403
    assert await push.challenge_status(challenge_id) == "pending"


# --- caps and push bombing ----------------------------------------------------------------


async def test_outstanding_pushes_are_capped_and_a_new_push_replaces_its_challenges_old_one(
    push: Push,
) -> None:
    await push.pair()
    first, second, third = [await push.challenge() for _ in range(3)]
    a = await push.started(first)
    again = await push.started(first)  # replaces a: still one outstanding
    assert await push.status(first, a["push_id"]) == "superseded"
    await push.started(second)
    refused = await push.start(third)
    assert refused.status_code == 429
    assert refused.json()["error"] == "push_rate_limited"
    [event] = await push.api.audit(type="push.refused")
    assert event["details"]["reason"] == "too many outstanding pushes"
    assert again["push_id"] != a["push_id"]


async def test_total_pushes_per_window_are_capped(push: Push) -> None:
    await push.pair()
    challenge_id = await push.challenge()
    for _ in range(10):
        await push.started(challenge_id)
    assert (await push.start(challenge_id)).status_code == 429
    push.api.clock.advance(901)
    challenge_id = await push.challenge()
    assert (await push.start(challenge_id)).status_code == 201


async def test_unanswered_and_denied_pushes_pause_push_and_tell_the_subject(push: Push) -> None:
    device = await push.pair()
    await push.api.runtime.services.notifications.drain()
    mails_before = len(push.smtp.mailbox.messages)
    challenge_id = await push.challenge()
    # Two denials and one left to expire: the third bad push pauses push.
    for _ in range(2):
        await push.started(challenge_id)
        [request] = await device.pending()
        assert (await device.answer(request, 0, answer="deny")).json()["status"] == "denied"
    await push.started(challenge_id)
    push.api.clock.advance(121)
    challenge_id = await push.challenge()
    refused = await push.start(challenge_id)
    assert refused.status_code == 429
    [paused] = await push.api.audit(type="push.paused")
    assert paused["details"]["unanswered_or_denied"] == 3
    await push.api.runtime.services.notifications.drain()
    notices = push.smtp.mailbox.messages[mails_before:]
    assert any("push approval is paused" in str(m) for m in notices)

    push.api.clock.advance(1799)
    assert (await push.start(await push.challenge())).status_code == 429
    push.api.clock.advance(2)
    # The pause is over and the count restarts from its end.
    assert (await push.start(await push.challenge())).status_code == 201


# --- the account page ----------------------------------------------------------------------


async def account_page(push: Push, b: httpx.AsyncClient) -> str:
    """Open the account page in ``b`` through the page-link API; returns its CSRF token."""
    session_id = await push.api.open_session()
    response = await push.api.client.post(
        f"/v1/sessions/{session_id}/page-links", json={"page": "account"}
    )
    assert response.status_code == 201, response.text
    url = response.json()["url"]
    opened = await b.get(url[len("http://localhost:8000") :])
    assert opened.status_code == 303
    page = await b.get("/account/factors")
    assert "Add an approver device" in page.text
    match = re.search(r'name="csrf" value="([0-9a-f]{64})"', page.text)
    assert match is not None
    return match.group(1)


async def test_the_account_page_shows_a_pairing_link_that_pairs_a_device(push: Push) -> None:
    transport = push.api.client._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as b:
        csrf = await account_page(push, b)
        page = await b.post("/account/factors/push", data={"csrf": csrf, "label": "Phone"})
        assert page.status_code == 200, page.text
        assert 'src="data:image/svg+xml' in page.text
        match = re.search(r'href="(http://localhost:8000/approve#pair=[^"]+)"', page.text)
        assert match is not None, page.text
        forged = await b.post("/account/factors/push", data={"csrf": "0" * 64})
        assert forged.status_code == 403
    async with httpx.AsyncClient(transport=transport, base_url="http://stepguard.test") as phone:
        device = SoftwareApprover()
        body = device.pair_body(pairing_token(match.group(1)))
        assert (await phone.post("/approve/api/pair", json=body)).status_code == 200
    factors = (await push.api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert [(f["type"], f["label"], f["status"]) for f in factors] == [("push", "Phone", "active")]


async def test_adding_a_second_device_on_the_account_page_needs_a_step_up(push: Push) -> None:
    await push.pair()
    transport = push.api.client._transport
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost:8000") as b:
        csrf = await account_page(push, b)
        refused = await b.post("/account/factors/push", data={"csrf": csrf})
        assert refused.status_code == 303
        assert refused.headers["location"].startswith("/challenge/chl_")
        assert refused.headers["location"].endswith("?return_to=%2Faccount%2Ffactors")
        page = await b.get(refused.headers["location"])
        assert "Approve on your device" in page.text
