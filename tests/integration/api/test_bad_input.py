"""Bad input gets a clear 4xx in the one error shape, never a 500."""

from __future__ import annotations

import pytest

from support.harness import Harness


def assert_error(response_json: object, code: str) -> None:
    assert isinstance(response_json, dict)
    assert response_json["error"] == code
    assert isinstance(response_json["message"], str)
    assert response_json["message"]
    assert set(response_json) == {"error", "message"}


async def test_calls_without_an_api_key_are_refused(api: Harness) -> None:
    response = await api.anon.get("/v1/subjects/alice")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"
    assert_error(response.json(), "unauthenticated")


@pytest.mark.parametrize(
    "header",
    ["Bearer nope", "Basic YWxpY2U6cHc=", "Bearer ", "Bearer sgk_x.key_y", "bearer"],
)
async def test_bad_api_keys_are_refused(api: Harness, header: str) -> None:
    response = await api.anon.get("/v1/subjects/alice", headers={"Authorization": header})
    assert response.status_code == 401
    assert_error(response.json(), "unauthenticated")


async def test_a_revoked_api_key_stops_working(api: Harness) -> None:
    created = await api.runtime.services.api_keys.create("short-lived")
    headers = {"Authorization": f"Bearer {created.token.reveal()}"}
    assert (await api.anon.get("/healthz", headers=headers)).status_code == 200
    await api.put_subject("alice")
    assert (await api.anon.get("/v1/subjects/alice", headers=headers)).status_code == 200
    await api.runtime.services.api_keys.revoke(created.key.id)
    assert (await api.anon.get("/v1/subjects/alice", headers=headers)).status_code == 401


async def test_malformed_json_is_a_400(api: Harness) -> None:
    response = await api.client.post(
        "/v1/sessions", content=b'{"subject_id": ', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert_error(response.json(), "invalid_request")


@pytest.mark.parametrize(
    "body",
    [
        {"subject_id": "alice", "amr": ["pwd"], "ttl_seconds": True},
        {"subject_id": "alice", "amr": ["pwd"], "ttl_seconds": 10.5},
        {"subject_id": "alice", "amr": ["pwd"], "ttl_seconds": "60"},
        {"subject_id": "alice", "amr": "pwd"},
        {"subject_id": 7, "amr": ["pwd"]},
        {"subject_id": "alice", "amr": ["pwd"], "admin": True},
        {"subject_id": "alice", "amr": []},
        {"subject_id": "al ice", "amr": ["pwd"]},
        {"subject_id": "alice", "amr": ["password"]},
        [],
        "alice",
    ],
)
async def test_wrong_types_unknown_fields_and_bad_values_are_400s(
    api: Harness, body: object
) -> None:
    await api.put_subject("alice")
    response = await api.client.post("/v1/sessions", json=body)
    assert response.status_code == 400, response.text
    assert_error(response.json(), "invalid_request")


@pytest.mark.parametrize(
    "context",
    [
        '{"amount": NaN}',
        '{"amount": Infinity}',
        '{"amount": 1e400}',
        '{"amount": 9007199254740993}',
    ],
)
async def test_contexts_that_cannot_be_canonicalized_are_refused(
    api: Harness, context: str
) -> None:
    await api.put_subject("alice")
    await api.enroll_totp()
    session_id = await api.open_session()
    raw = (
        f'{{"session_id": "{session_id}", "action": "payments.transfer", "context": {context}}}'
    ).encode()
    response = await api.client.post(
        "/v1/decisions", content=raw, headers={"content-type": "application/json"}
    )
    assert response.status_code == 400, response.text
    assert_error(response.json(), "invalid_request")


async def test_oversized_bodies_are_413s(api: Harness) -> None:
    big = {"subject_id": "alice", "amr": ["pwd"], "user_agent": "x" * 200_000}
    response = await api.client.post("/v1/sessions", json=big)
    assert response.status_code == 413
    assert_error(response.json(), "payload_too_large")


async def test_unknown_routes_and_methods_use_the_error_shape(api: Harness) -> None:
    missing = await api.client.get("/v1/nothing")
    assert missing.status_code == 404
    assert_error(missing.json(), "not_found")
    wrong_method = await api.client.patch("/v1/sessions")
    assert wrong_method.status_code == 405
    assert_error(wrong_method.json(), "method_not_allowed")


async def test_unknown_subjects_and_sessions_are_404s(api: Harness) -> None:
    assert (await api.client.get("/v1/subjects/nobody")).status_code == 404
    response = await api.client.post("/v1/sessions", json={"subject_id": "nobody", "amr": ["pwd"]})
    assert response.status_code == 404
    assert_error(response.json(), "not_found")


async def test_audit_time_filters_need_a_timezone(api: Harness) -> None:
    response = await api.client.get("/v1/audit", params={"since": "2026-01-01T00:00:00"})
    assert response.status_code == 400


def test_the_schema_lists_exactly_the_rfc8176_amr_values() -> None:
    import typing

    from stepguard.adapters.web.schemas import AmrValue
    from stepguard.core.assurance import AuthMethod

    assert set(typing.get_args(AmrValue)) == {method.value for method in AuthMethod}
