"""The StepGuard SDK: typed clients for the HTTP API v1, and the RFC 9470 challenge helper.

::

    from stepguard.sdk import StepGuardClient

    with StepGuardClient("https://stepguard.internal", api_key) as sg:
        decision = sg.decide(session_id, "payments.transfer", context={"amount": 5000})
        if decision.step_up_required:
            ...  # send the user to complete decision.challenge

Framework integrations (imported on demand, each needing its extra):
:mod:`stepguard.sdk.starlette` (Starlette, FastAPI), :mod:`stepguard.sdk.flask`,
:mod:`stepguard.sdk.django`; their shared core is :mod:`stepguard.sdk.guard`, and bearer-token
verification (RFC 9068, joserfc) is :mod:`stepguard.sdk.rfc9068`. :class:`StepUpAuth` is the
caller's side of RFC 9470 for httpx.

Every failure raises a :class:`StepGuardSDKError` subclass. The SDK needs only the standard
library and httpx, imports no server code, and does nothing at import time.
"""

from stepguard.sdk._client import DEFAULT_TIMEOUT, AsyncStepGuardClient, StepGuardClient
from stepguard.sdk._models import (
    AuditEvent,
    AuditPage,
    ChallengeFactor,
    ChallengeInfo,
    ChallengeRef,
    ChallengeStatus,
    Decision,
    DecisionKind,
    Enrollment,
    FactorInfo,
    FactorType,
    HealthStatus,
    Requirement,
    RiskSummary,
    Secret,
    SessionInfo,
    Subject,
    VerificationResult,
)
from stepguard.sdk._stepup_auth import StepUpAuth
from stepguard.sdk.errors import (
    APIError,
    ConflictError,
    InsufficientUserAuthenticationError,
    InternalServerError,
    InvalidRequestError,
    InvalidTokenError,
    IssuerUnavailableError,
    MethodNotAllowedError,
    NotFoundError,
    PayloadTooLargeError,
    PolicyEvaluationFailedError,
    PolicyInvalidError,
    ProtocolError,
    RateLimitedError,
    SessionInvalidError,
    StepGuardSDKError,
    StepUpRequiredError,
    StorageUnavailableError,
    TransportError,
    UnauthenticatedError,
    VerificationFailedError,
)
from stepguard.sdk.rfc9470 import (
    StepUpChallenge,
    format_www_authenticate,
    parse_www_authenticate,
    step_up_challenge_from_decision,
)

__all__ = [
    "DEFAULT_TIMEOUT",
    "APIError",
    "AsyncStepGuardClient",
    "AuditEvent",
    "AuditPage",
    "ChallengeFactor",
    "ChallengeInfo",
    "ChallengeRef",
    "ChallengeStatus",
    "ConflictError",
    "Decision",
    "DecisionKind",
    "Enrollment",
    "FactorInfo",
    "FactorType",
    "HealthStatus",
    "InsufficientUserAuthenticationError",
    "InternalServerError",
    "InvalidRequestError",
    "InvalidTokenError",
    "IssuerUnavailableError",
    "MethodNotAllowedError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PolicyEvaluationFailedError",
    "PolicyInvalidError",
    "ProtocolError",
    "RateLimitedError",
    "Requirement",
    "RiskSummary",
    "Secret",
    "SessionInfo",
    "SessionInvalidError",
    "StepGuardClient",
    "StepGuardSDKError",
    "StepUpAuth",
    "StepUpChallenge",
    "StepUpRequiredError",
    "StorageUnavailableError",
    "Subject",
    "TransportError",
    "UnauthenticatedError",
    "VerificationFailedError",
    "VerificationResult",
    "format_www_authenticate",
    "parse_www_authenticate",
    "step_up_challenge_from_decision",
]
