"""RFC 9470 step-up challenges: exact formatting, robust parsing, and the round trip."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepguard.sdk import (
    ChallengeRef,
    Decision,
    DecisionKind,
    Requirement,
    RiskSummary,
    StepUpChallenge,
    format_www_authenticate,
    parse_www_authenticate,
    step_up_challenge_from_decision,
)

IUA = 'error="insufficient_user_authentication"'

# --------------------------------------------------------------------------------------------
# Formatting


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [
        pytest.param(
            StepUpChallenge(
                acr_values=("aal2",),
                max_age=300,
                error_description="A different authentication level is required",
            ),
            'Bearer error="insufficient_user_authentication", '
            'error_description="A different authentication level is required", '
            'acr_values="aal2", max_age=300',
            id="all-params",
        ),
        pytest.param(
            StepUpChallenge(
                acr_values=("phrh", "phr"), max_age=None, error_description="Stronger, please"
            ),
            'Bearer error="insufficient_user_authentication", '
            'error_description="Stronger, please", acr_values="phrh phr"',
            id="several-acr-values-no-max-age",
        ),
        pytest.param(
            StepUpChallenge(acr_values=(), max_age=0, error_description="Re-authenticate"),
            'Bearer error="insufficient_user_authentication", '
            'error_description="Re-authenticate", max_age=0',
            id="max-age-zero-no-acr",
        ),
        pytest.param(
            StepUpChallenge(),
            'Bearer error="insufficient_user_authentication"',
            id="bare",
        ),
        pytest.param(
            StepUpChallenge(acr_values=("aal2",), error_description='say "hi" \\ bye'),
            'Bearer error="insufficient_user_authentication", '
            'error_description="say \\"hi\\" \\\\ bye", acr_values="aal2"',
            id="quote-and-backslash-escaped",
        ),
        pytest.param(
            StepUpChallenge(acr_values=("urn:mace:incommon:iap:silver",), error_description="x"),
            'Bearer error="insufficient_user_authentication", error_description="x", '
            'acr_values="urn:mace:incommon:iap:silver"',
            id="urn-acr",
        ),
    ],
)
def test_format_produces_the_exact_header(challenge: StepUpChallenge, expected: str) -> None:
    assert format_www_authenticate(challenge) == expected


@pytest.mark.parametrize("bad", ["line\r\nSet-Cookie: x=y", "a\nb", "tab\there", "nul\x00", "\x7f"])
def test_control_characters_in_the_description_are_rejected(bad: str) -> None:
    """CR/LF would split the header; no control character is ever accepted."""
    with pytest.raises(ValueError, match="control characters"):
        StepUpChallenge(acr_values=("aal2",), error_description=bad)


def test_non_ascii_descriptions_are_not_formatted() -> None:
    challenge = StepUpChallenge(acr_values=("aal2",), error_description="Überweisung")
    with pytest.raises(ValueError, match="ASCII"):
        format_www_authenticate(challenge)


@pytest.mark.parametrize("bad", ["", "aal 2", 'aal"2', "aal\\2", "aal2\n", "é"])
def test_acr_values_must_be_single_visible_ascii_words(bad: str) -> None:
    with pytest.raises(ValueError, match="acr value"):
        StepUpChallenge(acr_values=(bad,))


def test_acr_values_must_be_a_tuple() -> None:
    with pytest.raises(TypeError, match="tuple"):
        StepUpChallenge(acr_values=["aal2"])  # type: ignore[arg-type]  # the point of the test


@pytest.mark.parametrize("bad", [-1, True, 1.5, "300"])
def test_max_age_must_be_a_non_negative_int(bad: object) -> None:
    with pytest.raises(ValueError, match="max_age"):
        StepUpChallenge(max_age=bad)  # type: ignore[arg-type]  # the point of the test


# --------------------------------------------------------------------------------------------
# Round trip

_ACR_VALUE = st.text(
    alphabet=st.characters(min_codepoint=0x21, max_codepoint=0x7E, exclude_characters='"\\'),
    min_size=1,
    max_size=12,
)
_CHALLENGES = st.builds(
    StepUpChallenge,
    acr_values=st.lists(_ACR_VALUE, max_size=4).map(tuple),
    max_age=st.none() | st.integers(min_value=0, max_value=10**9),
    error_description=st.text(
        alphabet=st.characters(min_codepoint=0x20, max_codepoint=0x7E), max_size=60
    ),
)


@given(challenge=_CHALLENGES)
def test_format_then_parse_returns_the_same_challenge(challenge: StepUpChallenge) -> None:
    """Any printable description survives, quotes, backslashes and commas included."""
    assert parse_www_authenticate(format_www_authenticate(challenge)) == challenge


@given(
    challenge=_CHALLENGES,
    before=st.sampled_from(["", 'Basic realm="api, v1", ', "Negotiate, ", 'Bearer error="x", ']),
    after=st.sampled_from(["", ', DPoP algs="ES256 PS256"', ", Basic dXNlcjpwYXNz", ", , "]),
)
def test_the_challenge_is_found_among_other_challenges(
    challenge: StepUpChallenge, before: str, after: str
) -> None:
    header = before + format_www_authenticate(challenge) + after
    assert parse_www_authenticate(header) == challenge


@given(header=st.text(max_size=200))
def test_parsing_never_raises(header: str) -> None:
    """The header comes from the network: any text gives a challenge or None."""
    result = parse_www_authenticate(header)
    assert result is None or isinstance(result, StepUpChallenge)


# --------------------------------------------------------------------------------------------
# Parsing real-world-ish headers


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        pytest.param(
            'Bearer error="insufficient_user_authentication", '
            'error_description="A different authentication level is required", '
            'acr_values="myACR"',
            StepUpChallenge(
                acr_values=("myACR",),
                error_description="A different authentication level is required",
            ),
            id="rfc9470-figure-2",
        ),
        pytest.param(
            'Bearer error="insufficient_user_authentication", '
            'error_description="More recent authentication is required", max_age="5"',
            StepUpChallenge(max_age=5, error_description="More recent authentication is required"),
            id="rfc9470-figure-3-quoted-max-age",
        ),
        pytest.param(
            f'Bearer realm="example", max_age=60, acr_values="phr aal2", {IUA}',
            StepUpChallenge(acr_values=("phr", "aal2"), max_age=60),
            id="different-order-and-extra-param",
        ),
        pytest.param(
            'bEaReR ERROR="insufficient_user_authentication", Acr_Values="aal2", MAX_AGE=10',
            StepUpChallenge(acr_values=("aal2",), max_age=10),
            id="case-insensitive-scheme-and-names",
        ),
        pytest.param(
            "Bearer error=insufficient_user_authentication, acr_values=aal2",
            StepUpChallenge(acr_values=("aal2",)),
            id="token-values",
        ),
        pytest.param(
            'Bearer   error = "insufficient_user_authentication" ,acr_values="aal2"',
            StepUpChallenge(acr_values=("aal2",)),
            id="bad-whitespace-around-equals-and-commas",
        ),
        pytest.param(
            'Newauth realm="apps", type=1, title="Login to \\"apps\\"", Basic realm="simple", '
            f'Bearer {IUA}, error_description="Step up, please", acr_values="aal2"',
            StepUpChallenge(acr_values=("aal2",), error_description="Step up, please"),
            id="rfc9110-example-then-bearer",
        ),
        pytest.param(
            f'Basic dXNlcjpwYXNzd29yZA==, Bearer {IUA}, acr_values="aal3"',
            StepUpChallenge(acr_values=("aal3",)),
            id="token68-challenge-first",
        ),
        pytest.param(
            f'Bearer error="invalid_token", Bearer {IUA}, acr_values="aal2"',
            StepUpChallenge(acr_values=("aal2",)),
            id="second-bearer-challenge",
        ),
        pytest.param(
            f'Bearer {IUA}, acr_values="  aal2   phr "',
            StepUpChallenge(acr_values=("aal2", "phr")),
            id="acr-values-with-extra-spaces",
        ),
        pytest.param(
            f'Bearer {IUA}, error_description="a \\, b \\" c \\\\ d"',
            StepUpChallenge(error_description='a , b " c \\ d'),
            id="quoted-pairs",
        ),
        pytest.param(
            f'DPoP algs="ES256", Bearer {IUA}, scope="read write", error_uri="https://x/y"',
            StepUpChallenge(),
            id="dpop-and-extra-params",
        ),
    ],
)
def test_parse_finds_the_step_up_challenge(header: str, expected: StepUpChallenge) -> None:
    assert parse_www_authenticate(header) == expected


@pytest.mark.parametrize(
    "header",
    [
        pytest.param("", id="empty"),
        pytest.param('Basic realm="x"', id="other-scheme"),
        pytest.param('Bearer error="invalid_token"', id="other-error"),
        pytest.param('Bearer realm="x"', id="no-error"),
        pytest.param(
            'Basic error="insufficient_user_authentication"', id="right-error-wrong-scheme"
        ),
        pytest.param(
            'Bearer error="INSUFFICIENT_USER_AUTHENTICATION"', id="error-value-is-case-sensitive"
        ),
        pytest.param(f'Bearer {IUA}, acr_values="aal2', id="unterminated-quote"),
        pytest.param(f"Bearer {IUA}, acr_values=", id="missing-value"),
        pytest.param(f'Bearer {IUA}, acr_values="a", acr_values="b"', id="duplicate-param"),
        pytest.param(f"Bearer {IUA}, max_age=soon", id="non-numeric-max-age"),
        pytest.param(f"Bearer {IUA}, max_age=-5", id="negative-max-age"),
        pytest.param(f'Bearer {IUA} acr_values="aal2"', id="missing-comma"),
        pytest.param(f'Bearer {IUA}, error_description="bad\x01"', id="control-in-quotes"),
        pytest.param(f'Bearer {IUA}, error_description="tab\there"', id="tab-in-description"),
        pytest.param(f'Bearer"{IUA}"', id="no-space-after-scheme"),
        pytest.param(f"{IUA}", id="params-without-scheme"),
        pytest.param("Bearer abc==, error=x", id="params-after-token68"),
    ],
)
def test_parse_returns_none_without_a_valid_step_up_challenge(header: str) -> None:
    assert parse_www_authenticate(header) is None


# --------------------------------------------------------------------------------------------
# From a decision

_RISK = RiskSummary(score=0.1, level="low", reasons=())
_REQUIREMENT = Requirement(acr="aal2", max_age=300, methods=("totp",), bind=True)


def _decision(kind: DecisionKind, *, www_authenticate: str | None = None) -> Decision:
    step_up = kind is DecisionKind.STEP_UP
    return Decision(
        decision=kind,
        rule="r",
        reasons=(),
        risk=_RISK,
        requirement=_REQUIREMENT if step_up else None,
        challenge=None,
        www_authenticate=www_authenticate,
    )


@pytest.mark.parametrize("kind", [DecisionKind.ALLOW, DecisionKind.DENY])
def test_no_challenge_unless_the_decision_is_step_up(kind: DecisionKind) -> None:
    assert step_up_challenge_from_decision(_decision(kind)) is None


def test_a_step_up_decision_uses_the_server_header() -> None:
    header = f'Bearer {IUA}, error_description="server says", acr_values="phr", max_age=60'
    challenge = step_up_challenge_from_decision(
        _decision(DecisionKind.STEP_UP, www_authenticate=header)
    )
    assert challenge == StepUpChallenge(
        acr_values=("phr",), max_age=60, error_description="server says"
    )


def test_a_step_up_decision_without_header_uses_its_requirement() -> None:
    decision = Decision(
        decision=DecisionKind.STEP_UP,
        rule="r",
        reasons=("large transfer",),
        risk=_RISK,
        requirement=_REQUIREMENT,
        challenge=ChallengeRef(id="c", expires_at=datetime(2030, 1, 1, tzinfo=UTC)),
    )
    challenge = step_up_challenge_from_decision(decision)
    assert challenge is not None
    assert format_www_authenticate(challenge) == (
        'Bearer error="insufficient_user_authentication", '
        'error_description="A different authentication level is required", '
        'acr_values="aal2", max_age=300'
    )


def test_the_description_can_be_replaced() -> None:
    challenge = step_up_challenge_from_decision(
        _decision(DecisionKind.STEP_UP), error_description="Confirm the transfer"
    )
    assert challenge == StepUpChallenge(
        acr_values=("aal2",), max_age=300, error_description="Confirm the transfer"
    )
