"""Wire format of the WebAuthn parts of API v1 (enrollment is in ``schemas.EnrollIn``).

A credential travels as the browser's ``PublicKeyCredential.toJSON()`` object (base64url
binary fields). Its shape is checked here, everything else by the verification, which turns
any defect into the one ``verification_failed``.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import AfterValidator, Field

from stepguard.adapters.web.schemas import Identifier, Out, Strict

_REQUIRED = ("id", "rawId", "type", "response")


def _credential_shape(value: dict[str, Any]) -> dict[str, Any]:
    # Nothing here is stored as JSON (only values the verification extracted), so unlike a
    # transaction context it needs no I-JSON number checks.
    for key in ("id", "rawId", "type"):
        if not isinstance(value.get(key), str):
            raise ValueError(f"{key} must be a string")
    if not isinstance(value.get("response"), dict):
        raise ValueError("response must be an object")
    return value


PublicKeyCredentialJSON = Annotated[
    dict[str, Any],
    AfterValidator(_credential_shape),
    Field(
        description="The browser's PublicKeyCredential.toJSON(): RegistrationResponseJSON "
        "to confirm a factor, AuthenticationResponseJSON to answer a challenge.",
        json_schema_extra={
            "required": list(_REQUIRED),
            "properties": {
                "id": {"type": "string"},
                "rawId": {"type": "string"},
                "type": {"type": "string"},
                "response": {"type": "object"},
            },
        },
    ),
]


class WebAuthnConfirmIn(Strict):
    """Confirm a pending WebAuthn factor with the browser's registration response."""

    credential: PublicKeyCredentialJSON
    session_id: Identifier | None = None


class WebAuthnVerificationIn(Strict):
    """Answer a challenge with a WebAuthn assertion; its credential id names the factor."""

    credential: PublicKeyCredentialJSON
    factor_id: Identifier | None = None


class AssertionOptionsIn(Strict):
    factor_id: Identifier | None = Field(
        default=None, description="Offer only this WebAuthn factor's credential."
    )


class AssertionOptionsOut(Out):
    options: dict[str, Any] = Field(
        description="PublicKeyCredentialRequestOptions as JSON (base64url binary fields), "
        "for PublicKeyCredential.parseRequestOptionsFromJSON()."
    )


__all__ = [
    "AssertionOptionsIn",
    "AssertionOptionsOut",
    "PublicKeyCredentialJSON",
    "WebAuthnConfirmIn",
    "WebAuthnVerificationIn",
]
