"""The risk evaluation harness (bench/risk): its metrics, its Freeman baseline, its simulator.

Every expected value here is computed by hand in the comments, not read back from the code.
"""

from __future__ import annotations

import csv
import math
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

from risk import metrics  # noqa: E402 -- bench/ is put on sys.path just above
from risk.baseline import FreemanModel  # noqa: E402
from risk.simulate import SimulationConfig, simulate  # noqa: E402


def scores(*values: float) -> metrics.FloatArray:
    return np.asarray(values, dtype=np.float64)


# --- ROC AUC ----------------------------------------------------------------------------------


def test_auc_counts_ties_as_half() -> None:
    # Pairs (pos, neg): (.9,.5)=1 (.9,.1)=1 (.5,.5)=½ (.5,.1)=1 (.5,.5)=½ (.5,.1)=1 -> 5/6
    assert metrics.roc_auc(scores(0.9, 0.5, 0.5), scores(0.5, 0.1)) == pytest.approx(5 / 6)


@pytest.mark.parametrize(
    ("positives", "negatives", "expected"),
    [
        ((3.0, 4.0), (1.0, 2.0), 1.0),  # perfectly separated
        ((1.0, 2.0), (3.0, 4.0), 0.0),  # perfectly inverted
        ((2.0, 2.0), (2.0, 2.0, 2.0), 0.5),  # all tied
        ((1.0, 3.0), (2.0,), 0.5),  # one pair above, one below
    ],
)
def test_auc_extremes(
    positives: tuple[float, ...], negatives: tuple[float, ...], expected: float
) -> None:
    assert metrics.roc_auc(scores(*positives), scores(*negatives)) == pytest.approx(expected)


def test_auc_is_undefined_without_one_side() -> None:
    assert math.isnan(metrics.roc_auc(scores(), scores(1.0)))
    assert math.isnan(metrics.roc_auc(scores(1.0), scores()))


def test_average_ranks_share_ties() -> None:
    assert metrics.average_ranks(scores(3, 1, 3, 2)).tolist() == [3.5, 1.0, 3.5, 2.0]


def test_nan_scores_become_the_highest_risk() -> None:
    assert metrics.as_scores([0.2, math.nan]).tolist() == [0.2, math.inf]


# --- TPR at a fixed FPR -------------------------------------------------------------------------


def test_tpr_at_fpr_on_distinct_scores() -> None:
    negatives = scores(*(i / 100 for i in range(100)))  # 0.00 .. 0.99
    positives = scores(0.995, 0.985, 0.975, 0.5)
    # 1% of 100 negatives: one may be flagged (0.99), so flag > 0.98: two of four attacks.
    assert metrics.tpr_at_fpr(positives, negatives, 0.01) == pytest.approx(0.5)
    # 2%: 0.99 and 0.98 may be flagged, so flag > 0.97: three of four.
    assert metrics.tpr_at_fpr(positives, negatives, 0.02) == pytest.approx(0.75)
    # 0.1% of 100 is no negative at all: flag > 0.99 only.
    assert metrics.tpr_at_fpr(positives, negatives, 0.001) == pytest.approx(0.25)


def test_tpr_at_fpr_moves_ties_together() -> None:
    negatives = scores(1.0, 1.0, *([0.0] * 98))
    positives = scores(1.0, 2.0)
    # One false positive allowed, but the two negatives at 1.0 go together (2% > 1%), so
    # only scores strictly above 1.0 are flagged: the attack at 1.0 is missed.
    assert metrics.tpr_at_fpr(positives, negatives, 0.01) == pytest.approx(0.5)
    assert metrics.tpr_at_fpr(positives, negatives, 0.02) == pytest.approx(1.0)


# --- threshold at a TPR, re-authentication rate -----------------------------------------------


def test_threshold_for_tpr() -> None:
    # 100 attacks scored 1..100; 99% must be flagged, one may be missed: t = 2.
    assert metrics.threshold_for_tpr(scores(*range(1, 101)), 0.99) == 2.0
    # Ties: [1, 5, 5, 5] at 75%: one miss allowed, t = 5 flags three of four.
    assert metrics.threshold_for_tpr(scores(5, 5, 1, 5), 0.75) == 5.0
    assert math.isnan(metrics.threshold_for_tpr(scores(), 0.99))


def test_median_reauth_rate() -> None:
    users = {
        "a": scores(0.1, 0.9),  # 1 of 2 at or above 0.5
        "b": scores(0.9, 0.5, 0.2),  # 2 of 3 (0.5 counts: challenged when score >= t)
        "c": scores(0.1),  # 0 of 1
        "d": scores(),  # no logins: not counted
    }
    assert metrics.median_reauth_rate(users, 0.5) == pytest.approx(0.5)
    assert metrics.median_reauth_rate({"x": scores(math.nan, 0.0)}, 0.5) == pytest.approx(0.5)
    assert math.isnan(metrics.median_reauth_rate(users, math.nan))


def test_spearman() -> None:
    assert metrics.spearman(scores(1, 2, 3, 4), scores(10, 20, 30, 40)) == pytest.approx(1.0)
    assert metrics.spearman(scores(1, 2, 3), scores(3, 2, 1)) == pytest.approx(-1.0)
    assert math.isnan(metrics.spearman(scores(1, 1, 1), scores(1, 2, 3)))


# --- the Freeman baseline ----------------------------------------------------------------------

IP = ("NO", "2119", "1.2.3.4")
UA = ("mobile", "iOS 14.0", "Mobile Safari 14.0", "Mozilla/5.0 (iPhone ...)")


def test_freeman_familiar_login() -> None:
    model = FreemanModel()
    model.learn("u", (IP, UA))
    # N = 1, |U| = 1, n_u = 1: p(u|A) / p(u|L) = 1 / ((1 + 1) / (1 + 1)) = 1.
    # Every level: global (1 + 1) / (1 + 1 child + 1) = 2/3; user (1 + 2/3) / (1 + 1) = 5/6;
    # ratio 4/5, over 3 IP levels and 4 UA levels.
    assert model.score("u", (IP, UA)) == pytest.approx(7 * math.log(4 / 5))


def test_freeman_unfamiliar_country_costs_at_the_first_new_level_only() -> None:
    model = FreemanModel()
    model.learn("u", (IP, UA))
    elsewhere = ("SE", "3301", "5.6.7.8")
    # Country: global (0 + 1) / (1 + 1 + 1) = 1/3; user (0 + 1/3) / (1 + 1) = 1/6: ratio 2.
    # ASN and IP under an unseen country: global 1 / (0 + 0 + 1) = 1, user (0 + 1) / 1: ratio 1.
    expected = math.log(2) + 4 * math.log(4 / 5)
    assert model.score("u", (elsewhere, UA)) == pytest.approx(expected)


def test_freeman_user_without_history() -> None:
    model = FreemanModel()
    model.learn("u", (IP, UA))
    # p(u|A) = 1/1, p(u|L) = (0 + 1) / (1 + 1): log 2; every feature ratio is 1.
    assert model.score("v", (IP, UA)) == pytest.approx(math.log(2))


def test_freeman_history_window_forgets_the_oldest_login() -> None:
    model = FreemanModel(max_history=1)
    model.learn("u", (("SE", "3301", "5.6.7.8"), UA))
    model.learn("u", (IP, UA))
    # The SE login left u's window, so u's counts equal a single NO login, while the global
    # counts still hold both: N = 2, two countries under the root.
    # p(u|A)/p(u|L) = 1 / ((1 + 1) / (2 + 1)) = 3/2.
    # IP levels: country global (1 + 1) / (2 + 2 + 1) = 2/5, user (1 + 2/5) / 2 = 7/10 -> 4/7;
    # ASN, IP: global 2/3, user 5/6 -> 4/5 each.
    # UA levels (seen twice globally, once in the window): global (2 + 1) / (2 + 1 + 1) = 3/4,
    # user (1 + 3/4) / 2 = 7/8 -> 6/7, four times.
    expected = math.log(3 / 2) + math.log(4 / 7) + 2 * math.log(4 / 5) + 4 * math.log(6 / 7)
    assert model.score("u", (IP, UA)) == pytest.approx(expected)


# --- the simulator -------------------------------------------------------------------------------


@pytest.mark.parametrize("attacker_failure_rate", [0.0, 1.0])
def test_simulation_is_deterministic_and_its_truth_matches_the_replay_rule(
    tmp_path: Path, attacker_failure_rate: float
) -> None:
    config = SimulationConfig(
        users=25, seed=7, attacks_per_cell=2, attacker_failure_rate=attacker_failure_rate
    )
    first = simulate(config, logins_csv=tmp_path / "a.csv", truth_csv=tmp_path / "a-truth.csv")
    simulate(config, logins_csv=tmp_path / "b.csv", truth_csv=tmp_path / "b-truth.csv")
    assert (tmp_path / "a.csv").read_bytes() == (tmp_path / "b.csv").read_bytes()
    assert (tmp_path / "a-truth.csv").read_bytes() == (tmp_path / "b-truth.csv").read_bytes()

    with (tmp_path / "a.csv").open(newline="") as file:
        logins = list(csv.DictReader(file))
    with (tmp_path / "a-truth.csv").open(newline="") as file:
        truth = list(csv.DictReader(file))
    assert len(logins) == len(truth) == first.rows
    trusted: Counter[str] = Counter()
    previous = ""
    for login, fact in zip(logins, truth, strict=True):
        assert login["index"] == fact["index"]
        assert login["Login Timestamp"] > previous  # strictly increasing, no ties
        previous = login["Login Timestamp"]
        user = login["User ID"]
        assert int(fact["history_size_at_that_point"]) == trusted[user]
        if fact["is_attack"] == "1":
            assert login["Learn"] == "False"
            assert fact["login_successful"] == ("1" if login["Login Successful"] == "True" else "0")
            assert fact["attacker_class"] in ("naive", "vpn", "targeted", "very_targeted")
        else:
            assert login["Learn"] == "True"
        if login["Login Successful"] == "True" and login["Learn"] == "True":
            trusted[user] += 1
    attack_rows = [f for f in truth if f["is_attack"] == "1"]
    assert sum(first.attacks.values()) == sum(
        1 for f in attack_rows if f["login_successful"] == "1"
    )
    assert first.attack_failed == sum(1 for f in attack_rows if f["login_successful"] == "0")
    assert (first.attack_failed > 0) == (attacker_failure_rate > 0)
