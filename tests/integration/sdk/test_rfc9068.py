"""Bearer routes (RFC 9068 access tokens, RFC 9470 challenges) against a real issuer over
HTTP: discovery, JWKS, rotation, and every way a token can be wrong or too weak.

StepGuard is not involved: the app's StepGuard client points at a closed port, so any call
to it would fail closed (503) instead of the answers asserted here.
"""

# No `from __future__ import annotations`: FastAPI reads these local Annotated[...]
# dependencies when the route is defined.
import base64
import hashlib
import hmac
import json
import time
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Annotated

import httpx
import pytest
from fastapi import Depends, FastAPI
from joserfc import jwt
from joserfc.jwk import RSAKey

from stepguard.sdk import (
    AsyncStepGuardClient,
    InvalidTokenError,
    IssuerUnavailableError,
    parse_www_authenticate,
)
from stepguard.sdk.rfc9068 import (
    AccessTokenVerifier,
    AcrLadder,
    AsyncAccessTokenVerifier,
    TokenRequirement,
    VerifiedAccessToken,
)
from stepguard.sdk.starlette import StepUpGuard, TokenGuard
from support.issuer import AUDIENCE, LocalIssuer, local_issuer


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with local_issuer() as running:
        running.add_key("k1")
        yield running


@pytest.fixture
async def http(issuer: LocalIssuer, closed_port_url: str) -> AsyncIterator[httpx.AsyncClient]:
    verifier = AsyncAccessTokenVerifier(
        issuer.url,
        AUDIENCE,
        ladder=AcrLadder(aliases={"urn:example:mfa": "aal2"}),
        refresh_interval=60,
    )
    tokens = TokenGuard(verifier)
    async with AsyncStepGuardClient(closed_port_url, "sgk_test_key", timeout=0.5) as sg:
        guard = StepUpGuard(sg, session_id=lambda r: "ses_1", public_url="https://sg.test")
        app = FastAPI()
        guard.install(app)

        @app.post("/transfer")
        async def transfer(
            token: Annotated[VerifiedAccessToken, Depends(tokens.require(acr="aal2", max_age=300))],
        ) -> dict[str, object]:
            return {"sub": token.subject, "acr": token.acr}

        @app.post("/guarded")  # proves the StepGuard client really is unreachable
        async def guarded(
            _: Annotated[object, Depends(guard.require("payments.transfer"))],
        ) -> None:
            return None

        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api.test") as client:
            client.headers["x-verifier"] = "1"
            app.state.verifier = verifier
            yield client
        await verifier.aclose()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


async def test_a_sufficient_token_passes_without_calling_stepguard(
    http: httpx.AsyncClient, issuer: LocalIssuer
) -> None:
    response = await http.post("/transfer", headers=bearer(issuer.token()))
    assert response.status_code == 200, response.text
    assert response.json() == {"sub": "alice", "acr": "aal2"}
    assert (await http.post("/guarded")).status_code == 503  # StepGuard is unreachable
    # A foreign acr mapped onto the ladder, and a stronger level, pass too.
    mapped = await http.post("/transfer", headers=bearer(issuer.token(acr="urn:example:mfa")))
    assert mapped.status_code == 200
    assert (
        await http.post("/transfer", headers=bearer(issuer.token(acr="phr")))
    ).status_code == 200
    assert issuer.hits["/jwks"] == 1  # cached


@pytest.mark.parametrize("acr", ["aal1", "urn:unknown:level", None])
async def test_insufficient_acr_is_the_rfc9470_challenge(
    http: httpx.AsyncClient, issuer: LocalIssuer, acr: str | None
) -> None:
    response = await http.post("/transfer", headers=bearer(issuer.token(acr=acr)))
    assert response.status_code == 401
    challenge = parse_www_authenticate(response.headers["www-authenticate"])
    assert challenge is not None
    assert challenge.acr_values == ("aal2",)
    assert challenge.max_age == 300
    assert response.json()["error"] == "insufficient_user_authentication"


async def test_stale_auth_time_is_the_challenge_with_max_age(
    http: httpx.AsyncClient, issuer: LocalIssuer
) -> None:
    stale = issuer.token(auth_time=int(time.time()) - 301)
    response = await http.post("/transfer", headers=bearer(stale))
    assert response.status_code == 401
    assert "max_age=300" in response.headers["www-authenticate"]
    missing = await http.post("/transfer", headers=bearer(issuer.token(auth_time=None)))
    assert missing.status_code == 401
    assert parse_www_authenticate(missing.headers["www-authenticate"]) is not None


def _none_token(issuer: LocalIssuer) -> str:
    def b64(value: Mapping[str, object]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).rstrip(b"=").decode()

    header = {"alg": "none", "typ": "at+jwt", "kid": "k1"}
    return f"{b64(header)}.{b64(issuer.claims())}."


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _hs256_with_public_key(issuer: LocalIssuer) -> str:
    """The classic confusion attack: HMAC-sign with the issuer's public key as the secret
    (signed by hand: joserfc itself refuses to use a public key as an oct key)."""
    public = issuer.keys[0]
    assert isinstance(public, RSAKey)
    secret = public.as_pem(private=False)
    header = {"alg": "HS256", "typ": "at+jwt", "kid": "k1"}
    signing_input = (
        f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(issuer.claims()).encode())}"
    )
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64(signature)}"


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(lambda i: i.token(aud="https://other.test"), id="wrong-audience"),
        pytest.param(lambda i: i.token(iss="https://evil.test"), id="wrong-issuer"),
        pytest.param(
            lambda i: i.token(exp=int(time.time()) - 120, iat=int(time.time()) - 600),
            id="expired",
        ),
        pytest.param(lambda i: i.token(nbf=int(time.time()) + 600), id="not-yet-valid"),
        pytest.param(_none_token, id="alg-none"),
        pytest.param(_hs256_with_public_key, id="hs256-with-public-key"),
        pytest.param(lambda i: i.token(header={"typ": "JWT"}), id="typ-JWT"),
        pytest.param(lambda i: i.token()[:-4] + "AAAA", id="bad-signature"),
        pytest.param(lambda i: i.token(sub=None), id="no-sub"),
        pytest.param(lambda i: "not-a-jwt", id="garbage"),
    ],
)
async def test_invalid_tokens_are_rfc6750_invalid_token(
    http: httpx.AsyncClient, issuer: LocalIssuer, make: object
) -> None:
    token = make(issuer)  # type: ignore[operator]
    response = await http.post("/transfer", headers=bearer(token))
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith('Bearer error="invalid_token"')
    assert parse_www_authenticate(response.headers["www-authenticate"]) is None
    assert response.json()["error"] == "invalid_token"


async def test_no_token_is_a_bare_bearer_challenge(http: httpx.AsyncClient) -> None:
    response = await http.post("/transfer")
    assert response.status_code == 401
    assert response.headers["www-authenticate"] == "Bearer"


async def test_rotation_fetches_the_new_key_once(
    http: httpx.AsyncClient, issuer: LocalIssuer
) -> None:
    assert (await http.post("/transfer", headers=bearer(issuer.token()))).status_code == 200
    assert issuer.hits["/jwks"] == 1
    new = issuer.add_key("k2", kind="EC")
    response = await http.post("/transfer", headers=bearer(issuer.token(key=new)))
    assert response.status_code == 200, response.text
    assert issuer.hits["/jwks"] == 2
    assert (await http.post("/transfer", headers=bearer(issuer.token(key=new)))).status_code == 200
    assert issuer.hits["/jwks"] == 2


def test_unknown_kid_refreshes_are_rate_limited(issuer: LocalIssuer) -> None:
    now = [time.time()]
    verifier = AccessTokenVerifier(issuer.url, AUDIENCE, refresh_interval=60, clock=lambda: now[0])
    with verifier:
        verifier.verify(issuer.token())
        assert verifier.key_fetches == 1
        stranger = RSAKey.generate_key(2048, parameters={"kid": "unknown"}, private=True)
        forged = jwt.encode(
            {"alg": "RS256", "typ": "at+jwt", "kid": "unknown"}, issuer.claims(), stranger
        )
        for _ in range(5):
            with pytest.raises(InvalidTokenError):
                verifier.verify(forged)
        # One refresh for the unknown kid, then none within the interval.
        assert issuer.hits["/jwks"] == 2
        now[0] += 61
        with pytest.raises(InvalidTokenError):
            verifier.verify(forged)
        assert issuer.hits["/jwks"] == 3


def test_requirement_and_lenient_typ_with_the_sync_verifier(issuer: LocalIssuer) -> None:
    with AccessTokenVerifier(issuer.url, AUDIENCE, accept_jwt_typ=True) as verifier:
        token = verifier.verify(issuer.token(header={"typ": "JWT"}, acr="aal1"))
        assert token.acr == "aal1"
        assert token.amr == ("pwd", "otp")
        verifier.require(token, TokenRequirement(acr="aal1"))
        from stepguard.sdk import InsufficientUserAuthenticationError

        with pytest.raises(InsufficientUserAuthenticationError) as raised:
            verifier.require(token, TokenRequirement(acr="aal3", max_age=60))
        assert raised.value.challenge.acr_values == ("aal3",)
        assert raised.value.challenge.max_age == 60


def test_unreachable_issuer_fails_closed(closed_port_url: str, issuer: LocalIssuer) -> None:
    with (
        AccessTokenVerifier(closed_port_url, AUDIENCE) as verifier,
        pytest.raises(IssuerUnavailableError),
    ):
        verifier.verify(issuer.token())


def test_unsafe_algorithm_lists_are_refused() -> None:
    for algorithms in (["HS256"], ["none"], ["RS256", "HS512"], []):
        with pytest.raises(ValueError, match="asymmetric"):
            AccessTokenVerifier("https://idp.test", AUDIENCE, algorithms=algorithms)
