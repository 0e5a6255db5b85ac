"""The audit log's hash chain: each record commits to the one before it.

Altering a record breaks its hash; deleting one breaks the next record's ``prev_hash``;
truncating the tail breaks the stored head. Pure: the storage adapter calls these.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import rfc8785

from stepguard.core.model import AuditEvent, RecordedAuditEvent

GENESIS_HASH = "0" * 64


def event_payload(seq: int, event: AuditEvent) -> dict[str, Any]:
    """The canonical content of one record (what its hash covers)."""
    return {
        "seq": seq,
        "type": event.type,
        "at": event.at.isoformat(),
        "outcome": event.outcome,
        "subject_id": event.subject_id,
        "session_id": event.session_id,
        "actor": event.actor,
        "details": event.details,
    }


def chain_hash(prev_hash: str, seq: int, event: AuditEvent) -> str:
    body = rfc8785.dumps(event_payload(seq, event))
    return hashlib.sha256(prev_hash.encode("ascii") + b"\n" + body).hexdigest()


@dataclass(frozen=True, slots=True, kw_only=True)
class ChainReport:
    """The outcome of checking a chain: how many records were sound, and the first break."""

    records: int
    ok: bool
    first_bad_seq: int | None = None
    problem: str | None = None


class ChainVerifier:
    """Checks a chain record by record, so a verifier can stream millions of them."""

    def __init__(self) -> None:
        self._prev_hash = GENESIS_HASH
        self._count = 0
        self._broken: ChainReport | None = None

    def feed(self, record: RecordedAuditEvent) -> bool:
        """Check the next record; ``False`` once the chain is broken (stop feeding)."""
        if self._broken is not None:
            return False
        problem: str | None = None
        if record.seq != self._count + 1:
            problem = "record missing"
        elif record.prev_hash != self._prev_hash:
            problem = "broken link"
        elif chain_hash(self._prev_hash, record.seq, record.event) != record.hash:
            problem = "record altered"
        if problem is not None:
            bad_seq = self._count + 1 if problem == "record missing" else record.seq
            self._broken = ChainReport(
                records=self._count, ok=False, first_bad_seq=bad_seq, problem=problem
            )
            return False
        self._prev_hash = record.hash
        self._count += 1
        return True

    def finish(self, *, head_seq: int, head_hash: str) -> ChainReport:
        if self._broken is not None:
            return self._broken
        if self._count != head_seq or self._prev_hash != head_hash:
            return ChainReport(
                records=self._count,
                ok=False,
                first_bad_seq=self._count + 1,
                problem="records after the last one were removed, or the head was altered",
            )
        return ChainReport(records=self._count, ok=True)


def verify_chain(
    records: Iterable[RecordedAuditEvent], *, head_seq: int, head_hash: str
) -> ChainReport:
    verifier = ChainVerifier()
    for record in records:
        if not verifier.feed(record):
            break
    return verifier.finish(head_seq=head_seq, head_hash=head_hash)
