"""Push approval: approver devices, push requests, push pauses.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stepguard.adapters.storage._types import UtcDateTime

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
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
        "push_devices",
        sa.Column("factor_id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("pairing_hash", sa.Text(), nullable=True),
        sa.Column("pairing_expires_at", UtcDateTime(), nullable=True),
        sa.Column("paired_at", UtcDateTime(), nullable=True),
        sa.Column("public_key", sa.LargeBinary(), nullable=True),
        sa.Column("device_token_hash", sa.Text(), nullable=True),
        sa.Column("subscription_enc", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=False),
        _cascade_fk("factor_id", "factors.id", "push_devices"),
        _cascade_fk("subject_id", "subjects.id", "push_devices"),
        sa.PrimaryKeyConstraint("factor_id", name=op.f("pk_push_devices")),
        sa.UniqueConstraint("pairing_hash", name=op.f("uq_push_devices_pairing_hash")),
        sa.UniqueConstraint("device_token_hash", name=op.f("uq_push_devices_device_token_hash")),
    )
    op.create_index(op.f("ix_push_devices_subject_id"), "push_devices", ["subject_id"])

    op.create_table(
        "push_requests",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("challenge_id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("number", sa.Integer(), nullable=False),
        sa.Column("choices", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("answered_at", UtcDateTime(), nullable=True),
        sa.Column("answered_by", sa.Text(), nullable=True),
        sa.Column("origin_location", sa.Text(), nullable=False),
        sa.Column("origin_browser", sa.Text(), nullable=False),
        sa.Column("finished_at", UtcDateTime(), nullable=True),
        _cascade_fk("challenge_id", "challenges.id", "push_requests"),
        _cascade_fk("subject_id", "subjects.id", "push_requests"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_push_requests")),
    )
    op.create_index(op.f("ix_push_requests_challenge_id"), "push_requests", ["challenge_id"])
    op.create_index(
        "ix_push_requests_subject_id_created_at", "push_requests", ["subject_id", "created_at"]
    )

    op.create_table(
        "push_blocks",
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("blocked_until", UtcDateTime(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        _cascade_fk("subject_id", "subjects.id", "push_blocks"),
        sa.PrimaryKeyConstraint("subject_id", name=op.f("pk_push_blocks")),
    )


def downgrade() -> None:
    op.drop_table("push_blocks")
    op.drop_table("push_requests")
    op.drop_table("push_devices")
