"""The repository of upstream sign-ins in flight (``core.upstream.UpstreamLogin``).

Single use is one conditional ``UPDATE ... WHERE used_at IS NULL AND expires_at > now``
whose returned row decides the one winner, on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Protocol

from sqlalchemy import Executable, bindparam, delete, insert, update
from sqlalchemy.engine import CursorResult

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage.tables import upstream_logins
from stepguard.core.secret import Secret
from stepguard.core.upstream import UpstreamLogin

__all__ = ["SqlUpstreamLoginRepository"]


class _Connection(Protocol):
    async def run(self, statement: Executable, params: Any = None) -> CursorResult[Any]: ...
    async def write(self, statement: Executable, params: Any = None) -> CursorResult[Any]: ...


_U = upstream_logins.c
_INSERT: Final = insert(upstream_logins)
_PRUNE: Final = delete(upstream_logins).where(_U.expires_at < bindparam("p_before"))
_CONSUME: Final = (
    update(upstream_logins)
    .where(
        _U.state_hash == bindparam("p_hash"),
        _U.used_at.is_(None),
        _U.expires_at > bindparam("p_at"),
    )
    .values(used_at=bindparam("p_at"))
    .returning(*upstream_logins.c)
)


class SqlUpstreamLoginRepository:
    __slots__ = ("_box", "_c")

    def __init__(self, connection: _Connection, box: SecretBox) -> None:
        self._c = connection
        self._box = box

    async def add(self, login: UpstreamLogin) -> None:
        await self._c.write(
            _INSERT,
            {
                "state_hash": login.state_hash,
                "upstream": login.upstream,
                "browser_hash": login.browser_hash,
                "nonce_enc": self._box.encrypt(login.nonce.reveal().encode("utf-8")),
                "code_verifier_enc": self._box.encrypt(
                    login.code_verifier.reveal().encode("utf-8")
                ),
                "return_to": login.return_to,
                "created_at": login.created_at,
                "expires_at": login.expires_at,
                "used_at": login.used_at,
            },
        )

    async def prune(self, *, before: datetime) -> None:
        await self._c.write(_PRUNE, {"p_before": before})

    async def consume(self, state_hash: str, *, at: datetime) -> UpstreamLogin | None:
        row = (await self._c.write(_CONSUME, {"p_hash": state_hash, "p_at": at})).first()
        if row is None:
            return None
        return UpstreamLogin(
            state_hash=row.state_hash,
            upstream=row.upstream,
            browser_hash=row.browser_hash,
            nonce=Secret(self._box.decrypt(row.nonce_enc).decode("utf-8")),
            code_verifier=Secret(self._box.decrypt(row.code_verifier_enc).decode("utf-8")),
            return_to=row.return_to,
            created_at=row.created_at,
            expires_at=row.expires_at,
            used_at=row.used_at,
        )
