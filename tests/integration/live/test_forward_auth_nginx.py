"""Forward-auth through a real nginx: ``auth_request`` to a real ``stepguard serve``, in front
of a real upstream (uvicorn, echoing what it receives), with the configuration from
docs/forward-auth.md. A browser is httpx with a cookie jar, going through nginx only.

Proves: which headers reach the upstream (StepGuard's identity headers; a client's own
``Remote-User`` or ``X-Forwarded-*`` change nothing, and the StepGuard cookie is stripped);
no session -> login redirect; a step-up rule -> 302 to the page with the original URL as
``return_to``; a TOTP on the page -> the original request passes; deny -> 403; StepGuard
down -> nginx answers 500, and the upstream never sees the request.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from stepguard.core.factors.totp import TotpSpec, code_at_step
from support.nginx import adapt_snippet, docs_nginx_snippet, running_nginx, running_uvicorn
from support.server import (
    LiveServer,
    database,
    live_server,
    ok,
    safe_totp_step,
    secret_from_otpauth_uri,
)
from support.services import free_port

LOGIN = "https://login.example.com/sign-in"
SPEC = TotpSpec()
POLICY = """
version: 1
rules:
  - id: admin
    match: {paths: ["/admin", "/admin/**"]}
    step_up: {acr: aal2, max_age: 300}
  - id: blocked
    match: {paths: ["/blocked", "/blocked/**"]}
    deny: true
  - id: app
    match: {hosts: ["localhost"]}
    allow: true
  - id: manage-factors
    match: {actions: ["stepguard.factors.manage"]}
    step_up: {acr: aal2, max_age: 300}
default: {deny: true}
"""


@dataclass
class Stack:
    server: LiveServer
    url: str  # nginx, the only address the browser uses
    upstream: str
    api: httpx.Client


@pytest.fixture(scope="module")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    workdir = tmp_path_factory.mktemp("forward-auth-nginx")
    nginx_port = free_port()
    url = f"http://localhost:{nginx_port}"  # WebAuthn refuses IP hosts
    settings = {
        "public_url": url,
        "return_to_origins": json.dumps([url]),
        "forward_auth_login_url": LOGIN,
        "risk_engine": "static",
    }
    with (
        database("sqlite", workdir) as database_url,
        live_server(
            workdir, database_url=database_url, policy=POLICY, workers=1, settings=settings
        ) as server,
        running_uvicorn(workdir, "support.echo_upstream:app") as upstream_port,
    ):
        snippet = adapt_snippet(
            docs_nginx_snippet(),
            {
                "server 127.0.0.1:9091;": f"server 127.0.0.1:{server.port};",
                "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream_port};",
                "listen 8000;": f"listen 127.0.0.1:{nginx_port};",
            },
        )
        with (
            running_nginx(workdir, snippet, port=nginx_port),
            httpx.Client(
                base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}
            ) as api,
        ):
            yield Stack(
                server=server, url=url, upstream=f"http://127.0.0.1:{upstream_port}", api=api
            )


@dataclass
class User:
    subject: str
    session: str
    factor: str
    secret: bytes
    step: int  # the TOTP step used to confirm; the page takes a later one


def new_user(stack: Stack, name: str, **subject: Any) -> User:
    ok(stack.api.put(f"/v1/subjects/{name}", json=subject))
    step = safe_totp_step(SPEC, margin=10)
    enrolled = ok(stack.api.post(f"/v1/subjects/{name}/factors", json={"type": "totp"}), 201)
    secret = secret_from_otpauth_uri(enrolled["otpauth_uri"])
    factor = enrolled["factor"]["id"]
    confirm = {"code": code_at_step(secret, SPEC, step - 1)}
    ok(stack.api.post(f"/v1/subjects/{name}/factors/{factor}/confirm", json=confirm))
    session = ok(stack.api.post("/v1/sessions", json={"subject_id": name, "amr": ["pwd"]}), 201)
    return User(
        subject=name, session=session["session_id"], factor=factor, secret=secret, step=step
    )


def browser(stack: Stack) -> httpx.Client:
    return httpx.Client(base_url=stack.url, follow_redirects=False, timeout=10)


def log_in(stack: Stack, b: httpx.Client, user: User) -> None:
    """What a login application does: a page link for the session, opened by the browser
    (through nginx: the cookie is on the application's origin)."""
    link = ok(
        stack.api.post(f"/v1/sessions/{user.session}/page-links", json={"page": "account"}), 201
    )
    opened = b.get(link["url"].removeprefix(stack.url))
    assert opened.status_code == 303, opened.text
    assert b.cookies.get("stepguard_browser")


def echoed(response: httpx.Response) -> tuple[dict[str, list[str]], dict[str, Any]]:
    assert response.status_code == 200, response.text
    assert response.headers.get("x-upstream") == "echo"
    data = response.json()
    headers: dict[str, list[str]] = {}
    for name, value in data["headers"]:
        headers.setdefault(name, []).append(value)
    return headers, data


def test_the_docs_configuration_is_what_runs() -> None:
    snippet = docs_nginx_snippet()
    for line in (
        "auth_request /stepguard-check;",
        "proxy_pass_request_body off;",
        "keepalive 64;",
        'proxy_set_header Connection "";',
        "error_page 401 =302 $sg_location;",
    ):
        assert line in snippet


def test_without_a_session_the_browser_goes_to_log_in(stack: Stack) -> None:
    with browser(stack) as b:
        response = b.get("/reports?q=1")
    assert response.status_code == 302
    location = urlsplit(response.headers["location"])
    assert f"{location.scheme}://{location.netloc}{location.path}" == LOGIN
    assert parse_qs(location.query) == {"return_to": [f"{stack.url}/reports?q=1"]}


def test_the_upstream_gets_stepguards_identity_and_nothing_a_client_forged(stack: Stack) -> None:
    user = new_user(stack, "fwd-alice", email="alice@example.com", groups=["staff", "ops"])
    with browser(stack) as b:
        log_in(stack, b, user)
        b.cookies.set("theme", "dark")
        forged = {
            "Remote-User": "mallory",
            "Remote-Groups": "admins",
            "Remote-ACR": "aal3",
            "Remote-Email": "mallory@example.com",
            "X-Forwarded-Uri": "/admin/users",
            "X-Forwarded-Method": "DELETE",
            "X-Forwarded-Host": "evil.example",
            "X-Original-URL": "https://evil.example/blocked",
            "X-Original-Method": "GET",
            "X_Forwarded_Uri": "/blocked",
        }
        headers, data = echoed(b.get("/reports/7?x=1", headers=forged))
    assert (data["method"], data["path"], data["query"]) == ("GET", "/reports/7", "x=1")
    assert headers["remote-user"] == ["fwd-alice"]
    assert headers["remote-groups"] == ["staff,ops"]
    assert headers["remote-acr"] == ["aal1"]
    assert headers["remote-email"] == ["alice@example.com"]
    # The StepGuard cookie stays with StepGuard; the application's own cookies pass.
    assert headers["cookie"] == ["theme=dark"]
    assert "x_forwarded_uri" not in headers


def test_forged_forwarded_headers_do_not_dodge_a_step_up(stack: Stack) -> None:
    user = new_user(stack, "fwd-bob")
    with browser(stack) as b:
        log_in(stack, b, user)
        response = b.get(
            "/admin/panel",
            headers={"X-Forwarded-Uri": "/reports", "X-Original-URL": f"{stack.url}/reports"},
        )
    assert response.status_code == 302
    assert urlsplit(response.headers["location"]).path.startswith("/challenge/")


def test_a_step_up_on_the_page_lets_the_original_request_through(stack: Stack) -> None:
    user = new_user(stack, "fwd-carol")
    with browser(stack) as b:
        log_in(stack, b, user)
        response = b.get("/admin/panel?tab=keys")
        assert response.status_code == 302, response.text
        page_url = response.headers["location"]
        page = urlsplit(page_url)
        assert f"{page.scheme}://{page.netloc}" == stack.url  # the pages, through nginx
        query = parse_qs(page.query)
        assert query["return_to"] == [f"{stack.url}/admin/panel?tab=keys"]
        challenge_id = page.path.removeprefix("/challenge/")

        opened = b.get(page_url.removeprefix(stack.url))
        assert opened.status_code == 303, opened.text
        prompt = b.get(opened.headers["location"])
        assert prompt.status_code == 200, prompt.text
        assert "GET localhost/admin/panel" in prompt.text
        csrf = re.search(r'name="csrf" value="([0-9a-f]{64})"', prompt.text)
        assert csrf is not None
        step = max(safe_totp_step(SPEC), user.step)
        done = b.post(
            f"/challenge/{challenge_id}/verify",
            data={
                "factor_id": user.factor,
                "code": code_at_step(user.secret, SPEC, step),
                "return_to": query["return_to"][0],
                "method": "totp",
                "csrf": csrf.group(1),
            },
        )
        assert done.status_code == 303, done.text
        back = done.headers["location"]
        assert back == f"{stack.url}/admin/panel?tab=keys&stepguard_challenge={challenge_id}"

        headers, data = echoed(b.get(back.removeprefix(stack.url)))
        assert data["path"] == "/admin/panel"
        assert headers["remote-user"] == ["fwd-carol"]
        assert headers["remote-acr"] == ["aal2"]
        # Within max_age, the rest of the admin area passes too.
        echoed(b.get("/admin"))


def test_deny_is_403_and_never_reaches_the_upstream(stack: Stack) -> None:
    user = new_user(stack, "fwd-dave")
    with browser(stack) as b:
        log_in(stack, b, user)
        before = httpx.get(f"{stack.upstream}/__count").json()["served"]
        assert b.get("/blocked/x").status_code == 403
        assert b.post("/blocked", content=b"payload").status_code == 403
        # Paths that a rule could misread are refused by StepGuard (400), so nginx fails.
        assert b.get("/reports/%2e%2e/blocked").status_code in (400, 500)
        after = httpx.get(f"{stack.upstream}/__count").json()["served"]
    assert after == before


def test_stepguard_down_means_500_never_the_upstream(tmp_path: Path) -> None:
    nginx_port = free_port()
    dead = free_port()  # nothing listens here
    with running_uvicorn(tmp_path, "support.echo_upstream:app") as upstream_port:
        snippet = adapt_snippet(
            docs_nginx_snippet(),
            {
                "server 127.0.0.1:9091;": f"server 127.0.0.1:{dead};",
                "server 127.0.0.1:8080;": f"server 127.0.0.1:{upstream_port};",
                "listen 8000;": f"listen 127.0.0.1:{nginx_port};",
            },
        )
        with running_nginx(tmp_path, snippet, port=nginx_port):
            response = httpx.get(
                f"http://localhost:{nginx_port}/reports", headers={"Remote-User": "mallory"}
            )
            served = httpx.get(f"http://127.0.0.1:{upstream_port}/__count").json()["served"]
    assert response.status_code in (500, 502)
    assert response.headers.get("x-upstream") is None
    assert served == 0
