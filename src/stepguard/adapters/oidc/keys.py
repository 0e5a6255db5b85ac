"""The ``Jose`` port on joserfc: key generation (ES256, RS256), JWKS entries, signing and
verification. Only asymmetric algorithms; the verifier pins each key's own ``alg``."""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Mapping, Sequence
from typing import Any, Final

from joserfc import jwt
from joserfc.errors import JoseError
from joserfc.jwk import ECKey, KeySet, RSAKey

from stepguard.core.oidc.model import SigningKey
from stepguard.core.secret import Secret

__all__ = ["SUPPORTED_ALGS", "JoserfcJose"]

SUPPORTED_ALGS: Final = ("ES256", "RS256")
_HASHES: Final = {"ES256": hashlib.sha256, "RS256": hashlib.sha256}


def _import(key: SigningKey) -> ECKey | RSAKey:
    data = json.loads(key.private_jwk.reveal())
    if key.alg == "ES256":
        return ECKey.import_key(data)
    if key.alg == "RS256":
        return RSAKey.import_key(data)
    raise ValueError(f"unsupported signing algorithm {key.alg!r}")


class JoserfcJose:
    def generate(self, *, alg: str, kid: str) -> Secret[str]:
        if alg == "ES256":
            key: ECKey | RSAKey = ECKey.generate_key(
                "P-256", parameters={"kid": kid, "alg": alg, "use": "sig"}, private=True
            )
        elif alg == "RS256":
            key = RSAKey.generate_key(
                2048, parameters={"kid": kid, "alg": alg, "use": "sig"}, private=True
            )
        else:
            raise ValueError(f"unsupported signing algorithm {alg!r}")
        return Secret(json.dumps(key.as_dict(private=True)))

    def public_jwk(self, key: SigningKey) -> dict[str, Any]:
        public = dict(_import(key).as_dict(private=False))
        public.update(kid=key.kid, alg=key.alg, use="sig")
        return public

    def sign(self, claims: Mapping[str, Any], *, key: SigningKey, typ: str) -> str:
        header = {"alg": key.alg, "kid": key.kid, "typ": typ}
        return jwt.encode(header, dict(claims), _import(key), algorithms=[key.alg])

    def verify(self, token: str, *, keys: Sequence[SigningKey], typ: str | None) -> dict[str, Any]:
        try:
            header = json.loads(_b64(token.split(".", 1)[0]))
        except (ValueError, IndexError):
            raise ValueError("malformed token") from None
        if not isinstance(header, dict):
            raise ValueError("malformed token")
        key = next((k for k in keys if k.kid == header.get("kid")), None)
        if key is None or header.get("alg") != key.alg:
            raise ValueError("unknown key or algorithm")
        if typ is not None and str(header.get("typ", "")).lower() != typ.lower():
            raise ValueError("wrong token type")
        try:
            decoded = jwt.decode(token, KeySet([_import(key)]), algorithms=[key.alg])
        except (JoseError, ValueError) as error:
            raise ValueError(f"invalid token: {error}") from None
        return dict(decoded.claims)

    def at_hash(self, access_token: str, *, alg: str) -> str:
        digest = _HASHES[alg](access_token.encode("ascii")).digest()
        half = digest[: len(digest) // 2]
        return base64.urlsafe_b64encode(half).decode("ascii").rstrip("=")


def _b64(segment: str) -> bytes:
    return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
