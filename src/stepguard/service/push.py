"""Push approval with number matching: pairing an approver device, starting a push for a
challenge, the device's signed answer, and the push-bombing limits.

- **Pairing.** Enrolling a ``push`` factor (``FactorService.enroll``, behind the factor gate)
  stores a pending factor and the hash of a one-time pairing token, and returns a pairing URL
  (``/approve#pair=<token>``: the token stays in the fragment, out of server logs). The
  device posts its public key (JWK) and a signature over the token; that activates the factor
  and gives the device a cookie that lets its page list its pending pushes.
- **A push.** The requesting page starts a push for its challenge: a two-digit number is
  shown there; the approver page receives the request (server-sent events, and Web Push when
  configured) with the action summary, where it came from and three numbers to pick from.
- **The answer** is a :class:`PushProof` run through ``VerificationService`` like every
  other factor: under the factor's row lock and guessing limit, the signature is checked
  against the stored key, then ONE terminal answer is stored with a conditional write
  (approve vs deny races have one winner). A wrong number is a failed guess; a denial closes
  the push, is audited and feeds the risk engine.
- **Push bombing.** At most ``max_outstanding`` pending and ``max_per_window`` pushes per
  subject; after ``pause_after`` denied, wrong or unanswered pushes in the window, push is
  paused for ``pause`` and the subject is notified. Every refusal is one error,
  ``PushRateLimitedError``, with the cause in the audit log.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from stepguard.core.assurance import CompletedFactor, FactorType, can_reach, step_up_factor
from stepguard.core.errors import (
    ConflictError,
    InvalidCredentialError,
    InvalidRequestError,
    NotFoundError,
    PushRateLimitedError,
    VerificationFailedError,
)
from stepguard.core.factors.push import (
    PushAnswer,
    PushStatus,
    answer_payload,
    device_key_from_jwk,
    number_choices,
    pair_payload,
    verify_device_signature,
)
from stepguard.core.ids import new_id, new_token, token_hash
from stepguard.core.model import (
    AuditEvent,
    Challenge,
    ChallengeStatus,
    Factor,
    FactorStatus,
    PushDevice,
    PushRequest,
    Subject,
)
from stepguard.core.notices import Notice, NoticeType
from stepguard.core.secret import Secret
from stepguard.service.attempts import RejectedAttemptError, attempt_locked_factor
from stepguard.service.deps import Deps
from stepguard.service.notifications import confirm_notices
from stepguard.service.ports import SendError, UnitOfWork
from stepguard.service.push_ports import WebPushMessage

if TYPE_CHECKING:
    from stepguard.service.verification import VerificationService

__all__ = [
    "PUSH_ACTOR",
    "AnsweredPush",
    "PairedDevice",
    "PushPrompt",
    "PushProof",
    "PushService",
    "PushState",
    "StartedPush",
    "begin_pairing",
]

PUSH_ACTOR = "push-device"
DEVICE_COOKIE_PREFIX = "sgd"
PAIRING_PREFIX = "sgp"
MANAGE_SUMMARY = "Change your sign-in factors"
_MANAGE_ACTION = "stepguard.factors.manage"
MAX_SUBSCRIPTION_CHARS = 4096


@dataclass(frozen=True, slots=True, kw_only=True)
class PairedDevice:
    factor_id: str
    subject_id: str
    device_token: Secret[str]  # the approver page's cookie value

    def __repr__(self) -> str:
        return f"PairedDevice(factor_id={self.factor_id!r}, device_token=<redacted>)"


@dataclass(frozen=True, slots=True, kw_only=True)
class StartedPush:
    """A push sent for a challenge: ``number`` is shown on the requesting page only."""

    push_id: str
    challenge_id: str
    number: int
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class PushPrompt:
    """What the approver page shows for one pending push."""

    push_id: str
    challenge_id: str
    digest: str
    summary: str
    action: str
    choices: tuple[int, ...]
    origin_location: str
    origin_browser: str
    created_at: datetime
    expires_at: datetime

    def as_json(self) -> dict[str, Any]:
        return {
            "push_id": self.push_id,
            "challenge_id": self.challenge_id,
            "digest": self.digest,
            "summary": self.summary,
            "action": self.action,
            "choices": list(self.choices),
            "origin_location": self.origin_location,
            "origin_browser": self.origin_browser,
            "created_at": self.created_at.isoformat(),
            "expires_at": self.expires_at.isoformat(),
        }


@dataclass(frozen=True, slots=True, kw_only=True)
class PushState:
    """What the requesting page polls: the push's status (``PushStatus`` value)."""

    push_id: str
    challenge_id: str
    status: str
    number: int
    expires_at: datetime


@dataclass(frozen=True, slots=True, kw_only=True)
class AnsweredPush:
    """A device's answer that was recorded: ``approved`` (the challenge is satisfied) or
    ``denied``. Every other outcome raises ``VerificationFailedError``."""

    push_id: str
    status: PushStatus


def summary_of(challenge: Challenge) -> str:
    if challenge.summary and challenge.summary != challenge.action:
        return challenge.summary
    if challenge.action == _MANAGE_ACTION:
        return MANAGE_SUMMARY
    return challenge.summary or challenge.action


async def begin_pairing(
    deps: Deps, uow: UnitOfWork, subject: Subject, *, label: str, now: datetime
) -> tuple[Factor, Secret[str]]:
    """Store a pending push factor and its pairing token (in the caller's transaction);
    return the factor and the pairing URL (shown once)."""
    factor = Factor(
        id=new_id(deps.rng, "fac"),
        subject_id=subject.id,
        type=FactorType.PUSH,
        status=FactorStatus.PENDING,
        label=label or "Approver device",
        created_at=now,
    )
    await uow.factors.add(factor)
    token = new_token(deps.rng, PAIRING_PREFIX)
    await uow.push.add_device(
        PushDevice(
            factor_id=factor.id,
            subject_id=subject.id,
            created_at=now,
            pairing_hash=token_hash(token.reveal()),
            pairing_expires_at=now + deps.push.config.pairing_ttl,
        )
    )
    url = f"{deps.push.config.public_url.rstrip('/')}/approve#pair={token.reveal()}"
    return factor, Secret(url)


class PushProof:
    """A device's signed answer to one push request (a ``verification.Proof``)."""

    def __init__(
        self,
        *,
        push_id: str,
        factor_id: str,
        number: int,
        answer: PushAnswer,
        signature: bytes,
    ) -> None:
        self.factor_id: str | None = factor_id
        self._push_id = push_id
        self._number = number
        self._answer = answer
        self._signature = signature
        self._request: PushRequest | None = None
        self._digest = ""
        self.outcome: PushStatus | None = None  # the terminal state this answer stored

    async def prepare(self, uow: UnitOfWork, challenge: Challenge, *, now: datetime) -> str:
        request = await uow.push.get_request(self._push_id)
        if request is None or request.challenge_id != challenge.id:
            raise RejectedAttemptError("push: unknown push request", guess=False)
        self._request = request
        self._digest = challenge.transaction_digest
        assert self.factor_id is not None
        return self.factor_id

    def candidate(self, deps: Deps, factor: Factor, *, now: datetime) -> CompletedFactor:
        if factor.type is not FactorType.PUSH:
            raise RejectedAttemptError("push: the factor is not a push factor", guess=False)
        return step_up_factor(FactorType.PUSH, factor_id=factor.id, at=now)

    async def check(
        self, deps: Deps, uow: UnitOfWork, factor: Factor, *, now: datetime
    ) -> CompletedFactor:
        """Under the factor's lock: the signature, then one terminal answer."""
        request = self._request
        assert request is not None  # prepare() ran
        device = await uow.push.get_device(factor.id)
        if device is None or device.public_key is None:
            raise RejectedAttemptError("push: the device is not paired", guess=False)
        payload = answer_payload(
            challenge_id=request.challenge_id,
            push_id=request.id,
            digest=self._digest,
            number=self._number,
            answer=self._answer,
        )
        try:
            verify_device_signature(
                public_key=device.public_key, payload=payload, signature=self._signature
            )
        except InvalidCredentialError as error:
            raise RejectedAttemptError(error.message, guess=True) from None
        state = request.effective_status(now)
        if state != PushStatus.PENDING:
            raise RejectedAttemptError(f"push: the request is {state}", guess=False)
        if self._answer is PushAnswer.DENY:
            if not await uow.push.answer(
                request.id, status=PushStatus.DENIED.value, factor_id=factor.id, at=now
            ):
                raise RejectedAttemptError("push: already answered", guess=False)
            self.outcome = PushStatus.DENIED
            await uow.audit.append(
                AuditEvent(
                    type="push.denied",
                    at=now,
                    outcome="denied",
                    subject_id=factor.subject_id,
                    actor=PUSH_ACTOR,
                    details={
                        "push_id": request.id,
                        "challenge_id": request.challenge_id,
                        "factor_id": factor.id,
                    },
                )
            )
            raise RejectedAttemptError("push: denied on the approver device", guess=False)
        if self._number != request.number:
            if await uow.push.answer(
                request.id, status=PushStatus.WRONG_NUMBER.value, factor_id=factor.id, at=now
            ):
                self.outcome = PushStatus.WRONG_NUMBER
            raise RejectedAttemptError("push: wrong number picked", guess=True)
        if not await uow.push.answer(
            request.id, status=PushStatus.APPROVED.value, factor_id=factor.id, at=now
        ):
            raise RejectedAttemptError("push: already answered", guess=False)
        self.outcome = PushStatus.APPROVED
        return step_up_factor(FactorType.PUSH, factor_id=factor.id, at=now)


class _RefusedError(Exception):
    def __init__(self, cause: str) -> None:
        super().__init__(cause)
        self.cause = cause


class PushService:
    def __init__(self, deps: Deps, *, verification: VerificationService) -> None:
        self._deps = deps
        self._verification = verification
        self._tasks: set[asyncio.Task[None]] = set()
        self._wake: asyncio.Event | None = None

    # --- pairing --------------------------------------------------------------------------

    async def pair(
        self, token: str, *, public_key: Mapping[str, Any], signature: bytes, user_agent: str
    ) -> PairedDevice:
        """Bind the device's key to the pending push factor this pairing token names, and
        activate the factor. Raises ``VerificationFailedError`` for an unknown, used or
        expired token, a bad key or signature (the reason goes to the audit log)."""
        deps = self._deps
        now = deps.clock.now()
        failure: RejectedAttemptError | None = None
        device_token = new_token(deps.rng, DEVICE_COOKIE_PREFIX)
        pairing_hash = token_hash(token)
        async with deps.store.transaction() as uow:
            device = await uow.push.find_by_pairing(pairing_hash)
            factor = (
                await uow.factors.get_for_update(device.subject_id, device.factor_id)
                if device is not None
                else None
            )

            async def check() -> None:
                try:
                    point = device_key_from_jwk(public_key)
                    verify_device_signature(
                        public_key=point, payload=pair_payload(nonce=token), signature=signature
                    )
                except InvalidCredentialError as error:
                    raise RejectedAttemptError(error.message, guess=True) from None
                assert factor is not None
                if not await uow.push.complete_pairing(
                    factor.id,
                    pairing_hash=pairing_hash,
                    public_key=point,
                    device_token_hash=token_hash(device_token.reveal()),
                    user_agent=user_agent[:256],
                    at=now,
                ):
                    raise RejectedAttemptError("push: pairing expired or used", guess=False)

            try:
                if device is None or factor is None:
                    raise RejectedAttemptError("push: unknown pairing token", guess=False)
                if factor.status is not FactorStatus.PENDING or factor.type is not FactorType.PUSH:
                    raise RejectedAttemptError("push: the factor is not pending", guess=False)
                await attempt_locked_factor(
                    uow, factor, check, now=now, lockout=deps.config.lockout
                )
            except RejectedAttemptError as rejected:
                failure = rejected
            else:
                assert factor is not None
                await uow.factors.activate(factor.id, at=now)
            await uow.audit.append(
                AuditEvent(
                    type="factor.confirmed" if failure is None else "factor.confirm_failed",
                    at=now,
                    outcome="ok" if failure is None else "failure",
                    subject_id=device.subject_id if device else None,
                    actor=PUSH_ACTOR,
                    details={
                        "factor_id": device.factor_id if device else None,
                        "factor_type": FactorType.PUSH.value,
                        "reason": failure.reason if failure else None,
                    },
                )
            )
        if device is not None:
            deps.notifier.notify(*confirm_notices(device.subject_id, FactorType.PUSH, failure))
        if failure is not None or device is None:
            raise VerificationFailedError()
        return PairedDevice(
            factor_id=device.factor_id, subject_id=device.subject_id, device_token=device_token
        )

    async def device(self, device_token: str | None) -> PushDevice | None:
        """The paired device whose cookie this is, while its factor is active."""
        if not device_token:
            return None
        async with self._deps.store.read() as uow:
            device = await uow.push.find_by_device_token(token_hash(device_token))
            if device is None or device.public_key is None:
                return None
            factor = await uow.factors.get(device.subject_id, device.factor_id)
        if factor is None or factor.status is not FactorStatus.ACTIVE:
            return None
        return device

    async def subscribe(self, device: PushDevice, subscription: Mapping[str, Any]) -> None:
        """Store the device's Web Push subscription (``PushSubscription.toJSON()``).

        Refused (``InvalidRequestError``) when Web Push is not configured, the subscription
        is malformed, or its endpoint is not a known push service."""
        sender = self._deps.push.sender
        if sender is None:
            raise InvalidRequestError("Web Push is not configured on this server")
        endpoint = subscription.get("endpoint")
        keys = subscription.get("keys")
        if (
            not isinstance(endpoint, str)
            or not isinstance(keys, Mapping)
            or not isinstance(keys.get("p256dh"), str)
            or not isinstance(keys.get("auth"), str)
        ):
            raise InvalidRequestError("a subscription has an endpoint and p256dh/auth keys")
        if not sender.accepts(endpoint):
            raise InvalidRequestError("the subscription's endpoint is not a known push service")
        value = json.dumps(
            {"endpoint": endpoint, "keys": {"p256dh": keys["p256dh"], "auth": keys["auth"]}}
        )
        if len(value) > MAX_SUBSCRIPTION_CHARS:
            raise InvalidRequestError("the subscription is too long")
        now = self._deps.clock.now()
        async with self._deps.store.transaction() as uow:
            await uow.push.set_subscription(device.factor_id, Secret(value))
            await uow.audit.append(
                AuditEvent(
                    type="push.subscribed",
                    at=now,
                    outcome="ok",
                    subject_id=device.subject_id,
                    actor=PUSH_ACTOR,
                    details={"factor_id": device.factor_id},
                )
            )

    async def prompts(self, device: PushDevice) -> list[PushPrompt]:
        """The pending pushes the device may answer (its subject's, unexpired)."""
        now = self._deps.clock.now()
        prompts: list[PushPrompt] = []
        async with self._deps.store.read() as uow:
            for request in await uow.push.pending_requests(device.subject_id, at=now):
                challenge = await uow.challenges.get(request.challenge_id)
                if challenge is None or challenge.effective_status(now) is not (
                    ChallengeStatus.PENDING
                ):
                    continue
                prompts.append(
                    PushPrompt(
                        push_id=request.id,
                        challenge_id=challenge.id,
                        digest=challenge.transaction_digest,
                        summary=summary_of(challenge),
                        action=challenge.action,
                        choices=request.choices,
                        origin_location=request.origin_location,
                        origin_browser=request.origin_browser,
                        created_at=request.created_at,
                        expires_at=request.expires_at,
                    )
                )
        return prompts

    # --- a push -----------------------------------------------------------------------

    async def usable(self, uow: UnitOfWork, challenge: Challenge, *, now: datetime) -> list[str]:
        """The subject's active, paired push factors that can satisfy the challenge."""
        session = await uow.sessions.get(challenge.session_id)
        if session is None or not session.is_active(now):
            return []
        paired = {
            d.factor_id
            for d in await uow.push.list_devices(challenge.subject_id)
            if d.public_key is not None
        }
        return [
            f.id
            for f in await uow.factors.list_for_subject(challenge.subject_id)
            if f.type is FactorType.PUSH
            and f.status is FactorStatus.ACTIVE
            and f.id in paired
            and can_reach(
                session.factors,
                step_up_factor(FactorType.PUSH, factor_id=f.id, at=now),
                challenge.requirement,
            )
        ]

    async def start(
        self,
        challenge_id: str,
        *,
        ip: str | None,
        user_agent: str | None,
        actor: str | None,
    ) -> StartedPush:
        """Send a push for a pending challenge (replacing the challenge's earlier pending
        push). Raises ``NotFoundError``, ``ConflictError`` (not pending, or no usable push
        factor) or ``PushRateLimitedError``."""
        deps = self._deps
        config = deps.push.config
        now = deps.clock.now()
        location, browser = deps.push.origins.describe(ip=ip, user_agent=user_agent)
        refused: str | None = None
        paused_now = False
        started: StartedPush | None = None
        async with deps.store.transaction() as uow:
            challenge = await uow.challenges.get(challenge_id)
            if challenge is None:
                raise NotFoundError("No such challenge.")
            if challenge.effective_status(now) is not ChallengeStatus.PENDING:
                raise ConflictError("The challenge is no longer pending.")
            if not await self.usable(uow, challenge, now=now):
                raise ConflictError("No push factor of the subject can satisfy the challenge.")
            subject_id = challenge.subject_id
            push = uow.push
            await push.lock_subject(subject_id)
            try:
                await self._check_limits(uow, challenge, now=now)
            except _PausedNowError as refusal:
                refused = refusal.cause
                paused_now = True
            except _RefusedError as refusal:
                refused = refusal.cause
            if refused is None:
                number, choices = number_choices(deps.rng, count=config.choices)
                request = PushRequest(
                    id=new_id(deps.rng, "psh"),
                    challenge_id=challenge.id,
                    subject_id=subject_id,
                    number=number,
                    choices=choices,
                    status=PushStatus.PENDING.value,
                    created_at=now,
                    expires_at=min(now + config.request_ttl, challenge.expires_at),
                    origin_location=location[:128],
                    origin_browser=browser[:128],
                )
                await push.add_request(request)
                started = StartedPush(
                    push_id=request.id,
                    challenge_id=challenge.id,
                    number=number,
                    expires_at=request.expires_at,
                )
            await uow.audit.append(
                AuditEvent(
                    type="push.requested" if refused is None else "push.refused",
                    at=now,
                    outcome="ok" if refused is None else "refused",
                    subject_id=subject_id,
                    session_id=challenge.session_id,
                    actor=actor,
                    details={
                        "challenge_id": challenge.id,
                        "push_id": started.push_id if started else None,
                        "reason": refused,
                        "origin_location": location[:128],
                        "origin_browser": browser[:128],
                    },
                )
            )
        if paused_now:
            deps.notifier.notify(Notice(subject_id=subject_id, type=NoticeType.PUSH_PAUSED))
        if started is None:
            raise PushRateLimitedError()
        self._changed()
        self._schedule_web_push(subject_id, started, challenge)
        return started

    async def _check_limits(self, uow: UnitOfWork, challenge: Challenge, *, now: datetime) -> None:
        """Raise ``_RefusedError`` with the cause when the subject may not get a push now
        (``_PausedNowError`` when this check just paused push: the caller tells the subject)."""
        config = self._deps.push.config
        push = uow.push
        subject_id = challenge.subject_id
        blocked_until = await push.get_block(subject_id)
        if blocked_until is not None and blocked_until > now:
            raise _RefusedError("push paused after unanswered or denied pushes")
        since = now - config.window
        if blocked_until is not None:
            since = max(since, blocked_until)
        bad = await push.count_unanswered_or_denied(subject_id, since=since, at=now)
        if bad >= config.pause_after:
            await push.set_block(subject_id, until=now + config.pause, at=now)
            await uow.audit.append(
                AuditEvent(
                    type="push.paused",
                    at=now,
                    outcome="refused",
                    subject_id=subject_id,
                    details={
                        "unanswered_or_denied": bad,
                        "until": (now + config.pause).isoformat(),
                    },
                )
            )
            raise _PausedNowError()
        await push.supersede(challenge.id, at=now)
        if len(await push.pending_requests(subject_id, at=now)) >= config.max_outstanding:
            raise _RefusedError("too many outstanding pushes")
        if await push.count_requests(subject_id, since=now - config.window) >= (
            config.max_per_window
        ):
            raise _RefusedError("too many pushes in the window")

    async def after_denial(self, challenge: Challenge) -> None:
        """A denial may reach the pause threshold: pause push now (and tell the subject)
        rather than at the next start."""
        deps = self._deps
        config = deps.push.config
        now = deps.clock.now()
        paused = False
        async with deps.store.transaction() as uow:
            push = uow.push
            await push.lock_subject(challenge.subject_id)
            blocked_until = await push.get_block(challenge.subject_id)
            if blocked_until is not None and blocked_until > now:
                return
            since = now - config.window
            if blocked_until is not None:
                since = max(since, blocked_until)
            bad = await push.count_unanswered_or_denied(challenge.subject_id, since=since, at=now)
            if bad >= config.pause_after:
                await push.set_block(challenge.subject_id, until=now + config.pause, at=now)
                await uow.audit.append(
                    AuditEvent(
                        type="push.paused",
                        at=now,
                        outcome="refused",
                        subject_id=challenge.subject_id,
                        details={
                            "unanswered_or_denied": bad,
                            "until": (now + config.pause).isoformat(),
                        },
                    )
                )
                paused = True
        if paused:
            deps.notifier.notify(
                Notice(subject_id=challenge.subject_id, type=NoticeType.PUSH_PAUSED)
            )

    async def answer(
        self,
        push_id: str,
        *,
        factor_id: str,
        number: int,
        answer: PushAnswer,
        signature: bytes,
    ) -> AnsweredPush:
        """A device's signed answer. ``approved``: the challenge is satisfied; ``denied``:
        the push is closed. Anything else raises ``VerificationFailedError``."""
        deps = self._deps
        async with deps.store.read() as uow:
            request = await uow.push.get_request(push_id)
            challenge = await uow.challenges.get(request.challenge_id) if request else None
        proof = PushProof(
            push_id=push_id, factor_id=factor_id, number=number, answer=answer, signature=signature
        )
        try:
            await self._verification.verify_push(
                request.challenge_id if request else "-", proof=proof, actor=PUSH_ACTOR
            )
        except VerificationFailedError:
            self._changed()
            if proof.outcome is PushStatus.DENIED and challenge is not None:
                deps.risk.denied_push(challenge=challenge, now=deps.clock.now())
                await self.after_denial(challenge)
                return AnsweredPush(push_id=push_id, status=PushStatus.DENIED)
            raise
        self._changed()
        return AnsweredPush(push_id=push_id, status=PushStatus.APPROVED)

    async def state(self, challenge_id: str, push_id: str) -> PushState:
        """The push's status for the requesting page. ``NotFoundError`` unless the push
        belongs to this challenge."""
        now = self._deps.clock.now()
        async with self._deps.store.read() as uow:
            request = await uow.push.get_request(push_id)
        if request is None or request.challenge_id != challenge_id:
            raise NotFoundError("No such push.")
        return PushState(
            push_id=request.id,
            challenge_id=challenge_id,
            status=request.effective_status(now),
            number=request.number,
            expires_at=request.expires_at,
        )

    async def finish(self, challenge_id: str, push_id: str) -> bool:
        """The requesting browser moves on after an approval, once: ``True`` when the push
        approved and satisfied this challenge and was not finished before."""
        now = self._deps.clock.now()
        async with self._deps.store.transaction() as uow:
            request = await uow.push.get_request(push_id)
            challenge = await uow.challenges.get(challenge_id)
            if (
                request is None
                or challenge is None
                or request.challenge_id != challenge_id
                or request.status != PushStatus.APPROVED
                or challenge.status is not ChallengeStatus.SATISFIED
                or challenge.satisfied_by != request.answered_by
            ):
                return False
            return await uow.push.mark_finished(push_id, at=now)

    # --- wake-ups and Web Push ------------------------------------------------------------

    def _changed(self) -> None:
        """Wake this process's approver streams (other processes poll)."""
        if self._wake is not None:
            self._wake.set()
        self._wake = None

    async def wait_for_change(self, seconds: float) -> None:
        """Until a push starts or is answered in this process, or ``seconds`` pass."""
        if self._wake is None:
            self._wake = asyncio.Event()
        try:
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        except TimeoutError:
            pass

    def _schedule_web_push(
        self, subject_id: str, started: StartedPush, challenge: Challenge
    ) -> None:
        if self._deps.push.sender is None:
            return
        task = asyncio.get_running_loop().create_task(
            self._web_push(subject_id, started, challenge)
        )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def drain(self) -> None:
        """Wait for every Web Push in flight (shutdown and tests)."""
        while self._tasks:
            await asyncio.gather(*list(self._tasks), return_exceptions=True)

    async def _web_push(self, subject_id: str, started: StartedPush, challenge: Challenge) -> None:
        deps = self._deps
        sender = deps.push.sender
        if sender is None:
            return
        try:
            async with deps.store.read() as uow:
                devices = await uow.push.list_devices(subject_id)
                active = {
                    f.id
                    for f in await uow.factors.list_for_subject(subject_id)
                    if f.status is FactorStatus.ACTIVE
                }
        except Exception:
            return
        data = json.dumps(
            {
                "type": "push_request",
                "push_id": started.push_id,
                "challenge_id": started.challenge_id,
                "summary": summary_of(challenge),
                "expires_at": started.expires_at.isoformat(),
            }
        )
        ttl = max(1, int((started.expires_at - deps.clock.now()).total_seconds()))
        for device in devices:
            if device.subscription is None or device.factor_id not in active:
                continue
            reason: str | None = None
            try:
                async with asyncio.timeout(deps.push.config.send_timeout_seconds):
                    await sender.send(
                        WebPushMessage(subscription=device.subscription, data=data, ttl_seconds=ttl)
                    )
            except SendError as error:
                reason = error.reason
            except TimeoutError:
                reason = "timeout"
            except Exception as error:  # a sender bug is a failed send, never raised
                reason = f"sender error ({type(error).__name__})"
            try:
                async with deps.store.transaction() as uow:
                    await uow.audit.append(
                        AuditEvent(
                            type="push.web_push_sent" if reason is None else "push.web_push_failed",
                            at=deps.clock.now(),
                            outcome="ok" if reason is None else "failure",
                            subject_id=subject_id,
                            details={
                                "push_id": started.push_id,
                                "factor_id": device.factor_id,
                                "reason": reason,
                            },
                        )
                    )
            except Exception:  # noqa: S110 - nothing more to do without a store
                pass


class _PausedNowError(_RefusedError):
    def __init__(self) -> None:
        super().__init__("push paused now after unanswered or denied pushes")


def decode_signature(value: str) -> bytes:
    """A base64url signature from the wire (``InvalidRequestError`` when malformed)."""
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise InvalidRequestError("the signature is not base64url") from None
