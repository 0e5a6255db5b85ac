"""User-agent parsing with ``ua-parser`` (the builtin regexes; the Rust resolver when
``ua-parser-rs`` is installed, which it is as a dependency), cached per string."""

from __future__ import annotations

from collections import OrderedDict

from stepguard.core.risk.features import Agent

_MOBILE_OS = frozenset({"Android", "iOS", "Windows Phone", "BlackBerry OS", "KaiOS"})
_TABLET_DEVICES = ("iPad", "Tablet", "Kindle", "Nexus 7", "Nexus 9", "Nexus 10")


def _version(family: str, *parts: str | None) -> str:
    numbers = [part for part in parts if part]
    return f"{family} {'.'.join(numbers)}" if numbers else family


class UaParser:
    """Satisfies ``AgentParser``: browser + version, OS + version, device type."""

    def __init__(self, *, cache_size: int = 16384) -> None:
        import ua_parser

        self._parse = ua_parser.parse
        self._cache: OrderedDict[str, Agent] = OrderedDict()
        self._size = cache_size

    def parse(self, user_agent: str) -> Agent:
        cached = self._cache.get(user_agent)
        if cached is not None:
            return cached
        result = self._parse(user_agent)
        ua, os_, device = result.user_agent, result.os, result.device
        browser = _version(ua.family, ua.major, ua.minor) if ua else ""
        os_name = _version(os_.family, os_.major, os_.minor) if os_ else ""
        device_family = device.family if device else "Other"
        if device_family == "Spider" or (ua is not None and ua.family.endswith("bot")):
            kind = "bot"
        elif any(name in device_family for name in _TABLET_DEVICES):
            kind = "tablet"
        elif os_ is not None and os_.family in _MOBILE_OS:
            kind = "mobile"
        elif os_ is not None or ua is not None:
            kind = "desktop"
        else:
            kind = "unknown"
        agent = Agent(user_agent=user_agent, browser=browser, os=os_name, device_type=kind)
        self._cache[user_agent] = agent
        if len(self._cache) > self._size:
            self._cache.popitem(last=False)
        return agent
