"""The WebAuthn factor's use cases: both ceremonies, and which credentials can serve a challenge.

Registration goes through ``FactorService`` (enroll returns creation options; confirm takes
the browser's response), authentication through ``VerificationService`` (the challenge's
request options come from :meth:`WebAuthnService.assertion_options`; the assertion is a
:class:`WebAuthnProof`). Every ceremony's challenge is stored and consumed once, atomically,
by whichever response names it, whether that response then verifies or not.

When is user verification required? When the credential could not reach the challenge's
requirement with user presence alone (see ``core.assurance._WEBAUTHN_PROFILES``: without UV
an assertion is a possession factor, ``aal2`` at most).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

from stepguard.core.assurance import (
    CompletedFactor,
    FactorType,
    Requirement,
    can_reach,
    step_up_factor,
    webauthn_factor,
)
from stepguard.core.errors import (
    ConflictError,
    InvalidCredentialError,
    NotFoundError,
    SignCountRegressionError,
)
from stepguard.core.factors.oob import CodePurpose
from stepguard.core.factors.webauthn import (
    CHALLENGE_BYTES,
    USER_HANDLE_BYTES,
    Attachment,
    CredentialRef,
    ResidentKey,
    VerifiedRegistration,
    assertion_credential_id,
    authentication_options,
    client_challenge,
    is_hardware_bound,
    registration_options,
    verify_assertion,
    verify_registration,
)
from stepguard.core.ids import new_id
from stepguard.core.model import (
    AuditEvent,
    CeremonyPurpose,
    Challenge,
    ChallengeStatus,
    Factor,
    FactorStatus,
    Session,
    Subject,
    WebAuthnCeremony,
    WebAuthnCredential,
)
from stepguard.service.attempts import RejectedAttemptError, check_code
from stepguard.service.deps import Deps
from stepguard.service.ports import UnitOfWork


@dataclass(frozen=True, slots=True, kw_only=True)
class WebAuthnRegistrationRequest:
    """What the enrolling app asks of the new credential."""

    attachment: Attachment | None = None
    resident_key: ResidentKey = "preferred"
    require_user_verification: bool = True


# --- levels ------------------------------------------------------------------------------


def assertion_factor(
    deps: Deps,
    credential: WebAuthnCredential,
    *,
    user_verified: bool,
    at: datetime,
) -> CompletedFactor:
    """The completed factor an assertion from ``credential`` with these flags records."""
    return webauthn_factor(
        factor_id=credential.factor_id,
        at=at,
        user_verified=user_verified,
        hardware_bound=is_hardware_bound(
            deps.config.webauthn,
            aaguid=credential.aaguid,
            attestation_trusted=credential.attestation_trusted,
            backup_eligible=credential.backup_eligible,
        ),
    )


def _needs_user_verification(
    deps: Deps,
    session: Session,
    credential: WebAuthnCredential,
    requirement: Requirement,
    *,
    at: datetime,
) -> bool:
    presence_only = assertion_factor(deps, credential, user_verified=False, at=at)
    return not can_reach(session.factors, presence_only, requirement)


async def usable_factors(
    deps: Deps,
    uow: UnitOfWork,
    challenge: Challenge,
    session: Session | None,
    factors: Sequence[Factor],
    *,
    now: datetime,
) -> list[Factor]:
    """The subject's active factors that could satisfy ``challenge`` now (WebAuthn ones at
    their best, with user verification; suspected clones never)."""
    if session is None:
        return []
    credentials: dict[str, WebAuthnCredential] = {}
    if any(f.type is FactorType.WEBAUTHN for f in factors):
        credentials = {
            c.factor_id: c for c in await uow.webauthn.list_credentials(challenge.subject_id)
        }
    usable: list[Factor] = []
    for factor in factors:
        if factor.status is not FactorStatus.ACTIVE:
            continue
        if factor.type is FactorType.WEBAUTHN:
            credential = credentials.get(factor.id)
            if credential is None or credential.suspected_clone_at is not None:
                continue
            candidate = assertion_factor(deps, credential, user_verified=True, at=now)
        else:
            candidate = step_up_factor(factor.type, factor_id=factor.id, at=now)
        if can_reach(session.factors, candidate, challenge.requirement):
            usable.append(factor)
    return usable


# --- registration ------------------------------------------------------------------------

_RESIDENT_KEYS: dict[str, ResidentKey] = {
    "required": "required",
    "preferred": "preferred",
    "discouraged": "discouraged",
}


async def begin_registration(
    deps: Deps,
    uow: UnitOfWork,
    subject: Subject,
    factor: Factor,
    request: WebAuthnRegistrationRequest,
    *,
    now: datetime,
) -> dict[str, Any]:
    """Store the registration ceremony of the pending ``factor``; return the creation
    options (``excludeCredentials`` lists the subject's registered credentials)."""
    rp = deps.config.webauthn
    existing = await uow.webauthn.list_credentials(subject.id)
    # One user handle per subject (authenticators replace a discoverable credential with the
    # same rp and handle); random, so it reveals nothing about the subject.
    user_handle = existing[0].user_handle if existing else deps.rng.token_bytes(USER_HANDLE_BYTES)
    challenge = deps.rng.token_bytes(CHALLENGE_BYTES)
    await uow.webauthn.add_ceremony(
        WebAuthnCeremony(
            id=new_id(deps.rng, "wac"),
            subject_id=subject.id,
            purpose=CeremonyPurpose.REGISTER,
            challenge=challenge,
            require_user_verification=request.require_user_verification,
            created_at=now,
            expires_at=now + timedelta(seconds=rp.timeout_seconds),
            factor_id=factor.id,
            user_handle=user_handle,
            resident_key=request.resident_key,
        )
    )
    return registration_options(
        rp,
        challenge=challenge,
        user_handle=user_handle,
        user_name=subject.email or subject.id,
        exclude=[
            CredentialRef(credential_id=c.credential_id, transports=c.transports) for c in existing
        ],
        attachment=request.attachment,
        resident_key=request.resident_key,
        require_user_verification=request.require_user_verification,
    )


async def consume_registration_ceremony(
    uow: UnitOfWork, factor: Factor, credential: Mapping[str, Any], *, now: datetime
) -> WebAuthnCeremony | None:
    """The pending factor's ceremony this response answers, used up (``None``: unknown,
    used, expired or malformed)."""
    try:
        challenge = client_challenge(credential)
    except InvalidCredentialError:
        return None
    return await uow.webauthn.consume_ceremony(
        purpose=CeremonyPurpose.REGISTER,
        challenge=challenge,
        subject_id=factor.subject_id,
        binding=factor.id,
        at=now,
    )


async def finish_registration(
    deps: Deps,
    uow: UnitOfWork,
    factor: Factor,
    ceremony: WebAuthnCeremony | None,
    credential: Mapping[str, Any],
    *,
    now: datetime,
) -> VerifiedRegistration:
    """Verify a registration response and store the credential (run under the guessing
    limit; raises ``RejectedAttemptError``)."""
    if ceremony is None or ceremony.user_handle is None:
        raise RejectedAttemptError("webauthn: no open registration ceremony", guess=True)
    try:
        verified = verify_registration(
            deps.config.webauthn,
            credential=credential,
            expected_challenge=ceremony.challenge,
            require_user_verification=ceremony.require_user_verification,
            resident_key=_RESIDENT_KEYS.get(ceremony.resident_key or ""),
            now=now,
        )
    except InvalidCredentialError as error:
        raise RejectedAttemptError(f"webauthn: {error.message}", guess=True) from None
    if await uow.webauthn.find_credential(verified.credential_id) is not None:
        raise RejectedAttemptError("webauthn: credential id already registered", guess=False)
    await uow.webauthn.add_credential(
        WebAuthnCredential(
            factor_id=factor.id,
            subject_id=factor.subject_id,
            credential_id=verified.credential_id,
            user_handle=ceremony.user_handle,
            public_key=verified.public_key,
            sign_count=verified.sign_count,
            aaguid=verified.aaguid,
            transports=verified.transports,
            backup_eligible=verified.backup_eligible,
            backed_up=verified.backed_up,
            discoverable=verified.discoverable,
            attestation_format=verified.attestation_format,
            attestation_trusted=verified.attestation_trusted,
        )
    )
    return verified


# --- authentication ----------------------------------------------------------------------


class WebAuthnService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def credentials(self, subject_id: str) -> dict[str, WebAuthnCredential]:
        """The subject's WebAuthn credentials by factor id (to describe its factors)."""
        async with self._deps.store.read() as uow:
            return {c.factor_id: c for c in await uow.webauthn.list_credentials(subject_id)}

    def hardware_bound(self, credential: WebAuthnCredential) -> bool:
        """Whether assertions from ``credential`` count as hardware-bound under this config."""
        return is_hardware_bound(
            self._deps.config.webauthn,
            aaguid=credential.aaguid,
            attestation_trusted=credential.attestation_trusted,
            backup_eligible=credential.backup_eligible,
        )

    async def assertion_options(
        self, challenge_id: str, *, factor_id: str | None, actor: str | None
    ) -> dict[str, Any]:
        """Request options for a pending challenge, stored as its (only valid) ceremony.

        ``allowCredentials``: the subject's active WebAuthn credentials (or just
        ``factor_id``'s) that can reach the requirement; ``userVerification`` is "required"
        when one of them needs UV to reach it. Raises ``NotFoundError`` for an unknown
        challenge, ``ConflictError`` when it is not pending or no credential can serve it
        (what ``GET /v1/challenges/{id}`` shows anyway).
        """
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            challenge = await uow.challenges.get(challenge_id)
            if challenge is None:
                raise NotFoundError("No such challenge.")
            if challenge.effective_status(now) is not ChallengeStatus.PENDING:
                raise ConflictError("The challenge is not pending.")
            session = await uow.sessions.get(challenge.session_id)
            if session is None or not session.is_active(now):
                raise ConflictError("The challenge's session is no longer active.")
            factors = await uow.factors.list_for_subject(challenge.subject_id)
            usable_ids = {
                f.id
                for f in await usable_factors(deps, uow, challenge, session, factors, now=now)
                if f.type is FactorType.WEBAUTHN and (factor_id is None or f.id == factor_id)
            }
            credentials = [
                c
                for c in await uow.webauthn.list_credentials(challenge.subject_id)
                if c.factor_id in usable_ids
            ]
            if not credentials:
                raise ConflictError("No WebAuthn credential of the subject can satisfy it.")
            require_uv = any(
                _needs_user_verification(deps, session, c, challenge.requirement, at=now)
                for c in credentials
            )
            rp = deps.config.webauthn
            challenge_bytes = deps.rng.token_bytes(CHALLENGE_BYTES)
            expires_at = min(now + timedelta(seconds=rp.timeout_seconds), challenge.expires_at)
            await uow.webauthn.add_ceremony(
                WebAuthnCeremony(
                    id=new_id(deps.rng, "wac"),
                    subject_id=challenge.subject_id,
                    purpose=CeremonyPurpose.AUTHENTICATE,
                    challenge=challenge_bytes,
                    require_user_verification=require_uv,
                    created_at=now,
                    expires_at=expires_at,
                    challenge_id=challenge.id,
                )
            )
        return authentication_options(
            rp,
            challenge=challenge_bytes,
            allow=[
                CredentialRef(credential_id=c.credential_id, transports=c.transports)
                for c in credentials
            ],
            require_user_verification=require_uv,
        )


class CodeProof:
    """A one-time or recovery code for a named factor."""

    def __init__(self, *, factor_id: str, code: str) -> None:
        self.factor_id: str | None = factor_id
        self._code = code
        self._challenge_id: str | None = None

    async def prepare(self, uow: UnitOfWork, challenge: Challenge, *, now: datetime) -> str:
        assert self.factor_id is not None
        self._challenge_id = challenge.id  # email/SMS codes are bound to their challenge
        return self.factor_id

    def candidate(self, deps: Deps, factor: Factor, *, now: datetime) -> CompletedFactor:
        if factor.type is FactorType.WEBAUTHN:
            raise RejectedAttemptError("a code cannot answer for a webauthn factor", guess=False)
        return step_up_factor(factor.type, factor_id=factor.id, at=now)

    async def check(
        self, deps: Deps, uow: UnitOfWork, factor: Factor, *, now: datetime
    ) -> CompletedFactor:
        await check_code(
            uow,
            factor,
            self._code,
            now=now,
            purpose=CodePurpose.STEP_UP,
            challenge_id=self._challenge_id,
            oob=deps.outbound.config,
        )
        return step_up_factor(factor.type, factor_id=factor.id, at=now)


class WebAuthnProof:
    """A WebAuthn assertion; its credential id names the factor.

    ``prepare`` consumes the challenge's ceremony first, so a response uses it up whatever
    happens next (wrong subject, locked factor, bad signature...).
    """

    def __init__(self, *, credential: Mapping[str, Any], factor_id: str | None) -> None:
        self.factor_id: str | None = factor_id
        self._named_factor = factor_id
        self._credential = credential
        self._ceremony: WebAuthnCeremony | None = None
        self._stored: WebAuthnCredential | None = None

    async def prepare(self, uow: UnitOfWork, challenge: Challenge, *, now: datetime) -> str:
        try:
            challenge_bytes = client_challenge(self._credential)
        except InvalidCredentialError as error:
            raise RejectedAttemptError(f"webauthn: {error.message}", guess=False) from None
        self._ceremony = await uow.webauthn.consume_ceremony(
            purpose=CeremonyPurpose.AUTHENTICATE,
            challenge=challenge_bytes,
            subject_id=challenge.subject_id,
            binding=challenge.id,
            at=now,
        )
        try:
            credential_id = assertion_credential_id(self._credential)
        except InvalidCredentialError as error:
            raise RejectedAttemptError(f"webauthn: {error.message}", guess=False) from None
        stored = await uow.webauthn.find_credential(credential_id)
        if stored is None:
            raise RejectedAttemptError("webauthn: unknown credential", guess=False)
        if stored.subject_id != challenge.subject_id:
            raise RejectedAttemptError(
                "webauthn: the credential belongs to another subject", guess=False
            )
        if self._named_factor is not None and self._named_factor != stored.factor_id:
            raise RejectedAttemptError("webauthn: credential of another factor", guess=False)
        self.factor_id = stored.factor_id
        self._stored = stored
        return stored.factor_id

    def candidate(self, deps: Deps, factor: Factor, *, now: datetime) -> CompletedFactor:
        assert self._stored is not None  # prepare() ran
        return assertion_factor(deps, self._stored, user_verified=True, at=now)

    async def check(
        self, deps: Deps, uow: UnitOfWork, factor: Factor, *, now: datetime
    ) -> CompletedFactor:
        """Under the factor's lock: the credential as it is now, the ceremony, the assertion."""
        stored = await uow.webauthn.get_credential(factor.id)
        if stored is None:
            raise RejectedAttemptError("webauthn: the factor has no credential", guess=False)
        if stored.suspected_clone_at is not None:
            raise RejectedAttemptError("webauthn: credential suspected cloned", guess=False)
        ceremony = self._ceremony
        if ceremony is None:
            raise RejectedAttemptError(
                "webauthn: no open ceremony for this challenge (unknown, used or expired)",
                guess=True,
            )
        try:
            verified = verify_assertion(
                deps.config.webauthn,
                credential=self._credential,
                expected_challenge=ceremony.challenge,
                public_key=stored.public_key,
                stored_sign_count=stored.sign_count,
                user_handle=stored.user_handle,
                require_user_verification=ceremony.require_user_verification,
            )
        except SignCountRegressionError as error:
            await uow.webauthn.mark_suspected_clone(factor.id, at=now)
            await uow.audit.append(
                AuditEvent(
                    type="webauthn.clone_suspected",
                    at=now,
                    outcome="refused",
                    subject_id=factor.subject_id,
                    details={"factor_id": factor.id, "reason": error.message},
                )
            )
            raise RejectedAttemptError(
                f"webauthn: {error.message}; credential marked as possibly cloned", guess=False
            ) from None
        except InvalidCredentialError as error:
            raise RejectedAttemptError(f"webauthn: {error.message}", guess=True) from None
        await uow.webauthn.record_use(
            factor.id, sign_count=verified.new_sign_count, backed_up=verified.backed_up
        )
        self._stored = replace(stored, sign_count=verified.new_sign_count)
        return assertion_factor(deps, stored, user_verified=verified.user_verified, at=now)
