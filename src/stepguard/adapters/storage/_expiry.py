"""Deleting what has expired: single-use tokens, ceremonies, challenges and sessions whose
``expires_at`` passed long ago.

Nothing here changes what the service decides: every read already treats an expired row as
absent. Purging only keeps the tables (and their unique indexes) from growing without end.
Children come before their parents, so the counts say what each table lost by its own
expiry rather than by a cascade.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Final

from sqlalchemy import Column, Table, delete

from stepguard.adapters.storage import tables as t

if TYPE_CHECKING:
    from stepguard.adapters.storage._repositories import _Connection

__all__ = ["EXPIRING", "SqlExpiryRepository"]

# (table, its expiry column), children first.
EXPIRING: Final[tuple[tuple[Table, Column[datetime]], ...]] = (
    (t.webauthn_ceremonies, t.webauthn_ceremonies.c.expires_at),
    (t.login_ceremonies, t.login_ceremonies.c.expires_at),
    (t.upstream_logins, t.upstream_logins.c.expires_at),
    (t.oidc_pending, t.oidc_pending.c.expires_at),
    (t.oidc_codes, t.oidc_codes.c.expires_at),
    (t.oidc_refresh_tokens, t.oidc_refresh_tokens.c.expires_at),
    (t.page_tokens, t.page_tokens.c.expires_at),
    (t.browser_sessions, t.browser_sessions.c.expires_at),
    (t.delivery_codes, t.delivery_codes.c.expires_at),
    (t.push_requests, t.push_requests.c.expires_at),
    (t.grants, t.grants.c.expires_at),
    (t.challenges, t.challenges.c.expires_at),
    (t.risk_alerts, t.risk_alerts.c.expires_at),
    (t.sessions, t.sessions.c.expires_at),
)


class SqlExpiryRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def purge(self, *, before: datetime) -> dict[str, int]:
        deleted: dict[str, int] = {}
        for table, expires_at in EXPIRING:
            result = await self._c.write(delete(table).where(expires_at < before))
            deleted[table.name] = max(0, result.rowcount or 0)
        return deleted
