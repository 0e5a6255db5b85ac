"""Bearer-token views in Flask and Django (the synchronous RFC 9068 verifier) against a real
issuer over HTTP, with each framework's own test client. StepGuard is not involved."""

from __future__ import annotations

import time
from collections.abc import Iterator

import flask
import pytest
from werkzeug.test import TestResponse

from stepguard.sdk import parse_www_authenticate
from stepguard.sdk.flask import TokenGuard as FlaskTokenGuard
from stepguard.sdk.rfc9068 import AccessTokenVerifier
from support.issuer import AUDIENCE, LocalIssuer, local_issuer


@pytest.fixture
def issuer() -> Iterator[LocalIssuer]:
    with local_issuer() as running:
        running.add_key("k1")
        yield running


@pytest.fixture
def verifier(issuer: LocalIssuer) -> Iterator[AccessTokenVerifier]:
    with AccessTokenVerifier(issuer.url, AUDIENCE) as running:
        yield running


def test_flask_token_views(issuer: LocalIssuer, verifier: AccessTokenVerifier) -> None:
    tokens = FlaskTokenGuard(verifier)
    app = flask.Flask(__name__)

    @app.post("/transfer")
    @tokens.require(acr="aal2", max_age=300)
    def transfer() -> dict[str, object]:
        return {"sub": flask.g.access_token.subject}

    http = app.test_client()

    def call(token: str | None) -> TestResponse:
        headers = {} if token is None else {"Authorization": f"Bearer {token}"}
        return http.post("/transfer", headers=headers)

    assert call(issuer.token()).json == {"sub": "alice"}
    weak = call(issuer.token(acr="aal1"))
    assert weak.status_code == 401
    challenge = parse_www_authenticate(weak.headers["WWW-Authenticate"])
    assert challenge is not None
    assert challenge.acr_values == ("aal2",)
    stale = call(issuer.token(auth_time=int(time.time()) - 1000))
    assert stale.status_code == 401
    assert "max_age=300" in stale.headers["WWW-Authenticate"]
    wrong = call(issuer.token(aud="https://other.test"))
    assert wrong.status_code == 401
    assert wrong.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
    none = call(None)
    assert none.status_code == 401
    assert none.headers["WWW-Authenticate"] == "Bearer"
    assert issuer.hits["/jwks"] == 1


def test_django_token_views(
    issuer: LocalIssuer, verifier: AccessTokenVerifier, django_site: object
) -> None:
    from django.http import HttpRequest, HttpResponse, JsonResponse
    from django.test import RequestFactory

    from stepguard.sdk.django import TokenGuard as DjangoTokenGuard

    tokens = DjangoTokenGuard(verifier)

    @tokens.require(acr="phr")
    def admin(request: HttpRequest) -> JsonResponse:
        return JsonResponse({"acr": request.access_token.acr})  # type: ignore[attr-defined]

    factory = RequestFactory()

    def call(token: str) -> HttpResponse:
        request = factory.get("/admin", headers={"Authorization": f"Bearer {token}"})
        response = admin(request)
        assert isinstance(response, HttpResponse)
        return response

    strong = call(issuer.token(acr="aal3"))
    assert strong.status_code == 200
    weak = call(issuer.token(acr="aal2"))
    assert weak.status_code == 401
    challenge = parse_www_authenticate(weak.headers["WWW-Authenticate"])
    assert challenge is not None
    assert challenge.acr_values == ("phr",)
    forged = call(issuer.token()[:-6] + "AAAAAA")
    assert forged.status_code == 401
    assert forged.headers["WWW-Authenticate"].startswith('Bearer error="invalid_token"')
