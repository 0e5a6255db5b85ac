"""A plain Freeman et al. login-risk model, written here independently of StepGuard's engine.

Freeman, Jain, Dürmuth, Biggio, Giacinto: "Who Are You? A Statistical Approach to Measuring
User Authenticity", NDSS 2016. The score of a login with features ``x`` for user ``u`` is the
likelihood ratio of "an attacker" over "this user", with the attacker modelled by the global
login population:

    S_u(x) = p(u | A) / p(u | L) * prod_k  p(x_k) / p(x_k | u, L)

- ``p(u | A) = 1 / |U|`` (the attacker picks a known account uniformly) and
  ``p(u | L) = (n_u + 1) / (N + |U|)`` (the user's share of legitimate logins, add-one so a user
  without history is defined); ``N`` is every learned login, ``n_u`` the user's, ``|U|`` the
  users with at least one learned login (at least 1).
- Two features ``k``, each a hierarchy read from coarse to fine: the IP feature
  (country -> ASN -> IP address) and the UA feature (device type -> OS name and version ->
  browser name and version -> full UA string), as in the paper and in Wiefling et al.'s
  evaluation on the RBA dataset. A feature's probability is the product of its levels'
  conditional probabilities.
- Global estimate, per level: ``p(v | parent) = (c(v) + 1) / (c(parent) + k(parent) + 1)``
  where ``k(parent)`` is the number of distinct values seen under that parent, so that an
  unseen value gets the one "unseen" slot (add-one over the seen values plus one).
- User estimate, per level, smoothed towards the global one (the paper's interpolation of
  the user's history with the population along the hierarchy):
  ``p(v | parent, u) = (c_u(v) + p(v | parent)) / (c_u(parent) + 1)``, i.e. the user's
  maximum-likelihood share weighted ``λ = n/(n+1)`` and the global conditional weighted
  ``1 - λ``, with ``n = c_u(parent)``. A value the user never used costs a factor ``n + 1`` at
  the first level where it differs; below that level the user's estimate equals the global
  one and the ratio is 1.

The paper's text was not reachable from this machine; the smoothing above is this
harness's reading of it (same structure: hierarchical features, per-user estimates backed off
to the parent level and to the population). ``score`` returns ``log S`` (monotone in ``S``, so
every rank metric is unchanged).

Replay rule, as ``stepguard risk replay`` has it: rows in timestamp order (ties by row
order); each row is scored from the rows before it only; a row trains the model (global and
user counts) only if ``Login Successful`` and ``Learn`` are true.
"""

from __future__ import annotations

import argparse
import csv
import math
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Final

IP_LEVELS: Final = ("Country", "ASN", "IP Address")
UA_LEVELS: Final = (
    "Device Type",
    "OS Name and Version",
    "Browser Name and Version",
    "User Agent String",
)
FEATURES: Final = (IP_LEVELS, UA_LEVELS)

Prefix = tuple[str, ...]


@dataclass(slots=True)
class _Counts:
    """Counts of every prefix of every feature's value path; the root prefix ``()``."""

    counts: list[dict[Prefix, int]] = field(default_factory=lambda: [{(): 0} for _ in FEATURES])

    @property
    def total(self) -> int:
        return self.counts[0][()]


@dataclass(slots=True)
class FreemanModel:
    """Streaming Freeman model: ``score`` a login, then ``learn`` it if it is trusted."""

    max_history: int | None = None  # per-user window; global counts are never forgotten
    _global: _Counts = field(default_factory=_Counts)
    _children: list[dict[Prefix, int]] = field(default_factory=lambda: [{} for _ in FEATURES])
    _users: dict[str, _Counts] = field(default_factory=dict)
    _windows: dict[str, deque[tuple[Prefix, ...]]] = field(default_factory=dict)

    def score(self, user: str, paths: Sequence[Prefix]) -> float:
        """``log S_u(x)`` for the feature value paths ``paths`` (one per feature)."""
        known = self._users.get(user)
        total = self._global.total
        n_users = max(1, len(self._users))
        n_user = known.total if known else 0
        log_score = math.log(1.0 / n_users) - math.log((n_user + 1) / (total + n_users))
        for feature, path in enumerate(paths):
            global_counts = self._global.counts[feature]
            children = self._children[feature]
            user_counts = known.counts[feature] if known else None
            for level in range(len(path)):
                parent, value = path[:level], path[: level + 1]
                p_global = (global_counts.get(value, 0) + 1) / (
                    global_counts.get(parent, 0) + children.get(parent, 0) + 1
                )
                if user_counts is None:
                    p_user = p_global
                else:
                    p_user = (user_counts.get(value, 0) + p_global) / (
                        user_counts.get(parent, 0) + 1
                    )
                log_score += math.log(p_global) - math.log(p_user)
        return log_score

    def learn(self, user: str, paths: Sequence[Prefix]) -> None:
        for feature, path in enumerate(paths):
            global_counts = self._global.counts[feature]
            for level in range(len(path) + 1):
                prefix = path[:level]
                if level and prefix not in global_counts:
                    parent = path[: level - 1]
                    self._children[feature][parent] = self._children[feature].get(parent, 0) + 1
                global_counts[prefix] = global_counts.get(prefix, 0) + 1
        known = self._users.setdefault(user, _Counts())
        self._add(known, paths, +1)
        if self.max_history is not None:
            window = self._windows.setdefault(user, deque())
            window.append(tuple(paths))
            if len(window) > self.max_history:
                self._add(known, window.popleft(), -1)

    @staticmethod
    def _add(counts: _Counts, paths: Sequence[Prefix], delta: int) -> None:
        for feature, path in enumerate(paths):
            table = counts.counts[feature]
            for level in range(len(path) + 1):
                prefix = path[:level]
                left = table.get(prefix, 0) + delta
                if left or not level:
                    table[prefix] = left
                else:
                    del table[prefix]


def feature_paths(row: Mapping[str, str]) -> tuple[Prefix, ...]:
    return tuple(tuple(row.get(column) or "" for column in levels) for levels in FEATURES)


def _flag(value: str | None, *, default: bool) -> bool:
    if value is None or not value.strip():
        return default
    return value.strip().lower() in ("true", "1", "yes")


def _timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.strip())


def replay(path: Path, *, max_history: int | None = None) -> Iterator[tuple[str, float]]:
    """(row index, log score) for every row of an RBA-format CSV, in timestamp order."""
    with path.open(newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    order = sorted(range(len(rows)), key=lambda i: (_timestamp(rows[i]["Login Timestamp"]), i))
    model = FreemanModel(max_history=max_history)
    for position in order:
        row = rows[position]
        user = row["User ID"]
        paths = feature_paths(row)
        index = row.get("index") or row.get("") or str(position)
        yield index, model.score(user, paths)
        if _flag(row.get("Login Successful"), default=False) and _flag(
            row.get("Learn"), default=True
        ):
            model.learn(user, paths)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Score an RBA-format CSV with Freeman et al.")
    parser.add_argument("input", type=Path)
    parser.add_argument("--output", type=Path, required=True)
    parser.add_argument("--max-history", type=int, default=None)
    args = parser.parse_args(argv)
    with args.output.open("w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(("index", "log_score"))
        for index, score in replay(args.input, max_history=args.max_history):
            writer.writerow((index, f"{score:.6f}"))


if __name__ == "__main__":
    main()
