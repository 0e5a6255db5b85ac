"""The Django integration against a live StepGuard, with Django's own test client: the view
decorator, the middleware for declared routes, and ``guard.check`` inside a view."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
from django.http import HttpRequest, JsonResponse
from django.test import Client
from django.urls import path

from stepguard.sdk import StepGuardClient, parse_www_authenticate
from stepguard.sdk.django import ProtectedRoute, StepUpGuard
from support.server import LiveServer

from .conftest import DjangoSite, User

pytestmark = pytest.mark.slow

PUBLIC_URL = "https://stepguard.example.test"


RAN: list[str] = []


def _session(request: HttpRequest) -> str | None:
    return request.headers.get("X-Session")


def _guard() -> StepUpGuard:
    guard = DjangoSite.guard
    assert isinstance(guard, StepUpGuard)
    return guard


def decorated(request: HttpRequest) -> JsonResponse:
    # Decorated at call time so that each test's guard (and client) is used.
    @_guard().require(
        "payments.transfer", context=lambda r: {"amount": int(r.POST["amount"]), "payee": "Bob"}
    )
    def view(request: HttpRequest) -> JsonResponse:
        RAN.append("decorated")
        return JsonResponse({"rule": request.stepguard.rule})  # type: ignore[attr-defined]

    return view(request)  # type: ignore[return-value]


def per_call(request: HttpRequest) -> JsonResponse:
    amount = json.loads(request.body)["amount"]
    _guard().check(request, action="payments.transfer", context={"amount": amount, "payee": "x"})
    RAN.append("per_call")
    return JsonResponse({"paid": amount})


def admin_area(request: HttpRequest) -> JsonResponse:
    RAN.append("admin")
    return JsonResponse({})


URLS = [
    path("transfer", decorated),
    path("pay", per_call),
    path("admin/panel", admin_area),
]


@pytest.fixture(autouse=True)
def site(django_site: type[DjangoSite]) -> type[DjangoSite]:
    django_site.urlpatterns[:] = URLS
    return django_site


@pytest.fixture
def sg(stepguard: LiveServer) -> Iterator[StepGuardClient]:
    with StepGuardClient(stepguard.base_url, stepguard.api_key) as client:
        DjangoSite.guard = StepUpGuard(
            client,
            session_id=_session,
            public_url=PUBLIC_URL,
            routes=[ProtectedRoute(path="/admin/*", action="admin.panel")],
        )
        RAN.clear()
        yield client


def test_django_decisions(sg: StepGuardClient, admin: StepGuardClient, user: User) -> None:
    http = Client(headers={"X-Session": user.session_id})
    small = http.post("/transfer", {"amount": "10"})
    assert small.status_code == 200
    assert small.json() == {"rule": "transfer-small"}

    large = http.post("/transfer", {"amount": "900"})
    assert large.status_code == 401
    challenge = parse_www_authenticate(large.headers["WWW-Authenticate"])
    assert challenge is not None
    assert challenge.acr_values == ("aal2",)

    # The middleware guards /admin/* (a phishing-resistant rule: step-up).
    panel = http.get("/admin/panel", headers={"Accept": "text/html"})
    assert panel.status_code == 303
    assert panel.headers["Location"].startswith(f"{PUBLIC_URL}/challenge/chl")

    # guard.check inside a view; StepUpInterrupt is answered by the middleware.
    first = http.post("/pay", json.dumps({"amount": 700}), content_type="application/json")
    assert first.status_code == 401
    grant = user.step_up(admin, first.json()["challenge_id"])
    assert grant is not None
    body = {"amount": 7000, "stepguard_grant": grant.reveal()}
    larger = http.post("/pay", json.dumps(body), content_type="application/json")
    assert larger.status_code == 401
    body["amount"] = 700
    exact = http.post("/pay", json.dumps(body), content_type="application/json")
    assert exact.status_code == 200, exact.content
    assert RAN == ["decorated", "per_call"]


def test_django_fails_closed_when_stepguard_hangs(hanging_url: str) -> None:
    with StepGuardClient(hanging_url, "sgk_test_key", timeout=0.5) as client:
        DjangoSite.guard = StepUpGuard(client, session_id=_session, public_url=PUBLIC_URL)
        RAN.clear()
        response = Client(headers={"X-Session": "ses_1"}).post("/transfer", {"amount": "1"})
    assert response.status_code == 503
    assert RAN == []
