"""The step-up flow end to end through the HTTP API, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

from stepguard.sdk.rfc9470 import parse_www_authenticate
from support.harness import Harness

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}


async def stepped_up_grant(
    api: Harness, context: dict[str, Any] = TRANSFER
) -> tuple[str, str, str]:
    """Subject with TOTP, a session, a bound step-up: returns (session, factor, grant)."""
    await api.put_subject("alice", email="alice@example.com")
    factor_id, secret = await api.enroll_totp()
    session_id = await api.open_session()
    decision = await api.decide(session_id, "payments.transfer", context=context)
    assert decision["decision"] == "step_up"
    response = await api.verify(decision["challenge"]["id"], factor_id, api.code(secret))
    assert response.status_code == 200, response.text
    grant = response.json()["grant"]
    assert grant
    return session_id, factor_id, grant


async def test_a_password_session_is_aal1(api: Harness) -> None:
    await api.put_subject("alice")
    response = await api.client.post("/v1/sessions", json={"subject_id": "alice", "amr": ["pwd"]})
    body = response.json()
    assert response.status_code == 201
    assert body["acr"] == "aal1"
    assert body["amr"] == ["pwd"]
    assert body["auth_time"] is not None


async def test_an_allowed_action_needs_nothing_more(api: Harness) -> None:
    await api.put_subject("alice")
    session_id = await api.open_session()
    decision = await api.decide(session_id, "account.view")
    assert decision["decision"] == "allow"
    assert decision["rule"] == "view"
    assert decision["risk"]["level"] == "low"
    assert "challenge" not in decision or decision["challenge"] is None


async def test_a_large_transfer_opens_a_challenge_with_an_rfc9470_header(api: Harness) -> None:
    await api.put_subject("alice")
    factor_id, _ = await api.enroll_totp()
    session_id = await api.open_session()
    decision = await api.decide(session_id, "payments.transfer", context=TRANSFER)
    assert decision["decision"] == "step_up"
    assert decision["rule"] == "transfer-large"
    assert decision["requirement"] == {"acr": "aal2", "max_age": 300, "methods": [], "bind": True}
    challenge = parse_www_authenticate(decision["www_authenticate"])
    assert challenge is not None
    assert challenge.acr_values == ("aal2",)
    assert challenge.max_age == 300

    response = await api.client.get(f"/v1/challenges/{decision['challenge']['id']}")
    assert response.status_code == 200
    info = response.json()
    assert info["status"] == "pending"
    assert info["summary"] == "Transfer EUR 2500 to ACME GmbH"
    assert [f["id"] for f in info["factors"]] == [factor_id]


async def test_verification_raises_the_session_and_returns_a_grant(api: Harness) -> None:
    await api.put_subject("alice")
    factor_id, secret = await api.enroll_totp()
    session_id = await api.open_session()
    decision = await api.decide(session_id, "payments.transfer", context=TRANSFER)
    response = await api.verify(decision["challenge"]["id"], factor_id, api.code(secret))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "satisfied"
    assert body["session"]["acr"] == "aal2"
    assert body["session"]["amr"] == ["pwd", "otp", "mfa"]
    assert body["grant"].startswith("sgg_")

    challenge = await api.client.get(f"/v1/challenges/{decision['challenge']['id']}")
    assert challenge.json()["status"] == "satisfied"


async def test_a_grant_authorizes_its_transaction_exactly_once(api: Harness) -> None:
    session_id, _, grant = await stepped_up_grant(api)
    first = await api.decide(session_id, "payments.transfer", context=TRANSFER, grant=grant)
    assert first["decision"] == "allow"
    assert first["rule"] == "transfer-large"
    again = await api.decide(session_id, "payments.transfer", context=TRANSFER, grant=grant)
    assert again["decision"] == "step_up"


async def test_key_order_does_not_matter_to_the_binding(api: Harness) -> None:
    session_id, _, grant = await stepped_up_grant(api)
    reordered = {"payee": "ACME GmbH", "currency": "EUR", "amount": 2500}
    decision = await api.decide(session_id, "payments.transfer", context=reordered, grant=grant)
    assert decision["decision"] == "allow"


async def test_a_grant_does_not_authorize_a_different_amount(api: Harness) -> None:
    session_id, _, grant = await stepped_up_grant(api, {"amount": 100.5, "payee": "X"})
    bigger = await api.decide(
        session_id, "payments.transfer", context={"amount": 10000, "payee": "X"}, grant=grant
    )
    assert bigger["decision"] == "step_up"


async def test_a_grant_does_not_authorize_another_payee(api: Harness) -> None:
    session_id, _, grant = await stepped_up_grant(api, {"amount": 500, "payee": "X"})
    decision = await api.decide(
        session_id, "payments.transfer", context={"amount": 500, "payee": "Y"}, grant=grant
    )
    assert decision["decision"] == "step_up"


async def test_a_grant_does_not_authorize_a_string_amount_or_extra_fields(api: Harness) -> None:
    session_id, _, grant = await stepped_up_grant(api, {"amount": 500, "payee": "X"})
    for context in ({"amount": "500", "payee": "X"}, {"amount": 500, "payee": "X", "memo": ""}):
        decision = await api.decide(session_id, "payments.transfer", context=context, grant=grant)
        assert decision["decision"] != "allow"
    # The untouched grant still works for its own transaction afterwards.
    decision = await api.decide(
        session_id, "payments.transfer", context={"amount": 500, "payee": "X"}, grant=grant
    )
    assert decision["decision"] == "allow"


async def test_a_grant_does_not_authorize_another_session(api: Harness) -> None:
    _, _, grant = await stepped_up_grant(api)
    other_session = await api.open_session()
    decision = await api.decide(other_session, "payments.transfer", context=TRANSFER, grant=grant)
    assert decision["decision"] == "step_up"


async def test_a_grant_does_not_authorize_another_subject(api: Harness) -> None:
    _, _, grant = await stepped_up_grant(api)
    await api.put_subject("mallory")
    mallory = await api.open_session("mallory")
    decision = await api.decide(mallory, "payments.transfer", context=TRANSFER, grant=grant)
    assert decision["decision"] == "step_up"


async def test_a_grant_does_not_authorize_another_action(api: Harness) -> None:
    session_id, _, grant = await stepped_up_grant(api)
    decision = await api.decide(session_id, "account.email.change", context=TRANSFER, grant=grant)
    assert decision["decision"] == "step_up"


async def test_a_grant_expires(api: Harness) -> None:
    session_id, _, grant = await stepped_up_grant(api)
    api.clock.advance(301)
    decision = await api.decide(session_id, "payments.transfer", context=TRANSFER, grant=grant)
    assert decision["decision"] == "step_up"


async def test_max_age_is_enforced_from_the_factor_time_on_the_server_clock(api: Harness) -> None:
    await api.put_subject("alice")
    factor_id, secret = await api.enroll_totp()
    session_id = await api.open_session()
    decision = await api.decide(session_id, "settings.change")
    assert decision["decision"] == "step_up"
    response = await api.verify(decision["challenge"]["id"], factor_id, api.code(secret))
    assert response.status_code == 200
    assert response.json().get("grant") is None  # unbound, max_age > 0: the session carries it

    assert (await api.decide(session_id, "settings.change"))["decision"] == "allow"
    api.clock.advance(299)
    assert (await api.decide(session_id, "settings.change"))["decision"] == "allow"
    api.clock.advance(2)
    assert (await api.decide(session_id, "settings.change"))["decision"] == "step_up"


async def test_max_age_zero_needs_a_new_step_up_every_time(api: Harness) -> None:
    await api.put_subject("alice")
    factor_id, secret = await api.enroll_totp()
    session_id = await api.open_session()
    decision = await api.decide(session_id, "account.email.change", context={"to": "a@b.c"})
    response = await api.verify(decision["challenge"]["id"], factor_id, api.code(secret))
    grant = response.json()["grant"]
    assert grant
    first = await api.decide(
        session_id, "account.email.change", context={"to": "a@b.c"}, grant=grant
    )
    assert first["decision"] == "allow"
    second = await api.decide(session_id, "account.email.change", context={"to": "a@b.c"})
    assert second["decision"] == "step_up"


async def test_a_factor_that_cannot_reach_the_level_is_not_offered_nor_accepted(
    api: Harness,
) -> None:
    await api.put_subject("alice")
    factor_id, secret = await api.enroll_totp()
    session_id = await api.open_session()
    decision = await api.decide(session_id, "admin.users")
    assert decision["requirement"]["acr"] == "phr"
    info = (await api.client.get(f"/v1/challenges/{decision['challenge']['id']}")).json()
    assert info["factors"] == []
    response = await api.verify(decision["challenge"]["id"], factor_id, api.code(secret))
    assert response.status_code == 403


async def test_adding_a_second_factor_needs_a_fresh_step_up_and_refusals_are_audited(
    api: Harness,
) -> None:
    await api.put_subject("alice")
    await api.enroll_totp()
    response = await api.client.post("/v1/subjects/alice/factors", json={"type": "recovery_code"})
    assert response.status_code == 403
    assert response.json()["error"] == "step_up_required"
    refused = await api.audit(type="factor.change_refused")
    assert [e["details"]["change"] for e in refused] == ["enroll"]


async def test_a_password_only_session_cannot_manage_factors(api: Harness) -> None:
    await api.put_subject("alice")
    await api.enroll_totp()
    session_id = await api.open_session()
    response = await api.client.post(
        "/v1/subjects/alice/factors", json={"type": "totp", "session_id": session_id}
    )
    assert response.status_code == 403


async def test_methods_restrict_the_accepted_factor(api: Harness) -> None:
    await api.put_subject("alice")
    created = await api.client.post("/v1/subjects/alice/factors", json={"type": "recovery_code"})
    recovery_id = created.json()["factor"]["id"]
    codes = created.json()["recovery_codes"]
    totp_id, secret = await api.enroll_totp_with_step_up(recovery_id, codes[0])
    session_id = await api.open_session()
    decision = await api.decide(session_id, "secure.totp")
    assert decision["requirement"]["methods"] == ["totp"]
    info = (await api.client.get(f"/v1/challenges/{decision['challenge']['id']}")).json()
    assert [f["id"] for f in info["factors"]] == [totp_id]
    refused = await api.verify(decision["challenge"]["id"], recovery_id, codes[1])
    assert refused.status_code == 403
    accepted = await api.verify(decision["challenge"]["id"], totp_id, api.code(secret))
    assert accepted.status_code == 200
    # The refused recovery code was never evaluated, so it is still usable elsewhere.
    other = await api.decide(session_id, "account.email.change")
    assert (await api.verify(other["challenge"]["id"], recovery_id, codes[1])).status_code == 200


async def test_removing_a_factor_needs_a_step_up_and_is_audited(api: Harness) -> None:
    await api.put_subject("alice")
    factor_id, secret = await api.enroll_totp()
    plain = await api.open_session()
    refused = await api.client.delete(
        f"/v1/subjects/alice/factors/{factor_id}", params={"session_id": plain}
    )
    assert refused.status_code == 403
    session_id = await api.stepped_up_session(factor_id, api.code(secret))
    removed = await api.client.delete(
        f"/v1/subjects/alice/factors/{factor_id}", params={"session_id": session_id}
    )
    assert removed.status_code == 204
    assert (await api.client.get("/v1/subjects/alice/factors")).json()["factors"] == []
    assert [e["details"]["factor_id"] for e in await api.audit(type="factor.removed")] == [
        factor_id
    ]


async def test_revoked_sessions_get_no_decisions(api: Harness) -> None:
    await api.put_subject("alice")
    session_id = await api.open_session()
    assert (await api.client.delete(f"/v1/sessions/{session_id}")).status_code == 204
    response = await api.client.post(
        "/v1/decisions", json={"session_id": session_id, "action": "account.view"}
    )
    assert response.status_code == 404
    assert response.json()["error"] == "session_invalid"


async def test_expired_sessions_get_no_decisions(api: Harness) -> None:
    await api.put_subject("alice")
    response = await api.client.post(
        "/v1/sessions", json={"subject_id": "alice", "amr": ["pwd"], "ttl_seconds": 60}
    )
    session_id = response.json()["session_id"]
    api.clock.advance(61)
    response = await api.client.post(
        "/v1/decisions", json={"session_id": session_id, "action": "account.view"}
    )
    assert response.json()["error"] == "session_invalid"


async def test_what_if_evaluation_has_no_side_effects(api: Harness) -> None:
    before = await api.audit()
    response = await api.client.post(
        "/v1/policy/evaluate",
        json={"action": "payments.transfer", "context": {"amount": 500}},
    )
    assert response.status_code == 200
    assert response.json()["decision"] == "step_up"
    assert response.json()["rule"] == "transfer-large"
    assert await api.audit() == before
