"""Levels are derived from completed factors and their times, never stored."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepguard.core.assurance import (
    AssuranceLevel,
    AuthMethod,
    CompletedFactor,
    FactorKind,
    FactorType,
    Requirement,
    can_reach,
    derive_level,
    primary_factors,
    satisfies,
    step_up_factor,
    summarize,
)
from stepguard.core.errors import InvalidRequestError

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)


def totp_at(seconds_ago: int) -> CompletedFactor:
    return step_up_factor(
        FactorType.TOTP, factor_id="fac_1", at=NOW - timedelta(seconds=seconds_ago)
    )


def password(hours_ago: int = 8) -> tuple[CompletedFactor, ...]:
    return primary_factors([AuthMethod.PWD], at=NOW - timedelta(hours=hours_ago))


def test_levels_are_ordered_and_round_trip_their_wire_names() -> None:
    assert AssuranceLevel.AAL1 < AssuranceLevel.AAL2 < AssuranceLevel.PHR < AssuranceLevel.PHRH
    assert AssuranceLevel.PHRH < AssuranceLevel.AAL3
    for level in AssuranceLevel:
        assert AssuranceLevel.from_acr(level.acr) is level


@pytest.mark.parametrize("value", ["AAL2", "aal4", "", "phr ", "urn:x"])
def test_unknown_level_names_are_refused(value: str) -> None:
    with pytest.raises(InvalidRequestError):
        AssuranceLevel.from_acr(value)


def test_a_password_alone_is_aal1() -> None:
    assert derive_level(password()) is AssuranceLevel.AAL1


def test_a_second_factor_alone_gives_no_level() -> None:
    assert derive_level([totp_at(0)]) is None


def test_password_and_totp_are_aal2_and_report_mfa() -> None:
    factors = (*password(), totp_at(10))
    assert derive_level(factors) is AssuranceLevel.AAL2
    summary = summarize(factors)
    assert summary.amr == ("pwd", "otp", "mfa")
    assert summary.auth_time == NOW - timedelta(seconds=10)


def test_two_factors_of_the_same_kind_stay_aal1() -> None:
    factors = primary_factors([AuthMethod.PWD, AuthMethod.PIN], at=NOW)
    assert derive_level(factors) is AssuranceLevel.AAL1


def test_upstream_mfa_counts_as_two_kinds() -> None:
    assert derive_level(primary_factors([AuthMethod.PWD, AuthMethod.OTP], at=NOW)) is (
        AssuranceLevel.AAL2
    )
    assert derive_level(primary_factors([AuthMethod.MFA], at=NOW)) is AssuranceLevel.AAL2


def test_amr_values_without_a_kind_prove_nothing() -> None:
    assert primary_factors([AuthMethod.RBA, AuthMethod.GEO], at=NOW) == ()


def test_phishing_resistant_hardware_factors_reach_phr_phrh_and_aal3() -> None:
    base = password()

    def key(*, hardware: bool, uv: bool) -> CompletedFactor:
        return CompletedFactor(
            method="webauthn",
            amr=(AuthMethod.HWK,),
            kind=FactorKind.POSSESSION,
            completed_at=NOW,
            phishing_resistant=True,
            hardware_bound=hardware,
            multi_factor=uv,
        )

    assert derive_level((*base, key(hardware=False, uv=False))) is AssuranceLevel.PHR
    assert derive_level((*base, key(hardware=True, uv=False))) is AssuranceLevel.PHRH
    assert derive_level((*base, key(hardware=True, uv=True))) is AssuranceLevel.AAL3


def test_max_age_counts_from_the_step_up_factor_time() -> None:
    requirement = Requirement(acr=AssuranceLevel.AAL2, max_age=300)
    assert satisfies((*password(), totp_at(299)), requirement, now=NOW)
    assert satisfies((*password(), totp_at(300)), requirement, now=NOW)
    assert not satisfies((*password(), totp_at(301)), requirement, now=NOW)


def test_max_age_without_a_fresh_factor_is_not_met_even_at_the_right_level() -> None:
    old_mfa = primary_factors([AuthMethod.PWD, AuthMethod.OTP], at=NOW - timedelta(hours=1))
    assert not satisfies(old_mfa, Requirement(acr=AssuranceLevel.AAL2, max_age=60), now=NOW)
    assert satisfies(old_mfa, Requirement(acr=AssuranceLevel.AAL2), now=NOW)


def test_max_age_zero_is_never_met_by_session_state() -> None:
    factors = (*password(), totp_at(0))
    assert not satisfies(factors, Requirement(acr=AssuranceLevel.AAL1, max_age=0), now=NOW)


def test_factors_from_the_future_are_not_fresh() -> None:
    """A clock step backwards must not make a factor look fresh for ever."""
    future = step_up_factor(FactorType.TOTP, factor_id="f", at=NOW + timedelta(hours=1))
    assert not satisfies(
        (*password(), future), Requirement(acr=AssuranceLevel.AAL2, max_age=300), now=NOW
    )


def test_methods_restrict_which_step_ups_count() -> None:
    recovery = step_up_factor(FactorType.RECOVERY_CODE, factor_id="r", at=NOW)
    only_totp = Requirement(acr=AssuranceLevel.AAL2, max_age=300, methods=frozenset({"totp"}))
    assert not satisfies((*password(), recovery), only_totp, now=NOW)
    assert satisfies((*password(), totp_at(5)), only_totp, now=NOW)
    assert not can_reach(password(), recovery, only_totp)
    assert can_reach(password(), totp_at(0), only_totp)


def test_totp_cannot_reach_a_phishing_resistant_level() -> None:
    assert not can_reach(password(), totp_at(0), Requirement(acr=AssuranceLevel.PHR))


factor_strategy = st.builds(
    CompletedFactor,
    method=st.sampled_from(["primary", "totp", "recovery_code", "webauthn"]),
    amr=st.just((AuthMethod.OTP,)),
    kind=st.sampled_from(list(FactorKind)),
    completed_at=st.integers(min_value=0, max_value=7200).map(lambda s: NOW - timedelta(seconds=s)),
    primary=st.booleans(),
    phishing_resistant=st.booleans(),
    hardware_bound=st.booleans(),
    multi_factor=st.booleans(),
)


@given(st.lists(factor_strategy, max_size=6), factor_strategy)
def test_adding_a_factor_never_lowers_the_level(
    factors: list[CompletedFactor], extra: CompletedFactor
) -> None:
    before = derive_level(factors)
    after = derive_level([*factors, extra])
    if before is not None:
        assert after is not None
        assert after >= before


@given(
    st.lists(factor_strategy, max_size=6),
    st.sampled_from(list(AssuranceLevel)),
    st.one_of(st.none(), st.integers(min_value=0, max_value=7200)),
)
def test_a_met_requirement_stays_met_when_relaxed(
    factors: list[CompletedFactor], acr: AssuranceLevel, max_age: int | None
) -> None:
    requirement = Requirement(acr=acr, max_age=max_age)
    if satisfies(factors, requirement, now=NOW):
        assert satisfies(factors, Requirement(acr=AssuranceLevel.AAL1, max_age=max_age), now=NOW)
        assert satisfies(factors, Requirement(acr=acr), now=NOW)
