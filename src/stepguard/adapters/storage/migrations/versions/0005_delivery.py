"""Email and SMS codes and the send log (send limits).

Revision ID: 0005
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stepguard.adapters.storage._types import UtcDateTime, big_int_pk

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
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
        "delivery_codes",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("factor_id", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("challenge_id", sa.Text(), nullable=True),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        sa.Column("invalidated_at", UtcDateTime(), nullable=True),
        _cascade_fk("subject_id", "subjects.id", "delivery_codes"),
        _cascade_fk("factor_id", "factors.id", "delivery_codes"),
        _cascade_fk("challenge_id", "challenges.id", "delivery_codes"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_codes")),
    )
    op.create_index(op.f("ix_delivery_codes_subject_id"), "delivery_codes", ["subject_id"])
    op.create_index(op.f("ix_delivery_codes_factor_id"), "delivery_codes", ["factor_id"])

    op.create_table(
        "delivery_log",
        sa.Column("id", big_int_pk(), autoincrement=True, nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("channel", sa.Text(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=True),
        sa.Column("destination_key", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_delivery_log")),
    )
    op.create_index("ix_delivery_log_subject_id_at", "delivery_log", ["subject_id", "at"])
    op.create_index("ix_delivery_log_destination_key_at", "delivery_log", ["destination_key", "at"])
    op.create_index("ix_delivery_log_channel_at", "delivery_log", ["channel", "at"])


def downgrade() -> None:
    op.drop_table("delivery_log")
    op.drop_table("delivery_codes")
