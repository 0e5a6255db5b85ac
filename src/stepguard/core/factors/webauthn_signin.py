"""Usernameless passkey sign-in (WebAuthn discoverable credentials), on top of the WebAuthn
recipe in :mod:`stepguard.core.factors.webauthn`.

The relying party does not know who signs in until the assertion names its credential, so
the request options list no credentials (``allowCredentials`` empty: the authenticator
offers its discoverable credentials for the rp id) and require user verification (the
assertion is then the whole sign-in: the key and the user's PIN or biometric). The response
must carry the credential's user handle (discoverable credentials always return it), and it
must be the one stored with the credential.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from webauthn import base64url_to_bytes, generate_authentication_options
from webauthn.helpers.options_to_json_dict import options_to_json_dict
from webauthn.helpers.structs import UserVerificationRequirement

from stepguard.core.errors import InvalidCredentialError
from stepguard.core.factors.webauthn import MIN_CHALLENGE_BYTES, RelyingParty

__all__ = ["assertion_user_handle", "discoverable_options"]


def discoverable_options(rp: RelyingParty, *, challenge: bytes) -> dict[str, Any]:
    """``PublicKeyCredentialRequestOptions`` (JSON) for a usernameless sign-in: no
    ``allowCredentials``, ``userVerification: required``; ``challenge`` from the caller."""
    if len(challenge) < MIN_CHALLENGE_BYTES:
        raise ValueError(f"a challenge needs at least {MIN_CHALLENGE_BYTES} random bytes")
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=rp.timeout_seconds * 1000,
        allow_credentials=[],
        user_verification=UserVerificationRequirement.REQUIRED,
    )
    return dict(options_to_json_dict(options))


def assertion_user_handle(credential: Mapping[str, Any]) -> bytes | None:
    """The user handle an assertion returned (``response.userHandle``), ``None`` when it is
    absent or empty. Raises ``InvalidCredentialError`` when it is not base64url."""
    try:
        response = credential["response"]
        value = response.get("userHandle") if isinstance(response, Mapping) else None
        if not value:
            return None
        if not isinstance(value, str):
            raise TypeError("userHandle is not a string")
        handle = base64url_to_bytes(value)
    except (KeyError, TypeError, ValueError) as error:
        raise InvalidCredentialError(f"malformed user handle: {error}") from None
    return handle or None
