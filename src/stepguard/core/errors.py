"""One error tree for the whole product.

Every error carries a stable string ``code``: the wire format, the SDK and the docs reuse it.
HTTP status codes are *not* here: the web adapter maps codes to statuses.
"""

from __future__ import annotations

from typing import ClassVar


class StepGuardError(Exception):
    """Root of every error StepGuard raises on purpose."""

    code: ClassVar[str] = "internal_error"
    default_message: ClassVar[str] = "An internal error occurred."

    def __init__(self, message: str | None = None) -> None:
        self.message = message or self.default_message
        super().__init__(self.message)


class InvalidRequestError(StepGuardError):
    """The caller sent something malformed or semantically invalid."""

    code = "invalid_request"
    default_message = "The request is invalid."


class NotFoundError(StepGuardError):
    code = "not_found"
    default_message = "The resource does not exist."


class ConflictError(StepGuardError):
    code = "conflict"
    default_message = "The resource is in a state that does not allow this operation."


class UnauthenticatedError(StepGuardError):
    """The API caller (not the end user) is not authenticated."""

    code = "unauthenticated"
    default_message = "A valid API key is required."


class StepUpRequiredError(StepGuardError):
    """A management operation needs a fresh step-up first (like Kratos' session_aal2_required)."""

    code = "step_up_required"
    default_message = "This operation requires a fresh step-up with an existing factor."


class VerificationFailedError(StepGuardError):
    """One opaque failure for every way a verification can fail.

    Wrong, reused, expired, locked, unknown factor or challenge: callers cannot tell which.
    The precise reason goes to the audit log only.
    """

    code = "verification_failed"
    default_message = "The verification failed."


class SessionInvalidError(StepGuardError):
    code = "session_invalid"
    default_message = "The session does not exist, has expired or was revoked."


class PageLinkInvalidError(StepGuardError):
    """A hosted page was opened with an unknown, used or expired link, or without a valid
    browser session. One error for all of them; the reason goes to the audit log."""

    code = "page_link_invalid"
    default_message = "This link has expired."


class PolicyError(StepGuardError):
    """A policy could not be loaded or validated. The message names file, rule and field."""

    code = "policy_invalid"
    default_message = "The policy is invalid."

    def __init__(
        self,
        message: str,
        *,
        source: str = "<policy>",
        rule: str | None = None,
        field: str | None = None,
    ) -> None:
        self.source = source
        self.rule = rule
        self.field = field
        where = source
        if rule is not None:
            where += f": rule {rule!r}"
        if field is not None:
            where += f": field {field!r}"
        super().__init__(f"{where}: {message}")


class PolicyEvaluationError(StepGuardError):
    """A rule failed at evaluation time (e.g. a CEL runtime type error). Callers fail closed."""

    code = "policy_evaluation_failed"
    default_message = "The policy could not be evaluated."

    def __init__(self, message: str, *, rule: str) -> None:
        self.rule = rule
        super().__init__(f"rule {rule!r}: {message}")


class InvalidCodeError(StepGuardError):
    """A one-time or recovery code did not verify (raised by factor primitives, never shown)."""

    code = "invalid_code"
    default_message = "The code is not valid."


class InvalidCredentialError(StepGuardError):
    """A WebAuthn response did not verify (raised by the factor recipe, never shown).

    The message says why (origin, rpIdHash, challenge, flags, signature...) for the audit log.
    """

    code = "invalid_credential"
    default_message = "The WebAuthn response is not valid."


class SignCountRegressionError(InvalidCredentialError):
    """A correctly signed WebAuthn assertion whose signature counter did not increase: the
    credential may have been cloned (WebAuthn section 6.1.1)."""

    code = "sign_count_regression"
    default_message = "The authenticator's signature counter went backwards."


class RiskUnavailableError(StepGuardError):
    code = "risk_unavailable"
    default_message = "The risk assessment could not be computed."


class ConfigurationError(StepGuardError):
    """The server's own configuration is unusable (it refuses to start)."""

    code = "configuration_invalid"
    default_message = "The configuration is invalid."


class StorageUnavailableError(StepGuardError):
    code = "storage_unavailable"
    default_message = "The store is unavailable."


class DeliveryFailedError(StepGuardError):
    """A code or notice could not be handed to the email or SMS provider.

    The code that was to be sent is invalidated; the message never names the provider's
    answer or the code. The user may pick another enrolled factor (no silent fall-back).
    """

    code = "delivery_failed"
    default_message = "The code could not be delivered. Try again later or use another factor."


class DeliveryRateLimitedError(StepGuardError):
    """Too many codes were sent recently. The same answer whichever limit (subject,
    destination, global) refused, so it reveals nothing about a destination."""

    code = "delivery_rate_limited"
    default_message = "Too many codes were sent recently. Try again later or use another factor."


class ForwardedRequestError(InvalidRequestError):
    """A forward-auth check whose original request (the proxy's headers) is missing,
    malformed or ambiguous. Answered 400, never 200."""

    code = "forwarded_request_invalid"
    default_message = "The forwarded request is invalid."


class PushRateLimitedError(StepGuardError):
    """Push approval is not available for the subject now: too many outstanding or recent
    pushes, or push is paused after unanswered or denied ones. One answer for every cause;
    the cause goes to the audit log. The user may pick another factor."""

    code = "push_rate_limited"
    default_message = "Push approval is not available right now. Use another factor."


class PasswordRejectedError(InvalidRequestError):
    """A new password that the password policy refuses (too short, too long, equal to the
    account's email or id). The message says which rule, to the administrator setting it."""

    code = "password_rejected"
    default_message = "The password does not meet the password policy."


class LoginFailedError(StepGuardError):
    """One answer for every failed sign-in on StepGuard: unknown account, wrong password, no
    password, locked account, too many attempts from the address, a passkey that did not
    verify. The precise reason goes to the audit log (``login.failed``) only."""

    code = "login_failed"
    default_message = "That email or password is not right."
