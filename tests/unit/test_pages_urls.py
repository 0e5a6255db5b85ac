"""``return_to`` is an allow-list, never a parser contest; CSRF tokens follow the cookie."""

from __future__ import annotations

from urllib.parse import urlsplit

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepguard.adapters.web.pages._urls import (
    normalize_origin,
    origin_of,
    safe_return_to,
    with_query,
)
from stepguard.core.pages import csrf_token, csrf_valid

ALLOWED = (normalize_origin("https://app.example"), normalize_origin("http://localhost:3000"))


@pytest.mark.parametrize(
    "url",
    [
        "https://app.example",
        "https://app.example/",
        "https://APP.example/pay?x=1#frag",
        "https://app.example:443/pay",
        "http://localhost:3000/done",
        "/account/factors",
    ],
)
def test_allowed_destinations(url: str) -> None:
    assert safe_return_to(url, allowed_origins=ALLOWED) == url


@pytest.mark.parametrize(
    "url",
    [
        None,
        "",
        "https://evil.example/",
        "//evil.example",
        "///evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "https:evil.example",
        "https:/app.example/",
        "javascript:alert(1)",
        "JavaScript:alert(1)//https://app.example",
        "data:text/html,<script>alert(1)</script>",
        "https://app.example@evil.example/",
        "https://user:pw@app.example/",
        "https://app.example\\@evil.example/",
        "https://app.example%5C@evil.example/",
        "https://app.example.evil.example/",
        "https://evil.example/https://app.example",
        "http://app.example/",
        "https://app.example:444/",
        "https://app.example:99999/",
        "https://app.example:x/",
        "http://localhost:3001/",
        " https://app.example/",
        "https://app.example/\n",
        "https://app.example\t/",
        "https://app.example/\x00",
        "ftp://app.example/",
        "/challenge/chl_x",
        "/static/pages/pages.js",
        "https://app.example/" + "a" * 3000,
    ],
)
def test_refused_destinations(url: str | None) -> None:
    assert safe_return_to(url, allowed_origins=ALLOWED) is None


@given(st.text(max_size=80))
def test_anything_accepted_is_internal_or_on_an_allowed_origin(url: str) -> None:
    accepted = safe_return_to(url, allowed_origins=ALLOWED)
    if accepted is None:
        return
    if accepted.startswith("/"):
        assert accepted.startswith("/account/")
        assert not accepted.startswith("//")
    else:
        assert origin_of(accepted) in ALLOWED
        assert "@" not in urlsplit(accepted).netloc


@given(st.sampled_from(["https://app.example", "http://localhost:3000"]), st.text(max_size=40))
def test_paths_on_an_allowed_origin_never_leave_it(origin: str, path: str) -> None:
    accepted = safe_return_to(f"{origin}/{path}", allowed_origins=ALLOWED)
    if accepted is not None:
        assert origin_of(accepted) == normalize_origin(origin)


@pytest.mark.parametrize(
    "origin", ["https://app.example/path", "app.example", "https://a@app.example", "ftp://x"]
)
def test_configured_origins_must_be_bare_origins(origin: str) -> None:
    with pytest.raises(ValueError, match="not an origin"):
        normalize_origin(origin)


def test_default_ports_and_case_are_normalized() -> None:
    assert normalize_origin("HTTPS://App.Example:443/") == "https://app.example:443"
    assert normalize_origin("http://[::1]:8000") == "http://[::1]:8000"


def test_with_query_appends_and_replaces() -> None:
    url = with_query("https://app.example/pay?x=1&stepguard_challenge=old", stepguard_challenge="c")
    assert url == "https://app.example/pay?x=1&stepguard_challenge=c"
    assert with_query("/challenge/c", return_to="/account/factors") == (
        "/challenge/c?return_to=%2Faccount%2Ffactors"
    )


def test_csrf_tokens_belong_to_one_cookie() -> None:
    token = csrf_token("sgb_one")
    assert csrf_valid("sgb_one", token)
    assert not csrf_valid("sgb_two", token)
    assert not csrf_valid("sgb_one", "")
    assert not csrf_valid("sgb_one", token.upper())
    assert not csrf_valid("sgb_one", "é" * 64)  # non-ASCII input is refused, not an error
