"""The StepGuard SDK: typed clients for the HTTP API v1, and the RFC 9470 challenge helper.

::

    from stepguard.sdk import StepGuardClient

    with StepGuardClient("https://stepguard.internal", api_key) as sg:
        decision = sg.decide(session_id, "payments.transfer", context={"amount": 5000})
        if decision.step_up_required:
            ...  # send the user to complete decision.challenge

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
from stepguard.sdk.errors import (
    APIError,
    ConflictError,
    InternalServerError,
    InvalidRequestError,
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
    "InternalServerError",
    "InvalidRequestError",
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
