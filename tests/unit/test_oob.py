"""Email/SMS codes: generation, the binding HMAC, destinations; and their assurance levels."""

from __future__ import annotations

import textwrap
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepguard.core.assurance import (
    EMAIL_AMR,
    AssuranceLevel,
    AuthMethod,
    FactorType,
    Requirement,
    can_reach,
    derive_level,
    primary_factors,
    satisfies,
    step_up_factor,
    summarize,
)
from stepguard.core.errors import InvalidCodeError, InvalidRequestError, PolicyError
from stepguard.core.factors.oob import (
    Channel,
    CodeBinding,
    CodePurpose,
    code_hash,
    destination_key,
    generate_code,
    mask,
    normalize_email,
    normalize_phone,
    verify_code,
)
from stepguard.core.policy.loader import load_policy
from stepguard.core.policy.model import PolicyInput
from support.fakes import FixedRng

KEY = bytes(range(32))
NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
BINDING = CodeBinding(
    delivery_id="dlv_1",
    subject_id="alice",
    factor_id="fac_1",
    purpose=CodePurpose.STEP_UP,
    challenge_id="chl_1",
)


# --- codes ---------------------------------------------------------------------------------


@pytest.mark.parametrize("digits", [6, 7, 8])
def test_codes_are_ascii_digits_of_the_configured_length(digits: int) -> None:
    rng = FixedRng(digits)
    codes = [generate_code(rng, digits=digits).reveal() for _ in range(200)]
    assert all(len(c) == digits and c.isascii() and c.isdigit() for c in codes)
    assert len(set(codes)) > 190  # random, not a counter or a constant


def test_code_digits_are_roughly_uniform() -> None:
    rng = FixedRng(1)
    counts = Counter("".join(generate_code(rng, digits=6).reveal() for _ in range(2000)))
    assert set(counts) == set("0123456789")
    assert max(counts.values()) < 1.3 * min(counts.values())


@pytest.mark.parametrize("digits", [4, 5, 9])
def test_code_lengths_outside_6_to_8_are_refused(digits: int) -> None:
    with pytest.raises(ValueError, match="6 to 8"):
        generate_code(FixedRng(0), digits=digits)


def test_a_code_verifies_for_its_binding() -> None:
    stored = code_hash(key=KEY, binding=BINDING, code="123456")
    verify_code(key=KEY, binding=BINDING, code="123456", digits=6, expected_hash=stored)


@pytest.mark.parametrize(
    "other",
    [
        replace(BINDING, delivery_id="dlv_2"),
        replace(BINDING, subject_id="bob"),
        replace(BINDING, factor_id="fac_2"),
        replace(BINDING, challenge_id="chl_2"),
        CodeBinding(
            delivery_id="dlv_1",
            subject_id="alice",
            factor_id="fac_1",
            purpose=CodePurpose.ENROLL,
            challenge_id=None,
        ),
    ],
    ids=["delivery", "subject", "factor", "challenge", "purpose"],
)
def test_a_code_never_verifies_for_another_binding(other: CodeBinding) -> None:
    stored = code_hash(key=KEY, binding=BINDING, code="123456")
    with pytest.raises(InvalidCodeError):
        verify_code(key=KEY, binding=other, code="123456", digits=6, expected_hash=stored)


@given(code=st.text(min_size=1, max_size=10))
def test_only_the_exact_code_verifies(code: str) -> None:
    stored = code_hash(key=KEY, binding=BINDING, code="123456")
    if code == "123456":
        return
    with pytest.raises(InvalidCodeError):
        verify_code(key=KEY, binding=BINDING, code=code, digits=6, expected_hash=stored)


def test_the_stored_hash_depends_on_the_server_key() -> None:
    assert code_hash(key=KEY, binding=BINDING, code="1" * 6) != code_hash(
        key=bytes(32), binding=BINDING, code="1" * 6
    )
    with pytest.raises(ValueError, match="256 bits"):
        code_hash(key=b"short", binding=BINDING, code="123456")


def test_a_step_up_binding_needs_a_challenge_and_an_enrollment_binding_none() -> None:
    with pytest.raises(ValueError, match="challenge"):
        replace(BINDING, challenge_id=None)
    with pytest.raises(ValueError, match="challenge"):
        replace(BINDING, purpose=CodePurpose.ENROLL)


# --- destinations --------------------------------------------------------------------------


def test_email_addresses_are_normalized_and_strictly_validated() -> None:
    assert normalize_email("Alice@Example.COM") == "Alice@example.com"
    for bad in ["alice", "alice@", "@example.com", "a b@example.com", "alice@localhost", "ä@x.de"]:
        with pytest.raises(InvalidRequestError):
            normalize_email(bad)


def test_phone_numbers_must_be_valid_canonical_e164() -> None:
    assert normalize_phone("+4915112345678") == "+4915112345678"
    for bad in [
        "4915112345678",
        "+49 151 12345678",
        "+49(151)12345678",
        "+0123",
        "+1555",
        "+4900000",
    ]:
        with pytest.raises(InvalidRequestError):
            normalize_phone(bad)


def test_destinations_are_shown_masked() -> None:
    assert mask(Channel.EMAIL, "alice@example.com") == "a***@example.com"
    assert mask(Channel.SMS, "+4915112345678") == "+49*********78"
    assert mask(Channel.SMS, "+14155550123") == "+1********23"


def test_destination_keys_are_keyed_and_case_insensitive_pseudonyms() -> None:
    one = destination_key(key=KEY, channel=Channel.EMAIL, destination="Alice@example.com")
    assert one == destination_key(key=KEY, channel=Channel.EMAIL, destination="alice@example.com")
    assert one != destination_key(
        key=bytes(32), channel=Channel.EMAIL, destination="alice@example.com"
    )
    assert "alice" not in one


# --- levels --------------------------------------------------------------------------------


PWD = primary_factors([AuthMethod.PWD], at=NOW - timedelta(hours=1))
EMAIL = step_up_factor(FactorType.EMAIL_OTP, factor_id="fac_e", at=NOW)
SMS = step_up_factor(FactorType.SMS_OTP, factor_id="fac_s", at=NOW)
TOTP = step_up_factor(FactorType.TOTP, factor_id="fac_t", at=NOW)


def test_an_emailed_code_never_reaches_aal2() -> None:
    assert derive_level([*PWD, EMAIL]) is AssuranceLevel.AAL1
    for methods in [frozenset(), frozenset({"email_otp"})]:
        requirement = Requirement(acr=AssuranceLevel.AAL2, methods=methods)
        assert not satisfies([*PWD, EMAIL], requirement, now=NOW)
        assert not can_reach(PWD, EMAIL, requirement)


def test_an_emailed_code_satisfies_a_fresh_aal1_re_verification() -> None:
    requirement = Requirement(
        acr=AssuranceLevel.AAL1, max_age=300, methods=frozenset({"email_otp"})
    )
    assert can_reach(PWD, EMAIL, requirement)
    assert satisfies([*PWD, EMAIL], requirement, now=NOW + timedelta(seconds=60))
    assert not satisfies([*PWD, EMAIL], requirement, now=NOW + timedelta(seconds=301))
    assert not satisfies([*PWD, TOTP], requirement, now=NOW)  # methods tell them apart


def test_sms_is_restricted_it_counts_for_aal2_only_where_a_rule_names_it() -> None:
    default = Requirement(acr=AssuranceLevel.AAL2)
    named = Requirement(acr=AssuranceLevel.AAL2, methods=frozenset({"sms_otp", "totp"}))
    assert derive_level([*PWD, SMS]) is AssuranceLevel.AAL1
    assert not satisfies([*PWD, SMS], default, now=NOW)
    assert not can_reach(PWD, SMS, default)
    assert satisfies([*PWD, SMS], named, now=NOW)
    assert can_reach(PWD, SMS, named)
    assert not satisfies(
        [*PWD, SMS], Requirement(acr=AssuranceLevel.PHR, methods=named.methods), now=NOW
    )


def test_other_factor_types_are_unaffected() -> None:
    assert satisfies([*PWD, TOTP], Requirement(acr=AssuranceLevel.AAL2), now=NOW)


def test_amr_says_sms_for_sms_and_otp_plus_email_for_email() -> None:
    assert summarize([*PWD, SMS]).amr == ("pwd", "sms")
    assert summarize([*PWD, EMAIL]).amr == ("pwd", "otp", EMAIL_AMR)
    assert summarize([*PWD, TOTP]).amr == ("pwd", "otp", "mfa")


def _policy(step_up: str) -> PolicyInput:
    policy = load_policy(
        textwrap.dedent(
            f"""
            version: 1
            rules:
              - id: r
                match: {{actions: [a]}}
                step_up: {step_up}
            default: {{deny: true}}
            """
        ),
        source="p.yaml",
    )
    requirement = policy.evaluate(PolicyInput(action="a")).requirement
    assert requirement is not None
    return PolicyInput(action="a")


@pytest.mark.parametrize(
    "step_up",
    [
        "{acr: aal1, max_age: 300, methods: [email_otp]}",
        "{acr: aal2, methods: [sms_otp]}",
        "{acr: aal2, methods: [totp, email_otp]}",
    ],
)
def test_policies_can_name_email_and_sms(step_up: str) -> None:
    _policy(step_up)


@pytest.mark.parametrize("acr", ["aal2", "phr", "aal3"])
def test_a_rule_that_only_email_could_satisfy_above_aal1_is_refused(acr: str) -> None:
    with pytest.raises(PolicyError, match="not a second factor") as raised:
        _policy(f"{{acr: {acr}, methods: [email_otp]}}")
    assert raised.value.field == "step_up.methods"
