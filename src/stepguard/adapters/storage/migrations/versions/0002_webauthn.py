"""WebAuthn: credentials (one per WebAuthn factor) and single-use ceremony challenges.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-28
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

from stepguard.adapters.storage._types import UtcDateTime

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
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
        "webauthn_credentials",
        sa.Column("factor_id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("credential_id", sa.LargeBinary(), nullable=False),
        sa.Column("user_handle", sa.LargeBinary(), nullable=False),
        sa.Column("public_key", sa.LargeBinary(), nullable=False),
        sa.Column("sign_count", sa.BigInteger(), nullable=False),
        sa.Column("aaguid", sa.Text(), nullable=False),
        sa.Column("transports", sa.JSON(), nullable=False),
        sa.Column("backup_eligible", sa.Boolean(), nullable=False),
        sa.Column("backed_up", sa.Boolean(), nullable=False),
        sa.Column("discoverable", sa.Boolean(), nullable=False),
        sa.Column("attestation_format", sa.Text(), nullable=False),
        sa.Column("attestation_trusted", sa.Boolean(), nullable=False),
        sa.Column("suspected_clone_at", UtcDateTime(), nullable=True),
        _cascade_fk("factor_id", "factors.id", "webauthn_credentials"),
        _cascade_fk("subject_id", "subjects.id", "webauthn_credentials"),
        sa.PrimaryKeyConstraint("factor_id", name=op.f("pk_webauthn_credentials")),
        sa.UniqueConstraint("credential_id", name=op.f("uq_webauthn_credentials_credential_id")),
    )
    op.create_index(
        op.f("ix_webauthn_credentials_subject_id"), "webauthn_credentials", ["subject_id"]
    )

    op.create_table(
        "webauthn_ceremonies",
        sa.Column("id", sa.Text(), nullable=False),
        sa.Column("subject_id", sa.Text(), nullable=False),
        sa.Column("purpose", sa.Text(), nullable=False),
        sa.Column("challenge", sa.LargeBinary(), nullable=False),
        sa.Column("challenge_id", sa.Text(), nullable=True),
        sa.Column("factor_id", sa.Text(), nullable=True),
        sa.Column("user_handle", sa.LargeBinary(), nullable=True),
        sa.Column("resident_key", sa.Text(), nullable=True),
        sa.Column("require_uv", sa.Boolean(), nullable=False),
        sa.Column("created_at", UtcDateTime(), nullable=False),
        sa.Column("expires_at", UtcDateTime(), nullable=False),
        sa.Column("used_at", UtcDateTime(), nullable=True),
        _cascade_fk("subject_id", "subjects.id", "webauthn_ceremonies"),
        _cascade_fk("challenge_id", "challenges.id", "webauthn_ceremonies"),
        _cascade_fk("factor_id", "factors.id", "webauthn_ceremonies"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_webauthn_ceremonies")),
        sa.UniqueConstraint("challenge", name=op.f("uq_webauthn_ceremonies_challenge")),
    )
    op.create_index(
        op.f("ix_webauthn_ceremonies_subject_id"), "webauthn_ceremonies", ["subject_id"]
    )
    op.create_index(
        op.f("ix_webauthn_ceremonies_challenge_id"), "webauthn_ceremonies", ["challenge_id"]
    )
    op.create_index(op.f("ix_webauthn_ceremonies_factor_id"), "webauthn_ceremonies", ["factor_id"])


def downgrade() -> None:
    op.drop_table("webauthn_ceremonies")
    op.drop_table("webauthn_credentials")
