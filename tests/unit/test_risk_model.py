"""The Freeman model and the score: expected values computed by hand from the formulas in
``stepguard.core.risk.freeman`` (Freeman et al., NDSS 2016, with the documented smoothing)."""

from __future__ import annotations

import math
from fractions import Fraction

import pytest

from stepguard.core.risk import LevelThresholds, RiskLevel, sigmoid
from stepguard.core.risk.engine import (
    EMPTY_PROFILE,
    Profile,
    RiskConfig,
    RiskInputs,
    RiskModel,
    assess,
)
from stepguard.core.risk.features import Agent, LoginFeatures, Place
from stepguard.core.risk.freeman import Population, hierarchy_ratio, user_prior

UA = Agent(user_agent="UA1", browser="Chrome 80", os="Windows 10", device_type="desktop")


def login(country: str, asn: str, ip: str, *, at: float = 0.0, agent: Agent = UA) -> LoginFeatures:
    return LoginFeatures(at=at, ip=ip, place=Place(country=country, asn=asn), agent=agent)


HOME = login("DE", "3320", "1.1.1.1")
ABROAD = login("US", "7922", "2.2.2.2")


def counts_of(features: LoginFeatures, times: int) -> dict[str, int]:
    return {key: times for key in (*features.ip_keys(), *features.ua_keys())}


# Ten logins by two users: alice 8 from home, bob 2 from abroad, all with the same browser.
POPULATION = Population(
    counts={
        **counts_of(HOME, 8),
        **counts_of(ABROAD, 2),
        **{key: 10 for key in HOME.ua_keys()},
    },
    logins=10,
    subjects=2,
)
ALICE = Profile(counts=counts_of(HOME, 8), logins=8)


def ratio(features: LoginFeatures, feature: str = "ip") -> float:
    keys = features.ip_keys() if feature == "ip" else features.ua_keys()
    return hierarchy_ratio(
        feature, keys, user=ALICE.counts, user_logins=8, population=POPULATION, alpha=1.0
    ).ratio


def test_keys_are_paths_coarsest_first() -> None:
    assert HOME.ip_keys() == (
        "ip.country:DE",
        "ip.asn:3320\x1fDE",
        "ip.ip:1.1.1.1\x1f3320\x1fDE",
    )
    assert HOME.ua_keys()[0] == "ua.device_type:desktop"
    assert HOME.ua_keys()[-1] == "ua.user_agent:UA1\x1fChrome 80\x1fWindows 10\x1fdesktop"


def test_an_unseen_country_costs_history_plus_alpha_over_alpha() -> None:
    # country: p = 3/11, p_u = (0 + 3/11) / 9 = 1/33 -> 9; below it user and population agree.
    assert ratio(ABROAD) == pytest.approx(9.0)
    result = hierarchy_ratio(
        "ip", ABROAD.ip_keys(), user=ALICE.counts, user_logins=8, population=POPULATION, alpha=1.0
    )
    assert result.unfamiliar_level == 0  # the country


def test_a_familiar_country_is_below_one() -> None:
    # country: p = 9/11, p_u = (8 + 9/11) / 9 = 97/99 -> 81/97; ASN and IP: 9/9 over 9/9.
    assert ratio(HOME) == pytest.approx(float(Fraction(81, 97)))


def test_a_new_ip_in_a_known_network_is_unfamiliar_at_the_ip_level_only() -> None:
    other_ip = login("DE", "3320", "1.1.1.99")
    # country 81/97 as above; ASN 1; IP: p = (0+1)/(8+1) = 1/9, p_u = (0 + 1/9)/(8+1) = 1/81
    # -> 9.
    assert ratio(other_ip) == pytest.approx(float(Fraction(81, 97) * 9))
    result = hierarchy_ratio(
        "ip", other_ip.ip_keys(), user=ALICE.counts, user_logins=8, population=POPULATION, alpha=1.0
    )
    assert result.unfamiliar_level == 2


def test_the_ua_hierarchy_of_a_familiar_browser_is_neutral() -> None:
    assert ratio(HOME, "ua") == pytest.approx(1.0)


def test_the_user_prior() -> None:
    # p(u|attack) = 1/2, p(u|legit) = (8+1)/(10+2) = 3/4.
    assert user_prior(user_logins=8, population=POPULATION) == pytest.approx(2 / 3)


def test_a_user_without_history_scores_the_prior_alone() -> None:
    for features in (HOME, ABROAD):
        r = hierarchy_ratio(
            "ip", features.ip_keys(), user={}, user_logins=0, population=POPULATION, alpha=1.0
        )
        assert r.ratio == pytest.approx(1.0)
        assert r.unfamiliar_level is None


FREEMAN = RiskConfig(model=RiskModel.FREEMAN)


def test_freeman_score_of_an_attack_from_abroad() -> None:
    # S = 2/3 * 9 * 1 = 6 -> score 6/7, high.
    result = assess(RiskInputs(features=ABROAD, profile=ALICE, population=POPULATION), FREEMAN)
    assert result.score == pytest.approx(6 / 7)
    assert result.level is RiskLevel.HIGH
    (behaviour,) = result.signals
    assert behaviour.name == "behaviour"
    assert behaviour.value == pytest.approx(6.0)
    assert behaviour.contribution == pytest.approx(math.log(6.0))
    assert behaviour.reason == "unfamiliar country"


def test_freeman_score_of_a_login_from_home() -> None:
    # S = 2/3 * 81/97 = 54/97 -> score 54/151, low.
    result = assess(RiskInputs(features=HOME, profile=ALICE, population=POPULATION), FREEMAN)
    assert result.score == pytest.approx(54 / 151)
    assert result.level is RiskLevel.LOW
    assert result.reasons == ()


def test_the_full_model_adds_hour_and_action_on_the_same_scale() -> None:
    at_home = login("DE", "3320", "1.1.1.1", at=3 * 3600.0)  # 03:00 UTC
    profile = Profile(counts={**ALICE.counts, "hour:3": 8, "action:login": 8}, logins=8)
    population = Population(
        counts={**POPULATION.counts, "hour:3": 8, "action:login": 10},
        logins=10,
        subjects=2,
    )
    result = assess(
        RiskInputs(features=at_home, profile=profile, population=population), RiskConfig()
    )
    names = [s.name for s in result.signals]
    assert names == ["behaviour", "time_of_day", "action"]
    assert result.signals[1].contribution == pytest.approx(math.log(81 / 97))
    # hour: p = 9/11, p_u = 97/99 -> 81/97; action: p = 11/11, p_u = 9/9 -> 1.
    expected = Fraction(2, 3) * Fraction(81, 97) * Fraction(81, 97)
    assert result.score == pytest.approx(float(expected / (1 + expected)))


def test_levels_and_thresholds() -> None:
    thresholds = LevelThresholds()
    assert thresholds.level(0.49) is RiskLevel.LOW
    assert thresholds.level(0.5) is RiskLevel.MEDIUM
    assert thresholds.level(0.8) is RiskLevel.HIGH
    assert thresholds.level(0.95) is RiskLevel.CRITICAL
    with pytest.raises(ValueError, match="thresholds"):
        LevelThresholds(medium=0.9, high=0.8)


def test_sigmoid_is_stable_at_the_extremes() -> None:
    assert sigmoid(0.0) == 0.5
    assert sigmoid(1000.0) == 1.0
    assert sigmoid(-1000.0) == 0.0


def test_missing_history_is_degraded_and_never_lower_than_high() -> None:
    low = assess(RiskInputs(features=HOME, profile=ALICE, population=POPULATION), FREEMAN)
    degraded = assess(RiskInputs(features=HOME, profile=None, population=POPULATION), FREEMAN)
    assert degraded.degraded
    assert degraded.level is RiskLevel.HIGH
    assert degraded.score >= 0.8 > low.score
    assert "degraded: history unavailable" in degraded.reasons


def test_the_degraded_level_is_configurable() -> None:
    result = assess(
        RiskInputs(features=HOME, profile=ALICE, population=None),
        RiskConfig(degraded_level=RiskLevel.CRITICAL),
    )
    assert result.level is RiskLevel.CRITICAL
    assert result.score >= 0.95


def test_a_new_subject_is_exactly_medium() -> None:
    population = Population(counts={}, logins=0, subjects=0)
    result = assess(
        RiskInputs(features=HOME, profile=EMPTY_PROFILE, population=population), RiskConfig()
    )
    assert result.score == 0.5
    assert result.level is RiskLevel.MEDIUM
    assert "no login history for this subject yet" in [s.reason for s in result.signals]


def test_hour_and_action_are_clamped() -> None:
    at_night = login("DE", "3320", "1.1.1.1", at=3 * 3600.0)
    result = assess(
        RiskInputs(features=at_night, profile=ALICE, population=POPULATION), RiskConfig()
    )
    hour, action = result.signals[1], result.signals[2]
    # Never seen by alice: ratio (8 + 1) / 1 = 9, clamped to the cap of 1.0 log-odds.
    assert hour.value == pytest.approx(9.0)
    assert hour.contribution == 1.0
    assert action.contribution == 1.0
    assert hour.reason == "unusual hour for this subject"
