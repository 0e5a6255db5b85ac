"""Reading a challenge for the user who must answer it: its state and the factors that can.

The API (``GET /v1/challenges/{id}``) and the hosted step-up page show the same thing, so both
ask :meth:`ChallengeService.describe`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from stepguard.core.errors import NotFoundError
from stepguard.core.model import Challenge, ChallengeStatus, Factor
from stepguard.service.deps import Deps
from stepguard.service.webauthn import usable_factors


@dataclass(frozen=True, slots=True, kw_only=True)
class ChallengeView:
    """A challenge as of ``now``, with the subject's active factors that can satisfy it."""

    challenge: Challenge
    status: ChallengeStatus
    factors: tuple[Factor, ...]
    now: datetime

    def locked_until(self, factor: Factor, deps: Deps) -> datetime | None:
        """When ``factor`` accepts attempts again, if it is locked now (``None`` if not)."""
        if not deps.config.lockout.is_locked(
            failed_attempts=factor.failed_attempts, locked_until=factor.locked_until, now=self.now
        ):
            return None
        return factor.locked_until


class ChallengeService:
    def __init__(self, deps: Deps) -> None:
        self._deps = deps

    async def describe(self, challenge_id: str) -> ChallengeView:
        """Raise ``NotFoundError`` for an unknown challenge."""
        now = self._deps.clock.now()
        async with self._deps.store.read() as uow:
            challenge = await uow.challenges.get(challenge_id)
            if challenge is None:
                raise NotFoundError("No such challenge.")
            session = await uow.sessions.get(challenge.session_id)
            factors = await uow.factors.list_for_subject(challenge.subject_id)
            usable = tuple(
                await usable_factors(self._deps, uow, challenge, session, factors, now=now)
            )
        return ChallengeView(
            challenge=challenge,
            status=challenge.effective_status(now),
            factors=usable,
            now=now,
        )
