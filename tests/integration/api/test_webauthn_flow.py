"""The WebAuthn factor end to end through the HTTP API, on SQLite and PostgreSQL.

A software authenticator (``support.authenticator``) plays the browser and the key, so every
check the relying party makes can be failed on purpose.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from support.authenticator import (
    AttestationCA,
    ExcludedCredentialError,
    SoftAuthenticator,
    b64url,
)
from support.harness import Harness, start_harness

FAILURE = {"error": "verification_failed", "message": "The verification failed."}
ORIGIN = "http://localhost:8000"
HARDWARE_AAGUID = uuid.UUID("6d44ba9b-f6ec-2e49-b930-0c8fe920cb73")
OTHER_AAGUID = uuid.UUID("00112233-4455-6677-8899-aabbccddeeff")

POLICY = """
version: 1
rules:
  - id: view
    match: {actions: ["account.view"]}
    allow: true
  - id: settings
    match: {actions: ["settings.*"]}
    step_up: {acr: aal2, max_age: 300}
  - id: admin
    match: {actions: ["admin.*"]}
    step_up: {acr: phr, max_age: 300}
  - id: vault
    match: {actions: ["vault.*"]}
    step_up: {acr: phrh, max_age: 300}
  - id: keys-only
    match: {actions: ["deploy.*"]}
    step_up: {acr: aal2, max_age: 300, methods: [webauthn]}
  - id: every-time
    match: {actions: ["payments.*"]}
    step_up: {acr: phr, max_age: 0, bind: true}
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300}
default:
  deny: true
"""


@dataclass
class WebAuthnApi:
    """The harness plus WebAuthn helpers and the test attestation CA."""

    api: Harness
    ca: AttestationCA

    def key(self, **options: Any) -> SoftAuthenticator:
        """A roaming key; ``hardware=True``: the allow-listed model with full attestation."""
        if options.pop("hardware", False):
            options.setdefault("aaguid", HARDWARE_AAGUID.bytes)
            options.setdefault("attestation", "packed")
        options.setdefault("ca", self.ca)
        return SoftAuthenticator(**options)

    async def begin(
        self, subject: str = "alice", session_id: str | None = None, **body: Any
    ) -> tuple[str, dict[str, Any]]:
        payload: dict[str, Any] = {"type": "webauthn", **body}
        if session_id:
            payload["session_id"] = session_id
        response = await self.api.client.post(f"/v1/subjects/{subject}/factors", json=payload)
        assert response.status_code == 201, response.text
        data = response.json()
        assert data["factor"]["status"] == "pending"
        return str(data["factor"]["id"]), data["webauthn_options"]

    async def confirm(
        self,
        factor_id: str,
        credential: dict[str, Any],
        subject: str = "alice",
        session_id: str | None = None,
    ) -> httpx.Response:
        payload: dict[str, Any] = {"credential": credential}
        if session_id:
            payload["session_id"] = session_id
        return await self.api.client.post(
            f"/v1/subjects/{subject}/factors/{factor_id}/confirm", json=payload
        )

    async def register(
        self,
        key: SoftAuthenticator,
        subject: str = "alice",
        session_id: str | None = None,
        **body: Any,
    ) -> str:
        factor_id, options = await self.begin(subject, session_id, **body)
        response = await self.confirm(factor_id, key.create(options), subject, session_id)
        assert response.status_code == 200, response.text
        assert response.json()["factor"]["status"] == "active"
        return factor_id

    async def challenge(self, session_id: str, action: str) -> str:
        decision = await self.api.decide(session_id, action)
        assert decision["decision"] == "step_up", decision
        return str(decision["challenge"]["id"])

    async def options(self, challenge_id: str, **body: Any) -> httpx.Response:
        return await self.api.client.post(f"/v1/challenges/{challenge_id}/webauthn", json=body)

    async def request_options(self, challenge_id: str, **body: Any) -> dict[str, Any]:
        response = await self.options(challenge_id, **body)
        assert response.status_code == 200, response.text
        options: dict[str, Any] = response.json()["options"]
        return options

    async def verify(
        self, challenge_id: str, credential: dict[str, Any], **body: Any
    ) -> httpx.Response:
        return await self.api.client.post(
            f"/v1/challenges/{challenge_id}/verifications",
            json={"credential": credential, **body},
        )

    async def step_up(
        self, key: SoftAuthenticator, session_id: str, action: str, **get: Any
    ) -> httpx.Response:
        challenge_id = await self.challenge(session_id, action)
        options = await self.request_options(challenge_id)
        return await self.verify(challenge_id, key.get(options, **get))

    async def managing_session(self, key: SoftAuthenticator, subject: str = "alice") -> str:
        """A session that just passed the factor-management step-up with ``key``."""
        session_id = await self.api.open_session(subject)
        response = await self.step_up(key, session_id, "stepguard.factors.manage")
        assert response.status_code == 200, response.text
        return session_id

    async def reasons(self, type: str = "verification.failed") -> list[str]:
        return [str(e["details"]["reason"]) for e in await self.api.audit(type=type)]

    async def credential_row(self, factor_id: str) -> Any:
        async with self.api.runtime.store.read() as uow:
            return await uow.webauthn.get_credential(factor_id)


@pytest.fixture
async def wa(database_url: str, tmp_path: Path) -> AsyncIterator[WebAuthnApi]:
    ca = AttestationCA()
    root = tmp_path / "attestation-root.pem"
    root.write_bytes(ca.root_pem)
    harness, runtime = await start_harness(
        database_url,
        policy=POLICY,
        settings_overrides={
            "webauthn_rp_id": "localhost",
            "webauthn_origins": [ORIGIN],
            "webauthn_hardware_aaguids": [str(HARDWARE_AAGUID)],
            "webauthn_attestation_roots": [root],
        },
    )
    await harness.put_subject("alice", email="alice@example.com")
    await harness.put_subject("bob")
    try:
        yield WebAuthnApi(api=harness, ca=ca)
    finally:
        await harness.client.aclose()
        await harness.anon.aclose()
        await runtime.store.close()


# --- registration ------------------------------------------------------------------------


async def test_registration_returns_creation_options_and_activates_the_factor(
    wa: WebAuthnApi,
) -> None:
    factor_id, options = await wa.begin(label="YubiKey")
    assert options["rp"] == {"id": "localhost", "name": "StepGuard"}
    assert options["user"]["name"] == "alice@example.com"
    assert options["excludeCredentials"] == []
    assert options["authenticatorSelection"]["userVerification"] == "required"
    assert options["authenticatorSelection"]["residentKey"] == "preferred"
    assert options["attestation"] == "direct"  # roots are configured
    assert options["extensions"] == {"credProps": True}
    assert {"type": "public-key", "alg": -7} in options["pubKeyCredParams"]

    key = wa.key(transports=("usb", "nfc"))
    response = await wa.confirm(factor_id, key.create(options))
    assert response.status_code == 200, response.text
    factor = response.json()["factor"]
    assert factor == {**factor, "id": factor_id, "type": "webauthn", "label": "YubiKey"}
    assert factor["status"] == "active"
    row = await wa.credential_row(factor_id)
    assert row.credential_id == next(iter(key.credentials))
    assert row.transports == ("usb", "nfc")
    assert row.attestation_format == "none"
    assert row.attestation_trusted is False
    assert row.discoverable is True  # credProps said so
    assert row.aaguid == "00000000-0000-0000-0000-000000000000"
    events = await wa.api.audit(type="factor.confirmed")
    assert [e["details"]["factor_id"] for e in events] == [factor_id]


async def test_a_discoverable_platform_passkey_with_packed_attestation(wa: WebAuthnApi) -> None:
    factor_id, options = await wa.begin(
        authenticator_attachment="platform", resident_key="required"
    )
    selection = options["authenticatorSelection"]
    assert selection["authenticatorAttachment"] == "platform"
    assert selection["residentKey"] == "required"
    assert selection["requireResidentKey"] is True
    key = wa.key(hardware=True, attachment="platform", transports=("internal", "hybrid"))
    response = await wa.confirm(factor_id, key.create(options))
    assert response.status_code == 200, response.text
    row = await wa.credential_row(factor_id)
    assert row.discoverable is True
    assert row.attestation_format == "packed"
    assert row.attestation_trusted is True
    assert row.aaguid == str(HARDWARE_AAGUID)
    info = {
        "aaguid": str(HARDWARE_AAGUID),
        "transports": ["internal", "hybrid"],
        "discoverable": True,
        "backup_eligible": False,
        "backed_up": False,
        "attestation_trusted": True,
        "hardware_bound": True,
        "suspected_clone_at": None,
    }
    assert response.json()["factor"]["webauthn"] == info
    listed = (await wa.api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert [f["webauthn"] for f in listed] == [info]


async def test_self_attestation_is_accepted_but_not_trusted(wa: WebAuthnApi) -> None:
    key = wa.key(attestation="packed-self", aaguid=HARDWARE_AAGUID.bytes)
    factor_id = await wa.register(key, resident_key="discouraged")
    row = await wa.credential_row(factor_id)
    assert row.attestation_format == "packed"
    assert row.attestation_trusted is False
    assert row.discoverable is False


async def test_an_attestation_from_an_unknown_ca_registers_an_untrusted_key(
    wa: WebAuthnApi,
) -> None:
    key = wa.key(hardware=True, ca=AttestationCA("Somebody Else"))
    factor_id = await wa.register(key)
    assert (await wa.credential_row(factor_id)).attestation_trusted is False


async def test_an_attestation_certificate_for_another_aaguid_is_refused(wa: WebAuthnApi) -> None:
    key = wa.key(hardware=True, aaguid_extension=OTHER_AAGUID.bytes)
    factor_id, options = await wa.begin()
    response = await wa.confirm(factor_id, key.create(options))
    assert response.status_code == 403
    assert any("another AAGUID" in r for r in await wa.reasons("factor.confirm_failed"))


async def test_exclude_credentials_lists_the_subjects_existing_credentials(
    wa: WebAuthnApi,
) -> None:
    first = wa.key()
    await wa.register(first)
    session_id = await wa.managing_session(first)
    factor_id, options = await wa.begin(session_id=session_id)
    assert [c["id"] for c in options["excludeCredentials"]] == [
        b64url(next(iter(first.credentials)))
    ]
    assert options["excludeCredentials"][0]["transports"] == ["usb"]
    with pytest.raises(ExcludedCredentialError):
        first.create(options)  # the authenticator refuses, as a browser would
    second = wa.key()
    response = await wa.confirm(factor_id, second.create(options), session_id=session_id)
    assert response.status_code == 200, response.text
    # Both credentials share the subject's one user handle.
    assert options["user"]["id"] == b64url(next(iter(first.credentials.values())).user_handle)


async def test_a_second_key_needs_the_management_step_up(wa: WebAuthnApi) -> None:
    await wa.register(wa.key())
    response = await wa.api.client.post("/v1/subjects/alice/factors", json={"type": "webauthn"})
    assert response.status_code == 403
    assert response.json()["error"] == "step_up_required"


async def test_a_credential_id_is_registered_once_for_the_same_subject(wa: WebAuthnApi) -> None:
    first = wa.key()
    await wa.register(first)
    session_id = await wa.managing_session(first)
    factor_id, options = await wa.begin(session_id=session_id)
    credential_id = next(iter(first.credentials))
    copycat = wa.key().create(options, credential_id=credential_id)
    response = await wa.confirm(factor_id, copycat, session_id=session_id)
    assert response.status_code == 403
    assert response.json() == FAILURE
    assert any("already registered" in r for r in await wa.reasons("factor.confirm_failed"))


async def test_a_credential_id_is_registered_once_across_subjects(wa: WebAuthnApi) -> None:
    alice_key = wa.key()
    await wa.register(alice_key, "alice")
    factor_id, options = await wa.begin("bob")
    stolen_id = next(iter(alice_key.credentials))
    response = await wa.confirm(factor_id, wa.key().create(options, credential_id=stolen_id), "bob")
    assert response.status_code == 403
    assert response.json() == FAILURE
    factors = (await wa.api.client.get("/v1/subjects/bob/factors")).json()["factors"]
    assert [f["status"] for f in factors] == ["pending"]


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"origin": "https://evil.example"}, "origin"),
        ({"origin": "http://localhost:8001"}, "origin"),
        ({"rp_id": "evil.example"}, "RP ID hash"),
        ({"up": False}, "presence"),
        ({"uv": False}, "verification"),
        ({"challenge": b64url(b"x" * 32)}, "no open registration ceremony"),
        ({"client_data_type": "webauthn.get"}, "client data type"),
    ],
)
async def test_a_registration_response_that_fails_a_check_is_refused(
    wa: WebAuthnApi, tamper: dict[str, Any], reason: str
) -> None:
    factor_id, options = await wa.begin()
    response = await wa.confirm(factor_id, wa.key().create(options, **tamper))
    assert response.status_code == 403
    assert response.json() == FAILURE
    reasons = await wa.reasons("factor.confirm_failed")
    assert len(reasons) == 1
    assert reason.lower() in reasons[0].lower()


async def test_a_registration_challenge_is_used_once_even_by_a_failure(wa: WebAuthnApi) -> None:
    factor_id, options = await wa.begin()
    key = wa.key()
    wrong = await wa.confirm(factor_id, key.create(options, origin="https://evil.example"))
    assert wrong.status_code == 403
    again = await wa.confirm(factor_id, key.create(options))
    assert again.status_code == 403
    assert "no open registration ceremony" in (await wa.reasons("factor.confirm_failed"))[-1]


async def test_a_registration_response_is_bound_to_its_pending_factor(wa: WebAuthnApi) -> None:
    first_factor, first_options = await wa.begin()
    second_factor, _ = await wa.begin()
    response = await wa.confirm(second_factor, wa.key().create(first_options))
    assert response.status_code == 403
    # The first factor's own ceremony is still open.
    ok = await wa.confirm(first_factor, wa.key().create(first_options))
    assert ok.status_code == 200, ok.text


async def test_an_expired_registration_ceremony_is_refused(wa: WebAuthnApi) -> None:
    factor_id, options = await wa.begin()
    wa.api.clock.advance(301)
    response = await wa.confirm(factor_id, wa.key().create(options))
    assert response.status_code == 403


async def test_user_verification_preferred_accepts_a_presence_only_key(wa: WebAuthnApi) -> None:
    factor_id, options = await wa.begin(user_verification="preferred")
    assert options["authenticatorSelection"]["userVerification"] == "preferred"
    response = await wa.confirm(factor_id, wa.key(user_verified=False).create(options))
    assert response.status_code == 200, response.text


async def test_a_code_cannot_confirm_a_webauthn_factor_nor_a_credential_totp(
    wa: WebAuthnApi,
) -> None:
    factor_id, _ = await wa.begin()
    response = await wa.api.client.post(
        f"/v1/subjects/alice/factors/{factor_id}/confirm", json={"code": "123456"}
    )
    # Well-formed bodies that the factor's type does not take: a conflict (409), not a
    # malformed request (schemathesis sends exactly these as schema-valid data).
    assert response.status_code == 409
    body: dict[str, Any] = {"type": "totp"}
    totp = await wa.api.client.post("/v1/subjects/bob/factors", json=body)
    totp_id = totp.json()["factor"]["id"]
    _, options = await wa.begin("bob")
    response = await wa.confirm(totp_id, wa.key().create(options), "bob")
    assert response.status_code == 409


# --- step-up -----------------------------------------------------------------------------


async def test_an_assertion_with_user_verification_reaches_phr(wa: WebAuthnApi) -> None:
    key = wa.key()
    factor_id = await wa.register(key)
    session_id = await wa.api.open_session()
    challenge_id = await wa.challenge(session_id, "admin.users.delete")

    info = (await wa.api.client.get(f"/v1/challenges/{challenge_id}")).json()
    assert info["factors"] == [{"id": factor_id, "type": "webauthn", "label": "Security key"}]

    options = await wa.request_options(challenge_id)
    assert options["rpId"] == "localhost"
    assert options["userVerification"] == "required"
    assert [c["id"] for c in options["allowCredentials"]] == [b64url(next(iter(key.credentials)))]
    response = await wa.verify(challenge_id, key.get(options))
    assert response.status_code == 200, response.text
    session = response.json()["session"]
    assert session["acr"] == "phr"
    assert session["amr"] == ["pwd", "swk", "user", "mfa"]

    decision = await wa.api.decide(session_id, "admin.users.delete")
    assert decision["decision"] == "allow"
    row = await wa.credential_row(factor_id)
    assert row.sign_count == 1
    factors = (await wa.api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert factors[0]["last_used_at"] is not None
    succeeded = await wa.api.audit(type="verification.succeeded")
    assert succeeded[-1]["details"]["factor_type"] == "webauthn"
    assert succeeded[-1]["details"]["acr"] == "phr"


async def test_a_bound_every_time_rule_gets_a_grant_from_an_assertion(wa: WebAuthnApi) -> None:
    key = wa.key()
    await wa.register(key)
    session_id = await wa.api.open_session()
    context = {"amount": 2500, "payee": "ACME"}
    decision = await wa.api.decide(session_id, "payments.transfer", context=context)
    challenge_id = decision["challenge"]["id"]
    options = await wa.request_options(challenge_id)
    response = await wa.verify(challenge_id, key.get(options))
    assert response.status_code == 200, response.text
    grant = response.json()["grant"]
    allowed = await wa.api.decide(session_id, "payments.transfer", context=context, grant=grant)
    assert allowed["decision"] == "allow"


async def test_an_assertion_without_uv_fails_when_required_and_the_challenge_stays_pending(
    wa: WebAuthnApi,
) -> None:
    key = wa.key()
    await wa.register(key)
    session_id = await wa.api.open_session()
    challenge_id = await wa.challenge(session_id, "admin.users.delete")
    options = await wa.request_options(challenge_id)
    response = await wa.verify(challenge_id, key.get(options, uv=False))
    assert response.status_code == 403
    assert response.json() == FAILURE
    assert "verification is required" in (await wa.reasons())[-1]
    info = (await wa.api.client.get(f"/v1/challenges/{challenge_id}")).json()
    assert info["status"] == "pending"
    # The ceremony is spent; new options and a verified user succeed.
    again = await wa.verify(challenge_id, key.get(options))
    assert again.status_code == 403
    assert "no open ceremony" in (await wa.reasons())[-1]
    fresh = await wa.request_options(challenge_id)
    assert (await wa.verify(challenge_id, key.get(fresh))).status_code == 200


async def test_presence_only_satisfies_an_aal2_webauthn_only_rule(wa: WebAuthnApi) -> None:
    key = wa.key(user_verified=False)
    await wa.register(key, user_verification="preferred")
    totp = await wa.api.client.post(
        "/v1/subjects/alice/factors",
        json={"type": "totp", "session_id": await wa.managing_session(key)},
    )
    assert totp.status_code == 201
    session_id = await wa.api.open_session()
    challenge_id = await wa.challenge(session_id, "deploy.production")
    info = (await wa.api.client.get(f"/v1/challenges/{challenge_id}")).json()
    assert [f["type"] for f in info["factors"]] == ["webauthn"]
    options = await wa.request_options(challenge_id)
    assert options["userVerification"] == "preferred"
    response = await wa.verify(challenge_id, key.get(options))
    assert response.status_code == 200, response.text
    assert response.json()["session"]["acr"] == "aal2"
    assert response.json()["session"]["amr"] == ["pwd", "swk", "user", "mfa"]
    # ... but presence alone is not phishing-resistant enough for phr.
    admin = await wa.challenge(session_id, "admin.x")
    assert (await wa.options(admin)).status_code == 200  # UV can still reach it
    denied = await wa.verify(admin, key.get(await wa.request_options(admin)))
    assert denied.status_code == 403


async def test_methods_webauthn_refuses_a_totp_code(wa: WebAuthnApi) -> None:
    factor_id, secret = await wa.api.enroll_totp("bob")
    session_id = await wa.api.open_session("bob")
    challenge_id = await wa.challenge(session_id, "deploy.production")
    response = await wa.api.verify(challenge_id, factor_id, wa.api.code(secret))
    assert response.status_code == 403
    assert (await wa.options(challenge_id)).status_code == 409  # bob has no key


async def test_an_assertion_challenge_is_single_use(wa: WebAuthnApi) -> None:
    key = wa.key()
    await wa.register(key)
    session_id = await wa.api.open_session()
    first = await wa.challenge(session_id, "admin.a")
    options = await wa.request_options(first)
    assertion = key.get(options)
    assert (await wa.verify(first, assertion)).status_code == 200
    assert (await wa.verify(first, assertion)).status_code == 403  # same challenge again
    second = await wa.challenge(await wa.api.open_session(), "admin.a")
    await wa.request_options(second)
    replayed = await wa.verify(second, key.get(options))  # old options, new challenge
    assert replayed.status_code == 403
    assert "no open ceremony" in (await wa.reasons())[-1]


async def test_newer_options_replace_older_ones(wa: WebAuthnApi) -> None:
    key = wa.key()
    await wa.register(key)
    challenge_id = await wa.challenge(await wa.api.open_session(), "admin.a")
    old = await wa.request_options(challenge_id)
    new = await wa.request_options(challenge_id)
    assert old["challenge"] != new["challenge"]
    assert (await wa.verify(challenge_id, key.get(old))).status_code == 403
    assert (
        await wa.verify(challenge_id, key.get(await wa.request_options(challenge_id)))
    ).status_code == 200


async def test_an_expired_assertion_ceremony_is_refused(wa: WebAuthnApi) -> None:
    key = wa.key()
    await wa.register(key)
    challenge_id = await wa.challenge(await wa.api.open_session(), "settings.a")
    options = await wa.request_options(challenge_id)
    assert options["timeout"] == 300_000
    wa.api.clock.advance(301)
    assert (await wa.verify(challenge_id, key.get(options))).status_code == 403


async def test_another_subjects_credential_is_refused(wa: WebAuthnApi) -> None:
    alice_key = wa.key()
    await wa.register(alice_key, "alice")
    bob_key = wa.key()
    bob_factor = await wa.register(bob_key, "bob")
    challenge_id = await wa.challenge(await wa.api.open_session("alice"), "admin.a")
    options = await wa.request_options(challenge_id)
    bobs = bob_key.get(options, credential_id=next(iter(bob_key.credentials)))
    response = await wa.verify(challenge_id, bobs)
    assert response.status_code == 403
    assert "another subject" in (await wa.reasons())[-1]
    named = await wa.verify(challenge_id, bobs, factor_id=bob_factor)
    assert named.status_code == 403


async def test_a_tampered_signature_is_refused_and_counts_as_a_failure(wa: WebAuthnApi) -> None:
    key = wa.key()
    factor_id = await wa.register(key)
    challenge_id = await wa.challenge(await wa.api.open_session(), "admin.a")
    options = await wa.request_options(challenge_id)
    response = await wa.verify(challenge_id, key.get(options, tamper_signature=True))
    assert response.status_code == 403
    assert "signature" in (await wa.reasons())[-1]
    async with wa.api.runtime.store.read() as uow:
        factor = await uow.factors.get("alice", factor_id)
    assert factor is not None
    assert factor.failed_attempts == 1


@pytest.mark.parametrize(
    ("tamper", "reason"),
    [
        ({"origin": "https://evil.example"}, "origin"),
        ({"rp_id": "evil.example"}, "RP ID hash"),
        ({"up": False}, "not present"),
        ({"client_data_type": "webauthn.create"}, "client data type"),
        ({"user_handle": b"someone else"}, "user handle"),
    ],
)
async def test_an_assertion_that_fails_a_check_is_refused(
    wa: WebAuthnApi, tamper: dict[str, Any], reason: str
) -> None:
    key = wa.key()
    await wa.register(key)
    challenge_id = await wa.challenge(await wa.api.open_session(), "admin.a")
    options = await wa.request_options(challenge_id)
    response = await wa.verify(challenge_id, key.get(options, **tamper))
    assert response.status_code == 403
    assert response.json() == FAILURE
    assert reason.lower() in (await wa.reasons())[-1].lower()


async def test_a_sign_count_regression_marks_the_credential_and_refuses_it_from_then_on(
    wa: WebAuthnApi,
) -> None:
    key = wa.key()
    factor_id = await wa.register(key)
    session_id = await wa.api.open_session()
    assert (await wa.step_up(key, session_id, "payments.a")).status_code == 200  # counter 1
    clone = key.clone()
    assert (await wa.step_up(key, session_id, "payments.b")).status_code == 200  # counter 2

    challenge_id = await wa.challenge(session_id, "payments.c")
    response = await wa.verify(challenge_id, clone.get(await wa.request_options(challenge_id)))
    assert response.status_code == 403  # the clone signs counter 2 again
    assert response.json() == FAILURE
    suspected = await wa.api.audit(type="webauthn.clone_suspected")
    assert [e["details"]["factor_id"] for e in suspected] == [factor_id]
    assert (await wa.credential_row(factor_id)).suspected_clone_at is not None
    listed = (await wa.api.client.get("/v1/subjects/alice/factors")).json()["factors"]
    assert listed[0]["webauthn"]["suspected_clone_at"] is not None

    # The genuine key is refused too until the credential is removed.
    info = (await wa.api.client.get(f"/v1/challenges/{challenge_id}")).json()
    assert info["factors"] == []
    assert (await wa.options(challenge_id)).status_code == 409
    other = await wa.challenge(await wa.api.open_session(), "settings.a")
    assert (await wa.options(other)).status_code == 409


async def test_an_unsigned_counter_regression_marks_nothing(wa: WebAuthnApi) -> None:
    key = wa.key()
    factor_id = await wa.register(key)
    session_id = await wa.api.open_session()
    assert (await wa.step_up(key, session_id, "payments.a")).status_code == 200
    challenge_id = await wa.challenge(session_id, "payments.b")
    options = await wa.request_options(challenge_id)
    forged = key.get(options, sign_count=0, tamper_signature=True)
    assert (await wa.verify(challenge_id, forged)).status_code == 403
    assert (await wa.credential_row(factor_id)).suspected_clone_at is None


async def test_a_counterless_authenticator_is_fine(wa: WebAuthnApi) -> None:
    key = wa.key(counter_step=0, backup_eligible=True, backed_up=True)
    factor_id = await wa.register(key)
    session_id = await wa.api.open_session()
    assert (await wa.step_up(key, session_id, "payments.a")).status_code == 200
    assert (await wa.step_up(key, session_id, "payments.b")).status_code == 200
    row = await wa.credential_row(factor_id)
    assert (row.sign_count, row.backup_eligible, row.backed_up) == (0, True, True)


async def test_a_hardware_key_with_verified_attestation_reaches_phrh(wa: WebAuthnApi) -> None:
    key = wa.key(hardware=True)
    await wa.register(key)
    session_id = await wa.api.open_session()
    response = await wa.step_up(key, session_id, "vault.open")
    assert response.status_code == 200, response.text
    session = response.json()["session"]
    assert session["acr"] == "aal3"  # hardware-bound with UV: above phrh
    assert session["amr"] == ["pwd", "hwk", "user", "mfa"]
    assert (await wa.api.decide(session_id, "vault.open"))["decision"] == "allow"


NOT_HARDWARE_BOUND: dict[str, dict[str, Any]] = {
    "self-attested": {"attestation": "packed-self", "aaguid": HARDWARE_AAGUID.bytes},
    "not-allow-listed": {"hardware": True, "aaguid": OTHER_AAGUID.bytes},
    "synced-passkey": {"hardware": True, "backup_eligible": True},
    "unknown-ca": {"hardware": True, "unknown_ca": True},
}


@pytest.mark.parametrize("case", list(NOT_HARDWARE_BOUND))
async def test_keys_that_are_not_hardware_bound_cannot_reach_phrh(
    wa: WebAuthnApi, case: str
) -> None:
    key_options = dict(NOT_HARDWARE_BOUND[case])
    if key_options.pop("unknown_ca", False):
        key_options["ca"] = AttestationCA("Unknown Vendor")
    key = wa.key(**key_options)
    await wa.register(key)
    session_id = await wa.api.open_session()
    vault = await wa.challenge(session_id, "vault.open")
    assert (await wa.api.client.get(f"/v1/challenges/{vault}")).json()["factors"] == []
    assert (await wa.options(vault)).status_code == 409
    response = await wa.step_up(key, session_id, "admin.a")
    assert response.status_code == 200
    assert response.json()["session"]["acr"] == "phr"
    assert "swk" in response.json()["session"]["amr"]


async def test_options_for_a_challenge_that_is_not_pending_or_unknown(wa: WebAuthnApi) -> None:
    key = wa.key()
    await wa.register(key)
    session_id = await wa.api.open_session()
    challenge_id = await wa.challenge(session_id, "admin.a")
    assert (
        await wa.verify(challenge_id, key.get(await wa.request_options(challenge_id)))
    ).status_code == 200
    assert (await wa.options(challenge_id)).status_code == 409
    assert (await wa.options("chl_unknown")).status_code == 404


async def test_removal_is_gated_and_removes_the_credential(wa: WebAuthnApi) -> None:
    key = wa.key()
    factor_id = await wa.register(key)
    refused = await wa.api.client.delete(f"/v1/subjects/alice/factors/{factor_id}")
    assert refused.status_code == 403
    assert refused.json()["error"] == "step_up_required"
    session_id = await wa.managing_session(key)
    removed = await wa.api.client.delete(
        f"/v1/subjects/alice/factors/{factor_id}", params={"session_id": session_id}
    )
    assert removed.status_code == 204
    assert await wa.credential_row(factor_id) is None
    # The id is free again, and the old key no longer verifies anything.
    challenge_id = await wa.challenge(await wa.api.open_session(), "admin.a")
    assert (await wa.options(challenge_id)).status_code == 409


async def test_the_guessing_limit_applies_to_webauthn(wa: WebAuthnApi) -> None:
    key = wa.key()
    factor_id = await wa.register(key)
    session_id = await wa.api.open_session()
    challenge_id = await wa.challenge(session_id, "admin.a")
    for _ in range(5):
        options = await wa.request_options(challenge_id)
        bad = await wa.verify(challenge_id, key.get(options, tamper_signature=True))
        assert bad.status_code == 403
    options = await wa.request_options(challenge_id)
    locked = await wa.verify(challenge_id, key.get(options))
    assert locked.status_code == 403
    assert "locked" in (await wa.reasons())[-1]
    wa.api.clock.advance(31)
    options = await wa.request_options(challenge_id)
    assert (await wa.verify(challenge_id, key.get(options))).status_code == 200
    async with wa.api.runtime.store.read() as uow:
        factor = await uow.factors.get("alice", factor_id)
    assert factor is not None
    assert factor.failed_attempts == 0


async def test_every_webauthn_failure_looks_the_same(wa: WebAuthnApi) -> None:
    key = wa.key()
    await wa.register(key)
    challenge_id = await wa.challenge(await wa.api.open_session(), "admin.a")
    options = await wa.request_options(challenge_id)
    responses = [
        await wa.verify(
            challenge_id, {"id": "x", "rawId": "x", "type": "public-key", "response": {}}
        ),
        await wa.verify(challenge_id, key.get(options, origin="https://evil.example")),
        await wa.verify("chl_unknown", key.get(options)),
        await wa.verify(challenge_id, key.get(options), factor_id="fac_other"),
    ]
    for response in responses:
        assert response.status_code == 403
        assert response.json() == FAILURE


async def test_malformed_webauthn_bodies_are_invalid_requests(wa: WebAuthnApi) -> None:
    challenge_id = await wa.challenge(await wa.api.open_session(), "admin.a")
    for body in (
        {"credential": "not an object"},
        {"credential": {"id": "x"}},
        {"credential": {"id": 1, "rawId": "x", "type": "public-key", "response": {}}},
        {"credential": {}, "code": "123456"},
    ):
        response = await wa.api.client.post(
            f"/v1/challenges/{challenge_id}/verifications", json=body
        )
        assert response.status_code == 400, body


async def test_concurrent_answers_to_one_ceremony_succeed_at_most_once(wa: WebAuthnApi) -> None:
    """Eight different, valid assertions for the same options, sent at once."""
    key = wa.key()
    await wa.register(key)
    challenge_id = await wa.challenge(await wa.api.open_session(), "payments.pay")
    options = await wa.request_options(challenge_id)
    assertions = [key.get(options) for _ in range(8)]
    responses = await asyncio.gather(*(wa.verify(challenge_id, a) for a in assertions))
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [403] * 7
    assert sum(1 for r in responses if r.status_code == 200 and r.json()["grant"]) == 1
