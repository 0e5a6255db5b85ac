"""Push approval's adapters: the Web Push sender (pywebpush: RFC 8291 encryption, VAPID) and
the origin describer (the risk engine's geo and user-agent sources)."""

from stepguard.adapters.push.origin import RiskOriginDescriber
from stepguard.adapters.push.webpush import VapidWebPushSender

__all__ = ["RiskOriginDescriber", "VapidWebPushSender"]
