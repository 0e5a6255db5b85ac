"""Upstream sign-in: sign-ins at an upstream OpenID Provider in flight.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stepguard.adapters.storage._types import UtcDateTime

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.create_table(
        "upstream_logins",
        sa.Column("state_hash", sa.Text(), nullable=False),
        sa.Column("upstream", sa.Text(), nullable=False),
        sa.Column("browser_hash", sa.Text(), nullable=False),
        sa.Column("nonce_enc", sa.Text(), nullable=False),
        sa.Column("code_verifier_enc", sa.Text(), nullable=False),
        sa.Column("return_to", sa.Text(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("state_hash", name=op.f("pk_upstream_logins")),
    )
    op.create_index(op.f("ix_upstream_logins_expires_at"), "upstream_logins", ["expires_at"])


def downgrade() -> None:
    op.drop_index(op.f("ix_upstream_logins_expires_at"), table_name="upstream_logins")
    op.drop_table("upstream_logins")
