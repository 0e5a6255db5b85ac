"""Hosted pages: single-use page tokens, browser sessions, grants redeemable by challenge id.

Revision ID: 0003
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stepguard.adapters.storage._types import UtcDateTime

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _cascade_fk(column: str, target: str, table: str) -> sa.ForeignKeyConstraint:
    referred = target.split(".")[0]
    return sa.ForeignKeyConstraint(
        [column],
        [target],
        name=op.f(f"fk_{table}_{column}_{referred}"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "page_tokens",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("challenge_id", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        _cascade_fk("subject_id", "subjects.id", "page_tokens"),
        _cascade_fk("session_id", "sessions.id", "page_tokens"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_page_tokens")),
    )
    op.create_index(op.f("ix_page_tokens_session_id"), "page_tokens", ["session_id"])

    op.create_table(
        "browser_sessions",
        sa.Column("id_hash", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        _cascade_fk("subject_id", "subjects.id", "browser_sessions"),
        _cascade_fk("session_id", "sessions.id", "browser_sessions"),
        sa.PrimaryKeyConstraint("id_hash", name=op.f("pk_browser_sessions")),
    )
    op.create_index(op.f("ix_browser_sessions_session_id"), "browser_sessions", ["session_id"])

    op.create_index(op.f("ix_grants_challenge_id"), "grants", ["challenge_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_grants_challenge_id"), table_name="grants")
    op.drop_table("browser_sessions")
    op.drop_table("page_tokens")
