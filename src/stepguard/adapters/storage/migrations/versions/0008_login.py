"""Sign-in on StepGuard: passwords, login counters, per-IP failures, passkey ceremonies.

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stepguard.adapters.storage._types import UtcDateTime, big_int_pk

revision: str = "0008"
down_revision: str | Sequence[str] | None = "0007"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _subject_fk(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["subject_id"],
        ["subjects.id"],
        name=op.f(f"fk_{table}_subject_id_subjects"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "passwords",
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.Column("set_at", UtcDateTime(), nullable=False),
        _subject_fk("passwords"),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_passwords")),
    )
    op.create_table(
        "login_counters",
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        _subject_fk("login_counters"),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_login_counters")),
    )
    op.create_table(
        "login_ip_failures",
        sa.Column("id", big_int_pk(), autoincrement=True, nullable=False),
        sa.Column("ip", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_ip_failures")),
    )
    op.create_index("ix_login_ip_failures_ip_at", "login_ip_failures", ["ip", "at"])
    op.create_table(
        "login_ceremonies",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("challenge", sa.LargeBinary(), nullable=False),
        sa.Column("binding", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_login_ceremonies")),
        sa.UniqueConstraint("challenge", name=op.f("uq_login_ceremonies_challenge")),
    )
    op.create_index(op.f("ix_login_ceremonies_expires_at"), "login_ceremonies", ["expires_at"])


def downgrade() -> None:
    op.drop_table("login_ceremonies")
    op.drop_table("login_ip_failures")
    op.drop_table("login_counters")
    op.drop_table("passwords")
