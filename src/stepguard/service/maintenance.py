"""Housekeeping: purge rows that expired long ago (single-use tokens, ceremonies, codes,
challenges, sessions).

The service never needs an expired row (every read treats one as absent), so purging changes
no decision; a retention margin keeps recent rows for investigations that start from the
audit log. The audit log itself is never purged.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta

from stepguard.core.model import AuditEvent
from stepguard.service.deps import Deps

# Purging rows that are still inside a rate-limit window or a grant's lifetime would weaken
# nothing (reads check expiry), but a margin this short would make investigations harder.
MIN_RETENTION = timedelta(hours=1)


@dataclass(frozen=True, slots=True, kw_only=True)
class PurgeReport:
    before: datetime
    deleted: Mapping[str, int]

    @property
    def total(self) -> int:
        return sum(self.deleted.values())


class MaintenanceService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def purge_expired(self, *, retention: timedelta, actor: str | None) -> PurgeReport:
        """Delete what expired more than ``retention`` ago (at least :data:`MIN_RETENTION`);
        audited when anything was deleted."""
        deps = self._deps
        now = deps.clock.now()
        before = now - max(retention, MIN_RETENTION)
        async with deps.store.transaction() as uow:
            deleted = await uow.expired.purge(before=before)
            report = PurgeReport(before=before, deleted=deleted)
            if report.total:
                await uow.audit.append(
                    AuditEvent(
                        type="maintenance.purged",
                        at=now,
                        outcome="ok",
                        actor=actor,
                        details={"expired_before": before.isoformat(), "deleted": dict(deleted)},
                    )
                )
        return report
