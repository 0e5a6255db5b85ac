"""Sign-in on StepGuard itself: a password or a passkey starts a StepGuard session.

- **Passwords** are set by an administrator (API or CLI) under ``core.passwords``' policy,
  stored as argon2id hashes (the ``PasswordHasher`` port) and rehashed on sign-in when the
  parameters changed.
- **A password attempt is charged before it is evaluated.** One short transaction checks
  the client IP's window and the account's lock and, unless refused, counts the attempt as a
  failure on both; the hash is verified outside any transaction (tens of milliseconds, in a
  thread); a success then resets the account's counter and takes the IP's charge back. So
  concurrent guesses never evaluate more than the limits allow, and no lock is held while
  hashing. An unknown identifier costs the same (a dummy verification) and gets the same
  answer.
- **Passkey sign-in** is usernameless: options with no ``allowCredentials`` and required
  user verification, from a ceremony bound to the browser's pre-login cookie and consumed by
  the response that names it (whether it then verifies or not). The credential names the
  subject; its user handle must match; the assertion is verified under the factor's row lock
  and guessing limit, exactly as a step-up's (signature counter, suspected clones). The
  session's primary factor *is* that assertion (same amr and level as a passkey step-up).

Every failure raises one ``LoginFailedError``; the reason goes to the audit log
(``login.failed``; ``login.locked`` when a failure locks the account or the IP).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from stepguard.core.assurance import AuthMethod, CompletedFactor, SessionAssurance, primary_factors
from stepguard.core.errors import (
    InvalidCredentialError,
    LoginFailedError,
    NotFoundError,
    SignCountRegressionError,
)
from stepguard.core.factors.webauthn import (
    CHALLENGE_BYTES,
    assertion_credential_id,
    client_challenge,
    verify_assertion,
)
from stepguard.core.factors.webauthn_signin import assertion_user_handle, discoverable_options
from stepguard.core.ids import new_id, token_hash
from stepguard.core.lockout import LockoutPolicy
from stepguard.core.model import AuditEvent, FactorStatus, Session
from stepguard.core.passwords import (
    MAX_IDENTIFIER,
    IpLimitPolicy,
    LoginFailure,
    PasswordPolicy,
    normalize_identifier,
    normalize_password,
)
from stepguard.core.secret import Secret
from stepguard.service.attempts import RejectedAttemptError, attempt_locked_factor
from stepguard.service.deps import Deps
from stepguard.service.login_ports import (
    AccountCounter,
    LoginCeremony,
    PasswordHasher,
    StoredPassword,
)
from stepguard.service.ports import UnitOfWork
from stepguard.service.sessions import SessionService
from stepguard.service.webauthn import assertion_factor

__all__ = ["LOGIN_ACTOR", "LoginConfig", "LoginService", "SignedIn", "ip_bucket"]

LOGIN_ACTOR = "login"
_NO_IP = "unknown"


def ip_bucket(ip: str | None) -> str:
    """The key the per-IP limit counts under: the address, or its /64 for IPv6 (one
    subscriber usually holds a whole /64)."""
    if not ip:
        return _NO_IP
    try:
        address = ipaddress.ip_address(ip)
    except ValueError:
        return _NO_IP
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is None:
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)


@dataclass(frozen=True, slots=True, kw_only=True)
class LoginConfig:
    policy: PasswordPolicy = field(default_factory=PasswordPolicy)
    ip_limit: IpLimitPolicy = field(default_factory=IpLimitPolicy)
    # The per-account limit (the factor guessing limit's semantics and, by default, values).
    lockout: LockoutPolicy = field(default_factory=LockoutPolicy)


@dataclass(frozen=True, slots=True, kw_only=True)
class SignedIn:
    session: Session
    assurance: SessionAssurance
    via: str  # "password" or "passkey"


@dataclass(slots=True)
class _Attempt:
    """What the charging transaction of a password attempt decided."""

    subject_id: str | None = None
    refused: LoginFailure | None = None
    stored_hash: str | None = None
    ip_charge: int | None = None
    account_locks: bool = False
    ip_locks: bool = False


class LoginService:
    def __init__(
        self,
        deps: Deps,
        *,
        sessions: SessionService,
        hasher: PasswordHasher,
        config: LoginConfig | None = None,
        on_outcome: Callable[[str, str], None] | None = None,
    ) -> None:
        self._deps = deps
        self._sessions = sessions
        self._hasher = hasher
        self._config = config or LoginConfig()
        self._on_outcome = on_outcome

    @property
    def config(self) -> LoginConfig:
        return self._config

    def _count(self, method: str, outcome: str) -> None:
        if self._on_outcome is not None:
            self._on_outcome(method, outcome)

    # --- passwords (administration) --------------------------------------------------------

    async def set_password(self, subject_id: str, password: Secret[str], *, actor: str) -> None:
        """Set (or replace) the subject's password; resets its failed sign-ins.

        Raises ``NotFoundError`` for an unknown subject, ``PasswordRejectedError`` for a
        password the policy refuses."""
        deps = self._deps
        async with deps.store.read() as uow:
            subject = await uow.subjects.get(subject_id)
        if subject is None:
            raise NotFoundError("No such subject.")
        normalized = self._config.policy.check(
            password.reveal(), subject_id=subject.id, email=subject.email
        )
        hashed = await self._hasher.hash(Secret(normalized))
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            if await uow.subjects.get(subject_id) is None:
                raise NotFoundError("No such subject.")
            replaced = await uow.logins.get_password(subject_id) is not None
            await uow.logins.put_password(
                StoredPassword(subject_id=subject_id, hash=hashed, set_at=now)
            )
            await uow.logins.save_counter(subject_id, AccountCounter(), at=now)
            await uow.audit.append(
                AuditEvent(
                    type="password.set",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    actor=actor,
                    details={"replaced": replaced},
                )
            )

    async def delete_password(self, subject_id: str, *, actor: str) -> None:
        """Remove the subject's password (``NotFoundError`` when it has none)."""
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            if not await uow.logins.delete_password(subject_id):
                raise NotFoundError("No password is set for this subject.")
            await uow.audit.append(
                AuditEvent(
                    type="password.deleted",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    actor=actor,
                )
            )

    # --- password sign-in ------------------------------------------------------------------

    async def sign_in_with_password(
        self,
        identifier: str,
        password: Secret[str],
        *,
        ip: str | None,
        user_agent: str | None,
    ) -> SignedIn:
        """Sign in with an email (case-insensitive) or subject id and a password.

        Raises ``LoginFailedError`` for every failure."""
        deps = self._deps
        now = deps.clock.now()
        ident = normalize_identifier(identifier)
        raw = password.reveal()
        malformed = (
            not ident
            or len(ident) > MAX_IDENTIFIER
            or "\x00" in ident
            or not raw
            or len(raw) > 4 * self._config.policy.max_length
            or "\x00" in raw
        )
        attempt = await self._charge(ident, ip=ip, now=now, malformed=malformed)
        if attempt.refused is not None:
            if attempt.refused is not LoginFailure.MALFORMED:
                await self._hasher.verify_dummy(password)
            self._count("password", "locked" if attempt.refused in _LOCKS else "failed")
            raise LoginFailedError()

        # Outside any transaction: the expensive part.
        candidate = Secret(normalize_password(raw))
        if attempt.stored_hash is not None:
            ok = await self._hasher.verify(attempt.stored_hash, candidate)
        else:
            await self._hasher.verify_dummy(candidate)
            ok = False

        subject_id = attempt.subject_id
        if not ok or subject_id is None:
            reason = (
                LoginFailure.UNKNOWN_IDENTIFIER
                if subject_id is None
                else LoginFailure.NO_PASSWORD
                if attempt.stored_hash is None
                else LoginFailure.WRONG_PASSWORD
            )
            async with deps.store.transaction() as uow:
                await _audit_failure(uow, "password", reason, subject_id=subject_id, ip=ip, now=now)
                if attempt.account_locks:
                    await _audit_locked(uow, "account", subject_id=subject_id, ip=ip, now=now)
                if attempt.ip_locks:
                    await _audit_locked(uow, "ip", subject_id=subject_id, ip=ip, now=now)
            self._count("password", "failed")
            raise LoginFailedError()

        async with deps.store.transaction() as uow:
            await uow.logins.save_counter(subject_id, AccountCounter(), at=now)
            if attempt.ip_charge is not None:
                await uow.logins.forget_ip_failure(attempt.ip_charge)
            await uow.audit.append(
                AuditEvent(
                    type="login.succeeded",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    actor=LOGIN_ACTOR,
                    details={"method": "password", "ip": ip},
                )
            )
        assert attempt.stored_hash is not None  # ok is True only against a stored hash
        await self._rehash(subject_id, attempt.stored_hash, candidate)
        session, assurance = await self._sessions.create_signed_in(
            subject_id=subject_id,
            factors=_password_factors(now),
            ip=ip,
            user_agent=user_agent,
            actor=LOGIN_ACTOR,
            details={"via": "password"},
        )
        self._count("password", "succeeded")
        return SignedIn(session=session, assurance=assurance, via="password")

    async def _charge(
        self, ident: str, *, ip: str | None, now: datetime, malformed: bool
    ) -> _Attempt:
        """The first transaction: limits checked and the attempt charged (see module doc)."""
        config = self._config
        bucket = ip_bucket(ip)
        attempt = _Attempt()
        async with self._deps.store.transaction() as uow:
            await uow.logins.lock_limits()
            since = config.ip_limit.window_start(now)
            await uow.logins.prune_ip_failures(bucket, before=since)
            failures = await uow.logins.count_ip_failures(bucket, since=since)
            if config.ip_limit.is_limited(failures):
                attempt.refused = LoginFailure.IP_LIMITED
            elif malformed:
                attempt.refused = LoginFailure.MALFORMED
            else:
                attempt.subject_id = await _resolve(uow, ident)
            if attempt.subject_id is not None:
                counter = await uow.logins.counter_for_update(attempt.subject_id)
                lockout = config.lockout
                if lockout.is_locked(
                    failed_attempts=counter.failed_attempts,
                    locked_until=counter.locked_until,
                    now=now,
                ):
                    attempt.refused = LoginFailure.ACCOUNT_LOCKED
                else:
                    state = lockout.after_failure(failed_attempts=counter.failed_attempts, now=now)
                    await uow.logins.save_counter(
                        attempt.subject_id,
                        AccountCounter(
                            failed_attempts=state.failed_attempts, locked_until=state.locked_until
                        ),
                        at=now,
                    )
                    attempt.account_locks = lockout.is_locked(
                        failed_attempts=state.failed_attempts,
                        locked_until=state.locked_until,
                        now=now,
                    )
                    stored = await uow.logins.get_password(attempt.subject_id)
                    attempt.stored_hash = stored.hash if stored is not None else None
            if attempt.refused in (None, LoginFailure.MALFORMED):
                attempt.ip_charge = await uow.logins.add_ip_failure(bucket, at=now)
                attempt.ip_locks = config.ip_limit.is_limited(failures + 1)
            if attempt.refused is not None:
                await _audit_failure(
                    uow,
                    "password",
                    attempt.refused,
                    subject_id=attempt.subject_id,
                    ip=ip,
                    now=now,
                )
                if attempt.ip_locks:
                    await _audit_locked(uow, "ip", subject_id=attempt.subject_id, ip=ip, now=now)
        return attempt

    async def _rehash(self, subject_id: str, stored_hash: str, password: Secret[str]) -> None:
        """Store a hash with the current parameters when the stored one has others."""
        if not self._hasher.needs_rehash(stored_hash):
            return
        new_hash = await self._hasher.hash(password)
        now = self._deps.clock.now()
        async with self._deps.store.transaction() as uow:
            if await uow.logins.replace_hash(subject_id, old=stored_hash, new=new_hash):
                await uow.audit.append(
                    AuditEvent(
                        type="password.rehashed",
                        at=now,
                        outcome="ok",
                        subject_id=subject_id,
                        actor=LOGIN_ACTOR,
                    )
                )

    # --- passkey sign-in -------------------------------------------------------------------

    async def passkey_options(self, *, browser_binding: str) -> dict[str, Any]:
        """Request options for a usernameless passkey sign-in, stored as a single-use ceremony
        bound to ``browser_binding`` (the browser's pre-login cookie value)."""
        deps = self._deps
        now = deps.clock.now()
        rp = deps.config.webauthn
        challenge = deps.rng.token_bytes(CHALLENGE_BYTES)
        async with deps.store.transaction() as uow:
            await uow.logins.prune_ceremonies(before=now)
            await uow.logins.add_ceremony(
                LoginCeremony(
                    id=new_id(deps.rng, "wlc"),
                    challenge=challenge,
                    binding=token_hash(browser_binding),
                    created_at=now,
                    expires_at=now + timedelta(seconds=rp.timeout_seconds),
                )
            )
        return discoverable_options(rp, challenge=challenge)

    async def sign_in_with_passkey(
        self,
        credential: Mapping[str, Any],
        *,
        browser_binding: str,
        ip: str | None,
        user_agent: str | None,
    ) -> SignedIn:
        """Verify a usernameless assertion (to options from :meth:`passkey_options` for the
        same browser) and start a session. Raises ``LoginFailedError`` for every failure."""
        deps = self._deps
        config = self._config
        now = deps.clock.now()
        bucket = ip_bucket(ip)
        reason: LoginFailure | None = None
        detail = ""
        subject_id: str | None = None
        completed: CompletedFactor | None = None
        factor_locks = False
        try:
            challenge: bytes | None = client_challenge(credential)
        except InvalidCredentialError:
            challenge = None
        async with deps.store.transaction() as uow:
            await uow.logins.lock_limits()
            # The ceremony is used up first, whatever happens next.
            ceremony = (
                await uow.logins.consume_ceremony(
                    challenge=challenge, binding=token_hash(browser_binding), at=now
                )
                if challenge is not None
                else None
            )
            since = config.ip_limit.window_start(now)
            await uow.logins.prune_ip_failures(bucket, before=since)
            failures = await uow.logins.count_ip_failures(bucket, since=since)
            if config.ip_limit.is_limited(failures):
                reason = LoginFailure.IP_LIMITED
            elif ceremony is None:
                reason = LoginFailure.NO_CEREMONY
            else:
                reason, detail, subject_id, completed, factor_locks = await self._assertion(
                    uow, credential, ceremony, now=now
                )
            if reason is None:
                await uow.audit.append(
                    AuditEvent(
                        type="login.succeeded",
                        at=now,
                        outcome="ok",
                        subject_id=subject_id,
                        actor=LOGIN_ACTOR,
                        details={"method": "passkey", "ip": ip},
                    )
                )
            else:
                ip_locks = False
                if reason is not LoginFailure.IP_LIMITED:
                    await uow.logins.add_ip_failure(bucket, at=now)
                    ip_locks = config.ip_limit.is_limited(failures + 1)
                await _audit_failure(
                    uow, "passkey", reason, subject_id=subject_id, ip=ip, now=now, detail=detail
                )
                if factor_locks:
                    await _audit_locked(uow, "passkey", subject_id=subject_id, ip=ip, now=now)
                if ip_locks:
                    await _audit_locked(uow, "ip", subject_id=subject_id, ip=ip, now=now)
        if reason is not None or completed is None or subject_id is None:
            self._count("passkey", "locked" if reason in _LOCKS else "failed")
            raise LoginFailedError()
        # The assertion is the primary factor, and also the proof a passkey step-up records,
        # so a rule naming ``methods: [webauthn]`` with a max_age is met right after sign-in.
        factors = (replace(completed, primary=True), completed)
        session, assurance = await self._sessions.create_signed_in(
            subject_id=subject_id,
            factors=factors,
            ip=ip,
            user_agent=user_agent,
            actor=LOGIN_ACTOR,
            details={"via": "passkey"},
        )
        self._count("passkey", "succeeded")
        return SignedIn(session=session, assurance=assurance, via="passkey")

    async def _assertion(
        self,
        uow: UnitOfWork,
        credential: Mapping[str, Any],
        ceremony: LoginCeremony,
        *,
        now: datetime,
    ) -> tuple[LoginFailure | None, str, str | None, CompletedFactor | None, bool]:
        """(failure, detail, subject id, completed factor, locked) for an assertion whose
        ceremony was just consumed."""
        deps = self._deps
        try:
            credential_id = assertion_credential_id(credential)
            returned_handle = assertion_user_handle(credential)
        except InvalidCredentialError as error:
            return LoginFailure.MALFORMED, error.message, None, None, False
        stored = await uow.webauthn.find_credential(credential_id)
        if stored is None:
            return LoginFailure.UNKNOWN_CREDENTIAL, "", None, None, False
        subject_id = stored.subject_id
        if returned_handle is None or returned_handle != stored.user_handle:
            return LoginFailure.USER_HANDLE_MISMATCH, "", subject_id, None, False
        factor = await uow.factors.get_for_update(subject_id, stored.factor_id)
        if factor is None or factor.status is not FactorStatus.ACTIVE:
            return LoginFailure.FACTOR_INACTIVE, "", subject_id, None, False

        async def check() -> CompletedFactor:
            current = await uow.webauthn.get_credential(factor.id)
            if current is None:
                raise RejectedAttemptError("webauthn: the factor has no credential", guess=False)
            if current.suspected_clone_at is not None:
                raise RejectedAttemptError("webauthn: credential suspected cloned", guess=False)
            try:
                verified = verify_assertion(
                    deps.config.webauthn,
                    credential=credential,
                    expected_challenge=ceremony.challenge,
                    public_key=current.public_key,
                    stored_sign_count=current.sign_count,
                    user_handle=current.user_handle,
                    require_user_verification=True,
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
                    f"webauthn: {error.message}; credential marked as possibly cloned",
                    guess=False,
                ) from None
            except InvalidCredentialError as error:
                raise RejectedAttemptError(f"webauthn: {error.message}", guess=True) from None
            await uow.webauthn.record_use(
                factor.id, sign_count=verified.new_sign_count, backed_up=verified.backed_up
            )
            return assertion_factor(deps, current, user_verified=verified.user_verified, at=now)

        try:
            completed = await attempt_locked_factor(
                uow, factor, check, now=now, lockout=deps.config.lockout
            )
        except RejectedAttemptError as rejected:
            if "locked after repeated failures" in rejected.reason:
                failure = LoginFailure.FACTOR_LOCKED
            elif "cloned" in rejected.reason:
                failure = LoginFailure.SUSPECTED_CLONE
            else:
                failure = LoginFailure.INVALID_ASSERTION
            return failure, rejected.reason, subject_id, None, rejected.locked
        return None, "", subject_id, completed, False

    # --- sign-out --------------------------------------------------------------------------

    async def sign_out(self, browser_cookie: str) -> bool:
        """End the browser session this cookie names and its StepGuard session. ``False``
        when the cookie names no active browser session (nothing to end)."""
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.transaction() as uow:
            browser = await uow.browser_sessions.get_active(token_hash(browser_cookie), at=now)
            if browser is None:
                return False
            await uow.browser_sessions.revoke(browser.id_hash, at=now)
            revoked = await uow.sessions.revoke(browser.session_id, at=now)
            await uow.audit.append(
                AuditEvent(
                    type="login.signed_out",
                    at=now,
                    outcome="ok",
                    subject_id=browser.subject_id,
                    session_id=browser.session_id,
                    actor=LOGIN_ACTOR,
                    details={"session_revoked": revoked},
                )
            )
            if revoked:
                await uow.audit.append(
                    AuditEvent(
                        type="session.revoked",
                        at=now,
                        outcome="ok",
                        subject_id=browser.subject_id,
                        session_id=browser.session_id,
                        actor=LOGIN_ACTOR,
                    )
                )
        return True


_LOCKS = frozenset(
    {LoginFailure.ACCOUNT_LOCKED, LoginFailure.IP_LIMITED, LoginFailure.FACTOR_LOCKED}
)


def _password_factors(now: datetime) -> tuple[CompletedFactor, ...]:
    return primary_factors((AuthMethod.PWD,), at=now)


async def _resolve(uow: UnitOfWork, ident: str) -> str | None:
    """The subject an identifier names: an email that exactly one subject has (compared
    case-insensitively), else a subject id."""
    if "@" in ident:
        ids = await uow.logins.subject_ids_by_email(ident)
        if len(ids) == 1:
            return ids[0]
    subject = await uow.subjects.get(ident)
    return subject.id if subject is not None else None


async def _audit_failure(
    uow: UnitOfWork,
    method: str,
    reason: LoginFailure,
    *,
    subject_id: str | None,
    ip: str | None,
    now: datetime,
    detail: str = "",
) -> None:
    details: dict[str, Any] = {"method": method, "reason": reason.value, "ip": ip}
    if detail:
        details["detail"] = detail[:200]
    await uow.audit.append(
        AuditEvent(
            type="login.failed",
            at=now,
            outcome="refused",
            subject_id=subject_id,
            actor=LOGIN_ACTOR,
            details=details,
        )
    )


async def _audit_locked(
    uow: UnitOfWork, scope: str, *, subject_id: str | None, ip: str | None, now: datetime
) -> None:
    await uow.audit.append(
        AuditEvent(
            type="login.locked",
            at=now,
            outcome="refused",
            subject_id=subject_id if scope != "ip" else None,
            actor=LOGIN_ACTOR,
            details={"scope": scope, "ip": ip},
        )
    )
