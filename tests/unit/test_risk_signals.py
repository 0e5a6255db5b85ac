"""Each signal of the full model on its own, and how they combine."""

from __future__ import annotations

import math

import pytest

from stepguard.core.risk import RiskLevel
from stepguard.core.risk.engine import (
    Alert,
    LastLocation,
    Profile,
    RiskConfig,
    RiskInputs,
    Velocity,
    assess,
    device_signal,
    great_circle_km,
    reputation_signal,
    travel_signal,
    velocity_signals,
)
from stepguard.core.risk.features import Agent, LoginFeatures, Place
from stepguard.core.risk.freeman import Population
from stepguard.core.risk.velocity import DistinctCounter, SlidingCounter

CONFIG = RiskConfig()
BERLIN = (52.52, 13.405)
POTSDAM = (52.39, 13.065)
NEW_YORK = (40.7128, -74.006)
HOUR = 3600.0


def at_place(
    lat_lon: tuple[float, float], *, at: float, device_id: str | None = None
) -> LoginFeatures:
    return LoginFeatures(
        at=at,
        ip="198.51.100.7",
        place=Place(country="XX", asn="1", latitude=lat_lon[0], longitude=lat_lon[1]),
        agent=Agent(),
        device_id=device_id,
    )


def last_at(lat_lon: tuple[float, float], *, at: float, proxied: bool = False) -> LastLocation:
    return LastLocation(latitude=lat_lon[0], longitude=lat_lon[1], at=at, proxied=proxied)


def test_great_circle_distance() -> None:
    # Berlin - New York is about 6385 km; a quarter of the equator is pi/2 * R.
    assert great_circle_km(*BERLIN, *NEW_YORK) == pytest.approx(6385, rel=0.005)
    assert great_circle_km(0, 0, 0, 90) == pytest.approx(math.pi / 2 * 6371.0088)
    assert great_circle_km(*BERLIN, *BERLIN) == 0.0


def test_impossible_travel_is_flagged_with_its_speed() -> None:
    signal = travel_signal(
        at_place(NEW_YORK, at=2 * HOUR), last_at(BERLIN, at=0.0), proxied=False, config=CONFIG
    )
    assert signal is not None
    assert signal.value == pytest.approx(great_circle_km(*BERLIN, *NEW_YORK) / 2)
    assert signal.contribution == CONFIG.travel_weight
    assert "km/h" in signal.reason


def test_possible_travel_contributes_nothing() -> None:
    signal = travel_signal(
        at_place(NEW_YORK, at=9 * HOUR), last_at(BERLIN, at=0.0), proxied=False, config=CONFIG
    )
    assert signal is not None
    assert signal.value < CONFIG.travel_max_kmh
    assert signal.contribution == 0.0


def test_short_distances_are_ignored_however_fast() -> None:
    # Berlin to Potsdam (~27 km) in one second is within geolocation error.
    signal = travel_signal(
        at_place(POTSDAM, at=1.0), last_at(BERLIN, at=0.0), proxied=False, config=CONFIG
    )
    assert signal is not None
    assert signal.value == 0.0
    assert signal.contribution == 0.0


@pytest.mark.parametrize(("now_proxied", "then_proxied"), [(True, False), (False, True)])
def test_hosting_or_vpn_at_either_end_is_exempt(now_proxied: bool, then_proxied: bool) -> None:
    signal = travel_signal(
        at_place(NEW_YORK, at=HOUR),
        last_at(BERLIN, at=0.0, proxied=then_proxied),
        proxied=now_proxied,
        config=CONFIG,
    )
    assert signal is not None
    assert signal.value > CONFIG.travel_max_kmh
    assert signal.contribution == 0.0
    assert "VPN" in signal.reason


def test_no_travel_signal_without_coordinates() -> None:
    features = LoginFeatures(at=0.0, ip="x", place=Place(country="DE"), agent=Agent())
    assert travel_signal(features, last_at(BERLIN, at=0.0), proxied=False, config=CONFIG) is None
    assert travel_signal(at_place(BERLIN, at=0.0), None, proxied=False, config=CONFIG) is None


def test_devices() -> None:
    profile = Profile(counts={}, logins=1, devices={"dev-1": 0.0})
    known = device_signal(at_place(BERLIN, at=3 * 86400.0, device_id="dev-1"), profile, CONFIG)
    new = device_signal(at_place(BERLIN, at=0.0, device_id="dev-2"), profile, CONFIG)
    assert known is not None
    assert new is not None
    assert (known.value, known.contribution) == (0.0, CONFIG.known_device_weight)
    assert known.reason == "known device, last seen 3 days ago"
    assert (new.value, new.contribution) == (1.0, CONFIG.new_device_weight)
    assert device_signal(at_place(BERLIN, at=0.0), profile, CONFIG) is None


def test_reputation_takes_the_worst_list() -> None:
    signal = reputation_signal(frozenset({"hosting", "tor"}), CONFIG)
    assert signal is not None
    assert signal.contribution == 3.0
    assert signal.reason == "IP address on the hosting, tor list"
    assert reputation_signal(frozenset(), CONFIG) is None


def test_velocity_weights_and_caps() -> None:
    signals = {
        s.name: s
        for s in velocity_signals(
            Velocity(subject_failures=3, ip_failures=100, asn_failures=0, ip_subjects=4), CONFIG
        )
    }
    assert signals["failures_subject"].contribution == pytest.approx(1.5)
    assert signals["failures_ip"].contribution == CONFIG.velocity_cap  # 25.0, capped
    assert "failures_asn" not in signals
    assert signals["spraying"].value == 4.0
    assert signals["spraying"].contribution == pytest.approx(2.0)
    assert "spraying" not in {s.name for s in velocity_signals(Velocity(ip_subjects=2), CONFIG)}


EMPTY = Population(counts={}, logins=0, subjects=0)


def inputs(**overrides: object) -> RiskInputs:
    base: dict[str, object] = {
        "features": at_place(BERLIN, at=0.0),
        "profile": Profile(counts={}, logins=0),
        "population": EMPTY,
    }
    base.update(overrides)
    return RiskInputs(**base)  # type: ignore[arg-type]


def test_signals_add_up_in_log_odds() -> None:
    result = assess(
        inputs(reputation=frozenset({"tor"}), velocity=Velocity(subject_failures=2)), CONFIG
    )
    # behaviour 0 (no history, empty population: prior 1), hour 0, action 0, tor 3, failures 1.
    assert result.score == pytest.approx(1 / (1 + math.exp(-4.0)))
    assert result.reasons[0] == "IP address on the tor list"
    assert not result.degraded


def test_an_alert_is_a_floor_and_named_first() -> None:
    alert = Alert(id="ral_1", score=0.97, reason="credential leak reported")
    result = assess(inputs(alerts=(alert,)), CONFIG)
    assert result.score == 0.97
    assert result.level is RiskLevel.CRITICAL
    assert result.reasons[0] == "external alert: credential leak reported"
    assert result.signal_values()["alert"] == 0.97
    lower = assess(inputs(alerts=(Alert(id="ral_2", score=0.1, reason="x"),)), CONFIG)
    assert lower.score == 0.5  # an alert never lowers the score


@pytest.mark.parametrize("source", ["reputation", "velocity", "alerts"])
def test_a_failed_source_degrades(source: str) -> None:
    result = assess(inputs(**{source: None}), CONFIG)
    assert result.degraded
    assert result.level is RiskLevel.HIGH
    assert f"degraded: {source} unavailable" in result.reasons


def test_failed_features_degrade() -> None:
    result = assess(inputs(failed_sources=("geo",)), CONFIG)
    assert result.degraded
    assert result.score >= CONFIG.thresholds.high


def test_cel_view_exposes_signal_values() -> None:
    result = assess(inputs(reputation=frozenset({"hosting"})), CONFIG)
    view = result.as_cel()
    assert view["level"] == result.level.label
    assert view["signals"] == {s.name: s.value for s in result.signals}
    assert view["signals"]["ip_reputation"] == 1.0


def test_sliding_counter_forgets_old_events() -> None:
    counter = SlidingCounter(window=60.0, max_keys=2, max_events=3)
    for at in (0.0, 10.0, 20.0, 30.0):
        counter.add("a", at)
    assert counter.count("a", 30.0) == 3  # capped at max_events
    assert counter.count("a", 75.0) == 2  # t=20 and t=30 are within (15, 75]
    counter.add("b", 0.0)
    counter.add("c", 0.0)  # evicts the least recently touched key, "a"
    assert counter.count("a", 75.0) == 0
    assert counter.count("c", 0.0) == 1


def test_distinct_counter_counts_members_once() -> None:
    counter = DistinctCounter(window=60.0)
    for at, member in ((0.0, "alice"), (1.0, "bob"), (2.0, "alice"), (50.0, "carol")):
        counter.add("203.0.113.9", member, at)
    assert counter.count("203.0.113.9", 50.0) == 3
    assert counter.count("203.0.113.9", 61.5) == 2  # bob (t=1) left the window
    assert counter.count("198.51.100.1", 0.0) == 0
