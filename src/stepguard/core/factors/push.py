"""Push approval with number matching: the pure part (what a device signs, how it is checked,
the numbers shown).

A paired approver device holds a P-256 key made by WebCrypto (``extractable: false``); the
server keeps its public key. The device signs (ES256, the raw ``r || s`` form WebCrypto
produces, RFC 7518 section 3.4) the RFC 8785 canonical JSON of:

- pairing: ``{"nonce": <pairing token>, "typ": "stepguard.push.pair.v1"}``, proving that the
  key registered is held by whoever opened the one-time pairing link;
- an answer: ``{"answer": "approve"|"deny", "challenge_id", "digest", "number", "push_id",
  "typ": "stepguard.push.answer.v1"}``, binding the answer to one push request of one
  challenge, to the challenge's transaction digest and to the number the person picked.

Every value is an ASCII string or a small integer, so a browser's ``JSON.stringify`` of an
object with its keys in this order yields the same bytes.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from enum import StrEnum
from typing import Any, Final

import rfc8785
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from stepguard.core.errors import InvalidCredentialError
from stepguard.core.ports import Rng

__all__ = [
    "ANSWER_TYPE",
    "PAIR_TYPE",
    "PushAnswer",
    "PushStatus",
    "answer_payload",
    "device_key_from_jwk",
    "device_key_jwk",
    "number_choices",
    "pair_payload",
    "verify_device_signature",
]

PAIR_TYPE: Final = "stepguard.push.pair.v1"
ANSWER_TYPE: Final = "stepguard.push.answer.v1"
_COORDINATE: Final = 32
_SIGNATURE: Final = 64
NUMBER_MIN: Final = 10
NUMBER_MAX: Final = 99


class PushAnswer(StrEnum):
    APPROVE = "approve"
    DENY = "deny"


class PushStatus(StrEnum):
    """A push request's state. Only ``pending`` is open; every other state is terminal and
    reached once (a conditional write)."""

    PENDING = "pending"
    APPROVED = "approved"
    DENIED = "denied"
    WRONG_NUMBER = "wrong_number"
    SUPERSEDED = "superseded"  # the same challenge started a newer push
    EXPIRED = "expired"  # never stored: a pending request past its expiry


def _b64url(data: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(data + "=" * (-len(data) % 4))
    except (binascii.Error, ValueError):
        raise InvalidCredentialError("push: malformed base64url") from None


def device_key_from_jwk(jwk: Mapping[str, Any]) -> bytes:
    """The device's public key (a P-256 JWK, RFC 7517/7518) as an uncompressed SEC1 point.

    Refuses anything but ``kty: EC``, ``crv: P-256`` with 32-byte coordinates on the curve,
    and a JWK holding a private part (``d``)."""
    if jwk.get("kty") != "EC" or jwk.get("crv") != "P-256":
        raise InvalidCredentialError("push: the device key must be an EC P-256 JWK")
    if "d" in jwk:
        raise InvalidCredentialError("push: the JWK holds a private key")
    x, y = jwk.get("x"), jwk.get("y")
    if not isinstance(x, str) or not isinstance(y, str):
        raise InvalidCredentialError("push: the JWK lacks x or y")
    xb, yb = _b64url(x), _b64url(y)
    if len(xb) != _COORDINATE or len(yb) != _COORDINATE:
        raise InvalidCredentialError("push: the JWK coordinates are not 32 bytes")
    point = b"\x04" + xb + yb
    try:
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
    except ValueError:
        raise InvalidCredentialError("push: the JWK point is not on P-256") from None
    return point


def device_key_jwk(point: bytes) -> dict[str, str]:
    """The stored key back as a public JWK (for listings and tests)."""

    def enc(b: bytes) -> str:
        return base64.urlsafe_b64encode(b).rstrip(b"=").decode("ascii")

    return {"kty": "EC", "crv": "P-256", "x": enc(point[1:33]), "y": enc(point[33:65])}


def pair_payload(*, nonce: str) -> bytes:
    return rfc8785.dumps({"nonce": nonce, "typ": PAIR_TYPE})


def answer_payload(
    *, challenge_id: str, push_id: str, digest: str, number: int, answer: PushAnswer
) -> bytes:
    return rfc8785.dumps(
        {
            "answer": answer.value,
            "challenge_id": challenge_id,
            "digest": digest,
            "number": number,
            "push_id": push_id,
            "typ": ANSWER_TYPE,
        }
    )


def verify_device_signature(*, public_key: bytes, payload: bytes, signature: bytes) -> None:
    """Check an ES256 signature in WebCrypto's raw ``r || s`` form. Raises
    ``InvalidCredentialError`` (one error for every way it can fail)."""
    if len(signature) != _SIGNATURE:
        raise InvalidCredentialError("push: the signature is not 64 bytes (r || s)")
    r = int.from_bytes(signature[:32], "big")
    s = int.from_bytes(signature[32:], "big")
    try:
        key = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), public_key)
        key.verify(encode_dss_signature(r, s), payload, ec.ECDSA(hashes.SHA256()))
    except (InvalidSignature, ValueError):
        raise InvalidCredentialError("push: the signature does not verify") from None


def _two_digits(rng: Rng) -> int:
    span = NUMBER_MAX - NUMBER_MIN + 1  # 90
    limit = 256 - 256 % span  # 180: rejection sampling, no modulo bias
    while True:
        byte = rng.token_bytes(1)[0]
        if byte < limit:
            return NUMBER_MIN + byte % span


def number_choices(rng: Rng, *, count: int = 3) -> tuple[int, tuple[int, ...]]:
    """The number to match (10-99) and ``count`` distinct choices that include it, in a
    random order."""
    if not 2 <= count <= 9:
        raise ValueError("between 2 and 9 choices")
    number = _two_digits(rng)
    choices = [number]
    while len(choices) < count:
        other = _two_digits(rng)
        if other not in choices:
            choices.append(other)
    # Fisher-Yates with rejection-sampled indices.
    for i in range(len(choices) - 1, 0, -1):
        limit = 256 - 256 % (i + 1)
        while (byte := rng.token_bytes(1)[0]) >= limit:
            pass
        j = byte % (i + 1)
        choices[i], choices[j] = choices[j], choices[i]
    return number, tuple(choices)
