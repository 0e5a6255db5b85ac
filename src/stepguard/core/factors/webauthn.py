"""The WebAuthn recipe (W3C Web Authentication Level 3) over py_webauthn.

py_webauthn does the ceremonies' checks (client data type, challenge, origin, rpIdHash, UP,
UV, attestation statement, signature). This module adds what a relying party decides on
top, with time and randomness as parameters:

- the relying party's configuration with safe floors (:class:`RelyingParty`);
- options with challenges from the caller (the ``Rng`` port), never the library's own;
- whether an attestation chains to the operator's roots *at* ``now`` (the library's chain
  check reads the system clock and silently passes without roots, so it is not used for the
  trust decision), and that the attestation certificate names the credential's AAGUID;
- the signature counter: the library's check is kept out of the way (it cannot tell a
  regression from another failure) and done here after the signature verified, so only the
  key's holder can get a credential marked as cloned (:class:`SignCountRegressionError`).

Every failure raises :class:`~stepguard.core.errors.InvalidCredentialError` whose message
says why (for the audit log, never for callers).
"""

from __future__ import annotations

import ipaddress
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Literal
from urllib.parse import urlsplit

from cryptography import x509
from OpenSSL import crypto as openssl
from webauthn import (
    base64url_to_bytes,
    generate_authentication_options,
    generate_registration_options,
    verify_authentication_response,
    verify_registration_response,
)
from webauthn.helpers import (
    parse_attestation_object,
    parse_authentication_credential_json,
    parse_client_data_json,
    parse_registration_credential_json,
)
from webauthn.helpers.options_to_json_dict import options_to_json_dict
from webauthn.helpers.structs import (
    AttestationConveyancePreference,
    AttestationFormat,
    AuthenticationCredential,
    AuthenticatorAttachment,
    AuthenticatorSelectionCriteria,
    AuthenticatorTransport,
    PublicKeyCredentialDescriptor,
    RegistrationCredential,
    ResidentKeyRequirement,
    UserVerificationRequirement,
)

from stepguard.core.errors import InvalidCredentialError, SignCountRegressionError

__all__ = [
    "CHALLENGE_BYTES",
    "USER_HANDLE_BYTES",
    "CredentialRef",
    "RelyingParty",
    "VerifiedAssertion",
    "VerifiedRegistration",
    "assertion_credential_id",
    "authentication_options",
    "client_challenge",
    "is_hardware_bound",
    "registration_options",
    "verify_assertion",
    "verify_registration",
]

CHALLENGE_BYTES = 32
USER_HANDLE_BYTES = 32
MIN_CHALLENGE_BYTES = 16  # WebAuthn section 13.4.3: at least 16 random bytes
# FIDO's id-fido-gen-ce-aaguid: an attestation certificate's AAGUID (WebAuthn 8.2.1).
AAGUID_EXTENSION = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")
_MAX_REASON = 200

Attachment = Literal["platform", "cross-platform"]
ResidentKey = Literal["required", "preferred", "discouraged"]


def _reason(error: BaseException) -> str:
    text = str(error) or type(error).__name__
    return text[:_MAX_REASON]


def _is_ip_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def _valid_origin(origin: str) -> bool:
    try:
        parts = urlsplit(origin)
        parts.port  # noqa: B018 - raises ValueError for a malformed port
    except ValueError:
        return False
    if parts.path or parts.query or parts.fragment or parts.username or not parts.hostname:
        return False
    if origin != f"{parts.scheme}://{parts.netloc}" or parts.netloc != parts.netloc.lower():
        return False
    return parts.scheme == "https" or (parts.scheme == "http" and parts.hostname == "localhost")


@dataclass(frozen=True, slots=True, kw_only=True)
class RelyingParty:
    """Who StepGuard is to authenticators, and whom it trusts.

    ``origins`` are the exact origins the browser may report (scheme, host, port).
    ``hardware_aaguids`` (lower-case, dashed) and ``attestation_roots`` (PEM certificates)
    decide which credentials count as hardware-bound: both must agree.
    """

    rp_id: str = "localhost"
    rp_name: str = "StepGuard"
    origins: tuple[str, ...] = ("http://localhost:8000",)
    timeout_seconds: int = 300
    hardware_aaguids: frozenset[str] = frozenset()
    attestation_roots: tuple[bytes, ...] = ()
    _roots: tuple[openssl.X509, ...] = field(default=(), init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not self.rp_id or self.rp_id != self.rp_id.strip().lower():
            raise ValueError("the WebAuthn rp id must be a non-empty lower-case host name")
        if _is_ip_address(self.rp_id):
            raise ValueError(
                f"the WebAuthn rp id {self.rp_id!r} is an IP address, which browsers refuse: "
                "use a host name (http://localhost for local use)"
            )
        if not self.rp_name:
            raise ValueError("the WebAuthn rp name must not be empty")
        if not self.origins:
            raise ValueError("at least one WebAuthn origin is required")
        for origin in self.origins:
            if not _valid_origin(origin):
                raise ValueError(
                    f"WebAuthn origin {origin!r} must be https://host[:port] "
                    "(http only for localhost), without a path or trailing slash"
                )
        if not 10 <= self.timeout_seconds <= 3600:
            raise ValueError("the WebAuthn timeout must be 10 to 3600 seconds")
        normalized = frozenset(a.strip().lower() for a in self.hardware_aaguids)
        object.__setattr__(self, "hardware_aaguids", normalized)
        roots: list[openssl.X509] = []
        for pem in self.attestation_roots:
            try:
                roots.append(openssl.X509.from_cryptography(x509.load_pem_x509_certificate(pem)))
            except ValueError as error:
                raise ValueError(f"an attestation root is not a PEM certificate: {error}") from None
        object.__setattr__(self, "_roots", tuple(roots))

    @property
    def wants_attestation(self) -> bool:
        """Ask authenticators for attestation only when the operator can check it."""
        return bool(self._roots)


@dataclass(frozen=True, slots=True, kw_only=True)
class CredentialRef:
    """A registered credential as options name it (``excludeCredentials``,
    ``allowCredentials``)."""

    credential_id: bytes
    transports: tuple[str, ...] = ()


def _descriptors(refs: Sequence[CredentialRef]) -> list[PublicKeyCredentialDescriptor]:
    known = {t.value for t in AuthenticatorTransport}
    return [
        PublicKeyCredentialDescriptor(
            id=ref.credential_id,
            transports=[AuthenticatorTransport(t) for t in ref.transports if t in known] or None,
        )
        for ref in refs
    ]


def _check_challenge(challenge: bytes) -> None:
    if len(challenge) < MIN_CHALLENGE_BYTES:
        raise ValueError(f"a WebAuthn challenge needs at least {MIN_CHALLENGE_BYTES} bytes")


def registration_options(
    rp: RelyingParty,
    *,
    challenge: bytes,
    user_handle: bytes,
    user_name: str,
    exclude: Sequence[CredentialRef],
    attachment: Attachment | None = None,
    resident_key: ResidentKey = "preferred",
    require_user_verification: bool = True,
) -> dict[str, Any]:
    """``PublicKeyCredentialCreationOptions`` as JSON (what ``options_to_json`` gives),
    with the ``credProps`` extension so the browser says whether the key is discoverable."""
    _check_challenge(challenge)
    options = generate_registration_options(
        rp_id=rp.rp_id,
        rp_name=rp.rp_name,
        user_id=user_handle,
        user_name=user_name,
        challenge=challenge,
        timeout=rp.timeout_seconds * 1000,
        attestation=(
            AttestationConveyancePreference.DIRECT
            if rp.wants_attestation
            else AttestationConveyancePreference.NONE
        ),
        authenticator_selection=AuthenticatorSelectionCriteria(
            authenticator_attachment=AuthenticatorAttachment(attachment) if attachment else None,
            resident_key=ResidentKeyRequirement(resident_key),
            user_verification=(
                UserVerificationRequirement.REQUIRED
                if require_user_verification
                else UserVerificationRequirement.PREFERRED
            ),
        ),
        exclude_credentials=_descriptors(exclude),
    )
    data = dict(options_to_json_dict(options))
    data["extensions"] = {"credProps": True}
    return data


def authentication_options(
    rp: RelyingParty,
    *,
    challenge: bytes,
    allow: Sequence[CredentialRef],
    require_user_verification: bool,
) -> dict[str, Any]:
    """``PublicKeyCredentialRequestOptions`` as JSON (what ``options_to_json`` gives)."""
    _check_challenge(challenge)
    if not allow:
        raise ValueError("an assertion needs at least one allowed credential")
    options = generate_authentication_options(
        rp_id=rp.rp_id,
        challenge=challenge,
        timeout=rp.timeout_seconds * 1000,
        allow_credentials=_descriptors(allow),
        user_verification=(
            UserVerificationRequirement.REQUIRED
            if require_user_verification
            else UserVerificationRequirement.PREFERRED
        ),
    )
    return dict(options_to_json_dict(options))


def client_challenge(credential: Mapping[str, Any]) -> bytes:
    """The challenge the browser signed over (``response.clientDataJSON``), to find the
    ceremony it answers. Checked again by the verification itself."""
    try:
        response = credential["response"]
        client_data = parse_client_data_json(base64url_to_bytes(response["clientDataJSON"]))
    except Exception as error:  # any malformed input is an invalid credential
        raise InvalidCredentialError(f"malformed clientDataJSON: {_reason(error)}") from None
    return bytes(client_data.challenge)


def assertion_credential_id(credential: Mapping[str, Any]) -> bytes:
    """The credential id an assertion names (``rawId``, which must equal ``id``)."""
    parsed = _parse_assertion(credential)
    return bytes(parsed.raw_id)


def _parse_assertion(credential: Mapping[str, Any]) -> AuthenticationCredential:
    try:
        parsed = parse_authentication_credential_json(dict(credential))
    except Exception as error:
        raise InvalidCredentialError(f"malformed assertion: {_reason(error)}") from None
    if not parsed.raw_id:
        raise InvalidCredentialError("malformed assertion: empty credential id")
    return parsed


def _parse_registration(credential: Mapping[str, Any]) -> RegistrationCredential:
    try:
        return parse_registration_credential_json(dict(credential))
    except Exception as error:
        raise InvalidCredentialError(f"malformed registration: {_reason(error)}") from None


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedRegistration:
    """A verified new credential, with what the relying party stores about it."""

    credential_id: bytes
    public_key: bytes
    sign_count: int
    aaguid: str
    attestation_format: str
    attestation_trusted: bool
    transports: tuple[str, ...]
    backup_eligible: bool
    backed_up: bool
    discoverable: bool
    user_verified: bool


def verify_registration(
    rp: RelyingParty,
    *,
    credential: Mapping[str, Any],
    expected_challenge: bytes,
    require_user_verification: bool,
    resident_key: ResidentKey | None,
    now: datetime,
) -> VerifiedRegistration:
    """Verify ``navigator.credentials.create()``'s response (its ``toJSON()``).

    Any attestation format py_webauthn verifies is accepted; ``attestation_trusted`` only
    for a ``packed`` statement with an x5c chain to one of ``rp.attestation_roots`` at
    ``now`` whose certificate, if it names an AAGUID, names this one.
    """
    parsed = _parse_registration(credential)
    try:
        verified = verify_registration_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            require_user_presence=True,
            require_user_verification=require_user_verification,
        )
        attestation = parse_attestation_object(verified.attestation_object)
        fmt = AttestationFormat(attestation.fmt)
    except Exception as error:
        raise InvalidCredentialError(f"registration: {_reason(error)}") from None
    flags = attestation.auth_data.flags
    trusted = False
    if fmt is AttestationFormat.PACKED and attestation.att_stmt.x5c:
        trusted = _chains_to_roots(rp, attestation.att_stmt.x5c, now=now)
        _check_certificate_aaguid(attestation.att_stmt.x5c[0], verified.aaguid)
    transports = tuple(t.value for t in parsed.response.transports or ())
    return VerifiedRegistration(
        credential_id=bytes(verified.credential_id),
        public_key=bytes(verified.credential_public_key),
        sign_count=verified.sign_count,
        aaguid=verified.aaguid.lower(),
        attestation_format=fmt.value,
        attestation_trusted=trusted,
        transports=tuple(dict.fromkeys(transports)),
        backup_eligible=bool(flags.be),
        backed_up=bool(flags.bs),
        discoverable=_discoverable(credential, resident_key),
        user_verified=verified.user_verified,
    )


def _discoverable(credential: Mapping[str, Any], resident_key: ResidentKey | None) -> bool:
    """The ``credProps`` extension's answer; without one, only ``required`` guarantees it."""
    results = credential.get("clientExtensionResults")
    if isinstance(results, Mapping):
        props = results.get("credProps")
        if isinstance(props, Mapping) and isinstance(props.get("rk"), bool):
            return bool(props["rk"])
    return resident_key == "required"


def _chains_to_roots(rp: RelyingParty, x5c: Sequence[bytes], *, now: datetime) -> bool:
    """Whether ``x5c`` (leaf first) chains to a configured root, with validity at ``now``."""
    if not rp._roots:
        return False
    try:
        store = openssl.X509Store()
        for root in rp._roots:
            store.add_cert(root)
        store.set_time(now)
        leaf = openssl.X509.from_cryptography(x509.load_der_x509_certificate(x5c[0]))
        chain = [openssl.X509.from_cryptography(x509.load_der_x509_certificate(c)) for c in x5c[1:]]
        openssl.X509StoreContext(store, leaf, chain).verify_certificate()
    except (openssl.X509StoreContextError, openssl.Error, ValueError):
        return False
    return True


def _check_certificate_aaguid(leaf_der: bytes, aaguid: str) -> None:
    try:
        certificate = x509.load_der_x509_certificate(leaf_der)
        extension = certificate.extensions.get_extension_for_oid(AAGUID_EXTENSION)
    except x509.ExtensionNotFound:
        return
    except ValueError as error:
        raise InvalidCredentialError(f"attestation certificate: {_reason(error)}") from None
    value = extension.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    # An OCTET STRING holding the 16 AAGUID bytes: 0x04 0x10 + 16 bytes.
    if len(raw) != 18 or raw[:2] != b"\x04\x10" or raw[2:].hex() != aaguid.replace("-", ""):
        raise InvalidCredentialError("attestation certificate names another AAGUID")


@dataclass(frozen=True, slots=True, kw_only=True)
class VerifiedAssertion:
    """A verified assertion: the new counter and flags to store, UV for the level."""

    credential_id: bytes
    new_sign_count: int
    user_verified: bool
    backed_up: bool


def verify_assertion(
    rp: RelyingParty,
    *,
    credential: Mapping[str, Any],
    expected_challenge: bytes,
    public_key: bytes,
    stored_sign_count: int,
    user_handle: bytes,
    require_user_verification: bool,
) -> VerifiedAssertion:
    """Verify ``navigator.credentials.get()``'s response against a stored credential.

    Raises ``SignCountRegressionError`` (an ``InvalidCredentialError``) only for a correctly
    signed assertion whose counter did not increase while either counter is non-zero.
    """
    parsed = _parse_assertion(credential)
    returned_handle = parsed.response.user_handle
    if returned_handle and bytes(returned_handle) != user_handle:
        raise InvalidCredentialError("assertion: user handle does not match the credential")
    try:
        verified = verify_authentication_response(
            credential=parsed,
            expected_challenge=expected_challenge,
            expected_rp_id=rp.rp_id,
            expected_origin=list(rp.origins),
            credential_public_key=public_key,
            # The counter is checked below, once the signature is known to be good.
            credential_current_sign_count=0,
            require_user_verification=require_user_verification,
        )
    except Exception as error:
        raise InvalidCredentialError(f"assertion: {_reason(error)}") from None
    new = verified.new_sign_count
    if (new > 0 or stored_sign_count > 0) and new <= stored_sign_count:
        raise SignCountRegressionError(
            f"assertion: sign count {new} is not above the stored {stored_sign_count}"
        )
    return VerifiedAssertion(
        credential_id=bytes(verified.credential_id),
        new_sign_count=new,
        user_verified=verified.user_verified,
        backed_up=verified.credential_backed_up,
    )


def is_hardware_bound(
    rp: RelyingParty, *, aaguid: str, attestation_trusted: bool, backup_eligible: bool
) -> bool:
    """Hardware-bound: an allow-listed AAGUID, attested to a configured root, and not a
    synced (backup-eligible) credential. Decided per assertion, so allow-list changes apply
    to existing credentials."""
    return attestation_trusted and not backup_eligible and aaguid.lower() in rp.hardware_aaguids
