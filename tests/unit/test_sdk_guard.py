"""The framework-neutral guard core, the token rules and the new wire fields, without a server.

What is under test is the mapping from a decision (or a failure) to an answer, the URLs the
guard builds, and how the client writes ``challenge_id`` and reads ``page_url``: pure
functions, and ``httpx.MockTransport`` where the client's request building is the subject.
"""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import UTC, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest

from stepguard.sdk import (
    ChallengeRef,
    Decision,
    DecisionKind,
    Requirement,
    Secret,
    StepGuardClient,
    StepUpAuth,
    TransportError,
    parse_www_authenticate,
)
from stepguard.sdk.guard import (
    Check,
    FailMode,
    GuardOptions,
    Proceed,
    ProtectedRoute,
    Reply,
    RequestInfo,
    failure_reply,
    format_bearer_error,
    grant_from_body,
    outcome,
    page_location,
    prefers_html,
    return_to,
)
from stepguard.sdk.rfc9068 import AcrLadder, TokenRequirement

OPTIONS = GuardOptions(public_url="https://sg.test/base/")
EXPIRES = datetime(2026, 1, 1, tzinfo=UTC)
BROWSER = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"


def step_up(page_url: str | None = None) -> Decision:
    return Decision(
        decision=DecisionKind.STEP_UP,
        rule="transfer-large",
        reasons=(),
        requirement=Requirement(acr="aal2", max_age=300, methods=(), bind=True),
        challenge=ChallengeRef(
            id="chl_1", expires_at=EXPIRES, page_url=None if page_url is None else Secret(page_url)
        ),
        www_authenticate=None,
    )


@pytest.mark.parametrize(
    ("accept", "expected"),
    [
        (BROWSER, True),
        ("text/html", True),
        ("application/json", False),
        ("*/*", False),
        (None, False),
        ("application/json, text/html;q=0.5", False),
        ("text/html;q=0, */*", False),
        ("text/html;q=0.9, application/json", False),
        ("TEXT/HTML", True),
    ],
)
def test_prefers_html(accept: str | None, expected: bool) -> None:
    assert prefers_html(accept) is expected


def test_browser_get_step_up_redirects_to_the_servers_page_with_return_to() -> None:
    page = "https://sg.test/pages/challenge/chl_1?t=tok"
    request = RequestInfo(method="GET", url="http://app.test/pay?x=1&y=%2F", accept=BROWSER)
    result = outcome(step_up(page), request=request, options=OPTIONS)
    assert isinstance(result, Reply)
    assert result.status == 303
    location = result.header("location")
    assert location is not None
    assert location.startswith(page + "&return_to=")
    assert parse_qs(urlsplit(location).query)["return_to"] == ["http://app.test/pay?x=1&y=%2F"]


def test_fallback_page_and_api_answer() -> None:
    request = RequestInfo(method="POST", url="http://app.test/pay", accept=BROWSER)
    result = outcome(step_up(), request=request, options=OPTIONS)  # a POST is never redirected
    assert isinstance(result, Reply)
    assert result.status == 401
    body = json.loads(result.body)
    assert body["page_url"] == "https://sg.test/base/challenge/chl_1"
    assert body["challenge_id"] == "chl_1"
    header = result.header("www-authenticate")
    assert header is not None
    challenge = parse_www_authenticate(header)
    assert challenge is not None
    assert (challenge.acr_values, challenge.max_age) == (("aal2",), 300)


def test_a_page_url_that_is_not_http_is_ignored() -> None:
    challenge = ChallengeRef(id="c/1", expires_at=EXPIRES, page_url=Secret("javascript:alert(1)"))
    assert page_location(challenge, return_to=None, options=OPTIONS) == (
        "https://sg.test/base/challenge/c%2F1"
    )


def test_return_to_drops_the_challenge_and_grant_parameters_and_uses_app_url() -> None:
    options = GuardOptions(public_url="https://sg.test", app_url="https://bank.example")
    request = RequestInfo(
        method="GET",
        url="http://10.0.0.5:8000/a?stepguard_challenge=c&b=2&stepguard_grant=g#frag",
    )
    assert return_to(request, options) == "https://bank.example/a?b=2"


def test_allow_proceeds_and_deny_is_403() -> None:
    allow = Decision(decision=DecisionKind.ALLOW, rule="r", reasons=())
    deny = Decision(decision=DecisionKind.DENY, rule="r", reasons=())
    api = RequestInfo(method="POST", url="http://app.test/", accept="application/json")
    assert outcome(allow, request=api, options=OPTIONS) == Proceed(decision=allow)
    refused = outcome(deny, request=api, options=OPTIONS)
    assert isinstance(refused, Reply)
    assert refused.status == 403
    assert json.loads(refused.body)["error"] == "access_denied"


def test_failures_close_towards_the_routes_mode() -> None:
    error = TransportError("down")
    denied = failure_reply(error, check=Check(session_id="s", action="a"), options=OPTIONS)
    assert denied.status == 503
    stepped = failure_reply(
        error,
        check=Check(session_id="s", action="a", on_unavailable=FailMode.STEP_UP),
        options=OPTIONS,
    )
    assert stepped.status == 401
    assert json.loads(stepped.body)["challenge_id"] is None


@pytest.mark.parametrize(
    ("content_type", "body", "expected"),
    [
        ("application/x-www-form-urlencoded", b"a=1&stepguard_grant=g1", "g1"),
        ("application/x-www-form-urlencoded", b"stepguard_grant=g1&stepguard_grant=g2", None),
        ("application/json; charset=utf-8", b'{"stepguard_grant": "g2"}', "g2"),
        ("application/json", b'{"stepguard_grant": 5}', None),
        ("application/json", b"[1]", None),
        ("application/json", b"{not json", None),
        ("text/plain", b"stepguard_grant=g", None),
        (None, b"", None),
    ],
)
def test_grant_from_body(content_type: str | None, body: bytes, expected: str | None) -> None:
    assert grant_from_body(content_type, body, "stepguard_grant") == expected


def test_protected_route_matching() -> None:
    route: ProtectedRoute[object] = ProtectedRoute(
        path="/admin/*", action="admin", methods=frozenset({"post"})
    )
    assert route.matches("POST", "/admin/users")
    assert not route.matches("GET", "/admin/users")
    assert not route.matches("POST", "/administrator")
    assert ProtectedRoute[object](path="/x", action="a").matches("DELETE", "/x")


def test_options_are_validated() -> None:
    with pytest.raises(ValueError, match="public_url"):
        GuardOptions(public_url="sg.test")
    with pytest.raises(ValueError, match="challenge_path"):
        GuardOptions(public_url="https://sg.test", challenge_path="/c/")


def test_acr_ladder() -> None:
    ladder = AcrLadder(aliases={"urn:idp:mfa": "aal2"})
    assert ladder.satisfies("aal3", "aal2")
    assert ladder.satisfies("urn:idp:mfa", "aal2")
    assert not ladder.satisfies("urn:idp:mfa", "phr")
    assert not ladder.satisfies("unknown", "aal1")
    assert not ladder.satisfies(None, "aal1")
    with pytest.raises(ValueError, match="not on the ladder"):
        ladder.satisfies("aal2", "gold")
    with pytest.raises(ValueError, match="not in order"):
        AcrLadder(aliases={"x": "gold"})
    with pytest.raises(ValueError, match="max_age"):
        TokenRequirement(max_age=-1)


def test_bearer_error_header() -> None:
    assert format_bearer_error() == "Bearer"
    assert format_bearer_error("invalid_token", 'bad "x"\n') == (
        'Bearer error="invalid_token", error_description="bad x"'
    )


def test_decide_sends_challenge_id_only_when_set_and_reads_page_url() -> None:
    bodies: list[dict[str, object]] = []

    def server(request: httpx.Request) -> httpx.Response:
        bodies.append(json.loads(request.content))
        return httpx.Response(
            200,
            json={
                "decision": "step_up",
                "rule": "r",
                "reasons": [],
                "risk": {"score": 0, "level": "low", "reasons": []},
                "requirement": {"acr": "aal2", "max_age": None, "methods": [], "bind": False},
                "challenge": {
                    "id": "chl_1",
                    "expires_at": "2026-01-01T00:00:00Z",
                    "page_url": "https://sg.test/p?t=1",
                },
            },
        )

    with StepGuardClient("https://sg.test", "key", transport=httpx.MockTransport(server)) as sg:
        first = sg.decide("ses_1", "a")
        sg.decide("ses_1", "a", challenge_id="chl_9")
    assert "challenge_id" not in bodies[0]
    assert bodies[1]["challenge_id"] == "chl_9"
    assert first.challenge is not None
    assert first.challenge.page_url is not None
    assert first.challenge.page_url.reveal() == "https://sg.test/p?t=1"


def test_step_up_auth_never_shows_its_token() -> None:
    auth = StepUpAuth("secret-token-value")
    assert "secret-token-value" not in repr(auth)
    assert "secret-token-value" not in repr(auth.token)


_PROBE = """
import sys
import stepguard.sdk
import stepguard.sdk.guard
heavy = ("starlette", "fastapi", "flask", "django", "joserfc", "werkzeug")
print(",".join(sorted(m for m in sys.modules if m.split(".")[0] in heavy)))
"""


def test_the_sdk_core_imports_no_framework_and_no_jose_library() -> None:
    result = subprocess.run(
        [sys.executable, "-c", _PROBE], capture_output=True, text=True, check=True
    )
    assert result.stdout.strip() == ""
