"""IP reputation from operator-supplied CIDR lists, reloaded when a file changes.

A directory holds one file per category, ``<category>.txt`` (e.g. ``tor.txt``,
``anonymizer.txt``, ``hosting.txt``, ``bad.txt``): one address or CIDR per line, ``#``
comments and blank lines ignored. The files' modification times are checked at most once
per ``check_seconds``; a changed file is parsed again.

Fail closed: a file that cannot be read or has a line that is not an address or network makes
every lookup raise :class:`ReputationUnavailableError` (a degraded assessment) until fixed.
"""

from __future__ import annotations

import bisect
import ipaddress
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path


class ReputationUnavailableError(RuntimeError):
    """A list cannot be read or parsed."""


@dataclass(frozen=True, slots=True)
class _Ranges:
    """Merged, sorted [start, end] integer ranges per IP version."""

    starts: tuple[list[int], list[int]]
    ends: tuple[list[int], list[int]]

    def contains(self, version: int, value: int) -> bool:
        i = 0 if version == 4 else 1
        starts = self.starts[i]
        at = bisect.bisect_right(starts, value) - 1
        return at >= 0 and value <= self.ends[i][at]


def parse_cidr_list(text: str, *, source: str) -> _Ranges:
    spans: tuple[list[tuple[int, int]], list[tuple[int, int]]] = ([], [])
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        try:
            network = ipaddress.ip_network(line, strict=False)
        except ValueError:
            raise ReputationUnavailableError(f"{source}:{number}: not an address") from None
        spans[0 if network.version == 4 else 1].append(
            (int(network.network_address), int(network.broadcast_address))
        )
    starts: tuple[list[int], list[int]] = ([], [])
    ends: tuple[list[int], list[int]] = ([], [])
    for i in (0, 1):
        for start, end in sorted(spans[i]):
            if starts[i] and start <= ends[i][-1] + 1:
                ends[i][-1] = max(ends[i][-1], end)
            else:
                starts[i].append(start)
                ends[i].append(end)
    return _Ranges(starts=starts, ends=ends)


class CidrLists:
    """Satisfies ``IpReputation``."""

    def __init__(
        self,
        directory: Path | None,
        *,
        check_seconds: float = 5.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._directory = directory
        self._check_seconds = check_seconds
        self._monotonic = monotonic
        self._next_check = float("-inf")
        self._stamps: dict[Path, int] = {}
        self._lists: dict[str, _Ranges] = {}
        self._error: str | None = None

    def _refresh(self) -> None:
        directory = self._directory
        if directory is None:
            return
        try:
            files = sorted(directory.glob("*.txt"))
            stamps = {path: path.stat().st_mtime_ns for path in files}
        except OSError as error:
            self._error = f"{directory}: {error.strerror}"
            return
        if stamps == self._stamps and self._error is None:
            return
        lists: dict[str, _Ranges] = {}
        try:
            for path in files:
                if self._stamps.get(path) == stamps[path] and path.stem in self._lists:
                    lists[path.stem] = self._lists[path.stem]
                else:
                    text = path.read_text(encoding="utf-8")
                    lists[path.stem] = parse_cidr_list(text, source=str(path))
        except (OSError, UnicodeDecodeError) as error:
            self._error = f"{directory}: {type(error).__name__}"
            return
        except ReputationUnavailableError as error:
            self._error = str(error)
            return
        self._lists = lists
        self._stamps = stamps
        self._error = None

    def categories(self, ip: str) -> frozenset[str]:
        now = self._monotonic()
        if now >= self._next_check:
            self._next_check = now + self._check_seconds
            self._refresh()
        if self._error is not None:
            raise ReputationUnavailableError(self._error)
        if not self._lists:
            return frozenset()
        address = ipaddress.ip_address(ip)
        value, version = int(address), address.version
        return frozenset(
            name for name, ranges in self._lists.items() if ranges.contains(version, value)
        )
