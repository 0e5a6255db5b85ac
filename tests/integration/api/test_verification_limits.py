"""Guessing is bounded per factor, and every failure looks the same to the caller."""

from __future__ import annotations

from support.harness import Harness

FAILURE = {"error": "verification_failed", "message": "The verification failed."}


async def setup(api: Harness) -> tuple[str, str, bytes]:
    await api.put_subject("alice")
    factor_id, secret = await api.enroll_totp()
    session_id = await api.open_session()
    return session_id, factor_id, secret


async def new_challenge(api: Harness, session_id: str) -> str:
    """A fresh challenge (max_age 0: a step-up every time, whatever the session has)."""
    decision = await api.decide(session_id, "account.email.change")
    assert decision["decision"] == "step_up"
    return str(decision["challenge"]["id"])


def wrong(code: str) -> str:
    return f"{(int(code) + 1) % 1_000_000:06d}"


async def test_every_kind_of_failure_gets_the_same_status_and_body(api: Harness) -> None:
    session_id, factor_id, secret = await setup(api)
    responses = []

    challenge = await new_challenge(api, session_id)
    responses.append(await api.verify(challenge, factor_id, wrong(api.code(secret))))  # wrong
    responses.append(await api.verify(challenge, factor_id, "12345"))  # malformed
    responses.append(await api.verify(challenge, factor_id, "١٢٣٤٥٦"))  # Unicode digits
    responses.append(await api.verify(challenge, "fac_unknown", api.code(secret)))  # no factor
    responses.append(await api.verify("chl_unknown", factor_id, api.code(secret)))  # no challenge
    ok = await api.verify(challenge, factor_id, api.code(secret))
    assert ok.status_code == 200
    responses.append(await api.verify(challenge, factor_id, api.code(secret)))  # reused
    expired = await new_challenge(api, session_id)
    api.clock.advance(601)
    responses.append(await api.verify(expired, factor_id, api.code(secret)))  # expired

    for response in responses:
        assert response.status_code == 403
        assert response.json() == FAILURE

    reasons = [e["details"]["reason"] for e in await api.audit(type="verification.failed")]
    assert len(reasons) == len(responses)
    assert any("does not match" in r for r in reasons)
    assert any("unknown challenge" in r for r in reasons)
    assert any("satisfied" in r for r in reasons)
    assert any("expired" in r for r in reasons)


async def test_a_totp_code_is_single_use_across_challenges(api: Harness) -> None:
    session_id, factor_id, secret = await setup(api)
    code = api.code(secret)
    first = await api.verify(await new_challenge(api, session_id), factor_id, code)
    assert first.status_code == 200
    api.clock.advance(1)
    second = await api.verify(await new_challenge(api, session_id), factor_id, code)
    assert second.status_code == 403


async def test_five_failures_lock_the_factor_even_for_the_right_code(api: Harness) -> None:
    session_id, factor_id, secret = await setup(api)
    for _ in range(5):
        challenge = await new_challenge(api, session_id)
        response = await api.verify(challenge, factor_id, wrong(api.code(secret)))
        assert response.status_code == 403
    challenge = await new_challenge(api, session_id)
    locked = await api.verify(challenge, factor_id, api.code(secret))
    assert locked.status_code == 403
    assert locked.json() == FAILURE

    api.clock.advance(31)  # the first lock is 30 s
    response = await api.verify(challenge, factor_id, api.code(secret))
    assert response.status_code == 200


async def test_the_lock_grows_with_further_failures(api: Harness) -> None:
    session_id, factor_id, secret = await setup(api)
    challenge = await new_challenge(api, session_id)
    for _ in range(5):
        await api.verify(challenge, factor_id, wrong(api.code(secret)))
    api.clock.advance(31)
    await api.verify(challenge, factor_id, wrong(api.code(secret)))  # 6th: 60 s lock
    api.clock.advance(31)
    assert (await api.verify(challenge, factor_id, api.code(secret))).status_code == 403
    api.clock.advance(30)
    assert (await api.verify(challenge, factor_id, api.code(secret))).status_code == 200


async def test_attempts_are_counted_per_factor_across_sessions(api: Harness) -> None:
    _, factor_id, secret = await setup(api)
    for _ in range(5):
        other_session = await api.open_session()
        challenge = await new_challenge(api, other_session)
        await api.verify(challenge, factor_id, wrong(api.code(secret)))
    session_id = await api.open_session()
    challenge = await new_challenge(api, session_id)
    assert (await api.verify(challenge, factor_id, api.code(secret))).status_code == 403


async def test_locked_attempts_are_not_evaluated_so_guessing_stays_bounded(api: Harness) -> None:
    """While locked, even many attempts add no failures: the counter stays at the threshold."""
    session_id, factor_id, secret = await setup(api)
    challenge = await new_challenge(api, session_id)
    for _ in range(25):
        await api.verify(challenge, factor_id, wrong(api.code(secret)))
    async with api.runtime.store.read() as uow:
        factor = await uow.factors.get("alice", factor_id)
    assert factor is not None
    assert factor.failed_attempts == 5


async def test_a_success_resets_the_failure_count(api: Harness) -> None:
    session_id, factor_id, secret = await setup(api)
    challenge = await new_challenge(api, session_id)
    for _ in range(4):
        await api.verify(challenge, factor_id, wrong(api.code(secret)))
    assert (await api.verify(challenge, factor_id, api.code(secret))).status_code == 200
    api.clock.advance(30)
    challenge = await new_challenge(api, session_id)
    for _ in range(4):
        await api.verify(challenge, factor_id, wrong(api.code(secret)))
    assert (await api.verify(challenge, factor_id, api.code(secret))).status_code == 200


async def test_recovery_codes_are_single_use(api: Harness) -> None:
    await api.put_subject("alice")
    response = await api.client.post("/v1/subjects/alice/factors", json={"type": "recovery_code"})
    assert response.status_code == 201, response.text
    body = response.json()
    factor_id = body["factor"]["id"]
    codes = body["recovery_codes"]
    assert len(codes) == 10
    session_id = await api.open_session()
    first = await api.verify(await new_challenge(api, session_id), factor_id, codes[0])
    assert first.status_code == 200
    again = await api.verify(await new_challenge(api, session_id), factor_id, codes[0])
    assert again.status_code == 403
    lower = await api.verify(await new_challenge(api, session_id), factor_id, codes[1].lower())
    assert lower.status_code == 200


async def test_regenerating_recovery_codes_invalidates_the_old_set(api: Harness) -> None:
    await api.put_subject("alice")
    first = await api.client.post("/v1/subjects/alice/factors", json={"type": "recovery_code"})
    old_codes = first.json()["recovery_codes"]
    factor_id = first.json()["factor"]["id"]
    totp_id, secret = await api.enroll_totp_with_step_up(factor_id, old_codes[0])
    session_id = await api.open_session()
    challenge = await new_challenge(api, session_id)
    assert (await api.verify(challenge, totp_id, api.code(secret))).status_code == 200
    renewed = await api.client.post(
        "/v1/subjects/alice/factors", json={"type": "recovery_code", "session_id": session_id}
    )
    assert renewed.status_code == 201, renewed.text
    assert renewed.json()["factor"]["id"] == factor_id
    new_codes = renewed.json()["recovery_codes"]
    assert (
        await api.verify(await new_challenge(api, session_id), factor_id, old_codes[1])
    ).status_code == 403
    assert (
        await api.verify(await new_challenge(api, session_id), factor_id, new_codes[0])
    ).status_code == 200
