"""An API harness: the real app, real storage, a hand-moved clock (used by the API tests)."""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage import migrate
from stepguard.bootstrap import Runtime, app_for, build_runtime
from stepguard.core.factors.totp import TotpSpec, code_at_step, totp_step
from stepguard.core.policy.loader import load_policy
from stepguard.service.ports import RiskAssessor
from stepguard.settings import Settings
from support.clock import ManualClock

TEST_POLICY = """
version: 1
rules:
  - id: view
    match: {actions: ["account.view"]}
    allow: true
  - id: transfer-large
    match: {actions: ["payments.transfer"]}
    when: "context.amount > 100"
    step_up: {acr: aal2, max_age: 300, bind: true}
    summary: "Transfer {context.currency} {context.amount} to {context.payee}"
  - id: transfer-small
    match: {actions: ["payments.transfer"]}
    allow: true
  - id: email-change
    match: {actions: ["account.email.change"]}
    step_up: {acr: aal2, max_age: 0}
  - id: settings
    match: {actions: ["settings.*"]}
    step_up: {acr: aal2, max_age: 300}
  - id: totp-only
    match: {actions: ["secure.totp"]}
    step_up: {acr: aal2, max_age: 300, methods: [totp]}
  - id: phishing-resistant
    match: {actions: ["admin.*"]}
    step_up: {acr: phr, max_age: 300}
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300}
default:
  deny: true
"""


@dataclass
class Harness:
    client: httpx.AsyncClient
    anon: httpx.AsyncClient
    clock: ManualClock
    runtime: Runtime
    api_key: str
    database_url: str

    async def put_subject(self, subject_id: str = "alice", **body: Any) -> None:
        response = await self.client.put(f"/v1/subjects/{subject_id}", json=body)
        assert response.status_code == 200, response.text

    async def open_session(self, subject_id: str = "alice", amr: list[str] | None = None) -> str:
        response = await self.client.post(
            "/v1/sessions", json={"subject_id": subject_id, "amr": amr or ["pwd"]}
        )
        assert response.status_code == 201, response.text
        return str(response.json()["session_id"])

    def code(self, secret: bytes, *, steps_from_now: int = 0) -> str:
        spec = TotpSpec()
        return code_at_step(secret, spec, totp_step(spec, self.clock.now()) + steps_from_now)

    async def enroll_totp(
        self, subject_id: str = "alice", session_id: str | None = None
    ) -> tuple[str, bytes]:
        """Enroll and confirm TOTP; returns the factor id and its seed. Leaves the clock
        one period later so the confirming code is not the current one."""
        body: dict[str, Any] = {"type": "totp"}
        if session_id:
            body["session_id"] = session_id
        response = await self.client.post(f"/v1/subjects/{subject_id}/factors", json=body)
        assert response.status_code == 201, response.text
        data = response.json()
        uri = httpx.URL(data["otpauth_uri"])
        secret = base64.b32decode(uri.params["secret"] + "=" * (-len(uri.params["secret"]) % 8))
        factor_id = data["factor"]["id"]
        confirm: dict[str, Any] = {"code": self.code(secret)}
        if session_id:
            confirm["session_id"] = session_id
        response = await self.client.post(
            f"/v1/subjects/{subject_id}/factors/{factor_id}/confirm", json=confirm
        )
        assert response.status_code == 200, response.text
        self.clock.advance(30)
        return factor_id, secret

    async def stepped_up_session(self, factor_id: str, code: str, subject_id: str = "alice") -> str:
        """A new session that just passed the factor-management step-up with this factor."""
        session_id = await self.open_session(subject_id)
        decision = await self.decide(session_id, "stepguard.factors.manage")
        assert decision["decision"] == "step_up", decision
        response = await self.verify(decision["challenge"]["id"], factor_id, code)
        assert response.status_code == 200, response.text
        return session_id

    async def enroll_totp_with_step_up(self, factor_id: str, code: str) -> tuple[str, bytes]:
        session_id = await self.stepped_up_session(factor_id, code)
        return await self.enroll_totp(session_id=session_id)

    async def decide(self, session_id: str, action: str, **extra: Any) -> dict[str, Any]:
        response = await self.client.post(
            "/v1/decisions", json={"session_id": session_id, "action": action, **extra}
        )
        assert response.status_code == 200, response.text
        data: dict[str, Any] = response.json()
        return data

    async def verify(self, challenge_id: str, factor_id: str, code: str) -> httpx.Response:
        return await self.client.post(
            f"/v1/challenges/{challenge_id}/verifications",
            json={"factor_id": factor_id, "code": code},
        )

    async def audit(self, **params: Any) -> list[dict[str, Any]]:
        response = await self.client.get("/v1/audit", params={"limit": 1000, **params})
        assert response.status_code == 200, response.text
        events: list[dict[str, Any]] = response.json()["events"]
        return events


async def start_harness(
    database_url: str,
    *,
    policy: str = TEST_POLICY,
    risk: RiskAssessor | None = None,
    settings_overrides: dict[str, Any] | None = None,
) -> tuple[Harness, Runtime]:
    """The real app over a real store. ``settings_overrides`` adds or replaces ``Settings``
    fields (e.g. the SMTP server to use); the risk engine is static unless they say
    ``risk_engine="live"``."""
    await migrate(database_url)
    fields: dict[str, Any] = {
        "secret_keys": [SecretBox.generate_key()],
        "policy_file": Path("unused.yaml"),
        "api_key_cache_seconds": 0,
        "risk_engine": "static",
        **(settings_overrides or {}),
    }
    settings_obj = Settings(database_url=database_url, **fields)
    clock = ManualClock()
    runtime = build_runtime(
        settings_obj, clock=clock, risk=risk, policy=load_policy(policy, source="test-policy.yaml")
    )
    created = await runtime.services.api_keys.create("tests")
    app = app_for(runtime)
    transport = httpx.ASGITransport(app=app)
    token = created.token.reveal()
    client = httpx.AsyncClient(
        transport=transport,
        base_url="http://stepguard.test",
        headers={"Authorization": f"Bearer {token}"},
    )
    anon = httpx.AsyncClient(transport=transport, base_url="http://stepguard.test")
    harness = Harness(
        client=client,
        anon=anon,
        clock=clock,
        runtime=runtime,
        api_key=token,
        database_url=database_url,
    )
    return harness, runtime
