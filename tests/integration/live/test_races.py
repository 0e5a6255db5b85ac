"""Single use under concurrency, against a real server with 2 worker processes.

20 simultaneous verifications of one valid TOTP code, or of one recovery code, or 20
simultaneous uses of one grant, yield exactly one success, on SQLite and on PostgreSQL. The
guessing limit holds too: 20 simultaneous wrong codes are evaluated at most 5 times.

The 20 requests are built first and sent together (``asyncio.gather``) over 20 keep-alive
connections that were spread over both worker processes beforehand, so both processes answer
part of every burst (checked through ``/proc`` on Linux). The server runs on the real clock:
codes are computed at the real time, away from a step boundary.
"""

from __future__ import annotations

import asyncio
import functools
import secrets
import ssl
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from typing import Any

import httpx
import pytest

from stepguard.core.factors.totp import TotpSpec, code_at_step
from support.server import (
    LiveServer,
    async_safe_totp_step,
    client_port,
    secret_from_otpauth_uri,
    wrong_totp_code,
)

pytestmark = pytest.mark.slow

N = 20
FAILURE = {"error": "verification_failed", "message": "The verification failed."}
TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}
EVERY_TIME = "account.email.change"  # max_age 0: every decision opens a new challenge
SPEC = TotpSpec()
MISMATCH = "totp: code does not match"
LOCKED = "factor locked after repeated failures"


def code(secret: bytes, step: int) -> str:
    return code_at_step(secret, SPEC, step)


@dataclass
class Api:
    """Setup calls through the HTTP API (one connection; the races use their own pool)."""

    client: httpx.AsyncClient

    async def call(self, method: str, url: str, expect: int, **kwargs: Any) -> Any:
        response = await self.client.request(method, url, **kwargs)
        assert response.status_code == expect, f"{method} {url}: {response.text}"
        return response.json() if response.content else None

    async def new_subject(self) -> str:
        subject = f"race-{secrets.token_hex(4)}"
        await self.call("PUT", f"/v1/subjects/{subject}", 200, json={})
        return subject

    async def enroll_totp(self, subject: str) -> tuple[str, bytes, int]:
        """Enroll and confirm TOTP (the subject's first factor, so no session is needed).

        Confirms with the previous step's code and returns ``(factor, seed, step)``: the code
        of ``step`` (the current one) is then unused and valid for at least 30 s."""
        step = await async_safe_totp_step(SPEC)
        enrolled = await self.call(
            "POST", f"/v1/subjects/{subject}/factors", 201, json={"type": "totp"}
        )
        factor_id = str(enrolled["factor"]["id"])
        secret = secret_from_otpauth_uri(enrolled["otpauth_uri"])
        await self.call(
            "POST",
            f"/v1/subjects/{subject}/factors/{factor_id}/confirm",
            200,
            json={"code": code(secret, step - 1)},
        )
        return factor_id, secret, step

    async def enroll_recovery_codes(self, subject: str) -> tuple[str, list[str]]:
        enrolled = await self.call(
            "POST", f"/v1/subjects/{subject}/factors", 201, json={"type": "recovery_code"}
        )
        return str(enrolled["factor"]["id"]), list(enrolled["recovery_codes"])

    async def open_session(self, subject: str) -> str:
        body = {"subject_id": subject, "amr": ["pwd"]}
        return str((await self.call("POST", "/v1/sessions", 201, json=body))["session_id"])

    async def decide(self, session_id: str, action: str, **extra: Any) -> dict[str, Any]:
        body = {"session_id": session_id, "action": action, **extra}
        decision: dict[str, Any] = await self.call("POST", "/v1/decisions", 200, json=body)
        return decision

    async def challenges(self, session_id: str, count: int) -> list[str]:
        """``count`` pending challenges of one session."""
        ids = []
        for _ in range(count):
            decision = await self.decide(session_id, EVERY_TIME)
            assert decision["decision"] == "step_up", decision
            ids.append(str(decision["challenge"]["id"]))
        return ids

    async def audit(self, subject: str, event_type: str) -> list[dict[str, Any]]:
        params = {"subject_id": subject, "type": event_type, "limit": 1000}
        page = await self.call("GET", "/v1/audit", 200, params=params)
        events: list[dict[str, Any]] = page["events"]
        return events


@functools.cache
def _tls() -> ssl.SSLContext:
    # Unused over http, but httpx builds one per client unless given one (~0.1 s each).
    return ssl.create_default_context()


def _client(server: LiveServer) -> httpx.AsyncClient:
    """A client with exactly one connection."""
    return httpx.AsyncClient(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {server.api_key}"},
        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
        timeout=30.0,
        verify=_tls(),
    )


@dataclass(frozen=True)
class Connected:
    """A client, the local port of its one connection, and the worker serving it."""

    client: httpx.AsyncClient
    port: int
    pid: int | None


@pytest.fixture
async def api(server: LiveServer) -> AsyncIterator[Api]:
    async with _client(server) as client:
        yield Api(client)


@asynccontextmanager
async def spread_clients(server: LiveServer, size: int) -> AsyncIterator[list[Connected]]:
    """``size`` clients, each with one open connection, some served by each worker process.

    Which process accepts a connection is up to the kernel, and one process sometimes takes
    a whole burst; then the connections are dropped and opened again. (One client per request,
    not one pool: a pool may queue simultaneous requests on the same idle connection.)"""
    spread: Counter[int | None] = Counter()
    for _ in range(20):
        async with AsyncExitStack() as stack:
            clients = [await stack.enter_async_context(_client(server)) for _ in range(size)]
            warm = await asyncio.gather(*(client.get("/healthz") for client in clients))
            assert all(r.status_code == 200 for r in warm)
            ports = [client_port(r) for r in warm]
            owners = server.connection_owners()
            if owners is None:  # no /proc: cannot tell, trust the kernel
                yield [Connected(c, port, None) for c, port in zip(clients, ports, strict=True)]
                return
            pids = [owners.get(port) for port in ports]
            spread = Counter(pids)
            if None not in spread and len(spread) == server.workers:
                yield [
                    Connected(c, port, pid)
                    for c, port, pid in zip(clients, ports, pids, strict=True)
                ]
                return
    pytest.fail(f"could not spread {size} connections over {server.workers} workers: {spread}")


async def burst(
    server: LiveServer, requests: list[tuple[str, str, dict[str, Any]]]
) -> list[httpx.Response]:
    """Send all ``requests`` (method, url, json) at once, each over its own connection, and
    check that every worker process answered some of them."""
    async with spread_clients(server, len(requests)) as connected:
        prepared = [
            c.client.build_request(method, url, json=body)
            for c, (method, url, body) in zip(connected, requests, strict=True)
        ]
        responses = await asyncio.gather(
            *(c.client.send(request) for c, request in zip(connected, prepared, strict=True))
        )
        if connected[0].pid is not None:
            for c, response in zip(connected, responses, strict=True):
                assert client_port(response) == c.port, "a request used a new connection"
            workers = Counter(c.pid for c in connected)
            assert set(workers) == server.worker_pids(), workers
            assert len(workers) == server.workers, workers
    return list(responses)


def verifications(
    challenge_ids: list[str], factor_id: str, answer: str
) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        ("POST", f"/v1/challenges/{c}/verifications", {"factor_id": factor_id, "code": answer})
        for c in challenge_ids
    ]


async def failure_reasons(api: Api, subject: str) -> list[str]:
    """The audited reasons of the subject's failed verifications, oldest first."""
    return [e["details"]["reason"] for e in await api.audit(subject, "verification.failed")]


def assert_exactly_one_success(responses: list[httpx.Response]) -> httpx.Response:
    statuses = Counter(r.status_code for r in responses)
    assert statuses == {200: 1, 403: len(responses) - 1}, statuses
    for response in responses:
        if response.status_code == 403:
            assert response.json() == FAILURE
    (winner,) = (r for r in responses if r.status_code == 200)
    assert winner.json()["status"] == "satisfied"
    return winner


async def test_one_totp_code_verifies_once_across_twenty_challenges(
    server: LiveServer, api: Api
) -> None:
    subject = await api.new_subject()
    factor_id, secret, step = await api.enroll_totp(subject)
    session_id = await api.open_session(subject)
    challenge_ids = await api.challenges(session_id, N)

    responses = await burst(server, verifications(challenge_ids, factor_id, code(secret, step)))

    assert_exactly_one_success(responses)
    assert len(await api.audit(subject, "verification.succeeded")) == 1
    # The losers replayed a used code: each replay counts as a guess, until the lock.
    reasons = await failure_reasons(api, subject)
    assert len(reasons) == N - 1
    assert set(reasons) <= {"totp: code already used", LOCKED}, reasons
    assert reasons.count(LOCKED) >= N - 1 - 5, reasons


async def test_one_totp_code_satisfies_one_challenge_once(server: LiveServer, api: Api) -> None:
    subject = await api.new_subject()
    factor_id, secret, step = await api.enroll_totp(subject)
    session_id = await api.open_session(subject)
    (challenge_id,) = await api.challenges(session_id, 1)

    responses = await burst(
        server, verifications([challenge_id] * N, factor_id, code(secret, step))
    )

    assert_exactly_one_success(responses)
    assert len(await api.audit(subject, "verification.succeeded")) == 1
    reasons = await failure_reasons(api, subject)
    assert len(reasons) == N - 1
    assert set(reasons) <= {"challenge satisfied", "totp: code already used", LOCKED}, reasons


async def test_losers_of_a_race_on_one_challenge_are_not_counted_as_guesses(
    server: LiveServer, api: Api
) -> None:
    """A user's double submission of the right code must not lock their own factor: every
    loser finds the challenge already satisfied (read again under the factor's lock), which
    is no guess."""
    subject = await api.new_subject()
    factor_id, secret, step = await api.enroll_totp(subject)
    session_id = await api.open_session(subject)
    (challenge_id,) = await api.challenges(session_id, 1)

    responses = await burst(
        server, verifications([challenge_id] * N, factor_id, code(secret, step))
    )
    assert_exactly_one_success(responses)

    reasons = await failure_reasons(api, subject)
    assert reasons == ["challenge satisfied"] * (N - 1), Counter(reasons)
    (fresh,) = await api.challenges(session_id, 1)
    body = {"factor_id": factor_id, "code": code(secret, step + 1)}  # the next code
    await api.call("POST", f"/v1/challenges/{fresh}/verifications", 200, json=body)


async def test_one_recovery_code_verifies_once_across_twenty_challenges(
    server: LiveServer, api: Api
) -> None:
    subject = await api.new_subject()
    factor_id, codes = await api.enroll_recovery_codes(subject)
    session_id = await api.open_session(subject)
    challenge_ids = await api.challenges(session_id, N)

    responses = await burst(server, verifications(challenge_ids, factor_id, codes[0]))

    assert_exactly_one_success(responses)
    assert len(await api.audit(subject, "verification.succeeded")) == 1
    # The losers replayed a used code: each replay counts as a guess, until the lock.
    reasons = await failure_reasons(api, subject)
    assert len(reasons) == N - 1
    assert set(reasons) <= {"recovery code: unknown or already used", LOCKED}, reasons
    assert reasons.count(LOCKED) >= N - 1 - 5, reasons


async def test_one_grant_allows_one_of_twenty_simultaneous_decisions(
    server: LiveServer, api: Api
) -> None:
    subject = await api.new_subject()
    factor_id, secret, step = await api.enroll_totp(subject)
    session_id = await api.open_session(subject)
    decision = await api.decide(session_id, "payments.transfer", context=TRANSFER)
    assert decision["decision"] == "step_up", decision
    verified = await api.call(
        "POST",
        f"/v1/challenges/{decision['challenge']['id']}/verifications",
        200,
        json={"factor_id": factor_id, "code": code(secret, step)},
    )
    grant = verified["grant"]
    assert grant

    body = {
        "session_id": session_id,
        "action": "payments.transfer",
        "context": TRANSFER,
        "grant": grant,
    }
    responses = await burst(server, [("POST", "/v1/decisions", body)] * N)

    assert all(r.status_code == 200 for r in responses), [r.text for r in responses]
    outcomes = Counter(r.json()["decision"] for r in responses)
    assert outcomes == {"allow": 1, "step_up": N - 1}, outcomes
    assert len(await api.audit(subject, "grant.used")) == 1
    assert len(await api.audit(subject, "grant.rejected")) == N - 1


async def test_twenty_simultaneous_wrong_codes_are_evaluated_at_most_five_times(
    server: LiveServer, api: Api
) -> None:
    """The guessing limit holds across processes: after the burst the factor is locked, and
    of the 20 attempts only the first 5 were compared with the code; the rest met the lock."""
    subject = await api.new_subject()
    factor_id, secret, step = await api.enroll_totp(subject)
    session_id = await api.open_session(subject)
    challenge_ids = await api.challenges(session_id, N + 1)

    responses = await burst(
        server, verifications(challenge_ids[:N], factor_id, wrong_totp_code(secret, step))
    )
    assert all(r.status_code == 403 and r.json() == FAILURE for r in responses)

    right = await api.client.post(
        f"/v1/challenges/{challenge_ids[N]}/verifications",
        json={"factor_id": factor_id, "code": code(secret, step)},
    )
    assert right.status_code == 403, "the right code must be refused while the factor is locked"
    assert right.json() == FAILURE

    reasons = await failure_reasons(api, subject)
    assert len(reasons) == N + 1, reasons
    counted = Counter(reasons)
    assert counted == {MISMATCH: 5, LOCKED: N + 1 - 5}, counted
    assert reasons[-1] == LOCKED  # the right code was never compared


async def test_the_audit_chain_is_intact_after_concurrent_writes(
    server: LiveServer, api: Api
) -> None:
    """Both workers append to the hash chain at once (here: 20 step-up decisions; the races
    above appended theirs to the same chain); ``stepguard audit verify`` finds it intact."""
    subject = await api.new_subject()
    session_id = await api.open_session(subject)
    body = {"session_id": session_id, "action": EVERY_TIME}
    responses = await burst(server, [("POST", "/v1/decisions", body)] * N)
    assert all(r.status_code == 200 for r in responses)
    assert len(await api.audit(subject, "decision.step_up")) == N

    result = await asyncio.to_thread(server.cli, "audit", "verify")

    assert result.returncode == 0, result.stdout + result.stderr
    assert "audit chain intact" in result.stdout
