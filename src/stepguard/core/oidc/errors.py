"""OAuth 2.0 and OpenID Connect protocol errors, each with its wire ``error`` code.

They belong to the one error tree (``StepGuardError``); ``code`` is ``oidc.<error>``, the
``error`` attribute is what the protocol puts on the wire. ``redirect`` says whether the
error may be sent to the client's redirect URI: never before the client and its redirect
URI are known to match (RFC 6749 section 4.1.2.1).
"""

from __future__ import annotations

from typing import ClassVar

from stepguard.core.errors import StepGuardError


class OAuthError(StepGuardError):
    code: ClassVar[str] = "oidc.invalid_request"
    error: ClassVar[str] = "invalid_request"
    default_message: ClassVar[str] = "The request is invalid."
    redirect: ClassVar[bool] = True


class OidcInvalidRequestError(OAuthError):
    pass


class InvalidClientRequestError(OAuthError):
    """Unknown client or redirect URI that does not match: shown to the user, not redirected."""

    code = "oidc.invalid_client_request"
    default_message = "The client or its redirect URI is not registered."
    redirect = False


class InvalidClientError(OAuthError):
    code = "oidc.invalid_client"
    error = "invalid_client"
    default_message = "Client authentication failed."


class InvalidGrantError(OAuthError):
    code = "oidc.invalid_grant"
    error = "invalid_grant"
    default_message = "The grant is invalid, expired, used or issued to another client."


class UnauthorizedClientError(OAuthError):
    code = "oidc.unauthorized_client"
    error = "unauthorized_client"
    default_message = "The client may not use this grant."


class UnsupportedResponseTypeError(OAuthError):
    code = "oidc.unsupported_response_type"
    error = "unsupported_response_type"
    default_message = "Only response_type=code is supported."


class UnsupportedGrantTypeError(OAuthError):
    code = "oidc.unsupported_grant_type"
    error = "unsupported_grant_type"
    default_message = "Unsupported grant_type."


class InvalidScopeError(OAuthError):
    code = "oidc.invalid_scope"
    error = "invalid_scope"
    default_message = "The scope is invalid or not allowed for this client."


class AccessDeniedError(OAuthError):
    code = "oidc.access_denied"
    error = "access_denied"
    default_message = "The request was denied."


class LoginRequiredError(OAuthError):
    code = "oidc.login_required"
    error = "login_required"
    default_message = "The user must sign in."


class InteractionRequiredError(OAuthError):
    code = "oidc.interaction_required"
    error = "interaction_required"
    default_message = "The user must interact (step-up or consent)."


class ConsentRequiredError(OAuthError):
    code = "oidc.consent_required"
    error = "consent_required"
    default_message = "The user must consent."


class UnmetAuthenticationRequirementsError(OAuthError):
    code = "oidc.unmet_authentication_requirements"
    error = "unmet_authentication_requirements"
    default_message = "The requested authentication level cannot be met."


class InvalidTokenError(OAuthError):
    code = "oidc.invalid_token"
    error = "invalid_token"
    default_message = "The access token is invalid."
    redirect = False
