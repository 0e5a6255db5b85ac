"""Where a push request came from, in words: the geo source's city and country, and the
parsed user agent's browser and OS."""

from __future__ import annotations

from stepguard.service.risk_ports import AgentParser, GeoLocator

__all__ = ["RiskOriginDescriber"]


class RiskOriginDescriber:
    """An ``OriginDescriber`` over the risk engine's lookup ports. Never raises."""

    def __init__(self, *, geo: GeoLocator, agents: AgentParser) -> None:
        self._geo = geo
        self._agents = agents

    def describe(self, *, ip: str | None, user_agent: str | None) -> tuple[str, str]:
        location = ""
        if ip:
            try:
                place = self._geo.locate(ip)
                location = ", ".join(p for p in (place.city, place.country) if p) or place.asn
            except Exception:  # an unknown place is shown as unknown, never an error
                location = ""
        browser = ""
        if user_agent:
            try:
                agent = self._agents.parse(user_agent)
                browser = " on ".join(p for p in (agent.browser, agent.os) if p)
            except Exception:
                browser = ""
        return location, browser
