"""Every error the SDK raises on purpose, in one tree.

::

    StepGuardSDKError
    ├── APIError                    the server answered with {"error": code, "message": ...}
    │   ├── InvalidRequestError     invalid_request
    │   ├── NotFoundError           not_found
    │   ├── ...                     one class per stable code (see ``error_class_for``)
    │   └── RateLimitedError        rate_limited (with ``retry_after``)
    ├── TransportError              no usable answer: connect failure, timeout, broken connection
    ├── ProtocolError               an answer the SDK cannot trust: not JSON, missing fields
    ├── InsufficientUserAuthenticationError   RFC 9470: authentication too weak or too old
    ├── InvalidTokenError           RFC 6750 invalid_token: an access token that does not verify
    └── IssuerUnavailableError      a token issuer's discovery document or keys cannot be had

A middleware that must fail closed catches :class:`StepGuardSDKError`. An error code this SDK
does not know yet (a newer server) becomes a plain :class:`APIError` with that ``code``.
"""

from __future__ import annotations

from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from stepguard.sdk.rfc9470 import StepUpChallenge

__all__ = [
    "APIError",
    "ConflictError",
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
    "SessionInvalidError",
    "StepGuardSDKError",
    "StepUpRequiredError",
    "StorageUnavailableError",
    "TransportError",
    "UnauthenticatedError",
    "VerificationFailedError",
    "error_class_for",
]

_EMPTY: Final[Mapping[str, object]] = MappingProxyType({})


class StepGuardSDKError(Exception):
    """Root of every error the SDK raises on purpose."""


class APIError(StepGuardSDKError):
    """The server refused the request with a stable error ``code``.

    ``status`` is the HTTP status, ``message`` the server's human-readable text and
    ``details`` any further fields of the error body (empty when there are none).
    """

    #: The stable code. Subclasses set it at class level; a plain ``APIError`` carries
    #: whatever code the server sent.
    code: str

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Mapping[str, object] | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.message = message
        self.details: Mapping[str, object] = MappingProxyType(dict(details)) if details else _EMPTY
        super().__init__(status, code, message)

    def __str__(self) -> str:
        return f"{self.status} {self.code}: {self.message}"

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(status={self.status!r}, code={self.code!r}, "
            f"message={self.message!r})"
        )


class InvalidRequestError(APIError):
    """The request was malformed or semantically invalid."""

    code = "invalid_request"


class NotFoundError(APIError):
    """The subject, session, challenge or factor does not exist."""

    code = "not_found"


class ConflictError(APIError):
    """The resource is in a state that does not allow the operation."""

    code = "conflict"


class UnauthenticatedError(APIError):
    """The API key is missing, unknown or revoked (the caller, not the end user)."""

    code = "unauthenticated"


class StepUpRequiredError(APIError):
    """Managing factors needs a session that passed a step-up within the last 5 minutes."""

    code = "step_up_required"


class VerificationFailedError(APIError):
    """The code did not verify. One opaque error for every reason, by design."""

    code = "verification_failed"


class SessionInvalidError(APIError):
    """The session does not exist, has expired or was revoked."""

    code = "session_invalid"


class PolicyInvalidError(APIError):
    """The policy could not be loaded or validated."""

    code = "policy_invalid"


class PolicyEvaluationFailedError(APIError):
    """A rule failed at evaluation time; the server failed closed."""

    code = "policy_evaluation_failed"


class StorageUnavailableError(APIError):
    """The server's store is unavailable. Retrying later may help."""

    code = "storage_unavailable"


class InternalServerError(APIError):
    """The server hit an unexpected error."""

    code = "internal_error"


class PayloadTooLargeError(APIError):
    """The request body exceeded the server's limit."""

    code = "payload_too_large"


class MethodNotAllowedError(APIError):
    """The endpoint does not support this HTTP method."""

    code = "method_not_allowed"


class RateLimitedError(APIError):
    """Too many requests. ``retry_after`` is the server's hint in seconds, if it sent one."""

    code = "rate_limited"

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        *,
        details: Mapping[str, object] | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(status, code, message, details=details)
        self.retry_after = retry_after


class TransportError(StepGuardSDKError):
    """No usable answer arrived: the connection failed, timed out or broke.

    The request may or may not have reached the server. Callers that guard an action must
    treat this as "not allowed".
    """


class ProtocolError(StepGuardSDKError):
    """The server's answer cannot be trusted: not JSON, not the documented shape, or missing a
    required field. ``status`` is the HTTP status of that answer."""

    def __init__(self, message: str, *, status: int | None = None) -> None:
        self.status = status
        super().__init__(message)


class InsufficientUserAuthenticationError(StepGuardSDKError):
    """RFC 9470 ``insufficient_user_authentication``: the caller's authentication is too weak
    or too old for this request. ``challenge`` says what would be enough (``acr_values``,
    ``max_age``)."""

    code = "insufficient_user_authentication"

    def __init__(self, challenge: StepUpChallenge, message: str | None = None) -> None:
        self.challenge = challenge
        super().__init__(
            message or challenge.error_description or "a different authentication level is required"
        )


class InvalidTokenError(StepGuardSDKError):
    """RFC 6750 ``invalid_token``: the access token is malformed, expired, not for this
    audience, not from the expected issuer, or its signature does not verify. The message
    is safe to show to the caller; it never contains the token."""

    code = "invalid_token"


class IssuerUnavailableError(StepGuardSDKError):
    """The token issuer's discovery document or signing keys could not be fetched or
    parsed, so no token can be verified now (callers must refuse, not allow)."""

    code = "issuer_unavailable"


_BY_CODE: Final[Mapping[str, type[APIError]]] = MappingProxyType(
    {
        cls.code: cls
        for cls in (
            InvalidRequestError,
            NotFoundError,
            ConflictError,
            UnauthenticatedError,
            StepUpRequiredError,
            VerificationFailedError,
            SessionInvalidError,
            PolicyInvalidError,
            PolicyEvaluationFailedError,
            StorageUnavailableError,
            InternalServerError,
            PayloadTooLargeError,
            MethodNotAllowedError,
            RateLimitedError,
        )
    }
)


def error_class_for(code: str) -> type[APIError]:
    """The class for a stable error code; :class:`APIError` itself for codes this SDK does not
    know (a newer server), so callers can still read ``code``."""
    return _BY_CODE.get(code, APIError)
