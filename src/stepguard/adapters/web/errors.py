"""Error codes to HTTP statuses, and the one error body: ``{"error", "message"}``."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from stepguard.core import errors

STATUS_BY_CODE: dict[str, int] = {
    errors.InvalidRequestError.code: 400,
    errors.ForwardedRequestError.code: 400,
    errors.VerificationFailedError.code: 403,
    errors.UnauthenticatedError.code: 401,
    errors.StepUpRequiredError.code: 403,
    errors.NotFoundError.code: 404,
    errors.SessionInvalidError.code: 404,
    errors.ConflictError.code: 409,
    errors.PageLinkInvalidError.code: 403,
    errors.PolicyError.code: 422,
    errors.PolicyEvaluationError.code: 422,
    errors.RiskUnavailableError.code: 503,
    errors.StorageUnavailableError.code: 503,
    errors.DeliveryFailedError.code: 503,
    errors.DeliveryRateLimitedError.code: 429,
    errors.PushRateLimitedError.code: 429,
}

_HTTP_CODES: dict[int, str] = {
    400: "invalid_request",
    401: "unauthenticated",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "invalid_request",
    429: "rate_limited",
}


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    all_headers = dict(headers or {})
    if status == 401:
        all_headers["WWW-Authenticate"] = "Bearer"
    return JSONResponse(
        {"error": code, "message": message}, status_code=status, headers=all_headers or None
    )


def _validation_message(exc: RequestValidationError) -> str:
    parts = []
    for error in exc.errors()[:5]:
        location = ".".join(str(p) for p in error.get("loc", ()) if p != "body")
        parts.append(f"{location or 'body'}: {error.get('msg', 'invalid')}")
    return "; ".join(parts) or "The request is invalid."


def install_error_handlers(app: FastAPI) -> None:
    async def on_stepguard_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, errors.StepGuardError)
        return error_response(STATUS_BY_CODE.get(exc.code, 500), exc.code, exc.message)

    async def on_validation_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, RequestValidationError)
        return error_response(400, "invalid_request", _validation_message(exc))

    async def on_http_error(request: Request, exc: Exception) -> JSONResponse:
        assert isinstance(exc, StarletteHTTPException)
        code = _HTTP_CODES.get(exc.status_code, "invalid_request")
        message = exc.detail or "The request failed."
        # Keep the framework's headers (a 405's Allow, RFC 9110 section 15.5.6).
        return error_response(exc.status_code, code, message, exc.headers)

    async def on_unexpected(request: Request, exc: Exception) -> JSONResponse:
        return error_response(500, "internal_error", "An internal error occurred.")

    app.add_exception_handler(errors.StepGuardError, on_stepguard_error)
    app.add_exception_handler(RequestValidationError, on_validation_error)
    app.add_exception_handler(StarletteHTTPException, on_http_error)
    app.add_exception_handler(Exception, on_unexpected)


# Sign-in on StepGuard (docs/login.md).
STATUS_BY_CODE[errors.PasswordRejectedError.code] = 400
STATUS_BY_CODE[errors.LoginFailedError.code] = 403
