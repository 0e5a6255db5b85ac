"""Evaluate StepGuard's risk engine on simulated login histories with injected attacks.

simulate -> ``stepguard risk replay`` (``--model full`` and ``--model freeman``, run as
subprocesses of this worktree's ``.venv/bin/stepguard``) and this harness's own Freeman
baseline -> ROC AUC, TPR at 1% and 0.1% FPR, and the median per-user re-authentication rate
at TPR 0.99, by attacker class and by history size. Writes ``bench/risk/RESULTS.md`` and
prints the tables.

    .venv/bin/python bench/risk/evaluate.py                  # 2,000 users, seed 1
    .venv/bin/python bench/risk/evaluate.py --users 300 --no-write   # a quick look

Definitions (attacks are positives, legitimate logins negatives; challenged if score >= t):

- Legitimate logins counted: successful, not attacks, with at least one prior successful
  login of that user (a user's first login has no history any model could use). Failed
  attempts are scored by the replay (they feed velocity) but are not in the metrics.
- By history size: attacks and legitimate logins whose user had that many prior successful
  logins at that point.
- Re-authentication rate at TPR 0.99: ``t`` is the highest threshold that still challenges
  99% of the attacks in the cell; per user, the share of their legitimate logins in the cell
  at or above ``t``; then the median over users. Lower is better.
- A score that is missing or NaN counts as the highest risk (fail closed), and is reported.
"""

from __future__ import annotations

import argparse
import csv
import dataclasses
import math
import os
import platform
import shlex
import subprocess
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

import numpy as np

if __package__ in (None, ""):  # run as a script: make the ``risk`` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from risk import baseline, metrics
from risk.simulate import (
    ATTACKER_CLASSES,
    HISTORY_BUCKETS,
    SimulationConfig,
    SimulationSummary,
    bucket_label,
    simulate,
)

ROOT: Final = Path(__file__).resolve().parents[2]
CLI_MODELS: Final = ("full", "freeman")
BASELINE: Final = "baseline"
ALL: Final = "all"
TARGET_TPR: Final = 0.99


@dataclass(frozen=True, slots=True)
class Truth:
    index: list[str]
    is_attack: np.ndarray
    klass: np.ndarray
    history: np.ndarray
    user: np.ndarray
    success: np.ndarray


@dataclass(frozen=True, slots=True, kw_only=True)
class Cell:
    model: str
    attacker: str
    history: str
    attacks: int
    legit: int
    auc: float
    tpr_1: float
    tpr_01: float
    reauth: float


@dataclass(frozen=True, slots=True, kw_only=True)
class ModelRun:
    name: str
    scores: metrics.FloatArray | None
    seconds: float
    missing: int = 0
    note: str = ""


def read_truth(path: Path) -> Truth:
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    return Truth(
        index=[r["index"] for r in rows],
        is_attack=np.array([r["is_attack"] == "1" for r in rows], dtype=bool),
        klass=np.array([r["attacker_class"] for r in rows], dtype=object),
        history=np.array([int(r["history_size_at_that_point"]) for r in rows], dtype=np.int64),
        user=np.array([r["user_id"] for r in rows], dtype=object),
        success=np.array([r["login_successful"] == "1" for r in rows], dtype=bool),
    )


def align(truth: Truth, scores: dict[str, float]) -> tuple[metrics.FloatArray, int]:
    """Scores in truth order; missing ones become NaN (counted, and treated as riskiest)."""
    values = np.array([scores.get(i, math.nan) for i in truth.index], dtype=np.float64)
    return values, int(np.isnan(values).sum())


def bucket_mask(history: np.ndarray, label: str) -> np.ndarray:
    if label == ALL:
        return np.asarray(history >= 1)
    for low, high in HISTORY_BUCKETS:
        if bucket_label((low, high)) == label:
            upper = np.iinfo(np.int64).max if high is None else high
            return np.asarray((history >= low) & (history <= upper))
    raise ValueError(label)


def by_user(users: np.ndarray, scores: metrics.FloatArray) -> dict[str, metrics.FloatArray]:
    order = np.argsort(users, kind="mergesort")
    sorted_users = users[order]
    sorted_scores = scores[order]
    starts = np.flatnonzero(np.r_[True, sorted_users[1:] != sorted_users[:-1]])
    groups = np.split(sorted_scores, starts[1:])
    return {str(sorted_users[s]): g for s, g in zip(starts, groups, strict=True)}


def cells_for(model: str, raw: metrics.FloatArray, truth: Truth) -> list[Cell]:
    scores = np.where(np.isnan(raw), np.inf, raw)
    legit = ~truth.is_attack & truth.success
    cells: list[Cell] = []
    for label in (ALL, *(bucket_label(b) for b in HISTORY_BUCKETS)):
        in_bucket = bucket_mask(truth.history, label)
        negative = legit & in_bucket
        neg = scores[negative]
        users = by_user(truth.user[negative], neg)
        for attacker in (ALL, *ATTACKER_CLASSES):
            chosen = truth.is_attack & truth.success & in_bucket
            if attacker != ALL:
                chosen &= truth.klass == attacker
            pos = scores[chosen]
            threshold = metrics.threshold_for_tpr(pos, TARGET_TPR)
            cells.append(
                Cell(
                    model=model,
                    attacker=attacker,
                    history=label,
                    attacks=int(pos.size),
                    legit=int(neg.size),
                    auc=metrics.roc_auc(pos, neg),
                    tpr_1=metrics.tpr_at_fpr(pos, neg, 0.01),
                    tpr_01=metrics.tpr_at_fpr(pos, neg, 0.001),
                    reauth=metrics.median_reauth_rate(users, threshold),
                )
            )
    return cells


def read_cli_scores(path: Path) -> dict[str, float]:
    scores: dict[str, float] = {}
    with path.open(newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            try:
                scores[row["index"]] = float(row["risk_score"])
            except (KeyError, ValueError):
                continue  # unparsable: left missing, hence counted and treated as riskiest
    return scores


def cli_available(stepguard: Path) -> str:
    """ "" if ``stepguard risk replay`` is there, else why not."""
    if not stepguard.exists():
        return f"{stepguard} does not exist"
    probe = subprocess.run(
        [str(stepguard), "risk", "replay", "--help"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    )
    if probe.returncode != 0:
        said = (probe.stderr or probe.stdout).strip().splitlines()
        return said[-1] if said else f"`stepguard risk replay --help` exited {probe.returncode}"
    for option in ("--model", "--output"):
        if option not in probe.stdout:
            return f"`stepguard risk replay` has no {option} option"
    return ""


def run_cli(
    stepguard: Path,
    model: str,
    logins: Path,
    output: Path,
    truth: Truth,
    *,
    max_history: int | None,
    timeout: float,
) -> ModelRun:
    argv = [str(stepguard), "risk", "replay", str(logins), "--output", str(output)]
    argv += ["--model", model]
    if max_history is not None:
        argv += ["--max-history", str(max_history)]
    print(f"$ {shlex.join(argv)}", flush=True)
    started = time.perf_counter()
    try:
        done = subprocess.run(argv, check=False, timeout=timeout, stdout=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        seconds = time.perf_counter() - started
        return ModelRun(name=model, scores=None, seconds=seconds, note=f"timed out ({timeout} s)")
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        return ModelRun(name=model, scores=None, seconds=seconds, note=f"exit {done.returncode}")
    scores, missing = align(truth, read_cli_scores(output))
    return ModelRun(name=model, scores=scores, seconds=seconds, missing=missing)


def run_baseline(logins: Path, truth: Truth, *, max_history: int | None) -> ModelRun:
    started = time.perf_counter()
    scores = dict(baseline.replay(logins, max_history=max_history))
    aligned, missing = align(truth, scores)
    seconds = time.perf_counter() - started
    return ModelRun(name=BASELINE, scores=aligned, seconds=seconds, missing=missing)


# --- rendering ------------------------------------------------------------------------------


def _num(value: float, digits: int = 3) -> str:
    return "n/a" if math.isnan(value) else f"{value:.{digits}f}"


def _pct(value: float) -> str:
    return "n/a" if math.isnan(value) else f"{100 * value:.1f}%"


def class_table(cells: Sequence[Cell], models: Sequence[str]) -> list[str]:
    lines = [
        "| Attacker | Model | Attacks | AUC | TPR @ 1% FPR | TPR @ 0.1% FPR "
        "| Median re-auth @ TPR 0.99 |",
        "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for attacker in (*ATTACKER_CLASSES, ALL):
        for model in models:
            for c in cells:
                if c.model == model and c.attacker == attacker and c.history == ALL:
                    lines.append(
                        f"| {attacker} | {model} | {c.attacks:,} | {_num(c.auc)} | "
                        f"{_pct(c.tpr_1)} | {_pct(c.tpr_01)} | {_pct(c.reauth)} |"
                    )
    return lines


def bucket_table(cells: Sequence[Cell], models: Sequence[str]) -> list[str]:
    header = "| Prior logins | Attacker | Attacks | Legit logins | " + " | ".join(
        f"{m}: AUC / TPR@1% / re-auth" for m in models
    )
    lines = [header + " |", "| --- | --- | ---: | ---: |" + " ---: |" * len(models)]
    for low, high in HISTORY_BUCKETS:
        label = bucket_label((low, high))
        for attacker in (*ATTACKER_CLASSES, ALL):
            found = {
                c.model: c
                for c in cells
                if c.history == label and c.attacker == attacker and c.model in models
            }
            if not found:
                continue
            first = next(iter(found.values()))
            parts = [
                f"{_num(c.auc)} / {_pct(c.tpr_1)} / {_pct(c.reauth)}"
                for c in (found[m] for m in models if m in found)
            ]
            lines.append(
                f"| {label} | {attacker} | {first.attacks:,} | {first.legit:,} | "
                + " | ".join(parts)
                + " |"
            )
    return lines


def agreement(runs: dict[str, ModelRun], cells: Sequence[Cell], truth: Truth) -> list[str]:
    freeman, ours = runs.get("freeman"), runs.get(BASELINE)
    if freeman is None or ours is None or freeman.scores is None or ours.scores is None:
        return ["The CLI's `--model freeman` did not run, so there is nothing to compare."]
    legit = ~truth.is_attack & truth.success & (truth.history >= 1)
    rho_all = metrics.spearman(
        np.where(np.isnan(freeman.scores), np.inf, freeman.scores), ours.scores
    )
    rho_legit = metrics.spearman(freeman.scores[legit], ours.scores[legit])
    pairs = [
        (a, b)
        for a in cells
        for b in cells
        if a.model == "freeman"
        and b.model == BASELINE
        and (a.attacker, a.history) == (b.attacker, b.history)
        and not (math.isnan(a.auc) or math.isnan(b.auc))
    ]
    worst = max(pairs, key=lambda p: abs(p[0].auc - p[1].auc), default=None)
    lines = [
        f"- Spearman rank correlation of the two scores: {_num(rho_all, 4)} over every row, "
        f"{_num(rho_legit, 4)} over the legitimate logins."
    ]
    if worst is not None:
        a, b = worst
        lines.append(
            f"- Largest AUC difference over all cells: {abs(a.auc - b.auc):.4f} "
            f"({a.attacker}, prior logins {a.history}: CLI {a.auc:.4f}, baseline {b.auc:.4f})."
        )
    return lines


def git_commit() -> str:
    done = subprocess.run(
        ["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        check=False,
    )
    commit = done.stdout.strip() or "unknown"
    dirty = subprocess.run(
        ["git", "-C", str(ROOT), "status", "--porcelain", "--", "src"],
        capture_output=True,
        text=True,
        check=False,
    )
    return commit + (" + uncommitted changes under src/" if dirty.stdout.strip() else "")


@dataclass(frozen=True, slots=True, kw_only=True)
class Evaluation:
    config: SimulationConfig
    summary: SimulationSummary
    truth: Truth
    runs: dict[str, ModelRun]
    cells: list[Cell]
    simulate_seconds: float
    cli_status: str

    @property
    def models(self) -> list[str]:
        return [
            name
            for name in (*CLI_MODELS, BASELINE)
            if name in self.runs and self.runs[name].scores is not None
        ]


def rows_line(summary: SimulationSummary, config: SimulationConfig) -> str:
    attacks = sum(summary.attacks.values())
    per_cell = ", ".join(f"{k[0]}/{k[1]}: {v}" for k, v in summary.attacks.items())
    return (
        f"- Rows: {summary.rows:,} = {summary.legit_successful:,} legitimate successful + "
        f"{summary.legit_failed:,} legitimate failed + {attacks:,} attacks ({per_cell})"
        + (
            f" + {summary.attack_failed:,} failed attacker attempts before them "
            f"(attacker failure rate {config.attacker_failure_rate:g}; not measured)"
            if summary.attack_failed
            else ""
        )
    )


def render(*, command: str, main: Evaluation, variant: Evaluation | None) -> str:
    config, summary, runs, cells, truth = (
        main.config,
        main.summary,
        main.runs,
        main.cells,
        main.truth,
    )
    models = main.models
    lines = [
        "# Risk engine evaluation",
        "",
        "Generated by `bench/risk/evaluate.py` (see `bench/risk/README.md`). Do not edit by hand.",
        "",
        f"- Date: {datetime.now(UTC).strftime('%Y-%m-%d %H:%M UTC')}; commit `{git_commit()}`; "
        f"{os.cpu_count()} CPUs; Python {platform.python_version()}",
        f"- Command: `{command}`",
        f"- Simulation: {config.users:,} users, seed {config.seed}, log-normal logins per user "
        f"(median {config.login_median:g}, sigma {config.login_sigma:g}), failed-attempt rate "
        f"{config.fail_rate:g}, {config.trips_per_year:g} trips per user-year; "
        f"{config.attacks_per_cell} attacks per attacker class and history bucket",
        rows_line(summary, config),
        "- Users by total successful logins: "
        + ", ".join(f"{k}: {v}" for k, v in summary.users_by_bucket.items()),
        f"- Legitimate logins in the metrics (successful, at least one prior login): "
        f"{int((~truth.is_attack & truth.success & (truth.history >= 1)).sum()):,}",
        f"- Wall time: simulate {main.simulate_seconds:.1f} s; "
        + "; ".join(
            f"{r.name} {r.seconds:.1f} s" + (f" ({r.note})" if r.note else "")
            for r in runs.values()
        ),
    ]
    if main.cli_status:
        lines.append(f"- `stepguard risk replay` unavailable: {main.cli_status}. Baseline only.")
    for r in runs.values():
        if r.missing:
            lines.append(f"- {r.name}: {r.missing} rows without a score (counted as riskiest)")
    lines += [
        "",
        "Models: `full` is `stepguard risk replay --model full` (every signal the replay can",
        "compute), `freeman` is `--model freeman` (the Freeman et al. likelihood ratio only), and",
        "`baseline` is `bench/risk/baseline.py`, an independent Freeman implementation.",
        "",
        "## By attacker class (all history sizes of at least one prior login)",
        "",
        *class_table(cells, models),
        "",
        "## By history size (prior successful logins of the user at that point)",
        "",
        *bucket_table(cells, models),
        "",
        "## CLI `freeman` versus the independent baseline",
        "",
        *agreement(runs, cells, truth),
        "",
    ]
    if variant is not None:
        rate = variant.config.attacker_failure_rate
        lines += [
            f"## Variant: attackers who fail first (attacker failure rate {rate:g})",
            "",
            f"The same simulation (same seed), except that a share {rate:g} of the attacks is",
            "preceded by 1 to 3 failed attempts from the same network and client (an attacker",
            "trying several leaked passwords). Freeman et al.'s attacker models have none; the",
            "engine's failure-velocity signals can only show their worth when there are some.",
            "",
            rows_line(variant.summary, variant.config),
            "",
            *class_table(variant.cells, variant.models),
            "",
        ]
    lines += [
        "## How to read this",
        "",
        "Attacks are positives and legitimate logins negatives; a login is challenged when its",
        "score is at or above the threshold. AUC is rank-based (ties count half). TPR @ x% FPR",
        "is the share of attacks challenged by the best threshold that challenges at most x% of",
        "legitimate logins. Median re-auth @ TPR 0.99: the threshold that challenges 99% of",
        "the attacks in the row, then per user the share of their legitimate logins it",
        "challenges, then the median over users (lower is better). Legitimate logins are",
        "successful ones with at least one prior successful login; a user's first login and",
        "failed attempts are replayed but not measured. Precision: a TPR measured over n",
        f"attacks has a standard error of at most 0.5/sqrt(n), here about "
        f"{50 / math.sqrt(max(1, config.attacks_per_cell)):.1f} points per class and bucket, "
        f"{50 / math.sqrt(max(1, 4 * config.attacks_per_cell)):.1f} per class.",
        "",
    ]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> None:
    defaults = SimulationConfig()
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0] if __doc__ else None)
    parser.add_argument("--users", type=int, default=defaults.users)
    parser.add_argument("--seed", type=int, default=defaults.seed)
    parser.add_argument("--attacks-per-cell", type=int, default=defaults.attacks_per_cell)
    parser.add_argument("--login-median", type=float, default=defaults.login_median)
    parser.add_argument(
        "--attacker-failures",
        type=float,
        default=defaults.attacker_failure_rate,
        help="share of attacks preceded by 1-3 failed attempts (default 0, as in Freeman et al.)",
    )
    parser.add_argument(
        "--max-history",
        type=int,
        default=100,
        help="trusted logins kept per user, for the CLI and the baseline alike (0: unbounded "
        "baseline, CLI default)",
    )
    parser.add_argument("--models", default=",".join(CLI_MODELS), help="CLI models to run")
    parser.add_argument("--stepguard", type=Path, default=ROOT / ".venv" / "bin" / "stepguard")
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "risk")
    parser.add_argument("--results", type=Path, default=ROOT / "bench" / "risk" / "RESULTS.md")
    parser.add_argument("--timeout", type=float, default=3600.0, help="per CLI run, seconds")
    parser.add_argument("--no-write", action="store_true", help="print only; keep RESULTS.md")
    parser.add_argument(
        "--variant-failures",
        type=float,
        default=0.5,
        help="also run the same simulation with this attacker failure rate and report it "
        "(default 0.5; 0: no variant)",
    )
    args = parser.parse_args(argv)

    config = SimulationConfig(
        users=args.users,
        seed=args.seed,
        attacks_per_cell=args.attacks_per_cell,
        login_median=args.login_median,
        attacker_failure_rate=args.attacker_failures,
    )
    models = [m for m in args.models.split(",") if m]
    max_history: int | None = args.max_history or None

    def once(config: SimulationConfig, work: Path) -> Evaluation:
        return evaluate_once(
            config,
            work=work,
            models=models,
            stepguard=args.stepguard,
            max_history=max_history,
            timeout=args.timeout,
        )

    main_run = once(config, args.work)
    variant = None
    if args.variant_failures > 0 and args.attacker_failures == 0:
        failing = dataclasses.replace(config, attacker_failure_rate=args.variant_failures)
        variant = once(failing, args.work / "variant")
    command = ".venv/bin/python bench/risk/evaluate.py " + shlex.join(
        sys.argv[1:] if argv is None else list(argv)
    )
    text = render(command=command.strip(), main=main_run, variant=variant)
    print(text)
    if not args.no_write:
        args.results.write_text(text, encoding="utf-8")
        print(f"wrote {args.results}")


def evaluate_once(
    config: SimulationConfig,
    *,
    work: Path,
    models: Sequence[str],
    stepguard: Path,
    max_history: int | None,
    timeout: float,
) -> Evaluation:
    logins, truth_path = work / "logins.csv", work / "truth.csv"
    started = time.perf_counter()
    summary = simulate(config, logins_csv=logins, truth_csv=truth_path)
    simulate_seconds = time.perf_counter() - started
    print(f"simulated {summary.rows:,} rows in {simulate_seconds:.1f} s -> {logins}", flush=True)
    truth = read_truth(truth_path)

    runs: dict[str, ModelRun] = {}
    cli_status = cli_available(stepguard) if models else "not requested (--models '')"
    if not cli_status:
        for model in models:
            output = work / f"scores-{model}.csv"
            runs[model] = run_cli(
                stepguard, model, logins, output, truth, max_history=max_history, timeout=timeout
            )
    else:
        print(f"stepguard risk replay unavailable: {cli_status}", flush=True)
    runs[BASELINE] = run_baseline(logins, truth, max_history=max_history)
    cells: list[Cell] = []
    for run in runs.values():
        if run.scores is not None:
            cells += cells_for(run.name, run.scores, truth)
    return Evaluation(
        config=config,
        summary=summary,
        truth=truth,
        runs=runs,
        cells=cells,
        simulate_seconds=simulate_seconds,
        cli_status=cli_status,
    )


if __name__ == "__main__":
    main()
