"""Sliding-window counters for velocity and spraying. Pure: time is always passed in.

Memory is bounded: at most ``max_keys`` keys (the least recently touched is dropped first) and
at most ``max_events`` timestamps (or members) per key; a count past the cap saturates at it.
"""

from __future__ import annotations

from collections import OrderedDict, deque


class SlidingCounter:
    """How many events per key in the last ``window`` seconds."""

    __slots__ = ("_events", "max_events", "max_keys", "window")

    def __init__(self, *, window: float, max_keys: int = 100_000, max_events: int = 1000):
        self.window = window
        self.max_keys = max_keys
        self.max_events = max_events
        self._events: OrderedDict[str, deque[float]] = OrderedDict()

    def add(self, key: str, at: float) -> None:
        events = self._events.get(key)
        if events is None:
            events = deque(maxlen=self.max_events)
            self._events[key] = events
            if len(self._events) > self.max_keys:
                self._events.popitem(last=False)
        else:
            self._events.move_to_end(key)
        events.append(at)

    def count(self, key: str, at: float) -> int:
        events = self._events.get(key)
        if not events:
            return 0
        horizon = at - self.window
        while events and events[0] <= horizon:
            events.popleft()
        # Events after ``at`` (a replay is in order; a live clock never goes back) count too.
        return len(events)


class DistinctCounter:
    """How many distinct members per key in the last ``window`` seconds (spraying)."""

    __slots__ = ("_members", "max_keys", "max_members", "window")

    def __init__(self, *, window: float, max_keys: int = 100_000, max_members: int = 1000):
        self.window = window
        self.max_keys = max_keys
        self.max_members = max_members
        self._members: OrderedDict[str, OrderedDict[str, float]] = OrderedDict()

    def add(self, key: str, member: str, at: float) -> None:
        members = self._members.get(key)
        if members is None:
            members = OrderedDict()
            self._members[key] = members
            if len(self._members) > self.max_keys:
                self._members.popitem(last=False)
        else:
            self._members.move_to_end(key)
        members.pop(member, None)
        members[member] = at
        if len(members) > self.max_members:
            members.popitem(last=False)

    def count(self, key: str, at: float) -> int:
        members = self._members.get(key)
        if not members:
            return 0
        horizon = at - self.window
        while members:
            oldest = next(iter(members.values()))
            if oldest > horizon:
                break
            members.popitem(last=False)
        return len(members)
