"""Reading and checking the audit log."""

from __future__ import annotations

from datetime import datetime

from stepguard.core.audit import ChainReport, ChainVerifier
from stepguard.core.model import RecordedAuditEvent
from stepguard.service.deps import Deps


class AuditService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def query(
        self,
        *,
        subject_id: str | None,
        type: str | None,
        since: datetime | None,
        until: datetime | None,
        after_seq: int,
        limit: int,
    ) -> list[RecordedAuditEvent]:
        async with self._deps.store.read() as uow:
            return await uow.audit.query(
                subject_id=subject_id,
                type=type,
                since=since,
                until=until,
                after_seq=after_seq,
                limit=limit,
            )

    async def verify(self) -> ChainReport:
        """Walk the whole chain (streaming) and report the first break."""
        async with self._deps.store.read() as uow:
            head_seq, head_hash = await uow.audit.head()
            verifier = ChainVerifier()
            async for record in uow.audit.iterate():
                if not verifier.feed(record):
                    break
        return verifier.finish(head_seq=head_seq, head_hash=head_hash)
