"""The provider's pure core: PKCE (RFC 7636 appendix B vector), authorization request parsing,
the levels a request asks for, and ``decide(minimum=)``: the stricter of the rule and the
client, a deny still denies."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest

from stepguard.core.assurance import AssuranceLevel, AuthMethod, Requirement, primary_factors
from stepguard.core.decision import Allow, Deny, StepUp, decide
from stepguard.core.oidc import rfc7636
from stepguard.core.oidc.errors import (
    InvalidClientRequestError,
    InvalidGrantError,
    InvalidScopeError,
    OidcInvalidRequestError,
    UnmetAuthenticationRequirementsError,
    UnsupportedResponseTypeError,
)
from stepguard.core.oidc.model import OidcClient
from stepguard.core.oidc.request import (
    AuthorizationRequest,
    check_client,
    client_and_redirect,
    parse_authorization_request,
)
from stepguard.core.policy.loader import load_policy
from stepguard.core.policy.model import PolicyInput
from stepguard.core.risk import LOW_RISK, UNAVAILABLE_RISK, RiskAssessment

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
REDIRECT = "https://app.example/cb"
# RFC 7636 appendix B.
VERIFIER = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk"
CHALLENGE = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"
CLIENT = OidcClient(
    id="app", name="App", secret_hash=None, redirect_uris=(REDIRECT,), created_at=NOW
)


def params(**changes: str | None) -> list[tuple[str, str]]:
    base: dict[str, str | None] = {
        "response_type": "code",
        "client_id": "app",
        "redirect_uri": REDIRECT,
        "scope": "openid email",
        "code_challenge": CHALLENGE,
        "code_challenge_method": "S256",
        "state": "s",
        "nonce": "n",
    }
    base.update(changes)
    return [(k, v) for k, v in base.items() if v is not None]


def test_rfc7636_appendix_b_vector() -> None:
    assert rfc7636.s256(VERIFIER) == CHALLENGE
    rfc7636.verify(verifier=VERIFIER, expected_challenge=CHALLENGE)


@pytest.mark.parametrize("verifier", [None, "", "short", VERIFIER[:-1] + "x", VERIFIER + " "])
def test_a_wrong_or_malformed_verifier_fails(verifier: str | None) -> None:
    with pytest.raises(InvalidGrantError):
        rfc7636.verify(verifier=verifier, expected_challenge=CHALLENGE)


@pytest.mark.parametrize(
    ("challenge", "method"),
    [(None, "S256"), (CHALLENGE, "plain"), (CHALLENGE, None), ("x", "S256")],
)
def test_pkce_s256_is_required(challenge: str | None, method: str | None) -> None:
    with pytest.raises(OidcInvalidRequestError):
        rfc7636.check_challenge(challenge, method)


def test_a_valid_request_parses_and_round_trips() -> None:
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": ["phr", "bogus"]}}})
    request = parse_authorization_request(
        params(acr_values="phrh aal2 nope", max_age="300", prompt="login", claims=claims),
        client=CLIENT,
    )
    assert request.acr_values == (AssuranceLevel.PHRH, AssuranceLevel.AAL2)
    assert request.essential_acr == (AssuranceLevel.PHR,)
    assert request.wanted_levels == (AssuranceLevel.PHR,)  # essential wins
    assert request.max_age == 300
    assert request.prompt == frozenset({"login"})
    assert AuthorizationRequest.from_json(request.to_json()) == request


def test_redirect_uri_must_match_exactly() -> None:
    assert check_client(CLIENT, REDIRECT) is CLIENT
    for uri in (
        REDIRECT + "/",
        REDIRECT + "?x=1",
        "https://APP.example/cb",
        "http://app.example/cb",
    ):
        with pytest.raises(InvalidClientRequestError):
            check_client(CLIENT, uri)
    with pytest.raises(InvalidClientRequestError):
        check_client(None, REDIRECT)


def test_repeated_client_id_is_not_redirected() -> None:
    with pytest.raises(InvalidClientRequestError):
        client_and_redirect([*params(), ("client_id", "other")])


@pytest.mark.parametrize(
    ("changes", "error"),
    [
        ({"response_type": "token"}, UnsupportedResponseTypeError),
        ({"scope": "email"}, InvalidScopeError),
        ({"scope": "openid admin"}, InvalidScopeError),
        ({"response_mode": "form_post"}, OidcInvalidRequestError),
        ({"prompt": "none consent"}, OidcInvalidRequestError),
        ({"prompt": "maybe"}, OidcInvalidRequestError),
        ({"max_age": "-1"}, OidcInvalidRequestError),
        ({"max_age": "1e3"}, OidcInvalidRequestError),
        ({"claims": "{"}, OidcInvalidRequestError),
        ({"request": "eyJ"}, OidcInvalidRequestError),
        ({"code_challenge_method": "plain"}, OidcInvalidRequestError),
    ],
)
def test_invalid_requests_raise_their_protocol_error(
    changes: dict[str, str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        parse_authorization_request(params(**changes), client=CLIENT)


def test_an_essential_acr_with_no_known_value_is_unmet() -> None:
    claims = json.dumps({"id_token": {"acr": {"essential": True, "values": ["urn:x"]}}})
    with pytest.raises(UnmetAuthenticationRequirementsError):
        parse_authorization_request(params(claims=claims), client=CLIENT)


POLICY = load_policy(
    """
version: 1
rules:
  - id: blocked
    match: {actions: ["oidc.authorize"]}
    when: "context.client_id == 'blocked'"
    deny: true
  - id: strict
    match: {actions: ["oidc.authorize"]}
    when: "context.client_id == 'strict'"
    step_up: {acr: phr, max_age: 300}
  - id: open
    match: {actions: ["oidc.authorize"]}
    allow: true
default:
  deny: true
""",
    source="test",
)
FACTORS = primary_factors([AuthMethod.PWD], at=NOW - timedelta(minutes=5))


def run(
    client_id: str, minimum: Requirement | None, risk: RiskAssessment = LOW_RISK
) -> Allow | StepUp | Deny:
    inp = PolicyInput(
        action="oidc.authorize",
        resource=client_id,
        context={"client_id": client_id},
        risk=risk.as_cel(),
    )
    return decide(policy=POLICY, inp=inp, factors=FACTORS, risk=risk, now=NOW, minimum=minimum)


def test_an_allow_rule_with_a_minimum_steps_up_to_the_minimum() -> None:
    assert isinstance(run("app", None), Allow)
    decision = run("app", Requirement(acr=AssuranceLevel.AAL2))
    assert isinstance(decision, StepUp)
    assert decision.requirement.acr is AssuranceLevel.AAL2
    assert isinstance(run("app", Requirement(acr=AssuranceLevel.AAL1)), Allow)


def test_the_stricter_of_rule_and_minimum_wins() -> None:
    weaker = run("strict", Requirement(acr=AssuranceLevel.AAL2))
    assert isinstance(weaker, StepUp)
    assert weaker.requirement.acr is AssuranceLevel.PHR
    assert weaker.requirement.max_age == 300
    stronger = run("strict", Requirement(acr=AssuranceLevel.AAL3))
    assert isinstance(stronger, StepUp)
    assert stronger.requirement.acr is AssuranceLevel.AAL3
    assert stronger.requirement.max_age == 300


def test_a_deny_rule_still_denies_whatever_the_client_asks() -> None:
    assert isinstance(run("blocked", Requirement(acr=AssuranceLevel.AAL3)), Deny)


def test_degraded_risk_with_a_minimum_keeps_the_floor() -> None:
    decision = run("app", Requirement(acr=AssuranceLevel.AAL1), UNAVAILABLE_RISK)
    assert isinstance(decision, StepUp)
    assert decision.requirement.acr is AssuranceLevel.AAL2
