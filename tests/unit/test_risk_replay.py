"""``stepguard risk replay`` on a small log whose Freeman scores are computed by hand."""

from __future__ import annotations

import csv
from fractions import Fraction
from pathlib import Path

import pytest
from click.testing import CliRunner

from stepguard.cli import main

HEADER = [
    "index",
    "Login Timestamp",
    "User ID",
    "Round-Trip Time [ms]",
    "IP Address",
    "Country",
    "Region",
    "City",
    "ASN",
    "User Agent String",
    "Browser Name and Version",
    "OS Name and Version",
    "Device Type",
    "Login Successful",
    "Is Attack IP",
]
UA = ["Mozilla/5.0 (X11; Linux x86_64) Firefox/70.0", "Firefox 70.0", "Linux", "desktop"]


def row(index: int, ts: str, user: str, ip: str, country: str, asn: str, ok: bool) -> list[str]:
    return [str(index), ts, user, "", ip, country, "-", "-", asn, *UA, str(ok), "False"]


# A = 0 ... E = 4, written out of order: the replay sorts by timestamp.
ROWS = [
    row(2, "2020-02-03 12:02:00.000", "u2", "2.2.2.2", "US", "7922", True),  # C
    row(0, "2020-02-03 12:00:00.000", "u1", "1.1.1.1", "DE", "3320", True),  # A
    row(4, "2020-02-03 12:04:00.500", "u1", "1.1.1.1", "DE", "3320", True),  # E
    row(3, "2020-02-03 12:03:00.000", "u1", "2.2.2.2", "US", "7922", False),  # D
    row(1, "2020-02-03 12:01:00.000", "u1", "1.1.1.1", "DE", "3320", True),  # B
]


def score(s: Fraction) -> float:
    return float(s / (1 + s))


# By hand (alpha = 1, see stepguard.core.risk.freeman):
EXPECTED = {
    # A: nothing known; prior 1/1 over (0+1)/(0+1) = 1.
    "0": score(Fraction(1)),
    # B: N=1, U=1, u1 has 1 login, everything familiar and certain: 1.
    "1": score(Fraction(1)),
    # C: u2 new: prior (1/1) / ((0+1)/(2+1)) = 3; no history, ratios 1.
    "2": score(Fraction(3)),
    # D: u1 (2 logins) from the US, N=3, U=2. Country: p = 2/4, p_u = (0 + 1/2)/3 -> 3.
    #    Prior (1/2) / ((2+1)/(3+2)) = 5/6. S = 5/2.
    "3": score(Fraction(5, 2)),
    # E: D failed, so it taught nothing. Country DE: p = 3/4, p_u = (2 + 3/4)/3 -> 9/11.
    #    S = 5/6 * 9/11 = 15/22.
    "4": score(Fraction(15, 22)),
}


def write(path: Path, rows: list[list[str]], header: list[str] = HEADER) -> Path:
    with path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def replay(tmp_path: Path, source: Path, *extra: str) -> list[dict[str, str]]:
    out = tmp_path / "scores.csv"
    result = CliRunner().invoke(
        main, ["risk", "replay", str(source), "--output", str(out), "--quiet", *extra]
    )
    assert result.exit_code == 0, result.output
    with out.open(newline="", encoding="utf-8") as handle:
        return list(csv.DictReader(handle))


def test_freeman_replay_matches_the_hand_computed_scores(tmp_path: Path) -> None:
    scores = replay(tmp_path, write(tmp_path / "log.csv", ROWS), "--model", "freeman")
    assert [r["index"] for r in scores] == ["0", "1", "2", "3", "4"]  # timestamp order
    for r in scores:
        assert float(r["risk_score"]) == pytest.approx(EXPECTED[r["index"]], abs=1e-12)
    assert [r["risk_level"] for r in scores] == ["medium", "medium", "medium", "medium", "low"]


def test_the_full_model_scores_every_row(tmp_path: Path) -> None:
    scores = replay(tmp_path, write(tmp_path / "log.csv", ROWS))
    assert sorted(r["index"] for r in scores) == ["0", "1", "2", "3", "4"]
    for r in scores:
        assert 0.0 <= float(r["risk_score"]) <= 1.0
        assert r["risk_level"] in {"low", "medium", "high", "critical"}


def test_without_an_index_column_rows_are_numbered(tmp_path: Path) -> None:
    rows = [r[1:] for r in ROWS]
    scores = replay(tmp_path, write(tmp_path / "log.csv", rows, HEADER[1:]), "--model", "freeman")
    # Row numbers are the file's 0-based data rows: C is row 0, A row 1, ...
    by_number = {r["index"]: float(r["risk_score"]) for r in scores}
    assert by_number["1"] == pytest.approx(EXPECTED["0"])
    assert by_number["4"] == pytest.approx(EXPECTED["1"])


def test_rows_with_learn_false_do_not_train(tmp_path: Path) -> None:
    header = [*HEADER, "Learn"]
    other = [*row(0, "2020-02-03 11:00:00.000", "u8", "2.2.2.2", "US", "7922", True), "True"]
    first = row(1, "2020-02-03 12:00:00.000", "u9", "1.1.1.1", "DE", "3320", True)
    second = [*row(2, "2020-02-03 12:01:00.000", "u9", "1.1.1.1", "DE", "3320", True), "True"]
    taught = replay(
        tmp_path,
        write(tmp_path / "a.csv", [other, [*first, "True"], second], header),
        "--model",
        "freeman",
    )
    untaught = replay(
        tmp_path,
        write(tmp_path / "b.csv", [other, [*first, "False"], second], header),
        "--model",
        "freeman",
    )
    # Untaught, u9 is still a stranger: N=1, U=1, prior 1 / ((0+1)/(1+1)) = 2 -> 2/3.
    assert float(untaught[2]["risk_score"]) == pytest.approx(2 / 3)
    # Taught: prior (1/2) / (2/4) = 1; DE: p = 2/3, p_u = (1 + 2/3)/2 -> 4/5. S = 4/5.
    assert float(taught[2]["risk_score"]) == pytest.approx(score(Fraction(4, 5)))


def test_max_history_bounds_what_a_user_remembers(tmp_path: Path) -> None:
    rows = [
        row(0, "2020-02-03 12:00:00.000", "u1", "1.1.1.1", "DE", "3320", True),
        row(1, "2020-02-03 12:01:00.000", "u1", "2.2.2.2", "US", "7922", True),
        row(2, "2020-02-03 12:02:00.000", "u1", "1.1.1.1", "DE", "3320", True),
    ]
    source = write(tmp_path / "log.csv", rows)
    long = replay(tmp_path, source, "--model", "freeman", "--max-history", "10")
    short = replay(tmp_path, source, "--model", "freeman", "--max-history", "1")
    # With one login remembered, the DE login at 12:00 is forgotten: row 2 looks riskier.
    assert float(short[2]["risk_score"]) > float(long[2]["risk_score"])


def test_missing_columns_are_an_error(tmp_path: Path) -> None:
    source = write(tmp_path / "log.csv", [], ["index", "Login Timestamp", "User ID"])
    result = CliRunner().invoke(
        main, ["risk", "replay", str(source), "--output", str(tmp_path / "o.csv"), "--quiet"]
    )
    assert result.exit_code != 0
    assert "missing columns" in result.output
