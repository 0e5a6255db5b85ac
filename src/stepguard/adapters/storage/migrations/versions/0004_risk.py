"""The risk engine: trusted-login history, population counts, external alerts.

Revision ID: 0004
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stepguard.adapters.storage._types import UtcDateTime, big_int_pk

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
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
        "risk_events",
        sa.Column("id", big_int_pk(), autoincrement=True, nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("source", sa.Text(), nullable=False),
        sa.Column("keys", sa.JSON(), nullable=False),
        sa.Column("device_id", sa.Text(), nullable=True),
        sa.Column("latitude", sa.Float(), nullable=True),
        sa.Column("longitude", sa.Float(), nullable=True),
        sa.Column("proxied", sa.Boolean(), nullable=False),
        _cascade_fk("subject_id", "subjects.id", "risk_events"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_events")),
    )
    op.create_index(
        "ix_risk_events_subject_id_id", "risk_events", ["subject_id", "id"], unique=False
    )
    op.create_table(
        "risk_counts",
        sa.Column("key", sa.Text(), nullable=False),
        sa.Column("count", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_risk_counts")),
    )
    op.create_table(
        "risk_alerts",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("cleared_at", UtcDateTime(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        _cascade_fk("subject_id", "subjects.id", "risk_alerts"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_risk_alerts")),
    )
    op.create_index(op.f("ix_risk_alerts_subject_id"), "risk_alerts", ["subject_id"], unique=False)


def downgrade() -> None:
    op.drop_index(op.f("ix_risk_alerts_subject_id"), table_name="risk_alerts")
    op.drop_table("risk_alerts")
    op.drop_table("risk_counts")
    op.drop_index("ix_risk_events_subject_id_id", table_name="risk_events")
    op.drop_table("risk_events")
