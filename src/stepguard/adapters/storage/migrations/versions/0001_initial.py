"""Initial schema: subjects, sessions, factors, challenges, grants, API keys, audit chain.

Revision ID: 0001
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stepguard.adapters.storage._types import UtcDateTime, big_int_pk

revision: str = "0001"
down_revision: str | Sequence[str] | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

GENESIS_HASH = "0" * 64  # stepguard.core.audit.GENESIS_HASH, frozen here


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
        "subjects",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("email", sa.Text(), nullable=True),
        sa.Column("phone", sa.Text(), nullable=True),
        sa.Column("groups", sa.JSON(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("updated_at", UtcDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_subjects")),
    )

    op.create_table(
        "sessions",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.Column("ip", sa.Text(), nullable=True),
        sa.Column("user_agent", sa.Text(), nullable=True),
        _cascade_fk("subject_id", "subjects.id", "sessions"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_sessions")),
    )
    op.create_index(op.f("ix_sessions_subject_id"), "sessions", ["subject_id"])

    op.create_table(
        "session_factors",
        sa.Column("id", big_int_pk(), autoincrement=True, nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("method", sa.Text(), nullable=False),
        sa.Column("amr", sa.JSON(), nullable=False),
        sa.Column("kind", sa.Text(), nullable=False),
        sa.Column("completed_at", UtcDateTime(), nullable=False),
        sa.Column("is_primary", sa.Boolean(), nullable=False),
        sa.Column("factor_id", sa.Text(), nullable=True),
        sa.Column("phishing_resistant", sa.Boolean(), nullable=False),
        sa.Column("hardware_bound", sa.Boolean(), nullable=False),
        sa.Column("multi_factor", sa.Boolean(), nullable=False),
        _cascade_fk("session_id", "sessions.id", "session_factors"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_session_factors")),
    )
    op.create_index("ix_session_factors_session_id_id", "session_factors", ["session_id", "id"])

    op.create_table(
        "factors",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("totp_algorithm", sa.Text(), nullable=True),
        sa.Column("totp_digits", sa.Integer(), nullable=True),
        sa.Column("totp_period", sa.Integer(), nullable=True),
        sa.Column("secret_enc", sa.Text(), nullable=True),
        sa.Column("last_step", sa.BigInteger(), nullable=True),
        sa.Column("failed_attempts", sa.Integer(), nullable=False),
        sa.Column("locked_until", UtcDateTime(), nullable=True),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("confirmed_at", UtcDateTime(), nullable=True),
        sa.Column("last_used_at", UtcDateTime(), nullable=True),
        _cascade_fk("subject_id", "subjects.id", "factors"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_factors")),
    )
    op.create_index(op.f("ix_factors_subject_id"), "factors", ["subject_id"])

    op.create_table(
        "recovery_codes",
        sa.Column("factor_id", sa.Text(), nullable=False),
        sa.Column("code_hash", sa.Text(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        _cascade_fk("factor_id", "factors.id", "recovery_codes"),
        sa.PrimaryKeyConstraint("factor_id", "code_hash", name=op.f("pk_recovery_codes")),
    )

    op.create_table(
        "challenges",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("resource", sa.Text(), nullable=True),
        sa.Column("transaction_digest", sa.Text(), nullable=False),
        sa.Column("rule", sa.Text(), nullable=False),
        sa.Column("acr", sa.Text(), nullable=False),
        sa.Column("max_age", sa.Integer(), nullable=True),
        sa.Column("methods", sa.JSON(), nullable=False),
        sa.Column("bind", sa.Boolean(), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("status", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("satisfied_at", UtcDateTime(), nullable=True),
        sa.Column("satisfied_by", sa.Text(), nullable=True),
        _cascade_fk("subject_id", "subjects.id", "challenges"),
        _cascade_fk("session_id", "sessions.id", "challenges"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_challenges")),
    )
    op.create_index(op.f("ix_challenges_subject_id"), "challenges", ["subject_id"])
    op.create_index(op.f("ix_challenges_session_id"), "challenges", ["session_id"])

    op.create_table(
        "grants",
        sa.Column("token_hash", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("session_id", sa.Text(), nullable=False),
        sa.Column("action", sa.Text(), nullable=False),
        sa.Column("transaction_digest", sa.Text(), nullable=False),
        sa.Column("challenge_id", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        _cascade_fk("subject_id", "subjects.id", "grants"),
        _cascade_fk("session_id", "sessions.id", "grants"),
        sa.PrimaryKeyConstraint("token_hash", name=op.f("pk_grants")),
    )
    op.create_index(op.f("ix_grants_subject_id"), "grants", ["subject_id"])
    op.create_index(op.f("ix_grants_session_id"), "grants", ["session_id"])

    op.create_table(
        "api_keys",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("secret_hash", sa.Text(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("revoked_at", UtcDateTime(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_api_keys")),
    )

    op.create_table(
        "audit_events",
        sa.Column("seq", big_int_pk(), autoincrement=False, nullable=False),
        sa.Column("type", sa.Text(), nullable=False),
        sa.Column("at", UtcDateTime(), nullable=False),
        sa.Column("outcome", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=True),
        sa.Column("session_id", sa.Text(), nullable=True),
        sa.Column("actor", sa.Text(), nullable=True),
        sa.Column("details", sa.Text(), nullable=False),
        sa.Column("prev_hash", sa.Text(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_events")),
    )
    op.create_index("ix_audit_events_subject_id_seq", "audit_events", ["subject_id", "seq"])
    op.create_index("ix_audit_events_type_seq", "audit_events", ["type", "seq"])
    op.create_index("ix_audit_events_at", "audit_events", ["at"])

    audit_head = op.create_table(
        "audit_head",
        sa.Column("id", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("seq", sa.BigInteger(), nullable=False),
        sa.Column("hash", sa.Text(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_audit_head_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_audit_head")),
    )
    op.bulk_insert(audit_head, [{"id": 1, "seq": 0, "hash": GENESIS_HASH}])


def downgrade() -> None:
    op.drop_table("audit_head")
    op.drop_table("audit_events")
    op.drop_table("api_keys")
    op.drop_table("grants")
    op.drop_table("challenges")
    op.drop_table("recovery_codes")
    op.drop_table("factors")
    op.drop_table("session_factors")
    op.drop_table("sessions")
    op.drop_table("subjects")
