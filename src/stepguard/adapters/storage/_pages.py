"""Repositories for the hosted pages: page tokens and browser sessions.

As everywhere in storage, single use is one conditional ``UPDATE ... WHERE used_at IS NULL``
(or ``revoked_at IS NULL``) whose row count decides the one winner, on every backend.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Final, Protocol

from sqlalchemy import Executable, bindparam, insert, select, update
from sqlalchemy.engine import CursorResult

from stepguard.adapters.storage.tables import browser_sessions, page_tokens
from stepguard.core.pages import BrowserSession, PagePurpose, PageToken

__all__ = ["SqlBrowserSessionRepository", "SqlPageTokenRepository"]


class _Connection(Protocol):
    """The unit of work's connection (``_repositories._Connection``, with its error mapping)."""

    async def run(self, statement: Executable, params: Any = None) -> CursorResult[Any]: ...
    async def write(self, statement: Executable, params: Any = None) -> CursorResult[Any]: ...


_P = page_tokens.c
_INSERT_PAGE_TOKEN: Final = insert(page_tokens)
# The whole check is the WHERE clause: used, expired or unknown tokens match no row.
_CONSUME_PAGE_TOKEN: Final = (
    update(page_tokens)
    .where(
        _P.token_hash == bindparam("p_hash"),
        _P.used_at.is_(None),
        _P.expires_at > bindparam("p_at"),
    )
    .values(used_at=bindparam("p_at"))
    .returning(*page_tokens.c)
)

_B = browser_sessions.c
_INSERT_BROWSER: Final = insert(browser_sessions)
_GET_BROWSER: Final = select(browser_sessions).where(
    _B.id_hash == bindparam("p_hash"),
    _B.revoked_at.is_(None),
    _B.expires_at > bindparam("p_at"),
)
_REVOKE_BROWSER: Final = (
    update(browser_sessions)
    .where(_B.id_hash == bindparam("p_hash"), _B.revoked_at.is_(None))
    .values(revoked_at=bindparam("p_at"))
)


def _page_token(row: Any) -> PageToken:
    return PageToken(
        token_hash=row.token_hash,
        purpose=PagePurpose(row.purpose),
        subject_id=row.subject_id,
        session_id=row.session_id,
        challenge_id=row.challenge_id,
        created_at=row.created_at,
        expires_at=row.expires_at,
        used_at=row.used_at,
    )


class SqlPageTokenRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def add(self, token: PageToken) -> None:
        await self._c.write(
            _INSERT_PAGE_TOKEN,
            {
                "token_hash": token.token_hash,
                "purpose": token.purpose.value,
                "subject_id": token.subject_id,
                "session_id": token.session_id,
                "challenge_id": token.challenge_id,
                "created_at": token.created_at,
                "expires_at": token.expires_at,
                "used_at": token.used_at,
            },
        )

    async def consume(self, token_hash: str, *, at: datetime) -> PageToken | None:
        result = await self._c.write(_CONSUME_PAGE_TOKEN, {"p_hash": token_hash, "p_at": at})
        row = result.first()
        return None if row is None else _page_token(row)


class SqlBrowserSessionRepository:
    __slots__ = ("_c",)

    def __init__(self, connection: _Connection) -> None:
        self._c = connection

    async def add(self, browser: BrowserSession) -> None:
        await self._c.write(
            _INSERT_BROWSER,
            {
                "id_hash": browser.id_hash,
                "subject_id": browser.subject_id,
                "session_id": browser.session_id,
                "created_at": browser.created_at,
                "expires_at": browser.expires_at,
                "revoked_at": browser.revoked_at,
            },
        )

    async def get_active(self, id_hash: str, *, at: datetime) -> BrowserSession | None:
        row = (await self._c.run(_GET_BROWSER, {"p_hash": id_hash, "p_at": at})).first()
        if row is None:
            return None
        return BrowserSession(
            id_hash=row.id_hash,
            subject_id=row.subject_id,
            session_id=row.session_id,
            created_at=row.created_at,
            expires_at=row.expires_at,
            revoked_at=row.revoked_at,
        )

    async def revoke(self, id_hash: str, *, at: datetime) -> bool:
        result = await self._c.write(_REVOKE_BROWSER, {"p_hash": id_hash, "p_at": at})
        return result.rowcount == 1
