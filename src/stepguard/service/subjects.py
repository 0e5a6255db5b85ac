"""Subjects: the protected app's users."""

from __future__ import annotations

from stepguard.core.errors import NotFoundError
from stepguard.core.model import AuditEvent, Subject
from stepguard.service.deps import Deps


class SubjectService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def put(
        self,
        subject_id: str,
        *,
        email: str | None,
        phone: str | None,
        groups: tuple[str, ...],
        actor: str | None,
    ) -> Subject:
        now = self._deps.clock.now()
        async with self._deps.store.transaction() as uow:
            existing = await uow.subjects.get(subject_id)
            subject = Subject(
                id=subject_id,
                email=email,
                phone=phone,
                groups=tuple(dict.fromkeys(groups)),
                created_at=existing.created_at if existing else now,
                updated_at=now,
            )
            await uow.subjects.upsert(subject)
            await uow.audit.append(
                AuditEvent(
                    type="subject.updated" if existing else "subject.created",
                    at=now,
                    outcome="ok",
                    subject_id=subject_id,
                    actor=actor,
                    details={"groups": list(subject.groups)},
                )
            )
        return subject

    async def get(self, subject_id: str) -> Subject:
        async with self._deps.store.read() as uow:
            subject = await uow.subjects.get(subject_id)
        if subject is None:
            raise NotFoundError("No such subject.")
        return subject

    async def delete(self, subject_id: str, *, actor: str | None) -> None:
        now = self._deps.clock.now()
        async with self._deps.store.transaction() as uow:
            if not await uow.subjects.delete(subject_id):
                raise NotFoundError("No such subject.")
            await uow.audit.append(
                AuditEvent(
                    type="subject.deleted", at=now, outcome="ok", subject_id=subject_id, actor=actor
                )
            )
