"""Forward-auth in the core: strict parsing of the original request, and the policy's HTTP
matching (hosts, paths, methods) with its load-time checks."""

from __future__ import annotations

import pytest

from stepguard.adapters.web.forward_auth import ForwardAuthConfig
from stepguard.core.errors import ForwardedRequestError, PolicyError
from stepguard.core.forward_auth import (
    parse_absolute_url,
    parse_client_ip,
    parse_host,
    request_from_parts,
)
from stepguard.core.policy.loader import load_policy
from stepguard.core.policy.model import HttpRequest, PolicyInput


def original(uri: str = "/", *, method: str = "GET", host: str = "app.example.com") -> HttpRequest:
    return request_from_parts(method=method, proto="https", host=host, uri=uri)


# --- parsing ------------------------------------------------------------------------------


def test_a_well_formed_request_is_parsed_and_its_url_rebuilt() -> None:
    request = request_from_parts(
        method="post", proto="HTTPS", host="App.Example.COM.:8443", uri="/a/b%20c?x=1&y"
    )
    assert request.method == "POST"
    assert request.scheme == "https"
    assert (request.host, request.port) == ("app.example.com", 8443)
    assert request.path == "/a/b c"
    assert request.query == "x=1&y"
    assert request.url == "https://app.example.com:8443/a/b%20c?x=1&y"


@pytest.mark.parametrize(
    "uri",
    [
        "",
        "admin",  # not origin-form
        "http://evil.example/admin",
        "/a/../admin",
        "/a/%2e%2e/admin",  # an encoded dot segment is still one
        "/./admin",
        "/admin/.",
        "//admin",
        "/a//b",
        "/admin;jsessionid=1",
        "/admin%2Fx",
        "/admin%5cx",
        "/admin\\x",
        "/a%zz",
        "/a%",
        "/a%00b",
        "/a%ff",  # not UTF-8
        "/a b",
        "/a\tb",
        "/ä",
        "/a#frag",
        "/" + "a" * 9000,
    ],
)
def test_ambiguous_or_malformed_uris_are_refused(uri: str) -> None:
    with pytest.raises(ForwardedRequestError):
        request_from_parts(method="GET", proto="https", host="app.example.com", uri=uri)


@pytest.mark.parametrize(
    "host",
    [
        "",
        "user@app.example.com",
        "app.example.com:",
        "app.example.com:0",
        "app.example.com:65536",
        "app.example.com:+80",
        "app.example.com:80:80",
        "app..example.com",
        "-app.example.com",
        "app.example.com/x",
        "[::1",
        "[nope]",
        "999.1.1.1",
        "app example.com",
        "%61pp.example.com",
    ],
)
def test_malformed_hosts_are_refused(host: str) -> None:
    with pytest.raises(ForwardedRequestError):
        parse_host(host)


def test_ip_literals_are_normalized() -> None:
    assert parse_host("[0:0::1]:8080") == ("[::1]", 8080)
    assert parse_host("127.0.0.1") == ("127.0.0.1", None)


@pytest.mark.parametrize(
    ("method", "proto"),
    [(None, "https"), ("GET POST", "https"), ("", "https"), ("GET", "ftp"), ("GET", None)],
)
def test_methods_and_schemes_are_strict(method: str | None, proto: str | None) -> None:
    with pytest.raises(ForwardedRequestError):
        request_from_parts(method=method, proto=proto, host="app.example.com", uri="/")


def test_x_original_url_is_an_absolute_http_url_without_userinfo() -> None:
    assert parse_absolute_url("https://app.example.com/a?b") == ("https", "app.example.com", "/a?b")
    assert parse_absolute_url("http://app.example.com") == ("http", "app.example.com", "/")
    for bad in (None, "", "/a", "ftp://x/", "https://u@app.example.com/", "https:///a"):
        with pytest.raises(ForwardedRequestError):
            parse_absolute_url(bad)


def test_the_client_ip_is_the_entry_the_proxy_appended() -> None:
    assert parse_client_ip(None) is None
    assert parse_client_ip("203.0.113.9") == "203.0.113.9"
    assert parse_client_ip("10.0.0.1, 198.51.100.7") == "198.51.100.7"
    for bad in ("", "unknown", "10.0.0.1, ", "1.2.3.4:80"):
        with pytest.raises(ForwardedRequestError):
            parse_client_ip(bad)


# --- policy matching ----------------------------------------------------------------------

POLICY = """
version: 1
rules:
  - id: admin
    match: {hosts: ["app.example.com"], paths: ["/admin", "/admin/**"]}
    step_up: {acr: aal2, max_age: 300}
  - id: api-write
    match: {hosts: ["*.example.com"], paths: ["^/api/v[0-9]+/.*$"], methods: [post, DELETE]}
    deny: true
  - id: public
    match: {hosts: ["*.example.com"], paths: ["/*", "/static/**"], methods: [GET, HEAD]}
    allow: true
  - id: named
    match: {actions: ["http.admin-panel"]}
    step_up: {acr: aal2, max_age: 60}
  - id: app-action
    match: {actions: ["payments.transfer"]}
    allow: true
default: {deny: true}
"""


@pytest.mark.parametrize(
    ("method", "host", "uri", "rule"),
    [
        ("GET", "app.example.com", "/admin", "admin"),
        ("POST", "app.example.com", "/admin/users/7", "admin"),
        ("GET", "app.example.com", "/administrator", "public"),
        ("GET", "other.example.com", "/admin", "public"),  # admin is for one host only
        ("GET", "app.example.com", "/index.html", "public"),
        ("GET", "app.example.com", "/static/css/site.css", "public"),
        ("GET", "app.example.com", "/docs/page", "default"),  # * stays within a segment
        ("GET", "example.com", "/", "default"),  # *.example.com is subdomains only
        ("GET", "a.b.example.com", "/", "public"),
        ("GET", "example.com.evil.test", "/", "default"),
        ("get", "app.example.com", "/x", "public"),
        ("POST", "app.example.com", "/api/v2/x", "api-write"),
        ("PUT", "app.example.com", "/api/v2/x", "default"),
    ],
)
def test_rules_match_host_path_and_method(method: str, host: str, uri: str, rule: str) -> None:
    policy = load_policy(POLICY, source="p.yaml")
    inp = PolicyInput(action="http.request", http=original(uri, method=method, host=host))
    assert policy.evaluate(inp).id == rule


def test_http_rules_never_match_a_request_without_http_data() -> None:
    policy = load_policy(POLICY, source="p.yaml")
    assert policy.evaluate(PolicyInput(action="http.request")).id == "default"


def test_a_proxy_may_name_its_action_and_other_actions_are_untouched() -> None:
    policy = load_policy(POLICY, source="p.yaml")
    # HTTP rules without actions cover every http.* action, in policy order...
    inp = PolicyInput(action="http.admin-panel", http=original("/x"))
    assert policy.evaluate(inp).id == "public"
    # ...so a named action applies where none of them matches.
    inp = PolicyInput(action="http.admin-panel", http=original("/x", host="intranet.test"))
    assert policy.evaluate(inp).id == "named"
    assert policy.evaluate(PolicyInput(action="payments.transfer")).id == "app-action"


def test_request_fields_reach_cel() -> None:
    policy = load_policy(
        """
version: 1
rules:
  - id: reports
    match: {actions: ["http.request"]}
    when: "request.host == 'app.example.com' && request.path.startsWith('/reports')"
    allow: true
default: {deny: true}
""",
        source="p.yaml",
    )
    http = original("/reports/1")
    inp = PolicyInput(
        action="http.request", http=http, request={"host": http.host, "path": http.path}
    )
    assert policy.evaluate(inp).id == "reports"


def _load(rule: str) -> None:
    load_policy(f"version: 1\nrules:\n  - id: r\n    {rule}\ndefault: {{deny: true}}\n", source="p")


@pytest.mark.parametrize(
    ("rule", "field", "words"),
    [
        ('match: {hosts: ["a.com"], actions: ["x"]}\n    allow: true', "match.actions[0]", "http."),
        (
            'match: {paths: ["/a"]}\n    step_up: {acr: aal2, max_age: 0}',
            "step_up.max_age",
            "no tr",
        ),
        ("match: {methods: [GET]}\n    step_up: {acr: aal2, bind: true}", "step_up.bind", "no tr"),
        (
            'match: {actions: ["http.*"]}\n    step_up: {acr: aal2, bind: true}',
            "step_up.bind",
            "tr",
        ),
        (
            'match: {actions: ["http.x"]}\n    step_up: {acr: aal2, max_age: 0}',
            "step_up.max_age",
            "",
        ),
        ('match: {paths: ["a/b"]}\n    allow: true', "match.paths[0]", "start with '/'"),
        ('match: {paths: ["^(/a"]}\n    allow: true', "match.paths[0]", "regular expression"),
        ('match: {hosts: ["a.*.com"]}\n    allow: true', "match.hosts[0]", "host name"),
        ('match: {hosts: ["a.com:443"]}\n    allow: true', "match.hosts[0]", "host name"),
        ('match: {methods: ["GET POST"]}\n    allow: true', "match.methods[0]", "whitespace"),
        ('match: {methods: ["G/T"]}\n    allow: true', "match.methods[0]", "token"),
        ("match: {hosts: []}\n    allow: true", "match.hosts", "empty"),
        ('match: {groups: ["a"]}\n    allow: true', "match.actions", "hosts/paths/methods"),
    ],
)
def test_http_rules_are_validated(rule: str, field: str, words: str) -> None:
    with pytest.raises(PolicyError) as raised:
        _load(rule)
    assert raised.value.field == field
    assert raised.value.rule == "r"
    assert words in raised.value.message


def test_bound_rules_for_application_actions_are_still_allowed() -> None:
    _load('match: {actions: ["payments.*"]}\n    step_up: {acr: aal2, bind: true}')


def test_only_configured_proxies_are_trusted() -> None:
    default = ForwardAuthConfig()
    assert default.trusts("127.0.0.1")
    assert default.trusts("127.8.9.10")
    assert default.trusts("::1")
    assert default.trusts("::ffff:127.0.0.1")  # an IPv4-mapped loopback peer
    for peer in (None, "", "10.0.0.1", "::2", "testclient", "localhost", "127.0.0.1 "):
        assert not default.trusts(peer), peer
    custom = ForwardAuthConfig.parse(["10.0.0.0/24", " 2001:db8::/32"], None)
    assert custom.trusts("10.0.0.77")
    assert custom.trusts("2001:db8::5")
    assert not custom.trusts("127.0.0.1")  # replaced, not added to the default
    with pytest.raises(ValueError, match="host bits set"):
        ForwardAuthConfig.parse(["10.0.0.1/24"], None)  # host bits set
