"""A software WebAuthn authenticator and client for the tests (``cryptography`` + ``cbor2``).

It plays both the authenticator (ES256 keys, ``none`` / ``packed`` self / ``packed`` full
attestation, UP/UV/BE/BS flags, signature counter, resident keys) and the browser (client data
with type, challenge, origin and crossOrigin; the JSON that ``PublicKeyCredential.toJSON()``
gives, base64url fields). Every input a relying party checks can be made wrong on purpose:
origin, rp id, challenge, flags, counter, signature, user handle.

PyPI's ``soft-webauthn`` is not used: it pins ``fido2<2`` and never sets the UV flag.
"""

from __future__ import annotations

import base64
import copy
import hashlib
import json
import secrets
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal

import cbor2
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

Attestation = Literal["none", "packed-self", "packed"]

FLAG_UP = 0x01
FLAG_UV = 0x04
FLAG_BE = 0x08
FLAG_BS = 0x10
FLAG_AT = 0x40
COSE_ES256 = -7
AAGUID_OID = x509.ObjectIdentifier("1.3.6.1.4.1.45724.1.1.4")


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def from_b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


class ExcludedCredentialError(Exception):
    """The authenticator holds a credential named in ``excludeCredentials`` (the browser's
    ``InvalidStateError``)."""


class NoCredentialError(Exception):
    """None of ``allowCredentials`` is on this authenticator (the browser's
    ``NotAllowedError``)."""


class AttestationCA:
    """A test certificate authority that issues attestation certificates; the tests configure
    its root as a trust anchor (``root_pem``)."""

    def __init__(self, name: str = "StepGuard Test Attestation Root") -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
        self.certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(subject)
            .public_key(self.key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2045, 1, 1, tzinfo=UTC))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(self.key, hashes.SHA256())
        )

    @property
    def root_pem(self) -> bytes:
        return self.certificate.public_bytes(serialization.Encoding.PEM)

    def issue(
        self, aaguid: bytes, *, aaguid_extension: bytes | None = None
    ) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """An attestation key and its certificate (DER), FIDO-style (WebAuthn 8.2.1), naming
        ``aaguid`` in the id-fido-gen-ce-aaguid extension (or ``aaguid_extension``)."""
        key = ec.generate_private_key(ec.SECP256R1())
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.COUNTRY_NAME, "DE"),
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "StepGuard Test Keys"),
                x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Authenticator Attestation"),
                x509.NameAttribute(NameOID.COMMON_NAME, "Test Key Attestation"),
            ]
        )
        value = aaguid_extension if aaguid_extension is not None else aaguid
        certificate = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(datetime(2020, 1, 1, tzinfo=UTC))
            .not_valid_after(datetime(2040, 1, 1, tzinfo=UTC))
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.UnrecognizedExtension(AAGUID_OID, b"\x04\x10" + value), critical=False
            )
            .sign(self.key, hashes.SHA256())
        )
        return key, certificate.public_bytes(serialization.Encoding.DER)


@dataclass
class SoftCredential:
    credential_id: bytes
    private_key: ec.EllipticCurvePrivateKey
    rp_id: str
    user_handle: bytes
    resident: bool
    sign_count: int = 0


def _cose_key(public_key: ec.EllipticCurvePublicKey) -> bytes:
    numbers = public_key.public_numbers()
    return cbor2.dumps(
        {
            1: 2,  # kty: EC2
            3: COSE_ES256,  # alg
            -1: 1,  # crv: P-256
            -2: numbers.x.to_bytes(32, "big"),
            -3: numbers.y.to_bytes(32, "big"),
        }
    )


@dataclass
class SoftAuthenticator:
    """One authenticator (a security key, or a platform authenticator with ``attachment``).

    ``counter_step`` is added to a credential's counter per signature (0: a counter-less
    authenticator, as many passkey providers are).
    """

    aaguid: bytes = bytes(16)
    attestation: Attestation = "none"
    ca: AttestationCA | None = None
    user_present: bool = True
    user_verified: bool = True
    backup_eligible: bool = False
    backed_up: bool = False
    attachment: Literal["platform", "cross-platform"] = "cross-platform"
    transports: tuple[str, ...] = ("usb",)
    supports_resident_keys: bool = True
    counter_step: int = 1
    credentials: dict[bytes, SoftCredential] = field(default_factory=dict)
    aaguid_extension: bytes | None = None

    def clone(self) -> SoftAuthenticator:
        """A copy with the same keys and counters (what a cloned key would be)."""
        return copy.deepcopy(self)

    def _flags(self, *, up: bool | None, uv: bool | None, attested: bool) -> int:
        flags = 0
        if self.user_present if up is None else up:
            flags |= FLAG_UP
        if self.user_verified if uv is None else uv:
            flags |= FLAG_UV
        if self.backup_eligible:
            flags |= FLAG_BE
        if self.backed_up:
            flags |= FLAG_BS
        if attested:
            flags |= FLAG_AT
        return flags

    @staticmethod
    def _client_data(kind: str, challenge: str, origin: str, cross_origin: bool) -> bytes:
        return json.dumps(
            {"type": kind, "challenge": challenge, "origin": origin, "crossOrigin": cross_origin},
            separators=(",", ":"),
        ).encode()

    def create(
        self,
        options: dict[str, Any],
        *,
        origin: str = "http://localhost:8000",
        rp_id: str | None = None,
        up: bool | None = None,
        uv: bool | None = None,
        challenge: str | None = None,
        client_data_type: str = "webauthn.create",
        cross_origin: bool = False,
        credential_id: bytes | None = None,
    ) -> dict[str, Any]:
        """``navigator.credentials.create({publicKey: options})`` then ``toJSON()``."""
        for excluded in options.get("excludeCredentials", []):
            if from_b64url(excluded["id"]) in self.credentials:
                raise ExcludedCredentialError(excluded["id"])
        rp = rp_id or options["rp"]["id"]
        selection = options.get("authenticatorSelection", {})
        wants = selection.get("residentKey", "discouraged")
        resident = self.supports_resident_keys and wants in ("required", "preferred")
        if wants == "required" and not self.supports_resident_keys:
            raise NoCredentialError("resident keys are not supported")
        key = ec.generate_private_key(ec.SECP256R1())
        cred_id = credential_id or secrets.token_bytes(32)
        credential = SoftCredential(
            credential_id=cred_id,
            private_key=key,
            rp_id=rp,
            user_handle=from_b64url(options["user"]["id"]),
            resident=resident,
        )
        attested = (
            self.aaguid + struct.pack(">H", len(cred_id)) + cred_id + _cose_key(key.public_key())
        )
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(up=up, uv=uv, attested=True)])
            + struct.pack(">I", credential.sign_count)
            + attested
        )
        client_data = self._client_data(
            client_data_type, challenge or options["challenge"], origin, cross_origin
        )
        to_sign = auth_data + hashlib.sha256(client_data).digest()
        statement: dict[str, Any] = {}
        if self.attestation == "packed-self":
            statement = {"alg": COSE_ES256, "sig": key.sign(to_sign, ec.ECDSA(hashes.SHA256()))}
        elif self.attestation == "packed":
            assert self.ca is not None, "full packed attestation needs an AttestationCA"
            attestation_key, certificate = self.ca.issue(
                self.aaguid, aaguid_extension=self.aaguid_extension
            )
            statement = {
                "alg": COSE_ES256,
                "sig": attestation_key.sign(to_sign, ec.ECDSA(hashes.SHA256())),
                "x5c": [certificate],
            }
        fmt = "none" if self.attestation == "none" else "packed"
        attestation_object = cbor2.dumps({"fmt": fmt, "attStmt": statement, "authData": auth_data})
        self.credentials[cred_id] = credential
        extensions: dict[str, Any] = {}
        if options.get("extensions", {}).get("credProps"):
            extensions["credProps"] = {"rk": resident}
        spki = key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        return {
            "id": b64url(cred_id),
            "rawId": b64url(cred_id),
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "clientExtensionResults": extensions,
            "response": {
                "clientDataJSON": b64url(client_data),
                "attestationObject": b64url(attestation_object),
                "authenticatorData": b64url(auth_data),
                "transports": list(self.transports),
                "publicKey": b64url(spki),
                "publicKeyAlgorithm": COSE_ES256,
            },
        }

    def get(
        self,
        options: dict[str, Any],
        *,
        origin: str = "http://localhost:8000",
        rp_id: str | None = None,
        up: bool | None = None,
        uv: bool | None = None,
        sign_count: int | None = None,
        challenge: str | None = None,
        client_data_type: str = "webauthn.get",
        cross_origin: bool = False,
        credential_id: bytes | None = None,
        tamper_signature: bool = False,
        user_handle: bytes | Literal["stored"] | None = "stored",
    ) -> dict[str, Any]:
        """``navigator.credentials.get({publicKey: options})`` then ``toJSON()``.

        Uses the first allowed credential it holds (or ``credential_id``); ``sign_count``
        forces the counter the signature carries (a cloned or replaying authenticator).
        """
        if credential_id is None:
            allowed = [from_b64url(c["id"]) for c in options.get("allowCredentials", [])]
            held = [c for c in allowed if c in self.credentials]
            if not held:
                raise NoCredentialError("no allowed credential on this authenticator")
            credential_id = held[0]
        credential = self.credentials[credential_id]
        if sign_count is None:
            credential.sign_count += self.counter_step
            count = credential.sign_count
        else:
            count = sign_count
        rp = rp_id or options.get("rpId") or credential.rp_id
        auth_data = (
            hashlib.sha256(rp.encode()).digest()
            + bytes([self._flags(up=up, uv=uv, attested=False)])
            + struct.pack(">I", count)
        )
        client_data = self._client_data(
            client_data_type, challenge or options["challenge"], origin, cross_origin
        )
        # A tampered signature is a well-formed ECDSA signature over other data.
        signed_client_data = client_data + b" " if tamper_signature else client_data
        signature = credential.private_key.sign(
            auth_data + hashlib.sha256(signed_client_data).digest(), ec.ECDSA(hashes.SHA256())
        )
        handle = credential.user_handle if user_handle == "stored" else user_handle
        return {
            "id": b64url(credential_id),
            "rawId": b64url(credential_id),
            "type": "public-key",
            "authenticatorAttachment": self.attachment,
            "clientExtensionResults": {},
            "response": {
                "clientDataJSON": b64url(client_data),
                "authenticatorData": b64url(auth_data),
                "signature": b64url(signature),
                "userHandle": b64url(handle) if handle is not None else None,
            },
        }
