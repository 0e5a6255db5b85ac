"""A software approver device for the push tests: a P-256 key made with ``cryptography``
that pairs and signs answers exactly as ``approve.js`` does with WebCrypto (RFC 8785 JSON,
ES256 in the raw ``r || s`` form, base64url)."""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def canonical(payload: dict[str, Any]) -> bytes:
    return json.dumps(dict(sorted(payload.items())), separators=(",", ":")).encode("ascii")


def pairing_token(pairing_url: str) -> str:
    fragment = urlsplit(pairing_url).fragment
    assert fragment.startswith("pair="), pairing_url
    return fragment.removeprefix("pair=")


@dataclass
class SoftwareApprover:
    key: ec.EllipticCurvePrivateKey = field(
        default_factory=lambda: ec.generate_private_key(ec.SECP256R1())
    )
    factor_id: str = ""

    def jwk(self) -> dict[str, str]:
        numbers = self.key.public_key().public_numbers()
        return {
            "kty": "EC",
            "crv": "P-256",
            "x": b64url(numbers.x.to_bytes(32, "big")),
            "y": b64url(numbers.y.to_bytes(32, "big")),
        }

    def sign(self, payload: dict[str, Any]) -> str:
        der = self.key.sign(canonical(payload), ec.ECDSA(hashes.SHA256()))
        r, s = decode_dss_signature(der)
        return b64url(r.to_bytes(32, "big") + s.to_bytes(32, "big"))

    def pair_body(self, token: str) -> dict[str, Any]:
        return {
            "pairing": token,
            "public_key": self.jwk(),
            "signature": self.sign({"nonce": token, "typ": "stepguard.push.pair.v1"}),
        }

    def answer_body(
        self,
        request: dict[str, Any],
        *,
        number: int,
        answer: str = "approve",
        signed_number: int | None = None,
        signed_answer: str | None = None,
        signed_digest: str | None = None,
    ) -> dict[str, Any]:
        """An answer to ``request`` (an entry of ``/approve/api/pending``); the ``signed_``
        arguments sign something other than what is sent (to test the binding)."""
        signature = self.sign(
            {
                "answer": signed_answer or answer,
                "challenge_id": request["challenge_id"],
                "digest": signed_digest or request["digest"],
                "number": number if signed_number is None else signed_number,
                "push_id": request["push_id"],
                "typ": "stepguard.push.answer.v1",
            }
        )
        return {
            "push_id": request["push_id"],
            "factor_id": self.factor_id,
            "number": number,
            "answer": answer,
            "signature": signature,
        }
