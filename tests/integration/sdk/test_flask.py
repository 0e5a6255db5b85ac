"""The Flask integration against a live StepGuard, with Flask's own test client."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qs, urlsplit

import flask
import pytest

from stepguard.sdk import StepGuardClient, parse_www_authenticate
from stepguard.sdk.flask import StepUpGuard
from support.server import LiveServer

from .conftest import User

pytestmark = pytest.mark.slow

PUBLIC_URL = "https://stepguard.example.test"
BROWSER = "text/html,application/xhtml+xml,*/*;q=0.8"


def build_app(client: StepGuardClient) -> tuple[flask.Flask, list[str]]:
    guard = StepUpGuard(
        client,
        session_id=lambda request: request.headers.get("X-Session"),
        public_url=PUBLIC_URL,
    )
    app = flask.Flask(__name__)
    guard.init_app(app)
    ran: list[str] = []

    @app.post("/transfer")
    @guard.require(
        "payments.transfer",
        context=lambda r: {"amount": r.json["amount"], "payee": r.json["payee"]},
    )
    def transfer() -> dict[str, Any]:
        ran.append("transfer")
        return {"rule": flask.g.stepguard.rule}

    @app.get("/statement")
    @guard.require("payments.transfer", context=lambda r: {"amount": int(r.args["amount"])})
    def statement() -> dict[str, Any]:
        ran.append("statement")
        return {}

    @app.post("/pay")
    def pay() -> dict[str, Any]:
        body = flask.request.get_json()
        guard.check(action="payments.transfer", context={"amount": body["amount"], "payee": "Bob"})
        ran.append("pay")
        return {"paid": body["amount"]}

    @app.post("/nothing")
    @guard.require("nothing.matches")
    def nothing() -> dict[str, Any]:
        ran.append("nothing")
        return {}

    return app, ran


@pytest.fixture
def sg(stepguard: LiveServer) -> Iterator[StepGuardClient]:
    with StepGuardClient(stepguard.base_url, stepguard.api_key) as client:
        yield client


def test_flask_decisions(sg: StepGuardClient, admin: StepGuardClient, user: User) -> None:
    app, ran = build_app(sg)
    http = app.test_client()
    headers = {"X-Session": user.session_id}

    small = http.post("/transfer", json={"amount": 10, "payee": "Bob"}, headers=headers)
    assert small.status_code == 200
    assert small.json == {"rule": "transfer-small"}

    large = http.post("/transfer", json={"amount": 900, "payee": "Bob"}, headers=headers)
    assert large.status_code == 401
    challenge = parse_www_authenticate(large.headers["WWW-Authenticate"])
    assert challenge is not None
    assert challenge.acr_values == ("aal2",)
    assert large.json is not None
    assert large.json["challenge_id"].startswith("chl")

    page = http.get("/statement?amount=900", headers={**headers, "Accept": BROWSER})
    assert page.status_code == 303
    location = urlsplit(page.headers["Location"])
    assert location.path.startswith("/challenge/chl")
    assert parse_qs(location.query)["return_to"] == ["http://localhost/statement?amount=900"]

    denied = http.post("/nothing", headers=headers)
    assert denied.status_code == 403
    assert ran == ["transfer"]

    # Per call, inside the view, with a grant bound to the exact amount.
    first = http.post("/pay", json={"amount": 800}, headers=headers)
    assert first.status_code == 401
    assert first.json is not None
    grant = user.step_up(admin, first.json["challenge_id"])
    assert grant is not None
    with_grant = {**headers, "Stepguard-Grant": grant.reveal()}
    assert http.post("/pay", json={"amount": 8000}, headers=with_grant).status_code == 401
    exact = http.post("/pay", json={"amount": 800}, headers=with_grant)
    assert exact.status_code == 200
    assert ran == ["transfer", "pay"]


def test_flask_fails_closed_when_stepguard_is_unreachable(closed_port_url: str) -> None:
    with StepGuardClient(closed_port_url, "sgk_test_key", timeout=0.5) as sg:
        app, ran = build_app(sg)
        response = app.test_client().post(
            "/transfer", json={"amount": 1, "payee": "Bob"}, headers={"X-Session": "ses_1"}
        )
    assert response.status_code == 503
    assert ran == []
