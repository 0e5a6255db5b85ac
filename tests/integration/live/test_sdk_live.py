"""The SDK against a real server: the whole step-up flow, and every failure as its own error.

Both clients (``StepGuardClient`` and ``AsyncStepGuardClient``) talk to ``stepguard serve``
over TCP, so what is tested is the wire: JSON shapes, status codes, error codes, headers.
The server runs on the real clock: codes are computed at the real time.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator

import pytest

from stepguard.core.factors.totp import TotpSpec, code_at_step
from stepguard.sdk import (
    AsyncStepGuardClient,
    ChallengeStatus,
    DecisionKind,
    FactorType,
    NotFoundError,
    Secret,
    SessionInvalidError,
    StepGuardClient,
    TransportError,
    UnauthenticatedError,
    VerificationFailedError,
    parse_www_authenticate,
)
from support.server import (
    LiveServer,
    async_safe_totp_step,
    safe_totp_step,
    secret_from_otpauth_uri,
    wrong_totp_code,
)
from support.services import free_port

pytestmark = pytest.mark.slow

TRANSFER = {"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}
SPEC = TotpSpec()


def code(secret: bytes, step: int) -> str:
    return code_at_step(secret, SPEC, step)


def new_subject_id() -> str:
    return f"sdk-{secrets.token_hex(4)}"


@pytest.fixture(scope="module")
def sg(sqlite_server: LiveServer) -> Iterator[StepGuardClient]:
    with StepGuardClient(sqlite_server.base_url, sqlite_server.api_key) as client:
        yield client


@pytest.fixture
async def asg(sqlite_server: LiveServer) -> AsyncIterator[AsyncStepGuardClient]:
    async with AsyncStepGuardClient(sqlite_server.base_url, sqlite_server.api_key) as client:
        yield client


def enroll_totp(sg: StepGuardClient, subject_id: str) -> tuple[str, bytes, int]:
    """Enroll and confirm TOTP as the first factor (no session needed). Confirms with the
    previous step's code; returns ``(factor, seed, step)`` with the current step unused."""
    step = safe_totp_step(SPEC)
    enrollment = sg.enroll_factor(subject_id, FactorType.TOTP, label="Phone")
    assert enrollment.factor.status == "pending"
    assert enrollment.otpauth_uri is not None
    assert enrollment.qr_svg is not None
    assert "<svg" in enrollment.qr_svg.reveal()
    secret = secret_from_otpauth_uri(enrollment.otpauth_uri.reveal())
    confirmed = sg.confirm_factor(subject_id, enrollment.factor.id, code(secret, step - 1))
    assert confirmed.status == "active"
    assert confirmed.confirmed_at is not None
    return enrollment.factor.id, secret, step


def test_the_sync_client_runs_a_transaction_bound_step_up(sg: StepGuardClient) -> None:
    subject_id = new_subject_id()
    subject = sg.put_subject(subject_id, email=f"{subject_id}@example.com", groups=["customers"])
    assert subject.id == subject_id
    assert subject.groups == ("customers",)
    assert sg.get_subject(subject_id).email == f"{subject_id}@example.com"

    factor_id, secret, step = enroll_totp(sg, subject_id)
    assert [f.id for f in sg.list_factors(subject_id)] == [factor_id]

    session = sg.create_session(subject_id, amr=["pwd"], ip="203.0.113.7")
    assert session.acr == "aal1"
    assert session.amr == ("pwd",)

    viewing = sg.decide(session.session_id, "account.view")
    assert viewing.allowed
    assert viewing.decision is DecisionKind.ALLOW
    assert viewing.rule == "view"
    assert viewing.risk is not None
    assert viewing.challenge is None

    transfer = sg.decide(session.session_id, "payments.transfer", context=TRANSFER)
    assert transfer.step_up_required
    assert not transfer.allowed
    assert transfer.rule == "transfer-large"
    assert transfer.requirement is not None
    assert transfer.requirement.acr == "aal2"
    assert transfer.requirement.max_age == 300
    assert transfer.requirement.bind
    assert transfer.www_authenticate is not None
    header = parse_www_authenticate(transfer.www_authenticate)
    assert header is not None
    assert header.acr_values == ("aal2",)
    assert header.max_age == 300
    assert transfer.challenge is not None

    challenge = sg.get_challenge(transfer.challenge.id)
    assert challenge.status is ChallengeStatus.PENDING
    assert challenge.action == "payments.transfer"
    assert challenge.summary == "Transfer EUR 2500 to ACME GmbH"
    assert [f.id for f in challenge.factors] == [factor_id]

    result = sg.verify(challenge.id, factor_id, code(secret, step))
    assert result.status is ChallengeStatus.SATISFIED
    assert result.session.acr == "aal2"
    assert result.session.amr == ("pwd", "otp", "mfa")
    assert isinstance(result.grant, Secret)
    assert "sgg" not in repr(result)  # the grant never prints
    assert sg.get_challenge(challenge.id).status is ChallengeStatus.SATISFIED

    retried = sg.decide(
        session.session_id, "payments.transfer", context=TRANSFER, grant=result.grant
    )
    assert retried.allowed, retried
    # Single use, and bound to that one transaction.
    again = sg.decide(session.session_id, "payments.transfer", context=TRANSFER, grant=result.grant)
    assert again.step_up_required

    events = sg.audit_events(subject_id=subject_id, limit=100).events
    types = [event.type for event in events]
    assert "verification.succeeded" in types
    assert "grant.used" in types
    assert all(event.subject_id == subject_id for event in events)
    assert [e.seq for e in events] == sorted(e.seq for e in events)


def test_a_wrong_code_raises_verification_failed(sg: StepGuardClient) -> None:
    subject_id = new_subject_id()
    sg.put_subject(subject_id)
    factor_id, secret, step = enroll_totp(sg, subject_id)
    session = sg.create_session(subject_id, amr=["pwd"])
    decision = sg.decide(session.session_id, "account.email.change")
    assert decision.challenge is not None
    wrong = wrong_totp_code(secret, step)

    with pytest.raises(VerificationFailedError) as caught:
        sg.verify(decision.challenge.id, factor_id, wrong)

    assert caught.value.status == 403
    assert caught.value.code == "verification_failed"
    failures = sg.audit_events(subject_id=subject_id, event_type="verification.failed").events
    assert [e.details["reason"] for e in failures] == ["totp: code does not match"]


def test_a_missing_subject_raises_not_found(sg: StepGuardClient) -> None:
    with pytest.raises(NotFoundError) as caught:
        sg.get_subject(new_subject_id())
    assert caught.value.status == 404


def test_a_missing_session_raises_session_invalid(sg: StepGuardClient) -> None:
    with pytest.raises(SessionInvalidError):
        sg.decide("ses_doesnotexist", "account.view")


def test_a_wrong_api_key_raises_unauthenticated(sqlite_server: LiveServer) -> None:
    with (
        StepGuardClient(sqlite_server.base_url, "sgk_wrong.key_wrong") as client,
        pytest.raises(UnauthenticatedError) as caught,
    ):
        client.get_subject("anyone")
    assert caught.value.status == 401


def test_evaluate_policy_is_a_dry_run(sg: StepGuardClient) -> None:
    decision = sg.evaluate_policy("payments.transfer", context={"amount": 5000})
    assert decision.step_up_required
    assert decision.rule == "transfer-large"
    assert decision.requirement is not None
    assert decision.requirement.bind
    assert decision.challenge is None
    assert decision.www_authenticate is None

    assert sg.evaluate_policy("payments.transfer", context={"amount": 5}).allowed
    assert sg.evaluate_policy("nothing.matches").denied


def test_health_and_readiness(sg: StepGuardClient) -> None:
    health = sg.health()
    assert health.ok
    assert health.status == 200
    ready = sg.ready()
    assert ready.ok
    assert ready.status == 200
    assert ready.details == {"status": "ok"}


def test_no_server_raises_transport_error() -> None:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with StepGuardClient(closed, "sgk_any.key_any", timeout=2.0) as client:
        with pytest.raises(TransportError):
            client.health()
        with pytest.raises(TransportError):
            client.decide("ses_x", "account.view")


async def test_the_async_client_runs_a_step_up(
    asg: AsyncStepGuardClient, sqlite_server: LiveServer
) -> None:
    subject_id = new_subject_id()
    await asg.put_subject(subject_id)
    step = await async_safe_totp_step(SPEC)
    enrollment = await asg.enroll_factor(subject_id, "totp")
    assert enrollment.otpauth_uri is not None
    secret = secret_from_otpauth_uri(enrollment.otpauth_uri.reveal())
    factor_id = enrollment.factor.id
    await asg.confirm_factor(subject_id, factor_id, code(secret, step - 1))
    session = await asg.create_session(subject_id, amr=["pwd"])

    decision = await asg.decide(session.session_id, "settings.profile")
    assert decision.step_up_required
    assert decision.challenge is not None
    assert decision.www_authenticate is not None
    assert (await asg.get_challenge(decision.challenge.id)).factors[0].id == factor_id

    with pytest.raises(VerificationFailedError):
        await asg.verify(decision.challenge.id, factor_id, code(secret, step - 1))  # used
    result = await asg.verify(decision.challenge.id, factor_id, code(secret, step))
    assert result.session.acr == "aal2"
    assert result.grant is None  # not transaction-bound: the session itself is raised

    assert (await asg.decide(session.session_id, "settings.profile")).allowed
    with pytest.raises(NotFoundError):
        await asg.get_subject(new_subject_id())
    assert (await asg.ready()).ok
    page = await asg.audit_events(subject_id=subject_id, event_type="verification.succeeded")
    assert [event.details["factor_id"] for event in page.events] == [factor_id]

    async with AsyncStepGuardClient(sqlite_server.base_url, "sgk_wrong.key_wrong") as wrong:
        with pytest.raises(UnauthenticatedError):
            await wrong.get_subject(subject_id)
    async with AsyncStepGuardClient(f"http://127.0.0.1:{free_port()}", "sgk_x.key_x") as gone:
        with pytest.raises(TransportError):
            await gone.health()


def test_the_device_id_reaches_the_risk_engine(sg: StepGuardClient) -> None:
    """``device_id`` on the session and the decision feeds the ``new_device`` signal."""
    subject_id = new_subject_id()
    sg.put_subject(subject_id, email=f"{subject_id}@example.com")
    session = sg.create_session(subject_id, amr=["pwd"], ip="203.0.113.7", device_id="dev-known")
    known = sg.decide(session.session_id, "account.view", device_id="dev-known")
    other = sg.decide(session.session_id, "account.view", device_id="dev-other")
    assert known.risk is not None
    assert other.risk is not None
    assert not any("never seen" in reason for reason in known.risk.reasons)
    assert any("device never seen" in reason for reason in other.risk.reasons)
    assert other.risk.score > known.risk.score
