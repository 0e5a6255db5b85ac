"""``/forward-auth`` over HTTP (httpx against the real app and store), on SQLite and
PostgreSQL: identity headers, login and step-up redirects, the step-up raising the session so
the retried request passes, deny, proxy trust, strict and unambiguous headers, Envoy's shape.
The same flows through a real nginx are in ``tests/integration/live/test_forward_auth_nginx.py``.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from support.harness import Harness, start_harness

PUBLIC = "http://stepguard.test"
APP = "https://app.example.com"
LOGIN = "https://login.example.com/sign-in"
COOKIE = "stepguard_browser"
POLICY = """
version: 1
rules:
  - id: admin
    match: {hosts: ["app.example.com"], paths: ["/admin", "/admin/**"]}
    step_up: {acr: aal2, max_age: 300}
  - id: blocked
    match: {paths: ["/blocked/**"]}
    deny: true
  - id: auditors-bound
    match: {actions: ["*"], groups: ["auditors"]}
    step_up: {acr: aal2, bind: true}
  - id: app
    match: {hosts: ["app.example.com"]}
    allow: true
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300}
default: {deny: true}
"""


async def _harness(database_url: str, **settings: object) -> Harness:
    harness, _ = await start_harness(
        database_url,
        policy=POLICY,
        settings_overrides={
            "public_url": PUBLIC,
            "return_to_origins": [APP],
            # Plain http on a non-local host: WebAuthn needs https there, so name an origin
            # it accepts (these tests never run a ceremony).
            "webauthn_rp_id": "stepguard.test",
            "webauthn_origins": ["https://stepguard.test"],
            **settings,
        },
    )
    return harness


async def _close(harness: Harness) -> None:
    await harness.client.aclose()
    await harness.anon.aclose()
    await harness.runtime.store.close()


@pytest.fixture
async def api(database_url: str) -> AsyncIterator[Harness]:
    harness = await _harness(database_url, forward_auth_login_url=LOGIN)
    try:
        yield harness
    finally:
        await _close(harness)


@dataclass
class User:
    session_id: str
    factor_id: str
    secret: bytes


async def user(api: Harness, groups: list[str] | None = None) -> User:
    await api.put_subject("alice", email="alice@example.com", groups=groups or ["staff", "ops"])
    factor_id, secret = await api.enroll_totp()
    return User(session_id=await api.open_session(), factor_id=factor_id, secret=secret)


def browser(api: Harness, client: tuple[str, int] = ("127.0.0.1", 41000)) -> httpx.AsyncClient:
    """A browser (its own cookie jar) whose requests reach StepGuard from ``client``: the
    proxy, since forward-auth checks come from the proxy carrying the browser's cookie."""
    app = api.anon._transport.app  # type: ignore[attr-defined]
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app, client=client), base_url=PUBLIC)


async def log_in(api: Harness, b: httpx.AsyncClient, session_id: str) -> None:
    """Open an account page link in ``b``: it now holds a browser session cookie."""
    response = await api.client.post(
        f"/v1/sessions/{session_id}/page-links", json={"page": "account"}
    )
    assert response.status_code == 201, response.text
    opened = await b.get(response.json()["url"].removeprefix(PUBLIC))
    assert opened.status_code == 303, opened.text
    assert b.cookies.get(COOKIE)


def forwarded(uri: str, *, method: str = "GET", host: str = "app.example.com") -> dict[str, str]:
    return {
        "X-Forwarded-Method": method,
        "X-Forwarded-Proto": "https",
        "X-Forwarded-Host": host,
        "X-Forwarded-Uri": uri,
        "X-Forwarded-For": "198.51.100.23",
    }


async def check(
    b: httpx.AsyncClient, headers: dict[str, str] | list[tuple[str, str]], **params: str
) -> httpx.Response:
    return await b.get("/forward-auth", headers=headers, params=params)


async def test_an_allowed_request_gets_identity_headers_and_an_empty_body(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        response = await check(b, forwarded("/reports?q=1"))
    assert response.status_code == 200
    assert response.content == b""
    assert response.headers["remote-user"] == "alice"
    assert response.headers["remote-groups"] == "staff,ops"
    assert response.headers["remote-acr"] == "aal1"
    assert response.headers["remote-email"] == "alice@example.com"
    assert response.headers["cache-control"] == "no-store"


async def test_the_check_accepts_any_method_as_nginx_subrequests_keep_it(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        for method in ("POST", "DELETE", "PATCH", "OPTIONS"):
            response = await b.request(method, "/forward-auth", headers=forwarded("/x"))
            assert response.status_code == 200, method


async def test_without_a_session_the_browser_is_sent_to_log_in(api: Harness) -> None:
    async with browser(api) as b:
        response = await check(b, forwarded("/reports?q=1"))
        assert response.status_code == 401
        assert response.content == b""
        location = urlsplit(response.headers["location"])
        assert f"{location.scheme}://{location.netloc}{location.path}" == LOGIN
        assert parse_qs(location.query) == {"return_to": [f"{APP}/reports?q=1"]}
        redirected = await check(b, forwarded("/reports"), mode="redirect")
        assert redirected.status_code == 302
        assert redirected.headers["location"].startswith(LOGIN + "?return_to=")
        # A cookie that names no browser session is no session.
        b.cookies.set(COOKIE, "sgb_forged")
        assert (await check(b, forwarded("/reports"))).status_code == 401


async def test_a_revoked_session_is_sent_to_log_in(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        assert (await check(b, forwarded("/"))).status_code == 200
        assert (await api.client.delete(f"/v1/sessions/{u.session_id}")).status_code == 204
        # This process reuses the same request's allow for forward_auth_cache_seconds (1 s)...
        assert (await check(b, forwarded("/"))).status_code == 200
        # ...but never for another request, nor past the second.
        assert (await check(b, forwarded("/other"))).status_code == 401
        api.clock.advance(1)
        assert (await check(b, forwarded("/"))).status_code == 401


async def test_without_the_cache_a_revoked_session_is_refused_at_once(database_url: str) -> None:
    api = await _harness(database_url, forward_auth_login_url=LOGIN, forward_auth_cache_seconds=0)
    try:
        u = await user(api)
        async with browser(api) as b:
            await log_in(api, b, u.session_id)
            assert (await check(b, forwarded("/"))).status_code == 200
            assert (await api.client.delete(f"/v1/sessions/{u.session_id}")).status_code == 204
            assert (await check(b, forwarded("/"))).status_code == 401
    finally:
        await _close(api)


async def test_without_a_login_url_no_session_is_forbidden(database_url: str) -> None:
    api = await _harness(database_url)
    try:
        async with browser(api) as b:
            response = await check(b, forwarded("/"))
        assert response.status_code == 403
        assert "location" not in response.headers
    finally:
        await _close(api)


async def test_a_return_to_outside_the_allow_list_is_left_out(api: Harness) -> None:
    async with browser(api) as b:
        response = await check(b, forwarded("/", host="elsewhere.example.com"))
    assert response.status_code == 401
    assert response.headers["location"] == LOGIN


async def test_a_step_up_on_the_page_lets_the_retried_request_through(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        response = await check(b, forwarded("/admin/users?page=2", method="POST"))
        assert response.status_code == 401, response.text
        page_url = response.headers["location"]
        page = urlsplit(page_url)
        assert f"{page.scheme}://{page.netloc}" == PUBLIC
        challenge_id = page.path.removeprefix("/challenge/")
        query = parse_qs(page.query)
        assert query["return_to"] == [f"{APP}/admin/users?page=2"]
        assert query["t"][0].startswith("sgp_")

        # The browser follows it: the page, then the code.
        opened = await b.get(page_url.removeprefix(PUBLIC))
        assert opened.status_code == 303
        prompt = await b.get(opened.headers["location"])
        assert prompt.status_code == 200
        assert "POST app.example.com/admin/users" in prompt.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', prompt.text)
        assert csrf is not None
        done = await b.post(
            f"/challenge/{challenge_id}/verify",
            data={
                "factor_id": u.factor_id,
                "code": api.code(u.secret),
                "return_to": query["return_to"][0],
                "method": "totp",
                "csrf": csrf.group(1),
            },
        )
        assert done.status_code == 303, done.text
        back = done.headers["location"]
        assert back.startswith(f"{APP}/admin/users?page=2&stepguard_challenge={challenge_id}")

        # The retried request (with the pages' marker in its query) now passes...
        retried = urlsplit(back)
        allowed = await check(b, forwarded(f"{retried.path}?{retried.query}", method="POST"))
        assert allowed.status_code == 200
        assert allowed.headers["remote-acr"] == "aal2"
        # ...and keeps passing within max_age, for the other admin paths too.
        assert (await check(b, forwarded("/admin"))).status_code == 200
        api.clock.advance(301)
        assert (await check(b, forwarded("/admin"))).status_code == 401


async def test_deny_is_403(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        response = await check(b, forwarded("/blocked/x"))
        assert response.status_code == 403
        assert response.content == b""
        assert "remote-user" not in response.headers
        # Other hosts fall to the default rule: deny.
        assert (await check(b, forwarded("/", host="intranet.example.com"))).status_code == 403
    denials = await api.audit(type="decision.deny")
    assert [e["details"]["http"] for e in denials] == [
        {"method": "GET", "host": "app.example.com", "path": "/blocked/x"},
        {"method": "GET", "host": "intranet.example.com", "path": "/"},
    ]


async def test_a_bound_step_up_cannot_be_met_over_forward_auth_and_is_refused(
    api: Harness,
) -> None:
    u = await user(api, groups=["auditors"])
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        response = await check(b, forwarded("/reports"))
    assert response.status_code == 403
    refused = await api.audit(type="forward_auth.refused")
    assert [e["details"]["rule"] for e in refused] == ["auditors-bound"]


async def test_a_proxy_may_name_the_action(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        # http.* rules still apply first; on another host, the default (deny) decides.
        assert (await check(b, forwarded("/x"), action="http.wiki")).status_code == 200
        for bad in ("payments.transfer", "http.", "HTTP.X", "http.a b"):
            assert (await check(b, forwarded("/x"), action=bad)).status_code == 400, bad
        assert (await check(b, forwarded("/x"), mode="json")).status_code == 400


async def test_an_untrusted_peer_is_never_allowed(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        cookie = b.cookies[COOKIE]
    async with browser(api, client=("203.0.113.5", 5555)) as outsider:
        outsider.cookies.set(COOKIE, cookie)
        response = await check(outsider, forwarded("/reports"))
    assert response.status_code == 403
    assert "remote-user" not in response.headers


async def test_nginx_x_original_headers_work(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        ok = await check(b, {"X-Original-URL": f"{APP}/reports?x=1", "X-Original-Method": "GET"})
        assert ok.status_code == 200
        step_up = await check(b, {"X-Original-URL": f"{APP}/admin", "X-Original-Method": "GET"})
        assert step_up.status_code == 401


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param([], id="nothing"),
        pytest.param([("X-Forwarded-Method", "GET")], id="incomplete"),
        pytest.param([*forwarded("/admin").items(), ("X-Forwarded-Uri", "/")], id="dup-uri"),
        pytest.param([*forwarded("/").items(), ("X-Forwarded-Host", "a.com")], id="dup-host"),
        pytest.param([*forwarded("/").items(), ("X-Forwarded-For", "1.2.3.4")], id="dup-for"),
        pytest.param([*forwarded("/").items(), ("X_Forwarded_Uri", "/")], id="alias-uri"),
        pytest.param([*forwarded("/").items(), ("x_forwarded_for", "1.2.3.4")], id="alias-for"),
        pytest.param([*forwarded("/").items(), ("X-Original-URL", f"{APP}/")], id="both-shapes"),
        pytest.param(list(forwarded("/public/../admin").items()), id="dot-segments"),
        pytest.param(list(forwarded("/public/%2e%2e/admin").items()), id="encoded-dots"),
        pytest.param(list(forwarded("/admin;x=1").items()), id="path-params"),
        pytest.param(list(forwarded("//admin").items()), id="empty-segment"),
        pytest.param(list(forwarded("/", host="a.com@b.com").items()), id="userinfo"),
        pytest.param(list(forwarded("/", method="G T").items()), id="method"),
        pytest.param([*forwarded("/").items(), ("X-Forwarded-Proto", "ftp")], id="dup-proto"),
        pytest.param(
            [(k, "ftp" if k == "X-Forwarded-Proto" else v) for k, v in forwarded("/").items()],
            id="proto",
        ),
        pytest.param(
            [(k, "me" if k == "X-Forwarded-For" else v) for k, v in forwarded("/").items()],
            id="client-ip",
        ),
        pytest.param(
            [*forwarded("/").items(), ("Cookie", f"{COOKIE}=a; {COOKIE}=b")], id="two-cookies"
        ),
    ],
)
async def test_missing_malformed_or_ambiguous_headers_are_400_never_200(
    api: Harness, headers: list[tuple[str, str]]
) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        response = await check(b, headers)
    assert response.status_code == 400
    assert response.content == b""
    assert "remote-user" not in response.headers


async def test_envoy_sends_the_original_request_under_a_prefix(api: Harness) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        proto = {"X-Forwarded-Proto": "https", "Host": "app.example.com"}
        ok = await b.post("/forward-auth/envoy/reports/7?mode=x", headers=proto)
        assert ok.status_code == 200
        assert ok.headers["remote-user"] == "alice"
        step_up = await b.get("/forward-auth/envoy/admin/users?id=3", headers=proto)
        assert step_up.status_code == 302  # Envoy passes the denial's status and Location
        location = parse_qs(urlsplit(step_up.headers["location"]).query)
        assert location["return_to"] == [f"{APP}/admin/users?id=3"]
        traversal = await b.get("/forward-auth/envoy/reports/%2e%2e/admin", headers=proto)
        assert traversal.status_code == 400
        mixed = await b.get(
            "/forward-auth/envoy/reports", headers={**proto, "X-Forwarded-Uri": "/reports"}
        )
        assert mixed.status_code == 400


async def test_identical_concurrent_checks_share_one_allow_but_never_a_challenge(
    api: Harness,
) -> None:
    u = await user(api)
    async with browser(api) as b:
        await log_in(api, b, u.session_id)
        allowed = await asyncio.gather(*(check(b, forwarded("/reports")) for _ in range(30)))
        assert {r.status_code for r in allowed} == {200}
        assert {r.headers["remote-user"] for r in allowed} == {"alice"}
        stepped = await asyncio.gather(*(check(b, forwarded("/admin")) for _ in range(5)))
        assert {r.status_code for r in stepped} == {401}
        pages = {urlsplit(r.headers["location"]).path for r in stepped}
        assert len(pages) == 5  # five challenges, five single-use links
