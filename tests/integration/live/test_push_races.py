"""One terminal answer for a push, against a real server with 2 worker processes, on SQLite
and PostgreSQL: 10 approvals with the right number from one paired device and 10 denials
from another, all validly signed and sent at once over connections spread over both
workers, store exactly one answer; every other request fails with the generic error."""

from __future__ import annotations

import asyncio
import secrets
from collections import Counter
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import httpx
import pytest

from support.approver import SoftwareApprover, pairing_token
from support.server import LiveServer, client_port

pytestmark = pytest.mark.slow

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}
N = 20


async def call(client: httpx.AsyncClient, method: str, url: str, expect: int, **kw: Any) -> Any:
    response = await client.request(method, url, **kw)
    assert response.status_code == expect, f"{method} {url}: {response.text}"
    return response.json() if response.content else None


@asynccontextmanager
async def spread(server: LiveServer, size: int) -> AsyncIterator[list[httpx.AsyncClient]]:
    """``size`` one-connection clients, some served by each worker process."""
    seen: Counter[int | None] = Counter()
    for _ in range(20):
        async with AsyncExitStack() as stack:
            clients = [
                await stack.enter_async_context(
                    httpx.AsyncClient(
                        base_url=server.base_url,
                        limits=httpx.Limits(max_connections=1, max_keepalive_connections=1),
                        timeout=30.0,
                    )
                )
                for _ in range(size)
            ]
            warm = await asyncio.gather(*(c.get("/healthz") for c in clients))
            owners = server.connection_owners()
            if owners is None:
                yield clients
                return
            seen = Counter(owners.get(client_port(r)) for r in warm)
            if None not in seen and len(seen) == server.workers:
                yield clients
                return
    pytest.fail(f"could not spread {size} connections over {server.workers} workers: {seen}")


async def pair(
    api: httpx.AsyncClient, stack: AsyncExitStack, subject: str, session_id: str | None
) -> tuple[SoftwareApprover, httpx.AsyncClient]:
    """A paired device and its own client (its cookie lists its pending pushes)."""
    body: dict[str, Any] = {"type": "push"}
    if session_id:
        body["session_id"] = session_id
    enrolled = await call(api, "POST", f"/v1/subjects/{subject}/factors", 201, json=body)
    device = SoftwareApprover()
    client = await stack.enter_async_context(
        httpx.AsyncClient(base_url=str(api.base_url), timeout=30.0)
    )
    paired = await call(
        client,
        "POST",
        "/approve/api/pair",
        200,
        json=device.pair_body(pairing_token(enrolled["pairing_url"])),
    )
    device.factor_id = paired["factor_id"]
    return device, client


async def prompt(client: httpx.AsyncClient, push_id: str) -> dict[str, Any]:
    """The push as the approver page receives it (with the challenge's digest)."""
    pending = await call(client, "GET", "/approve/api/pending", 200)
    (request,) = (r for r in pending["requests"] if r["push_id"] == push_id)
    found: dict[str, Any] = request
    return found


async def test_approve_and_deny_bursts_store_one_terminal_answer(server: LiveServer) -> None:
    async with AsyncExitStack() as stack:
        api = await stack.enter_async_context(
            httpx.AsyncClient(
                base_url=server.base_url,
                headers={"Authorization": f"Bearer {server.api_key}"},
                timeout=30.0,
            )
        )
        subject = f"push-race-{secrets.token_hex(4)}"
        await call(api, "PUT", f"/v1/subjects/{subject}", 200, json={})
        phone, phone_client = await pair(api, stack, subject, None)

        async def challenge(action: str, **extra: Any) -> dict[str, Any]:
            body = {"subject_id": subject, "amr": ["pwd"]}
            session = await call(api, "POST", "/v1/sessions", 201, json=body)
            decision = await call(
                api,
                "POST",
                "/v1/decisions",
                200,
                json={"session_id": session["session_id"], "action": action, **extra},
            )
            assert decision["decision"] == "step_up", decision
            result: dict[str, Any] = {**decision["challenge"], "session": session["session_id"]}
            return result

        # A second device needs a fresh step-up: approve it with the first.
        manage = await challenge("stepguard.factors.manage")
        started = await call(api, "POST", f"/v1/challenges/{manage['id']}/pushes", 201, json={})
        body = phone.answer_body(
            await prompt(phone_client, started["push_id"]), number=started["number"]
        )
        await call(api, "POST", "/approve/api/answer", 200, json=body)
        tablet, _ = await pair(api, stack, subject, manage["session"])

        transfer = await challenge("payments.transfer", context=TRANSFER)
        started = await call(api, "POST", f"/v1/challenges/{transfer['id']}/pushes", 201, json={})
        request = await prompt(phone_client, started["push_id"])
        bodies = [
            phone.answer_body(request, number=started["number"])
            if i % 2 == 0
            else tablet.answer_body(request, number=0, answer="deny")
            for i in range(N)
        ]
        async with spread(server, N) as clients:
            prepared = [
                c.build_request("POST", "/approve/api/answer", json=b)
                for c, b in zip(clients, bodies, strict=True)
            ]
            responses = await asyncio.gather(
                *(c.send(r) for c, r in zip(clients, prepared, strict=True))
            )

        statuses = Counter(r.status_code for r in responses)
        assert statuses == {200: 1, 403: N - 1}, statuses
        (winner,) = (r.json()["status"] for r in responses if r.status_code == 200)
        state = await call(
            api, "GET", f"/v1/challenges/{transfer['id']}/pushes/{started['push_id']}", 200
        )
        assert state["status"] == winner
        challenge_state = await call(api, "GET", f"/v1/challenges/{transfer['id']}", 200)
        assert challenge_state["status"] == ("satisfied" if winner == "approved" else "pending")
