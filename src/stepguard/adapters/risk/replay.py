"""``stepguard risk replay``: score a login log (the RBA dataset's columns) with the engine.

Each row is scored with only the rows before it (in timestamp order), then, when it is a
successful login with ``Learn`` true, added to its user's history and the population counts;
a failed login feeds only the velocity counters. The same pure core as the live service
(``stepguard.core.risk.engine.assess``) does the scoring.

Ordering and memory:

- Pass 1 reads each line's timestamp and byte offset (two numbers per row, about 50 bytes
  with Python's list overhead; 1 million rows ~ 50 MB). If the file is already in order, pass
  2 streams it; otherwise the (timestamp, offset) pairs are sorted in memory and pass 2 seeks
  to each row. Lines are split on newlines, so a quoted field may not contain one (the RBA
  dataset has none).
- Per-user history is bounded (``max_history`` logins per user, oldest dropped). The number
  of users is not bounded: memory grows with users x ``max_history``.
- Population counts are exact until ``max_population_keys`` distinct values; past that,
  every count is halved and zeros are dropped (lossy counting): rare values are forgotten,
  frequent ones keep their relative weight.
- Velocity windows are bounded (``SlidingCounter``/``DistinctCounter``: capped keys and events).
"""

from __future__ import annotations

import csv
import io
from array import array
from collections import deque
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Final

from stepguard.core.risk.engine import (
    Profile,
    RiskConfig,
    RiskInputs,
    Velocity,
    assess,
)
from stepguard.core.risk.features import Agent, LoginFeatures, Place
from stepguard.core.risk.freeman import Population
from stepguard.core.risk.velocity import DistinctCounter, SlidingCounter

REQUIRED: Final = (
    "Login Timestamp",
    "User ID",
    "IP Address",
    "Country",
    "ASN",
    "User Agent String",
    "Browser Name and Version",
    "OS Name and Version",
    "Device Type",
    "Login Successful",
)
VELOCITY_WINDOW_SECONDS: Final = 3600.0


class ReplayError(ValueError):
    """The input cannot be replayed (missing columns, unparsable row)."""


def parse_timestamp(text: str) -> float:
    """``2020-02-03 12:43:30.772`` (UTC) -> seconds since the epoch."""
    moment = datetime.fromisoformat(text.strip())
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()


def _truthy(text: str) -> bool:
    return text.strip().lower() in {"true", "1", "yes", "t"}


@dataclass(slots=True)
class _User:
    history: deque[tuple[str, ...]]
    counts: dict[str, int]


class ReplayModel:
    """In-memory histories, population counts and velocity windows for a replay."""

    def __init__(
        self, *, config: RiskConfig, max_history: int, max_population_keys: int = 4_000_000
    ) -> None:
        if max_history < 1:
            raise ValueError("max_history must be at least 1")
        self.config = config
        self.max_history = max_history
        self.max_population_keys = max_population_keys
        self.users: dict[str, _User] = {}
        self.population: dict[str, int] = {}
        self.logins = 0
        self.subjects = 0
        window = VELOCITY_WINDOW_SECONDS
        self.failures = SlidingCounter(window=window, max_keys=1_000_000)
        self.ip_subjects = DistinctCounter(window=window, max_keys=200_000)

    def score(self, user: str, features: LoginFeatures) -> tuple[float, str]:
        state = self.users.get(user)
        if state is None:
            profile = Profile(counts={}, logins=0)
        else:
            profile = Profile(counts=state.counts, logins=len(state.history))
        population = Population(counts=self.population, logins=self.logins, subjects=self.subjects)
        at = features.at
        velocity = Velocity(
            subject_failures=self.failures.count("s:" + user, at),
            ip_failures=self.failures.count("i:" + features.ip, at),
            asn_failures=self.failures.count("a:" + features.place.asn, at),
            ip_subjects=self.ip_subjects.count(features.ip, at),
        )
        result = assess(
            RiskInputs(
                features=features,
                profile=profile,
                population=population,
                reputation=frozenset(),
                velocity=velocity,
                alerts=(),
            ),
            self.config,
        )
        return result.score, result.level.label

    def learn(self, user: str, features: LoginFeatures) -> None:
        keys = features.all_keys()
        state = self.users.get(user)
        if state is None:
            state = _User(history=deque(), counts={})
            self.users[user] = state
            self.subjects += 1
        if len(state.history) >= self.max_history:
            for key in state.history.popleft():
                left = state.counts[key] - 1
                if left:
                    state.counts[key] = left
                else:
                    del state.counts[key]
        state.history.append(keys)
        counts = state.counts
        population = self.population
        for key in keys:
            counts[key] = counts.get(key, 0) + 1
            population[key] = population.get(key, 0) + 1
        self.logins += 1
        if len(population) > self.max_population_keys:
            self._decay()

    def _decay(self) -> None:
        self.population = {k: v // 2 for k, v in self.population.items() if v >= 2}

    def fail(self, user: str, features: LoginFeatures) -> None:
        at = features.at
        self.failures.add("s:" + user, at)
        self.failures.add("i:" + features.ip, at)
        self.failures.add("a:" + features.place.asn, at)
        self.ip_subjects.add(features.ip, user, at)


@dataclass(frozen=True, slots=True)
class _Columns:
    index: int | None
    ts: int
    user: int
    ip: int
    country: int
    asn: int
    ua: int
    browser: int
    os: int
    device: int
    success: int
    learn: int | None
    width: int


def _columns(header: list[str]) -> _Columns:
    names = [name.strip() for name in header]
    missing = [name for name in REQUIRED if name not in names]
    if missing:
        raise ReplayError("missing columns: " + ", ".join(missing))
    first = names[0].lower() if names else ""
    index = 0 if first in {"", "index"} else None
    pos = names.index
    return _Columns(
        index=index,
        ts=pos("Login Timestamp"),
        user=pos("User ID"),
        ip=pos("IP Address"),
        country=pos("Country"),
        asn=pos("ASN"),
        ua=pos("User Agent String"),
        browser=pos("Browser Name and Version"),
        os=pos("OS Name and Version"),
        device=pos("Device Type"),
        success=pos("Login Successful"),
        learn=pos("Learn") if "Learn" in names else None,
        width=len(names),
    )


def _parse_line(line: bytes) -> list[str]:
    return next(csv.reader([line.decode("utf-8")]))


@dataclass(frozen=True, slots=True, kw_only=True)
class ReplayStats:
    rows: int
    sorted_input: bool


def replay(
    source: Path,
    output: IO[str],
    *,
    config: RiskConfig,
    max_history: int,
    progress: Callable[[int], None] | None = None,
) -> ReplayStats:
    """Score every row of ``source`` into ``output`` (``index,risk_score,risk_level``)."""
    with source.open("rb") as handle:
        header_line = handle.readline()
        if not header_line:
            raise ReplayError("the input is empty")
        cols = _columns(_parse_line(header_line))
        # Pass 1: timestamp and offset of each data line.
        stamps: array[float] = array("d")
        offsets: array[int] = array("q")
        in_order = True
        last = float("-inf")
        offset = handle.tell()
        for number, line in enumerate(iter(handle.readline, b"")):
            if line.strip():
                fields = _parse_line(line)
                try:
                    stamp = parse_timestamp(fields[cols.ts])
                except (ValueError, IndexError):
                    raise ReplayError(f"row {number}: unparsable timestamp") from None
                if stamp < last:
                    in_order = False
                last = max(last, stamp)
                stamps.append(stamp)
                offsets.append(offset)
            offset += len(line)
        order: Iterator[int] | range
        if in_order:
            order = range(len(offsets))
        else:
            # Stable: rows with the same timestamp keep their file order.
            order = iter(sorted(range(len(offsets)), key=stamps.__getitem__))
        del stamps

        model = ReplayModel(config=config, max_history=max_history)
        writer = csv.writer(output, lineterminator="\n")
        writer.writerow(("index", "risk_score", "risk_level"))
        if in_order:
            handle.seek(offsets[0] if offsets else 0)
        rows = 0
        for row_number in order:
            if in_order:
                line = handle.readline()
                while not line.strip():
                    line = handle.readline()
            else:
                handle.seek(offsets[row_number])
                line = handle.readline()
            fields = _parse_line(line)
            if len(fields) < cols.width:
                raise ReplayError(f"row {row_number}: {len(fields)} fields, expected {cols.width}")
            features = LoginFeatures(
                at=parse_timestamp(fields[cols.ts]),
                ip=fields[cols.ip],
                place=Place(country=fields[cols.country], asn=fields[cols.asn]),
                agent=Agent(
                    user_agent=fields[cols.ua],
                    browser=fields[cols.browser],
                    os=fields[cols.os],
                    device_type=fields[cols.device],
                ),
            )
            user = fields[cols.user]
            score, level = model.score(user, features)
            index = fields[cols.index] if cols.index is not None else str(row_number)
            writer.writerow((index, repr(score), level))
            if _truthy(fields[cols.success]):
                if cols.learn is None or _truthy(fields[cols.learn]):
                    model.learn(user, features)
            else:
                model.fail(user, features)
            rows += 1
            if progress is not None and rows % 1024 == 0:
                progress(1024)
        if progress is not None:
            progress(rows % 1024)
    return ReplayStats(rows=rows, sorted_input=in_order)


def replay_to_text(source: Path, *, config: RiskConfig, max_history: int) -> str:
    """For tests: the output as a string."""
    buffer = io.StringIO()
    replay(source, buffer, config=config, max_history=max_history)
    return buffer.getvalue()
