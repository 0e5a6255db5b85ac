"""API v1 routes. Thin: parse, call one use case, shape the answer."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any

import segno
from fastapi import APIRouter, Depends, FastAPI, Path, Query, Request, Response
from fastapi.responses import PlainTextResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from stepguard import __version__
from stepguard.adapters.observability import Metrics
from stepguard.adapters.web.errors import install_error_handlers
from stepguard.adapters.web.forward_auth import ForwardAuthConfig, ForwardAuthPaths
from stepguard.adapters.web.limits import FlowStartLimit, RequestGuard
from stepguard.adapters.web.page_links import page_links_router
from stepguard.adapters.web.pages import PagesConfig, pages_router
from stepguard.adapters.web.risk import risk_router
from stepguard.adapters.web.schemas import (
    IDENTIFIER_REGEX,
    AuditEventOut,
    AuditPage,
    ChallengeOut,
    ChallengeRef,
    ConfirmIn,
    ConfirmOut,
    DecisionIn,
    DecisionOut,
    EmailEnrollIn,
    EnrollIn,
    EnrollOut,
    ErrorBody,
    EvaluateIn,
    EvaluateOut,
    FactorBrief,
    FactorList,
    FactorOut,
    Health,
    QueryTime,
    RequirementOut,
    RiskOut,
    SentCodeOut,
    SessionIn,
    SessionOut,
    SignalOut,
    SmsEnrollIn,
    SubjectIn,
    SubjectOut,
    TotpEnrollIn,
    VerificationIn,
    VerificationOut,
    WebAuthnEnrollIn,
    WebAuthnFactorInfo,
)
from stepguard.adapters.web.webauthn import webauthn_router
from stepguard.adapters.web.webauthn_schemas import WebAuthnConfirmIn, WebAuthnVerificationIn
from stepguard.core.assurance import FactorType, Requirement, SessionAssurance
from stepguard.core.decision import Allow, StepUp
from stepguard.core.errors import PolicyEvaluationError, UnauthenticatedError
from stepguard.core.factors import OtpAlgorithm, TotpSpec
from stepguard.core.factors.oob import mask
from stepguard.core.model import ApiKey, Factor, Session, Subject, WebAuthnCredential
from stepguard.core.policy.model import Outcome, PolicyInput
from stepguard.sdk.rfc9470 import StepUpChallenge, format_www_authenticate
from stepguard.service.container import Services
from stepguard.service.decisions import DecisionRequest
from stepguard.service.delivery import OOB_FACTOR_TYPES
from stepguard.service.login import LoginService
from stepguard.service.oidc import OidcService
from stepguard.service.webauthn import WebAuthnRegistrationRequest

ERRORS: dict[int | str, dict[str, Any]] = {
    status: {"model": ErrorBody} for status in (400, 401, 403, 404, 409, 413, 422, 429, 503)
}


def _requirement_out(requirement: Requirement) -> RequirementOut:
    return RequirementOut(
        acr=requirement.acr.acr,
        max_age=requirement.max_age,
        methods=sorted(requirement.methods),
        bind=requirement.bind,
    )


def _session_out(session: Session, assurance: SessionAssurance) -> SessionOut:
    return SessionOut(
        session_id=session.id,
        subject_id=session.subject_id,
        acr=assurance.level.acr if assurance.level else None,
        amr=list(assurance.amr),
        auth_time=assurance.auth_time,
        expires_at=session.expires_at,
    )


def _subject_out(subject: Subject) -> SubjectOut:
    return SubjectOut(
        id=subject.id,
        email=subject.email,
        phone=subject.phone,
        groups=list(subject.groups),
        created_at=subject.created_at,
        updated_at=subject.updated_at,
    )


def _factor_out(factor: Factor, webauthn: WebAuthnFactorInfo | None = None) -> FactorOut:
    channel = OOB_FACTOR_TYPES.get(factor.type)
    return FactorOut(
        destination=(
            mask(channel, factor.destination.reveal()) if channel and factor.destination else None
        ),
        id=factor.id,
        type=factor.type.value,
        label=factor.label,
        status=factor.status.value,
        created_at=factor.created_at,
        confirmed_at=factor.confirmed_at,
        last_used_at=factor.last_used_at,
        webauthn=webauthn,
    )


def _webauthn_info(services: Services, credential: WebAuthnCredential) -> WebAuthnFactorInfo:
    return WebAuthnFactorInfo(
        aaguid=credential.aaguid,
        transports=list(credential.transports),
        discoverable=credential.discoverable,
        backup_eligible=credential.backup_eligible,
        backed_up=credential.backed_up,
        attestation_trusted=credential.attestation_trusted,
        hardware_bound=services.webauthn.hardware_bound(credential),
        suspected_clone_at=credential.suspected_clone_at,
    )


def www_authenticate(requirement: Requirement, reasons: tuple[str, ...]) -> str:
    """The RFC 9470 challenge a resource server sends for this requirement."""
    description = "; ".join(reasons) or "A stronger authentication is required"
    # Header values are ASCII: a policy author's "Überweisung" must not break the header.
    printable = "".join(c if " " <= c <= "~" else "?" for c in description)
    return format_www_authenticate(
        StepUpChallenge(
            acr_values=(requirement.acr.acr,),
            max_age=requirement.max_age,
            error_description=printable[:200],
        )
    )


_bearer = HTTPBearer(
    auto_error=False,
    scheme_name="apiKey",
    description="An API key created with `stepguard keys create`.",
)


async def _api_key(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> ApiKey:
    """The calling application, from ``Authorization: Bearer <api key>``."""
    if credentials is None or not credentials.credentials.strip():
        raise UnauthenticatedError()
    services: Services = request.app.state.services
    return await services.api_keys.authenticate(credentials.credentials.strip())


Caller = Annotated[ApiKey, Depends(_api_key)]
# Every id in a path: the same grammar as ids in bodies, so the schema says what is refused.
PathId = Annotated[str, Path(pattern=IDENTIFIER_REGEX)]


def build_app(
    services: Services,
    *,
    metrics: Metrics,
    max_body_bytes: int,
    pages: PagesConfig | None = None,
    forward_auth: ForwardAuthConfig | None = None,
    oidc: OidcService | None = None,
    flow_starts_per_minute: int = 60,
) -> FastAPI:
    pages = pages or PagesConfig(public_url="http://127.0.0.1:8000")
    app = FastAPI(
        title="StepGuard",
        version=__version__,
        summary="Step-up authentication decisions, challenges and factors.",
        openapi_url="/openapi.json",
        docs_url="/docs",
        redoc_url=None,
    )
    install_error_handlers(app)

    app.state.services = services
    v1 = APIRouter(prefix="/v1", responses=ERRORS)

    # --- subjects -----------------------------------------------------------------------

    @v1.put("/subjects/{subject_id}", response_model=SubjectOut, tags=["subjects"])
    async def put_subject(subject_id: PathId, body: SubjectIn, caller: Caller) -> SubjectOut:
        subject = await services.subjects.put(
            subject_id,
            email=body.email,
            phone=body.phone,
            groups=tuple(body.groups),
            actor=caller.id,
        )
        return _subject_out(subject)

    @v1.get("/subjects/{subject_id}", response_model=SubjectOut, tags=["subjects"])
    async def get_subject(subject_id: PathId, caller: Caller) -> SubjectOut:
        return _subject_out(await services.subjects.get(subject_id))

    @v1.delete("/subjects/{subject_id}", status_code=204, tags=["subjects"])
    async def delete_subject(subject_id: PathId, caller: Caller) -> Response:
        await services.subjects.delete(subject_id, actor=caller.id)
        return Response(status_code=204)

    # --- sessions -----------------------------------------------------------------------

    @v1.post("/sessions", response_model=SessionOut, status_code=201, tags=["sessions"])
    async def create_session(body: SessionIn, caller: Caller) -> SessionOut:
        session, assurance = await services.sessions.create(
            subject_id=body.subject_id,
            amr=body.amr,
            ip=body.ip,
            user_agent=body.user_agent,
            ttl_seconds=body.ttl_seconds,
            actor=caller.id,
            device_id=body.device_id,
        )
        return _session_out(session, assurance)

    @v1.get("/sessions/{session_id}", response_model=SessionOut, tags=["sessions"])
    async def get_session(session_id: PathId, caller: Caller) -> SessionOut:
        return _session_out(*await services.sessions.get(session_id))

    @v1.delete("/sessions/{session_id}", status_code=204, tags=["sessions"])
    async def revoke_session(session_id: PathId, caller: Caller) -> Response:
        await services.sessions.revoke(session_id, actor=caller.id)
        return Response(status_code=204)

    # --- decisions ----------------------------------------------------------------------

    @v1.post("/decisions", response_model=DecisionOut, tags=["decisions"])
    async def decide(body: DecisionIn, caller: Caller) -> DecisionOut:
        result = await services.decisions.decide(
            DecisionRequest(
                session_id=body.session_id,
                action=body.action,
                resource=body.resource,
                context=body.context,
                ip=body.ip,
                user_agent=body.user_agent,
                grant=body.grant,
                device_id=body.device_id,
                challenge_id=body.challenge_id,
            ),
            actor=caller.id,
        )
        decision = result.decision
        risk = RiskOut(
            score=result.risk.score,
            level=result.risk.level.label,
            reasons=list(result.risk.reasons),
            signals=[
                SignalOut(name=s.name, value=s.value, contribution=s.contribution, reason=s.reason)
                for s in result.risk.signals
            ],
        )
        if isinstance(decision, StepUp):
            return DecisionOut(
                decision="step_up",
                rule=decision.rule,
                reasons=list(decision.reasons),
                risk=risk,
                requirement=_requirement_out(decision.requirement),
                challenge=(
                    ChallengeRef(
                        id=result.challenge.id,
                        expires_at=result.challenge.expires_at,
                        page_url=(
                            pages.page_url(
                                f"/challenge/{result.challenge.id}",
                                result.page_link.token.reveal(),
                            )
                            if result.page_link
                            else None
                        ),
                    )
                    if result.challenge
                    else None
                ),
                www_authenticate=www_authenticate(decision.requirement, decision.reasons),
            )
        return DecisionOut(
            decision="allow" if isinstance(decision, Allow) else "deny",
            rule=decision.rule,
            reasons=list(decision.reasons),
            risk=risk,
        )

    # --- challenges ---------------------------------------------------------------------

    @v1.get("/challenges/{challenge_id}", response_model=ChallengeOut, tags=["challenges"])
    async def get_challenge(challenge_id: PathId, caller: Caller) -> ChallengeOut:
        view = await services.challenges.describe(challenge_id)
        challenge = view.challenge
        return ChallengeOut(
            id=challenge.id,
            status=view.status.value,
            action=challenge.action,
            summary=challenge.summary,
            requirement=_requirement_out(challenge.requirement),
            factors=[FactorBrief(id=f.id, type=f.type.value, label=f.label) for f in view.factors],
            expires_at=challenge.expires_at,
        )

    @v1.post(
        "/challenges/{challenge_id}/verifications",
        response_model=VerificationOut,
        tags=["challenges"],
    )
    async def verify(
        challenge_id: PathId, body: VerificationIn | WebAuthnVerificationIn, caller: Caller
    ) -> VerificationOut:
        if isinstance(body, WebAuthnVerificationIn):
            verified = await services.verification.verify_webauthn(
                challenge_id, credential=body.credential, factor_id=body.factor_id, actor=caller.id
            )
        else:
            verified = await services.verification.verify(
                challenge_id, factor_id=body.factor_id, code=body.code, actor=caller.id
            )
        return VerificationOut(
            status="satisfied",
            session=_session_out(verified.session, verified.assurance),
            grant=verified.grant,
            grant_expires_at=verified.grant_expires_at,
        )

    # --- factors ------------------------------------------------------------------------

    @v1.get("/subjects/{subject_id}/factors", response_model=FactorList, tags=["factors"])
    async def list_factors(subject_id: PathId, caller: Caller) -> FactorList:
        factors = await services.factors.list(subject_id)
        credentials = await services.webauthn.credentials(subject_id)
        return FactorList(
            factors=[
                _factor_out(
                    f,
                    _webauthn_info(services, credentials[f.id]) if f.id in credentials else None,
                )
                for f in factors
            ]
        )

    @v1.post(
        "/subjects/{subject_id}/factors",
        response_model=EnrollOut,
        status_code=201,
        tags=["factors"],
    )
    async def enroll(subject_id: PathId, body: EnrollIn, caller: Caller) -> EnrollOut:
        factor_type = FactorType(body.type)
        totp: TotpSpec | None = None
        webauthn: WebAuthnRegistrationRequest | None = None
        destination: str | None = None
        if isinstance(body, TotpEnrollIn):
            totp = TotpSpec(
                algorithm=OtpAlgorithm(body.algorithm), digits=body.digits, period=body.period
            )
        elif isinstance(body, WebAuthnEnrollIn):
            webauthn = WebAuthnRegistrationRequest(
                attachment=body.authenticator_attachment,
                resident_key=body.resident_key,
                require_user_verification=body.user_verification == "required",
            )
        elif isinstance(body, EmailEnrollIn):
            destination = body.address
        elif isinstance(body, SmsEnrollIn):
            destination = body.phone
        enrollment = await services.factors.enroll(
            subject_id,
            factor_type=factor_type,
            label=body.label,
            session_id=body.session_id,
            totp=totp,
            actor=caller.id,
            webauthn=webauthn,
            destination=destination,
        )
        sent = enrollment.sent
        uri = enrollment.otpauth_uri.reveal() if enrollment.otpauth_uri else None
        return EnrollOut(
            factor=_factor_out(enrollment.factor),
            otpauth_uri=uri,
            qr_svg=segno.make(uri, error="m").svg_inline(scale=4) if uri else None,
            recovery_codes=(
                [code.reveal() for code in enrollment.recovery_codes]
                if enrollment.recovery_codes
                else None
            ),
            webauthn_options=enrollment.webauthn_options,
            pairing_url=enrollment.pairing_url.reveal() if enrollment.pairing_url else None,
            delivery=(
                SentCodeOut(
                    delivery_id=sent.delivery_id,
                    channel=sent.channel.value,
                    destination=sent.destination,
                    expires_at=sent.expires_at,
                )
                if sent
                else None
            ),
        )

    @v1.post(
        "/subjects/{subject_id}/factors/{factor_id}/confirm",
        response_model=ConfirmOut,
        tags=["factors"],
    )
    async def confirm(
        subject_id: PathId,
        factor_id: PathId,
        body: ConfirmIn | WebAuthnConfirmIn,
        caller: Caller,
    ) -> ConfirmOut:
        if isinstance(body, WebAuthnConfirmIn):
            factor = await services.factors.confirm(
                subject_id,
                factor_id,
                credential=body.credential,
                session_id=body.session_id,
                actor=caller.id,
            )
            credential = (await services.webauthn.credentials(subject_id)).get(factor.id)
            if credential is not None:
                return ConfirmOut(factor=_factor_out(factor, _webauthn_info(services, credential)))
        else:
            factor = await services.factors.confirm(
                subject_id, factor_id, code=body.code, session_id=body.session_id, actor=caller.id
            )
        return ConfirmOut(factor=_factor_out(factor))

    @v1.delete("/subjects/{subject_id}/factors/{factor_id}", status_code=204, tags=["factors"])
    async def remove_factor(
        subject_id: PathId,
        factor_id: PathId,
        caller: Caller,
        session_id: Annotated[str | None, Query(pattern=IDENTIFIER_REGEX)] = None,
    ) -> Response:
        await services.factors.remove(subject_id, factor_id, session_id=session_id, actor=caller.id)
        return Response(status_code=204)

    # --- policy and audit ---------------------------------------------------------------

    @v1.post("/policy/evaluate", response_model=EvaluateOut, tags=["policy"])
    async def evaluate(body: EvaluateIn, caller: Caller) -> EvaluateOut:
        try:
            rule = services.deps.policy.current.evaluate(
                PolicyInput(
                    action=body.action,
                    resource=body.resource,
                    groups=frozenset(body.groups),
                    subject=body.subject,
                    session=body.session,
                    context=body.context,
                    request=body.request,
                    risk=body.risk,
                )
            )
        except PolicyEvaluationError as error:
            # What a real decision would do: fail closed, naming the rule.
            return EvaluateOut(
                decision="deny",
                rule=error.rule,
                reasons=[f"the policy could not be evaluated: {error.message}"],
            )
        reasons = [rule.reason or f"rule {rule.id!r} matched"]
        if rule.outcome is Outcome.STEP_UP and rule.requirement is not None:
            return EvaluateOut(
                decision="step_up",
                rule=rule.id,
                reasons=reasons,
                requirement=_requirement_out(rule.requirement),
            )
        return EvaluateOut(
            decision="allow" if rule.outcome is Outcome.ALLOW else "deny",
            rule=rule.id,
            reasons=reasons,
        )

    @v1.get("/audit", response_model=AuditPage, tags=["audit"])
    async def audit(
        caller: Caller,
        subject_id: Annotated[str | None, Query(pattern=IDENTIFIER_REGEX)] = None,
        type: Annotated[str | None, Query(max_length=64)] = None,
        since: Annotated[QueryTime | None, Query()] = None,
        until: Annotated[QueryTime | None, Query()] = None,
        after_seq: Annotated[int, Query(ge=0, le=2**63 - 1)] = 0,
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
    ) -> AuditPage:
        records = await services.audit.query(
            subject_id=subject_id,
            type=type,
            since=since,
            until=until,
            after_seq=after_seq,
            limit=limit,
        )
        events = [
            AuditEventOut(
                seq=r.seq,
                type=r.event.type,
                at=r.event.at,
                outcome=r.event.outcome,
                subject_id=r.event.subject_id,
                session_id=r.event.session_id,
                actor=r.event.actor,
                details=r.event.details,
                hash=r.hash,
            )
            for r in records
        ]
        return AuditPage(
            events=events, next_after_seq=records[-1].seq if len(records) == limit else None
        )

    app.include_router(v1)
    app.include_router(webauthn_router(services, api_key=_api_key, responses=ERRORS))
    app.include_router(risk_router(services, api_key=_api_key, responses=ERRORS))
    app.include_router(page_links_router(services, pages, caller=_api_key, responses=ERRORS))
    app.include_router(pages_router(services, pages))
    from stepguard.adapters.web.deliveries import delivery_router

    app.include_router(delivery_router(services, responses=ERRORS))
    from stepguard.adapters.web.push import push_router

    app.include_router(push_router(services, pages, responses=ERRORS))
    if oidc is not None:
        from stepguard.adapters.web.oidc import oidc_router

        app.include_router(oidc_router(oidc, pages, caller=_api_key, responses=ERRORS))

    # --- operations ---------------------------------------------------------------------

    @app.get("/healthz", response_model=Health, tags=["operations"])
    async def healthz() -> Health:
        return Health(status="ok")

    @app.get(
        "/readyz", response_model=Health, responses={503: {"model": ErrorBody}}, tags=["operations"]
    )
    async def readyz() -> Health:
        await services.deps.store.ping()
        return Health(status="ok")

    @app.get("/metrics", response_class=PlainTextResponse, tags=["operations"])
    async def prometheus_metrics() -> PlainTextResponse:
        body, content_type = metrics.render()
        return PlainTextResponse(body, media_type=content_type)

    app.add_middleware(RequestGuard, max_body_bytes=max_body_bytes)
    app.add_middleware(FlowStartLimit, per_minute=flow_starts_per_minute)
    app.add_middleware(
        ForwardAuthPaths,
        services=services,
        pages=pages,
        config=forward_auth or ForwardAuthConfig(),
    )
    return app


# --- sign-in on StepGuard itself (docs/login.md) -----------------------------------------


def install_login(
    app: FastAPI,
    services: Services,
    login: LoginService,
    *,
    pages: PagesConfig,
    upstreams: Sequence[tuple[str, str]] = (),
) -> None:
    """Add ``/login``, ``/logout`` and ``/v1/subjects/{id}/password`` to an app from
    :func:`build_app` (the composition root calls it when it wires sign-in)."""
    from stepguard.adapters.web.login import login_router, password_api_router

    app.include_router(password_api_router(services, login, caller=_api_key, responses=ERRORS))
    app.include_router(login_router(services, login, pages, upstreams=upstreams))
