"""StepGuard as an OpenID Connect Provider: authorization with step-up, tokens, userinfo,
logout, clients and signing keys (docs/oidc.md).

The provider decides with the policy engine (action ``oidc.authorize``, resource = client id)
and the client's requested level as a minimum. Interaction (sign-in, step-up, consent) parks
the validated request server-side (``PendingAuthorization``: single use, short TTL, bound to
the browser by a cookie); the continuation reads only what was stored, so parameters sent
again by the browser cannot change what is issued.

Codes, refresh tokens and pending requests are used once by a conditional write; a second
redemption of a code, or a rotated refresh token presented again, revokes the whole grant.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any, Final
from urllib.parse import urlencode, urlsplit

from stepguard.core.assurance import AssuranceLevel, Requirement, satisfies, summarize
from stepguard.core.decision import Allow, Deny, StepUp
from stepguard.core.errors import (
    ConflictError,
    InvalidRequestError,
    NotFoundError,
    PageLinkInvalidError,
    SessionInvalidError,
)
from stepguard.core.ids import new_id, new_token, token_hash
from stepguard.core.model import AuditEvent, Challenge, ChallengeStatus, Session, Subject
from stepguard.core.oidc import rfc7636
from stepguard.core.oidc.claims import access_token_claims, id_token_claims, userinfo_claims
from stepguard.core.oidc.errors import (
    AccessDeniedError,
    ConsentRequiredError,
    InteractionRequiredError,
    InvalidClientError,
    InvalidClientRequestError,
    InvalidGrantError,
    InvalidScopeError,
    InvalidTokenError,
    LoginRequiredError,
    OAuthError,
    OidcInvalidRequestError,
    UnmetAuthenticationRequirementsError,
    UnsupportedGrantTypeError,
)
from stepguard.core.oidc.model import (
    AuthorizationCode,
    OidcClient,
    OidcGrant,
    PendingAuthorization,
    RefreshToken,
    SigningKey,
)
from stepguard.core.oidc.request import (
    AuthorizationRequest,
    check_client,
    client_and_redirect,
    parse_authorization_request,
)
from stepguard.core.pages import BrowserSession
from stepguard.core.secret import Secret
from stepguard.service.decisions import DecisionRequest, DecisionService
from stepguard.service.deps import Deps
from stepguard.service.oidc_ports import Jose, OidcConfig
from stepguard.service.pages import PageService
from stepguard.service.webauthn import usable_factors

AUTHORIZE_ACTION: Final = "oidc.authorize"
OIDC_ACTOR: Final = "oidc"
CONTINUE_PATH: Final = "/oidc/authorize/continue"
# How long after a newer key exists an older one stays published (tokens it signed must be
# able to expire first); added to the longest token lifetime.
KEY_GRACE_SECONDS: Final = 60


# --- outcomes of the browser endpoints -------------------------------------------------------


@dataclass(frozen=True, slots=True, kw_only=True)
class ErrorPage:
    """An error that must not be redirected (unknown client, redirect URI, tampered
    continuation): shown to the user."""

    message: str


@dataclass(frozen=True, slots=True, kw_only=True)
class ToClient:
    """Back to the client's redirect URI with a code or an error."""

    url: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NeedsLogin:
    pending_id: str
    binding: Secret[str] | None  # a new binding cookie value, when the request was just parked


@dataclass(frozen=True, slots=True, kw_only=True)
class NeedsStepUp:
    pending_id: str
    binding: Secret[str] | None
    challenge_id: str


@dataclass(frozen=True, slots=True, kw_only=True)
class NeedsConsent:
    pending_id: str
    binding: Secret[str] | None
    client_name: str
    scope: tuple[str, ...]


AuthorizeOutcome = ErrorPage | ToClient | NeedsLogin | NeedsStepUp | NeedsConsent


@dataclass(frozen=True, slots=True, kw_only=True)
class NewClient:
    client: OidcClient
    secret: Secret[str] | None  # shown once


@dataclass(frozen=True, slots=True, kw_only=True)
class TokenResponse:
    body: dict[str, Any]


@dataclass(frozen=True, slots=True, kw_only=True)
class LogoutOutcome:
    redirect: str | None
    signed_out: bool
    # Nothing was done: the browser is signed in, but neither a valid ``id_token_hint`` for
    # its session nor a confirmed form asked for it (a bare GET from any site must not sign
    # the user out; OpenID Connect RP-Initiated Logout 1.0, section 2).
    needs_confirmation: bool = False


def _redemption_event(
    type_: str,
    *,
    at: datetime,
    client_id: str,
    grant: OidcGrant | None,
    reused_grant_id: str | None,
    reason: str | None,
    revoked: tuple[str, bool],
) -> AuditEvent:
    """The audit record of a code or refresh token presented at the token endpoint."""
    revoked_key, was_revoked = revoked
    return AuditEvent(
        type=type_,
        at=at,
        outcome="ok" if reason is None else "rejected",
        subject_id=grant.subject_id if grant else None,
        session_id=grant.session_id if grant else None,
        actor=OIDC_ACTOR,
        details={
            "client_id": client_id,
            "grant_id": grant.id if grant else reused_grant_id,
            "reason": reason or "accepted",
            revoked_key: was_revoked,
        },
    )


def continuation_url(pending_id: str) -> str:
    return f"{CONTINUE_PATH}?{urlencode({'req': pending_id})}"


def _redirect_uri_ok(uri: str) -> bool:
    """Absolute, no fragment, https, or http on a loopback host (RFC 8252 section 7.3)."""
    try:
        parts = urlsplit(uri)
        host = parts.hostname
    except ValueError:
        return False
    if parts.fragment or not host or "\\" in uri or any(ord(c) <= 0x20 for c in uri):
        return False
    if parts.scheme == "https":
        return True
    return parts.scheme == "http" and host in ("localhost", "127.0.0.1", "::1")


def _with_params(url: str, params: dict[str, str]) -> str:
    sep = "&" if urlsplit(url).query else "?"
    return f"{url}{sep}{urlencode(params)}"


def _primary_time(session: Session) -> datetime:
    """When the session's primary authentication happened (its login)."""
    times = [f.completed_at for f in session.factors if f.primary]
    return max(times) if times else session.created_at


class OidcService:
    def __init__(
        self,
        deps: Deps,
        *,
        config: OidcConfig,
        jose: Jose,
        decisions: DecisionService,
        pages: PageService,
        count: Callable[[str, str], None] | None = None,
    ) -> None:
        self._deps = deps
        self.config = config
        self._jose = jose
        self._decisions = decisions
        self._pages = pages
        self._count = count or (lambda event, outcome: None)

    # --- clients ----------------------------------------------------------------------------

    async def add_client(
        self,
        *,
        name: str,
        redirect_uris: Sequence[str],
        post_logout_redirect_uris: Sequence[str] = (),
        public: bool = False,
        refresh_tokens: bool = False,
        consent_required: bool = False,
        audience: str | None = None,
        client_id: str | None = None,
        actor: str | None,
    ) -> NewClient:
        deps = self._deps
        now = deps.clock.now()
        uris = tuple(dict.fromkeys(redirect_uris))
        logout_uris = tuple(dict.fromkeys(post_logout_redirect_uris))
        if not uris:
            raise InvalidRequestError("at least one redirect URI is required")
        for uri in (*uris, *logout_uris):
            if not _redirect_uri_ok(uri):
                raise InvalidRequestError(
                    f"redirect URI {uri!r} must be absolute https (or http on localhost), "
                    "without a fragment"
                )
        secret = None if public else new_token(deps.rng, "ocs")
        client = OidcClient(
            id=client_id or new_id(deps.rng, "oc"),
            name=name,
            secret_hash=token_hash(secret.reveal()) if secret else None,
            redirect_uris=uris,
            post_logout_redirect_uris=logout_uris,
            refresh_tokens=refresh_tokens,
            consent_required=consent_required,
            audience=audience,
            created_at=now,
        )
        async with deps.store.transaction() as uow:
            if await uow.oidc.get_client(client.id) is not None:
                raise ConflictError("a client with this id exists")
            await uow.oidc.add_client(client)
            await uow.audit.append(
                AuditEvent(
                    type="oidc.client_added",
                    at=now,
                    outcome="ok",
                    actor=actor,
                    details={
                        "client_id": client.id,
                        "public": client.public,
                        "redirect_uris": list(uris),
                    },
                )
            )
        return NewClient(client=client, secret=secret)

    async def list_clients(self) -> list[OidcClient]:
        async with self._deps.store.read() as uow:
            return await uow.oidc.list_clients()

    async def remove_client(self, client_id: str, *, actor: str | None) -> None:
        now = self._deps.clock.now()
        async with self._deps.store.transaction() as uow:
            if not await uow.oidc.remove_client(client_id):
                raise NotFoundError("No such client.")
            await uow.audit.append(
                AuditEvent(
                    type="oidc.client_removed",
                    at=now,
                    outcome="ok",
                    actor=actor,
                    details={"client_id": client_id},
                )
            )

    # --- keys -------------------------------------------------------------------------------

    def _key_lifetime(self) -> timedelta:
        c = self.config
        longest = max(c.id_token_ttl_seconds, c.access_token_ttl_seconds)
        return timedelta(seconds=longest + KEY_GRACE_SECONDS)

    def _still_published(self, keys: list[SigningKey], now: datetime) -> list[SigningKey]:
        """Newest first: the signing key, then older keys until their tokens have expired."""
        out: list[SigningKey] = []
        newer: SigningKey | None = None
        for key in keys:
            if newer is None or now - newer.created_at < self._key_lifetime():
                out.append(key)
            newer = key
        return out

    async def rotate_keys(self, *, alg: str | None = None, actor: str | None) -> SigningKey:
        """A new signing key (active at once); keys whose tokens can no longer be valid are
        retired (no longer published)."""
        deps = self._deps
        now = deps.clock.now()
        algorithm = alg or self.config.signing_alg
        kid = new_id(deps.rng, "k")
        key = SigningKey(
            kid=kid,
            alg=algorithm,
            private_jwk=self._jose.generate(alg=algorithm, kid=kid),
            created_at=now,
        )
        async with deps.store.transaction() as uow:
            existing = await uow.oidc.published_keys()
            await uow.oidc.add_key(key)
            keep = {k.kid for k in self._still_published([key, *existing], now)}
            retired = [k.kid for k in existing if k.kid not in keep]
            for old in retired:
                await uow.oidc.retire_key(old, at=now)
            await uow.audit.append(
                AuditEvent(
                    type="oidc.key_rotated",
                    at=now,
                    outcome="ok",
                    actor=actor,
                    details={"kid": kid, "alg": algorithm, "retired": retired},
                )
            )
        return key

    async def _keys(self) -> list[SigningKey]:
        """Published keys, newest first; creates the first key on first use."""
        now = self._deps.clock.now()
        async with self._deps.store.read() as uow:
            keys = await uow.oidc.published_keys()
        if not keys:
            await self.rotate_keys(actor=OIDC_ACTOR)
            async with self._deps.store.read() as uow:
                keys = await uow.oidc.published_keys()
        return self._still_published(keys, now)

    async def jwks(self) -> dict[str, Any]:
        return {"keys": [self._jose.public_jwk(k) for k in await self._keys()]}

    # --- authorization ----------------------------------------------------------------------

    async def _browser(self, cookie: str | None) -> BrowserSession | None:
        if not cookie:
            return None
        try:
            return await self._pages.browser(cookie)
        except PageLinkInvalidError:  # unknown, revoked or expired: no sign-in
            return None

    async def authorize(
        self, params: Sequence[tuple[str, str]], *, cookie: str | None
    ) -> AuthorizeOutcome:
        deps = self._deps
        now = deps.clock.now()
        try:
            client_id, redirect_uri = client_and_redirect(params)
            async with deps.store.read() as uow:
                client = check_client(await uow.oidc.get_client(client_id), redirect_uri)
        except InvalidClientRequestError as error:
            await self._audit("oidc.authorize", "rejected", reason=error.message)
            self._count("authorize", "invalid_client")
            return ErrorPage(message=error.message)
        state = dict(params).get("state") or None
        try:
            request = parse_authorization_request(params, client=client)
        except OAuthError as error:
            await self._audit(
                "oidc.authorize", "rejected", client_id=client.id, reason=error.message
            )
            self._count("authorize", error.error)
            return self._error_to_client(redirect_uri, state, error)
        pending = PendingAuthorization(
            id=new_id(deps.rng, "oar"),
            binding_hash="",
            client_id=client.id,
            params=request.to_json(),
            created_at=now,
            expires_at=now + timedelta(seconds=self.config.pending_ttl_seconds),
        )
        return await self._proceed(request, client, pending, cookie=cookie, parked=False)

    async def resume(
        self,
        pending_id: str,
        *,
        binding: str | None,
        cookie: str | None,
        consent: bool | None = None,
    ) -> AuthorizeOutcome:
        """The continuation after sign-in, step-up or consent: only the stored request
        counts; the binding cookie must match."""
        deps = self._deps
        now = deps.clock.now()
        async with deps.store.read() as uow:
            pending = await uow.oidc.get_pending(pending_id)
            client = await uow.oidc.get_client(pending.client_id) if pending else None
        reason = None
        if pending is None or client is None:
            reason = "unknown authorization request"
        elif pending.used_at is not None or now >= pending.expires_at:
            reason = "authorization request used or expired"
        elif not binding or not hmac.compare_digest(
            token_hash(binding).encode(), pending.binding_hash.encode()
        ):
            reason = "authorization request continued from another browser"
        if reason is not None or pending is None or client is None:
            await self._audit("oidc.continue", "rejected", reason=reason)
            self._count("continue", "rejected")
            return ErrorPage(message="This sign-in request has expired. Start again from the app.")
        request = AuthorizationRequest.from_json(pending.params)
        if consent is False:
            await self._finish_pending(pending, now)
            return self._error_to_client(
                request.redirect_uri, request.state, AccessDeniedError("the user declined")
            )
        return await self._proceed(
            request, client, pending, cookie=cookie, parked=True, consented=bool(consent)
        )

    async def _proceed(
        self,
        request: AuthorizationRequest,
        client: OidcClient,
        pending: PendingAuthorization,
        *,
        cookie: str | None,
        parked: bool,
        consented: bool = False,
    ) -> AuthorizeOutcome:
        try:
            return await self._decide(
                request, client, pending, cookie=cookie, parked=parked, consented=consented
            )
        except OAuthError as error:
            await self._audit(
                "oidc.authorize",
                "rejected",
                client_id=client.id,
                reason=error.message,
                error=error.error,
            )
            self._count("authorize", error.error)
            if parked:
                await self._finish_pending(pending, self._deps.clock.now())
            return self._error_to_client(request.redirect_uri, request.state, error)

    async def _park(
        self, pending: PendingAuthorization, parked: bool
    ) -> tuple[PendingAuthorization, Secret[str] | None]:
        if parked:
            return pending, None
        binding = new_token(self._deps.rng, "oab")
        pending = replace(pending, binding_hash=token_hash(binding.reveal()))
        async with self._deps.store.transaction() as uow:
            await uow.oidc.add_pending(pending)
        return pending, binding

    async def _finish_pending(self, pending: PendingAuthorization, now: datetime) -> None:
        async with self._deps.store.transaction() as uow:
            await uow.oidc.use_pending(pending.id, at=now)

    async def _decide(
        self,
        request: AuthorizationRequest,
        client: OidcClient,
        pending: PendingAuthorization,
        *,
        cookie: str | None,
        parked: bool,
        consented: bool,
    ) -> AuthorizeOutcome:
        deps = self._deps
        now = deps.clock.now()
        prompt = request.prompt
        browser = await self._browser(cookie)
        found: tuple[Session, Subject] | None = None
        if browser is not None:
            async with deps.store.read() as uow:
                found = await uow.sessions.get_with_subject(browser.session_id)
            if found is not None and not found[0].is_active(now):
                found = None

        # 1. Who is signed in, and freshly enough?
        login_reason: str | None = None
        if found is None:
            login_reason = "no sign-in"
        else:
            session = found[0]
            if "login" in prompt and session.created_at <= pending.created_at:
                login_reason = "prompt=login needs a new sign-in"
            elif (
                request.max_age is not None
                and (now - _primary_time(session)).total_seconds() > request.max_age
            ):
                login_reason = "sign-in older than max_age"
        if login_reason is not None:
            if "none" in prompt:
                raise LoginRequiredError(login_reason)
            if parked:  # already sent to sign in once: never loop
                raise LoginRequiredError(login_reason)
            pending, binding = await self._park(pending, parked)
            await self._audit("oidc.authorize", "login", client_id=client.id, reason=login_reason)
            self._count("authorize", "login")
            return NeedsLogin(pending_id=pending.id, binding=binding)
        assert found is not None
        session, subject = found

        # 2. The level the client asks for, if any can be met.
        minimum = await self._minimum(request, session, subject, now)

        # 3. The policy, with that level as a minimum.
        try:
            result = await self._decisions.decide(
                DecisionRequest(
                    session_id=session.id,
                    action=AUTHORIZE_ACTION,
                    resource=client.id,
                    context={"client_id": client.id, "scope": list(request.scope)},
                    minimum=minimum,
                    challenge_id=pending.challenge_id,
                ),
                actor=OIDC_ACTOR,
            )
        except SessionInvalidError:
            raise LoginRequiredError("the session ended") from None
        decision = result.decision
        if isinstance(decision, Deny):
            raise AccessDeniedError("the policy denies this sign-in")
        if isinstance(decision, StepUp):
            if "none" in prompt:
                raise InteractionRequiredError("a step-up is required")
            if result.challenge is None:
                raise AccessDeniedError("no challenge could be opened")
            pending, binding = await self._park(pending, parked)
            async with deps.store.transaction() as uow:
                await uow.oidc.set_pending_challenge(pending.id, result.challenge.id)
            self._count("authorize", "step_up")
            return NeedsStepUp(
                pending_id=pending.id, binding=binding, challenge_id=result.challenge.id
            )
        assert isinstance(decision, Allow)

        # 4. Consent, for clients that need it.
        if (client.consent_required or "consent" in prompt) and not consented:
            if "none" in prompt:
                raise ConsentRequiredError()
            pending, binding = await self._park(pending, parked)
            self._count("authorize", "consent")
            return NeedsConsent(
                pending_id=pending.id,
                binding=binding,
                client_name=client.name,
                scope=request.scope,
            )

        # 5. The code.
        return await self._issue_code(request, client, session, pending, parked=parked, now=now)

    async def _minimum(
        self, request: AuthorizationRequest, session: Session, subject: Subject, now: datetime
    ) -> Requirement | None:
        """The first level the client wants that the session has or can reach with one of
        the subject's factors. When none can: ``UnmetAuthenticationRequirementsError`` for an
        essential ``acr`` claim; for voluntary ``acr_values``, no minimum (OpenID Connect Core
        5.5.1.1: the ID token then says the level actually reached, and the client decides)."""
        wanted = request.wanted_levels
        if not wanted:
            return None
        async with self._deps.store.read() as uow:
            factors = await uow.factors.list_for_subject(subject.id)
            for level in wanted:
                requirement = Requirement(acr=level)
                if satisfies(session.factors, requirement, now=now):
                    return requirement
                probe = Challenge(
                    id="probe",
                    subject_id=subject.id,
                    session_id=session.id,
                    action=AUTHORIZE_ACTION,
                    resource=request.client_id,
                    transaction_digest="",
                    rule="",
                    requirement=requirement,
                    summary="",
                    status=ChallengeStatus.PENDING,
                    created_at=now,
                    expires_at=now,
                )
                if await usable_factors(self._deps, uow, probe, session, factors, now=now):
                    return requirement
        if not request.essential_acr:
            return None
        wanted_text = " ".join(level.acr for level in wanted)
        raise UnmetAuthenticationRequirementsError(f"no factor of the user can reach {wanted_text}")

    async def _issue_code(
        self,
        request: AuthorizationRequest,
        client: OidcClient,
        session: Session,
        pending: PendingAuthorization,
        *,
        parked: bool,
        now: datetime,
    ) -> AuthorizeOutcome:
        deps = self._deps
        assurance = summarize(session.factors)
        if assurance.level is None:
            raise AccessDeniedError("the session has no assurance level")
        essential = request.essential_acr
        if essential and assurance.level < min(essential):  # defensive: the decision ensured it
            raise UnmetAuthenticationRequirementsError("the session did not reach the level")
        grant = OidcGrant(
            id=new_id(deps.rng, "ogr"),
            client_id=client.id,
            subject_id=session.subject_id,
            session_id=session.id,
            scope=request.scope,
            nonce=request.nonce,
            acr=assurance.level.acr,
            amr=assurance.amr,
            auth_time=_primary_time(session),
            created_at=now,
        )
        code = new_token(deps.rng, "oac")
        async with deps.store.transaction() as uow:
            if parked and not await uow.oidc.use_pending(pending.id, at=now):
                raise InvalidClientRequestError("the authorization request was already used")
            await uow.oidc.add_grant(grant)
            await uow.oidc.add_code(
                AuthorizationCode(
                    code_hash=token_hash(code.reveal()),
                    grant_id=grant.id,
                    client_id=client.id,
                    redirect_uri=request.redirect_uri,
                    code_challenge=request.code_challenge,
                    created_at=now,
                    expires_at=now + timedelta(seconds=self.config.code_ttl_seconds),
                )
            )
            await uow.audit.append(
                AuditEvent(
                    type="oidc.code_issued",
                    at=now,
                    outcome="ok",
                    subject_id=session.subject_id,
                    session_id=session.id,
                    actor=OIDC_ACTOR,
                    details={
                        "client_id": client.id,
                        "grant_id": grant.id,
                        "acr": grant.acr,
                        "amr": list(grant.amr),
                        "scope": list(request.scope),
                        "requested": [level.acr for level in request.wanted_levels],
                    },
                )
            )
        self._count("authorize", "code")
        params = {"code": code.reveal(), "iss": self.config.issuer}
        if request.state is not None:
            params["state"] = request.state
        return ToClient(url=_with_params(request.redirect_uri, params))

    def _error_to_client(
        self, redirect_uri: str, state: str | None, error: OAuthError
    ) -> AuthorizeOutcome:
        if not error.redirect:
            return ErrorPage(message=error.message)
        params = {
            "error": error.error,
            "error_description": error.message,
            "iss": self.config.issuer,
        }
        if state is not None:
            params["state"] = state
        return ToClient(url=_with_params(redirect_uri, params))

    # --- token endpoint ---------------------------------------------------------------------

    async def _authenticate_client(
        self, form: dict[str, str], basic: tuple[str, str] | None
    ) -> OidcClient:
        if basic is not None and ("client_secret" in form):
            raise InvalidClientError("use one client authentication method")
        secret: str | None
        if basic is not None:
            client_id, secret = basic
            if form.get("client_id") not in (None, client_id):
                raise InvalidClientError()
        else:
            client_id = form.get("client_id", "")
            secret = form.get("client_secret")
        if not client_id:
            raise InvalidClientError()
        async with self._deps.store.read() as uow:
            client = await uow.oidc.get_client(client_id)
        if client is None:
            raise InvalidClientError()
        if client.secret_hash is None:
            if secret:
                raise InvalidClientError("a public client has no secret")
            return client
        if not secret or not hmac.compare_digest(
            token_hash(secret).encode(), client.secret_hash.encode()
        ):
            raise InvalidClientError()
        return client

    async def token(
        self, params: Sequence[tuple[str, str]], *, basic: tuple[str, str] | None
    ) -> TokenResponse:
        """The token endpoint. Raise ``OAuthError`` (``InvalidClientError`` -> 401)."""
        form: dict[str, str] = {}
        for name, value in params:
            if name in form:
                raise OidcInvalidRequestError(f"parameter {name!r} is repeated")
            form[name] = value
        try:
            client = await self._authenticate_client(form, basic)
        except InvalidClientError:
            await self._audit("oidc.token", "rejected", reason="client authentication failed")
            self._count("token", "invalid_client")
            raise
        grant_type = form.get("grant_type")
        if grant_type == "authorization_code":
            return await self._redeem_code(client, form)
        if grant_type == "refresh_token":
            return await self._refresh(client, form)
        raise UnsupportedGrantTypeError()

    async def _redeem_code(self, client: OidcClient, form: dict[str, str]) -> TokenResponse:
        deps = self._deps
        await self._keys()  # the first key exists before tokens are signed
        now = deps.clock.now()
        code_hash = token_hash(form.get("code", ""))
        reason: str | None = None
        reused: AuthorizationCode | None = None
        async with deps.store.transaction() as uow:
            code = await uow.oidc.use_code(code_hash, at=now)
            grant = await uow.oidc.get_grant(code.grant_id) if code else None
            if code is None:
                reused = await uow.oidc.get_code(code_hash)
                reason = "unknown code" if reused is None else "code already used"
                if reused is not None:
                    await uow.oidc.revoke_grant(reused.grant_id, at=now)
            elif code.client_id != client.id:
                reason = "code issued to another client"
            elif now >= code.expires_at:
                reason = "code expired"
            elif form.get("redirect_uri") != code.redirect_uri:
                reason = "redirect_uri does not match"
            elif grant is None or grant.revoked_at is not None:
                reason = "grant revoked"
            else:
                try:
                    rfc7636.verify(
                        verifier=form.get("code_verifier"), expected_challenge=code.code_challenge
                    )
                except InvalidGrantError as error:
                    reason = error.message
            session = await uow.sessions.get(grant.session_id) if grant else None
            if reason is None and (session is None or not session.is_active(now)):
                reason = "session ended"
            await uow.audit.append(
                _redemption_event(
                    "oidc.code_reused" if reused else "oidc.code_redeemed",
                    at=now,
                    client_id=client.id,
                    grant=grant,
                    reused_grant_id=reused.grant_id if reused else None,
                    reason=reason,
                    revoked=("grant_revoked", reused is not None),
                )
            )
            if reason is not None or grant is None:
                self._count("code", "reused" if reused else "rejected")
                # Commit the audit record and the revocation, then fail.
            else:
                body = await self._tokens(uow, client, grant, now, refresh=True)
        if reason is not None or grant is None:
            raise InvalidGrantError()
        self._count("code", "redeemed")
        return TokenResponse(body=body)

    async def _refresh(self, client: OidcClient, form: dict[str, str]) -> TokenResponse:
        deps = self._deps
        await self._keys()
        now = deps.clock.now()
        presented = token_hash(form.get("refresh_token", ""))
        reason: str | None = None
        reused: RefreshToken | None = None
        async with deps.store.transaction() as uow:
            token = await uow.oidc.use_refresh(presented, at=now)
            grant = await uow.oidc.get_grant(token.grant_id) if token else None
            if token is None:
                reused = await uow.oidc.get_refresh(presented)
                reason = "unknown refresh token" if reused is None else "refresh token reused"
                if reused is not None:
                    await uow.oidc.revoke_grant(reused.grant_id, at=now)
            elif token.client_id != client.id:
                reason = "refresh token of another client"
            elif now >= token.expires_at:
                reason = "refresh token expired"
            elif grant is None or grant.revoked_at is not None:
                reason = "grant revoked"
            session = await uow.sessions.get(grant.session_id) if grant else None
            if reason is None and (session is None or not session.is_active(now)):
                reason = "session ended"
            if reason is None and grant is not None and "scope" in form:
                asked = tuple(dict.fromkeys(form["scope"].split()))
                if not set(asked) <= set(grant.scope):
                    reason = "scope wider than granted"
            await uow.audit.append(
                _redemption_event(
                    "oidc.refresh_reused" if reused else "oidc.refreshed",
                    at=now,
                    client_id=client.id,
                    grant=grant,
                    reused_grant_id=reused.grant_id if reused else None,
                    reason=reason,
                    revoked=("family_revoked", reused is not None),
                )
            )
            if reason is None and grant is not None:
                body = await self._tokens(uow, client, grant, now, refresh=True)
        if reason is not None or grant is None:
            self._count("refresh", "reused" if reused else "rejected")
            if reason == "scope wider than granted":
                raise InvalidScopeError()
            raise InvalidGrantError()
        self._count("refresh", "ok")
        return TokenResponse(body=body)

    async def _tokens(
        self, uow: Any, client: OidcClient, grant: OidcGrant, now: datetime, *, refresh: bool
    ) -> dict[str, Any]:
        """Access token, ID token and (when allowed) a new refresh token for ``grant``: the
        grant's acr, amr and auth_time, never more."""
        keys = await uow.oidc.published_keys()
        if not keys:
            raise InvalidGrantError("no signing key")
        key = keys[0]
        c = self.config
        access = self._jose.sign(
            access_token_claims(
                issuer=c.issuer,
                grant=grant,
                client=client,
                now=now,
                ttl_seconds=c.access_token_ttl_seconds,
                jti=new_id(self._deps.rng, "at"),
            ),
            key=key,
            typ="at+jwt",
        )
        id_token = self._jose.sign(
            id_token_claims(
                issuer=c.issuer,
                grant=grant,
                client=client,
                now=now,
                ttl_seconds=c.id_token_ttl_seconds,
                at_hash=self._jose.at_hash(access, alg=key.alg),
            ),
            key=key,
            typ="JWT",
        )
        body: dict[str, Any] = {
            "access_token": access,
            "token_type": "Bearer",
            "expires_in": c.access_token_ttl_seconds,
            "id_token": id_token,
            "scope": " ".join(grant.scope),
        }
        if refresh and ("offline_access" in grant.scope or client.refresh_tokens):
            token = new_token(self._deps.rng, "ort")
            await uow.oidc.add_refresh(
                RefreshToken(
                    token_hash=token_hash(token.reveal()),
                    grant_id=grant.id,
                    client_id=client.id,
                    created_at=now,
                    expires_at=now + timedelta(seconds=c.refresh_token_ttl_seconds),
                )
            )
            body["refresh_token"] = token.reveal()
        return body

    # --- userinfo ---------------------------------------------------------------------------

    async def userinfo(self, access_token: str | None) -> dict[str, Any]:
        if not access_token:
            raise InvalidTokenError()
        now = self._deps.clock.now()
        keys = await self._keys()
        try:
            claims = self._jose.verify(access_token, keys=keys, typ="at+jwt")
        except ValueError:
            raise InvalidTokenError() from None
        exp = claims.get("exp")
        if (
            claims.get("iss") != self.config.issuer
            or not isinstance(exp, int)
            or exp <= now.timestamp()
            or not isinstance(claims.get("gid"), str)
        ):
            raise InvalidTokenError()
        async with self._deps.store.read() as uow:
            grant = await uow.oidc.get_grant(claims["gid"])
            subject = await uow.subjects.get(grant.subject_id) if grant else None
        if grant is None or grant.revoked_at is not None or subject is None:
            raise InvalidTokenError()
        return userinfo_claims(subject, grant.scope)

    # --- logout -----------------------------------------------------------------------------

    async def end_session(
        self, params: Sequence[tuple[str, str]], *, cookie: str | None, confirmed: bool = False
    ) -> LogoutOutcome:
        """RP-initiated logout: revoke the browser's StepGuard session (and its grants and
        browser session), then return to a registered ``post_logout_redirect_uri``.

        Without ``confirmed`` (the user's own form post), only an ``id_token_hint`` that we
        signed for the browser's own session signs it out; otherwise the outcome asks for
        confirmation and nothing changes."""
        deps = self._deps
        now = deps.clock.now()
        values = dict(params)
        hint_client: str | None = None
        hint_sid: str | None = None
        hint = values.get("id_token_hint")
        if hint:
            try:
                claims = self._jose.verify(hint, keys=await self._keys(), typ=None)
            except ValueError:
                claims = {}
            if claims.get("iss") == self.config.issuer:
                aud = claims.get("aud")
                hint_client = aud if isinstance(aud, str) else None
                sid = claims.get("sid")
                hint_sid = sid if isinstance(sid, str) else None
        client_id = values.get("client_id") or hint_client
        if hint_client is not None and client_id != hint_client:
            client_id = None
        async with deps.store.read() as uow:
            client = await uow.oidc.get_client(client_id) if client_id else None
        redirect: str | None = None
        target = values.get("post_logout_redirect_uri")
        if target and client is not None and target in client.post_logout_redirect_uris:
            state = values.get("state")
            redirect = _with_params(target, {"state": state}) if state else target
        browser = await self._browser(cookie)
        signed_out = False
        if browser is not None and not confirmed and hint_sid != browser.session_id:
            self._count("logout", "confirm")
            return LogoutOutcome(redirect=None, signed_out=False, needs_confirmation=True)
        if browser is not None and (hint_sid is None or hint_sid == browser.session_id):
            async with deps.store.transaction() as uow:
                await uow.sessions.revoke(browser.session_id, at=now)
                await uow.browser_sessions.revoke(browser.id_hash, at=now)
                revoked = await uow.oidc.revoke_session_grants(browser.session_id, at=now)
                await uow.audit.append(
                    AuditEvent(
                        type="oidc.logout",
                        at=now,
                        outcome="ok",
                        subject_id=browser.subject_id,
                        session_id=browser.session_id,
                        actor=OIDC_ACTOR,
                        details={"client_id": client_id, "grants_revoked": revoked},
                    )
                )
            signed_out = True
        self._count("logout", "ok" if signed_out else "no_session")
        return LogoutOutcome(redirect=redirect, signed_out=signed_out)

    # --- discovery --------------------------------------------------------------------------

    def discovery(self) -> dict[str, Any]:
        issuer = self.config.issuer
        return {
            "issuer": issuer,
            "authorization_endpoint": f"{issuer}/oidc/authorize",
            "token_endpoint": f"{issuer}/oidc/token",
            "userinfo_endpoint": f"{issuer}/oidc/userinfo",
            "jwks_uri": f"{issuer}/oidc/jwks",
            "end_session_endpoint": f"{issuer}/oidc/logout",
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": ["authorization_code", "refresh_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["ES256", "RS256"],
            "token_endpoint_auth_methods_supported": [
                "client_secret_basic",
                "client_secret_post",
                "none",
            ],
            "code_challenge_methods_supported": ["S256"],
            "scopes_supported": ["openid", "profile", "email", "groups", "offline_access"],
            "claims_supported": [
                "iss",
                "sub",
                "aud",
                "exp",
                "iat",
                "auth_time",
                "nonce",
                "acr",
                "amr",
                "sid",
                "email",
                "groups",
            ],
            "acr_values_supported": [level.acr for level in AssuranceLevel],
            "claims_parameter_supported": True,
            "request_parameter_supported": False,
            "request_uri_parameter_supported": False,
            "prompt_values_supported": ["none", "login", "consent"],
            "authorization_response_iss_parameter_supported": True,
            "frontchannel_logout_supported": False,
        }

    async def _audit(self, type_: str, outcome: str, **details: Any) -> None:
        now = self._deps.clock.now()
        async with self._deps.store.transaction() as uow:
            await uow.audit.append(
                AuditEvent(
                    type=type_,
                    at=now,
                    outcome=outcome,
                    actor=OIDC_ACTOR,
                    details={k: v for k, v in details.items() if v is not None},
                )
            )
