"""The Starlette/FastAPI integration against a live StepGuard: every outcome of a decision,
transaction-bound grants, and failing closed when StepGuard is unreachable or hangs.

The application is a real FastAPI app driven through httpx's ASGI transport; its guard talks
to ``stepguard serve`` over TCP with the SDK's async client.
"""

# No `from __future__ import annotations`: FastAPI reads these local Annotated[...]
# dependencies when the route is defined.
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fastapi import Depends, FastAPI, Request

from stepguard.sdk import AsyncStepGuardClient, Decision, parse_www_authenticate
from stepguard.sdk.starlette import FailMode, ProtectedRoute, StepUpGuard, StepUpMiddleware
from support.server import LiveServer

from .conftest import User

pytestmark = pytest.mark.slow

PUBLIC_URL = "https://stepguard.example.test"
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def session_of(request: Request) -> str | None:
    return request.headers.get("x-session")


async def amount_context(request: Request) -> dict[str, object]:
    body = await request.json()
    return {"amount": body["amount"], "currency": "EUR", "payee": body["payee"]}


def build_app(client: AsyncStepGuardClient, **guard_options: Any) -> tuple[FastAPI, StepUpGuard]:
    guard = StepUpGuard(client, session_id=session_of, public_url=PUBLIC_URL, **guard_options)
    app = FastAPI()
    guard.install(app)
    ran: list[str] = []
    app.state.ran = ran

    transfer_guard = guard.require("payments.transfer", context=amount_context)

    @app.post("/transfer")
    async def transfer(
        request: Request,
        decision: Annotated[Decision, Depends(transfer_guard)],
    ) -> dict[str, object]:
        ran.append("transfer")
        assert request.state.stepguard is decision
        return {"done": True, "rule": decision.rule}

    @app.get("/statement")
    async def statement(
        _: Annotated[
            Decision,
            Depends(
                guard.require(
                    "payments.transfer",
                    context=lambda r: {"amount": int(r.query_params["amount"]), "payee": "x"},
                )
            ),
        ],
    ) -> dict[str, object]:
        ran.append("statement")
        return {"ok": True}

    @app.post("/pay")
    async def pay(request: Request) -> dict[str, object]:
        body = await request.json()
        # The transaction is only known here: the check binds exactly this context.
        decision = await guard.check(
            request,
            action="payments.transfer",
            context={"amount": body["amount"], "currency": "EUR", "payee": body["payee"]},
        )
        ran.append("pay")
        return {"paid": body["amount"], "decision": decision.decision.value}

    @app.post("/delete-everything")
    async def delete_everything(
        _: Annotated[Decision, Depends(guard.require("nothing.matches.this"))],
    ) -> dict[str, object]:
        ran.append("delete")
        return {}

    settings_guard = guard.require("settings.change", on_unavailable=FailMode.STEP_UP)

    @app.post("/settings")
    async def settings(
        _: Annotated[Decision, Depends(settings_guard)],
    ) -> dict[str, object]:
        ran.append("settings")
        return {}

    return app, guard


@pytest.fixture
async def sg(stepguard: LiveServer) -> AsyncIterator[AsyncStepGuardClient]:
    async with AsyncStepGuardClient(stepguard.base_url, stepguard.api_key) as client:
        yield client


@pytest.fixture
async def app(sg: AsyncStepGuardClient) -> FastAPI:
    return build_app(sg)[0]


@pytest.fixture
async def http(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as client:
        yield client


async def test_allowed_request_runs_the_handler_with_the_decision(
    http: httpx.AsyncClient, app: FastAPI, user: User
) -> None:
    response = await http.post(
        "/transfer",
        json={"amount": 50, "payee": "Bob"},
        headers={"x-session": user.session_id},
    )
    assert response.status_code == 200, response.text
    assert response.json() == {"done": True, "rule": "transfer-small"}
    assert app.state.ran == ["transfer"]


async def test_api_step_up_is_an_rfc9470_401_with_the_challenge(
    http: httpx.AsyncClient, app: FastAPI, user: User
) -> None:
    response = await http.post(
        "/transfer",
        json={"amount": 5000, "payee": "Bob"},
        headers={"x-session": user.session_id, "accept": "application/json"},
    )
    assert response.status_code == 401
    challenge = parse_www_authenticate(response.headers["www-authenticate"])
    assert challenge is not None
    assert challenge.acr_values == ("aal2",)
    assert challenge.max_age == 300
    body = response.json()
    assert body["error"] == "insufficient_user_authentication"
    assert body["challenge_id"].startswith("chl")
    page = urlsplit(body["page_url"])  # the server's hosted page, with a single-use token
    assert page.path == f"/challenge/{body['challenge_id']}"
    assert "t" in parse_qs(page.query)
    assert body["requirement"] == {"acr": "aal2", "max_age": 300, "methods": [], "bind": True}
    assert app.state.ran == []


async def test_browser_step_up_redirects_to_the_page_with_return_to(
    http: httpx.AsyncClient, app: FastAPI, user: User
) -> None:
    response = await http.get(
        "/statement?amount=900&b=%2F%20x",
        headers={"x-session": user.session_id, "accept": BROWSER},
    )
    assert response.status_code == 303
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}" == PUBLIC_URL
    assert location.path.startswith("/challenge/chl")
    # return_to is the request to retry, URL-encoded.
    assert parse_qs(location.query)["return_to"] == [
        "http://bank.test/statement?amount=900&b=%2F+x"
    ]
    assert app.state.ran == []


async def test_a_grant_passes_only_the_exact_transaction_it_was_issued_for(
    http: httpx.AsyncClient, app: FastAPI, admin: Any, user: User
) -> None:
    headers = {"x-session": user.session_id}
    first = await http.post("/pay", json={"amount": 100 + 5000, "payee": "Bob"}, headers=headers)
    assert first.status_code == 401
    grant = user.step_up(admin, first.json()["challenge_id"])
    assert grant is not None
    with_grant = {**headers, "Stepguard-Grant": grant.reveal()}

    # The same grant for a larger amount, or another payee: not this transaction.
    larger = await http.post("/pay", json={"amount": 10000, "payee": "Bob"}, headers=with_grant)
    assert larger.status_code == 401
    other = await http.post("/pay", json={"amount": 5100, "payee": "Eve"}, headers=with_grant)
    assert other.status_code == 401
    assert app.state.ran == []

    # The exact transaction passes once; a replay does not.
    exact = await http.post("/pay", json={"amount": 5100, "payee": "Bob"}, headers=with_grant)
    assert exact.status_code == 200, exact.text
    assert exact.json() == {"paid": 5100, "decision": "allow"}
    replay = await http.post("/pay", json={"amount": 5100, "payee": "Bob"}, headers=with_grant)
    assert replay.status_code == 401
    assert app.state.ran == ["pay"]


async def test_deny_is_403_and_the_handler_never_runs(
    http: httpx.AsyncClient, app: FastAPI, user: User
) -> None:
    api = await http.post("/delete-everything", headers={"x-session": user.session_id})
    assert api.status_code == 403
    assert api.json()["error"] == "access_denied"
    page = await http.post(
        "/delete-everything", headers={"x-session": user.session_id, "accept": BROWSER}
    )
    assert page.status_code == 403
    assert page.headers["content-type"].startswith("text/html")
    assert app.state.ran == []


async def test_no_or_unknown_session_is_401_without_a_step_up(
    http: httpx.AsyncClient, app: FastAPI
) -> None:
    missing = await http.post("/transfer", json={"amount": 1, "payee": "Bob"})
    assert missing.status_code == 401
    assert missing.json()["error"] == "session_required"
    unknown = await http.post(
        "/transfer", json={"amount": 1, "payee": "Bob"}, headers={"x-session": "ses_nope"}
    )
    assert unknown.status_code == 401
    assert unknown.json()["error"] == "session_invalid"
    assert "www-authenticate" not in unknown.headers
    assert app.state.ran == []


@pytest.mark.parametrize("where", ["closed_port_url", "hanging_url"])
async def test_unreachable_or_hanging_stepguard_fails_closed(
    where: str, request: pytest.FixtureRequest
) -> None:
    url = request.getfixturevalue(where)
    async with AsyncStepGuardClient(url, "sgk_test_key", timeout=0.5) as sg:
        app, _ = build_app(sg)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as http:
            denied = await http.post(
                "/transfer", json={"amount": 1, "payee": "Bob"}, headers={"x-session": "ses_1"}
            )
            stepped = await http.post("/settings", headers={"x-session": "ses_1"})
    assert denied.status_code == 503
    assert denied.json()["error"] == "stepguard_unavailable"
    # A route configured towards step-up: 401 with the RFC 9470 header, no challenge id.
    assert stepped.status_code == 401
    assert parse_www_authenticate(stepped.headers["www-authenticate"]) is not None
    assert stepped.json()["challenge_id"] is None
    assert app.state.ran == []


@pytest.mark.parametrize(
    ("status", "body"),
    [
        (500, b'{"error": "internal_error", "message": "x"}'),
        (200, b"<html>oops</html>"),
        (200, b'{"decision": "maybe", "rule": "r", "reasons": []}'),
        (502, b"bad gateway"),
    ],
)
async def test_error_and_unparsable_answers_fail_closed(status: int, body: bytes) -> None:
    def answer(_: httpx.Request) -> httpx.Response:
        return httpx.Response(status, content=body)

    # The peer under test is the guard's mapping of answers it cannot use; a scripted
    # transport plays the broken StepGuard (a live one never sends these).
    async with AsyncStepGuardClient(
        "http://127.0.0.1:9", "sgk_test_key", transport=httpx.MockTransport(answer)
    ) as sg:
        app, _ = build_app(sg)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as http:
            response = await http.post(
                "/transfer", json={"amount": 1, "payee": "Bob"}, headers={"x-session": "ses_1"}
            )
    assert response.status_code == 503
    assert app.state.ran == []


async def test_middleware_guards_declared_routes_and_passes_the_rest(
    sg: AsyncStepGuardClient, admin: Any, user: User
) -> None:
    guard = StepUpGuard(sg, session_id=session_of, public_url=PUBLIC_URL)
    app = FastAPI()
    seen: list[dict[str, Any]] = []

    @app.post("/api/transfer")
    async def transfer(request: Request) -> dict[str, object]:
        body = await request.json()  # the middleware read the body first; the app still can
        seen.append(body)
        return {"rule": request.state.stepguard.rule}

    @app.get("/public")
    async def public() -> dict[str, object]:
        return {"public": True}

    app.add_middleware(
        StepUpMiddleware,
        guard=guard,
        routes=[
            ProtectedRoute(
                path="/api/*",
                methods=frozenset({"POST"}),
                action="payments.transfer",
                context=amount_context,
            )
        ],
    )
    transport = httpx.ASGITransport(app=app)
    headers = {"x-session": user.session_id}
    async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as http:
        assert (await http.get("/public")).status_code == 200  # no session needed, no call
        small = await http.post(
            "/api/transfer", json={"amount": 20, "payee": "Bob"}, headers=headers
        )
        assert small.status_code == 200, small.text
        assert small.json() == {"rule": "transfer-small"}
        large = await http.post(
            "/api/transfer", json={"amount": 700, "payee": "Bob"}, headers=headers
        )
        assert large.status_code == 401
        grant = user.step_up(admin, large.json()["challenge_id"])
        assert grant is not None
        # The grant in the JSON body field, with the same transaction.
        body = {"amount": 700, "payee": "Bob", "stepguard_grant": grant.reveal()}
        granted = await http.post(
            "/api/transfer",
            content=json.dumps(body),
            headers={**headers, "content-type": "application/json"},
        )
        assert granted.status_code == 200, granted.text
    assert seen == [{"amount": 20, "payee": "Bob"}, body]


async def test_browser_returns_from_the_page_and_the_retry_passes(
    http: httpx.AsyncClient, app: FastAPI, admin: Any, user: User
) -> None:
    headers = {"x-session": user.session_id, "accept": BROWSER}
    first = await http.get("/statement?amount=900", headers=headers)
    assert first.status_code == 303
    location = urlsplit(first.headers["location"])
    challenge_id = location.path.rsplit("/", 1)[-1]
    return_to = parse_qs(location.query)["return_to"][0]
    user.step_up(admin, challenge_id)  # what the hosted page does
    back = await http.get(f"{return_to}&stepguard_challenge={challenge_id}", headers=headers)
    assert back.status_code == 200, back.text
    assert app.state.ran == ["statement"]
    # The challenge's grant is single use: the same return URL does not pass twice.
    again = await http.get(f"{return_to}&stepguard_challenge={challenge_id}", headers=headers)
    assert again.status_code == 303


async def test_the_device_id_getter_reaches_stepguard(sg: AsyncStepGuardClient, user: User) -> None:
    guard = StepUpGuard(
        sg,
        session_id=session_of,
        public_url=PUBLIC_URL,
        device_id=lambda request: request.headers.get("x-device"),
    )
    app = FastAPI()
    guard.install(app)

    @app.get("/risk")
    async def risk(
        decision: Annotated[Decision, Depends(guard.require("account.view"))],
    ) -> dict[str, object]:
        assert decision.risk is not None
        return {"reasons": list(decision.risk.reasons)}

    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://bank.test") as http:
        without = await http.get("/risk", headers={"x-session": user.session_id})
        with_device = await http.get(
            "/risk", headers={"x-session": user.session_id, "x-device": "dev-new"}
        )
    assert without.status_code == with_device.status_code == 200
    assert not any("device" in reason for reason in without.json()["reasons"])
    assert any("device never seen" in reason for reason in with_device.json()["reasons"])
