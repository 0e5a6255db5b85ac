"""The relational schema: SQLAlchemy Core tables, the single source of truth.

``migrations/versions`` must create exactly this (a test compares them). Times are
:class:`UtcDateTime`; free-form strings are ``TEXT`` on every backend, so no backend rejects
what another accepts. Deleting a subject deletes what it owns (``ON DELETE CASCADE``) but never
its audit records: ``audit_events`` has no foreign keys on purpose.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    CheckConstraint,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    PrimaryKeyConstraint,
    Table,
    Text,
)

from stepguard.adapters.storage._types import UtcDateTime, big_int_pk

__all__ = [
    "AUDIT_HEAD_ID",
    "api_keys",
    "audit_events",
    "audit_head",
    "browser_sessions",
    "challenges",
    "delivery_codes",
    "delivery_log",
    "factors",
    "grants",
    "login_ceremonies",
    "login_counters",
    "login_ip_failures",
    "metadata",
    "oidc_clients",
    "oidc_codes",
    "oidc_grants",
    "oidc_keys",
    "oidc_pending",
    "oidc_refresh_tokens",
    "page_tokens",
    "passwords",
    "push_blocks",
    "push_devices",
    "push_requests",
    "recovery_codes",
    "risk_alerts",
    "risk_counts",
    "risk_events",
    "session_factors",
    "sessions",
    "subjects",
    "upstream_logins",
    "webauthn_ceremonies",
    "webauthn_credentials",
]

NAMING_CONVENTION = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

metadata = MetaData(naming_convention=NAMING_CONVENTION)

AUDIT_HEAD_ID = 1

subjects = Table(
    "subjects",
    metadata,
    Column("id", Text, primary_key=True),
    Column("email", Text, nullable=True),
    Column("phone", Text, nullable=True),
    Column("groups", JSON, nullable=False),  # list of strings, in the subject's order
    Column("created_at", UtcDateTime, nullable=False),
    Column("updated_at", UtcDateTime, nullable=False),
)

sessions = Table(
    "sessions",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
    Column("ip", Text, nullable=True),
    Column("user_agent", Text, nullable=True),
)

# One row per CompletedFactor; ``id`` grows with insertion, so it is the session's order.
session_factors = Table(
    "session_factors",
    metadata,
    Column("id", big_int_pk(), primary_key=True, autoincrement=True),
    Column(
        "session_id",
        Text,
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("method", Text, nullable=False),
    Column("amr", JSON, nullable=False),  # list of RFC 8176 values
    Column("kind", Text, nullable=False),
    Column("completed_at", UtcDateTime, nullable=False),
    Column("is_primary", Boolean, nullable=False),
    Column("factor_id", Text, nullable=True),
    Column("phishing_resistant", Boolean, nullable=False),
    Column("hardware_bound", Boolean, nullable=False),
    Column("multi_factor", Boolean, nullable=False),
    Index("ix_session_factors_session_id_id", "session_id", "id"),
)

factors = Table(
    "factors",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("type", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("label", Text, nullable=False),
    Column("totp_algorithm", Text, nullable=True),
    Column("totp_digits", Integer, nullable=True),
    Column("totp_period", Integer, nullable=True),
    Column("secret_enc", Text, nullable=True),  # Fernet token (SecretBox), never plaintext
    Column("last_step", BigInteger, nullable=True),
    Column("failed_attempts", Integer, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("confirmed_at", UtcDateTime, nullable=True),
    Column("last_used_at", UtcDateTime, nullable=True),
)

recovery_codes = Table(
    "recovery_codes",
    metadata,
    Column(
        "factor_id",
        Text,
        ForeignKey("factors.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("code_hash", Text, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    PrimaryKeyConstraint("factor_id", "code_hash"),
)

challenges = Table(
    "challenges",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "session_id",
        Text,
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("action", Text, nullable=False),
    Column("resource", Text, nullable=True),
    Column("transaction_digest", Text, nullable=False),
    Column("rule", Text, nullable=False),
    Column("acr", Text, nullable=False),  # AssuranceLevel.acr
    Column("max_age", Integer, nullable=True),
    Column("methods", JSON, nullable=False),  # sorted list of factor types; empty = any
    Column("bind", Boolean, nullable=False),
    Column("summary", Text, nullable=False),
    Column("status", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("satisfied_at", UtcDateTime, nullable=True),
    Column("satisfied_by", Text, nullable=True),
)

grants = Table(
    "grants",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "session_id",
        Text,
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("action", Text, nullable=False),
    Column("transaction_digest", Text, nullable=False),
    Column("challenge_id", Text, nullable=False, index=True),  # redemption by challenge id
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)

# One row per WebAuthn factor: the credential's public data (nothing here is secret).
webauthn_credentials = Table(
    "webauthn_credentials",
    metadata,
    Column(
        "factor_id",
        Text,
        ForeignKey("factors.id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("credential_id", LargeBinary, nullable=False, unique=True),  # across ALL subjects
    Column("user_handle", LargeBinary, nullable=False),
    Column("public_key", LargeBinary, nullable=False),  # COSE_Key
    Column("sign_count", BigInteger, nullable=False),
    Column("aaguid", Text, nullable=False),
    Column("transports", JSON, nullable=False),  # list of AuthenticatorTransport values
    Column("backup_eligible", Boolean, nullable=False),
    Column("backed_up", Boolean, nullable=False),
    Column("discoverable", Boolean, nullable=False),
    Column("attestation_format", Text, nullable=False),
    Column("attestation_trusted", Boolean, nullable=False),
    Column("suspected_clone_at", UtcDateTime, nullable=True),
)

# Open WebAuthn ceremonies: each challenge is consumed once (used_at) before it expires.
webauthn_ceremonies = Table(
    "webauthn_ceremonies",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("purpose", Text, nullable=False),  # register | authenticate
    Column("challenge", LargeBinary, nullable=False, unique=True),
    Column(
        "challenge_id",
        Text,
        ForeignKey("challenges.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column(
        "factor_id",
        Text,
        ForeignKey("factors.id", ondelete="CASCADE"),
        nullable=True,
        index=True,
    ),
    Column("user_handle", LargeBinary, nullable=True),
    Column("resident_key", Text, nullable=True),
    Column("require_uv", Boolean, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)

# Single-use links to the hosted pages (``core.pages.PageToken``), stored by token hash.
page_tokens = Table(
    "page_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("purpose", Text, nullable=False),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "session_id",
        Text,
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("challenge_id", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)

# The pages' cookie (``core.pages.BrowserSession``), stored by the hash of its value.
browser_sessions = Table(
    "browser_sessions",
    metadata,
    Column("id_hash", Text, primary_key=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column(
        "session_id",
        Text,
        ForeignKey("sessions.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("secret_hash", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

# The hash chain. ``details`` is canonical JSON text (RFC 8785), stored and read back verbatim,
# so the hash recomputed at verification time covers exactly what was written.
audit_events = Table(
    "audit_events",
    metadata,
    Column("seq", big_int_pk(), primary_key=True, autoincrement=False),
    Column("type", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Column("outcome", Text, nullable=False),
    Column("subject_id", Text, nullable=True),
    Column("session_id", Text, nullable=True),
    Column("actor", Text, nullable=True),
    Column("details", Text, nullable=False),
    Column("prev_hash", Text, nullable=False),
    Column("hash", Text, nullable=False),
    Index("ix_audit_events_subject_id_seq", "subject_id", "seq"),
    Index("ix_audit_events_type_seq", "type", "seq"),
    Index("ix_audit_events_at", "at"),
)

# Exactly one row (id = 1): the last sequence number and hash. Appenders lock it, which
# serializes the chain; a truncated tail no longer matches it.
audit_head = Table(
    "audit_head",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=False),
    Column("seq", BigInteger, nullable=False),
    Column("hash", Text, nullable=False),
    CheckConstraint(f"id = {AUDIT_HEAD_ID}", name="single_row"),
)


# --- the risk engine ---------------------------------------------------------------------

# A subject's trusted logins (a session created, a step-up satisfied), newest last, bounded
# per subject. ``keys`` are the count keys of stepguard.core.risk.features (JSON list).
risk_events = Table(
    "risk_events",
    metadata,
    Column("id", big_int_pk(), primary_key=True, autoincrement=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", UtcDateTime, nullable=False),
    Column("source", Text, nullable=False),
    Column("keys", JSON, nullable=False),
    Column("device_id", Text, nullable=True),
    Column("latitude", Float, nullable=True),
    Column("longitude", Float, nullable=True),
    Column("proxied", Boolean, nullable=False),
    Index("ix_risk_events_subject_id_id", "subject_id", "id"),
)

# Population counts over every subject's trusted logins (the Freeman model's p(x)), plus the
# totals under the reserved keys "#logins" and "#subjects".
risk_counts = Table(
    "risk_counts",
    metadata,
    Column("key", Text, primary_key=True),
    Column("count", BigInteger, nullable=False),
)

# External alerts: a subject's risk is at least ``score`` until ``expires_at`` or clearing.
risk_alerts = Table(
    "risk_alerts",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("score", Float, nullable=False),
    Column("reason", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("cleared_at", UtcDateTime, nullable=True),
    Column("actor", Text, nullable=True),
)

# Email/SMS one-time codes: only an HMAC of the code and its binding is stored. A code is live
# while used_at and invalidated_at are NULL and expires_at is ahead; using it is a conditional
# UPDATE. Sending a new code for a factor invalidates the factor's live ones.
delivery_codes = Table(
    "delivery_codes",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column(
        "factor_id",
        Text,
        ForeignKey("factors.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("purpose", Text, nullable=False),  # CodePurpose
    Column(
        "challenge_id",
        Text,
        ForeignKey("challenges.id", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("code_hash", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("invalidated_at", UtcDateTime, nullable=True),
)

# Every send (codes and notices), for the sliding-window send limits. No foreign keys: a
# deleted subject's sends still count against its destination and the global budget.
# ``destination_key`` is an HMAC of the destination, never the address itself.
delivery_log = Table(
    "delivery_log",
    metadata,
    Column("id", big_int_pk(), primary_key=True, autoincrement=True),
    Column("at", UtcDateTime, nullable=False),
    Column("channel", Text, nullable=False),  # Channel
    Column("kind", Text, nullable=False),  # "code" or "notice:<type>"
    Column("subject_id", Text, nullable=True),
    Column("destination_key", Text, nullable=False),
    Index("ix_delivery_log_subject_id_at", "subject_id", "at"),
    Index("ix_delivery_log_destination_key_at", "destination_key", "at"),
    Index("ix_delivery_log_channel_at", "channel", "at"),
)

# Push approval (docs/push.md). One approver device per push factor: the pairing token and
# the device cookie are stored as SHA-256 hashes; the Web Push subscription is encrypted.
push_devices = Table(
    "push_devices",
    metadata,
    Column("factor_id", Text, ForeignKey("factors.id", ondelete="CASCADE"), primary_key=True),
    Column(
        "subject_id",
        Text,
        ForeignKey("subjects.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("created_at", UtcDateTime, nullable=False),
    Column("pairing_hash", Text, nullable=True, unique=True),
    Column("pairing_expires_at", UtcDateTime, nullable=True),
    Column("paired_at", UtcDateTime, nullable=True),
    Column("public_key", LargeBinary, nullable=True),
    Column("device_token_hash", Text, nullable=True, unique=True),
    Column("subscription_enc", Text, nullable=True),  # Fernet token (SecretBox)
    Column("user_agent", Text, nullable=False),
)

# One push per row; only ``pending`` is open, and leaving it is a conditional UPDATE (one
# terminal answer). Kept after answering: the push-bombing limits count them.
push_requests = Table(
    "push_requests",
    metadata,
    Column("id", Text, primary_key=True),
    Column(
        "challenge_id",
        Text,
        ForeignKey("challenges.id", ondelete="CASCADE"),
        nullable=False,
        index=True,
    ),
    Column("subject_id", Text, ForeignKey("subjects.id", ondelete="CASCADE"), nullable=False),
    Column("number", Integer, nullable=False),
    Column("choices", Text, nullable=False),  # "17,42,83"
    Column("status", Text, nullable=False),  # PushStatus
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("answered_at", UtcDateTime, nullable=True),
    Column("answered_by", Text, nullable=True),
    Column("origin_location", Text, nullable=False),
    Column("origin_browser", Text, nullable=False),
    Column("finished_at", UtcDateTime, nullable=True),
    Index("ix_push_requests_subject_id_created_at", "subject_id", "created_at"),
)

# Push paused for a subject until ``blocked_until`` (push bombing). Kept after it ends: the
# next count of unanswered or denied pushes starts there.
push_blocks = Table(
    "push_blocks",
    metadata,
    Column("subject_id", Text, ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True),
    Column("blocked_until", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
)

# Sign-ins at an upstream OpenID Provider in flight (docs/upstream.md), by SHA-256 of their
# ``state``; single use is a conditional UPDATE on ``used_at``. The nonce and the PKCE
# verifier are encrypted (SecretBox); the browser binding cookie is stored as its hash.
upstream_logins = Table(
    "upstream_logins",
    metadata,
    Column("state_hash", Text, primary_key=True),
    Column("upstream", Text, nullable=False),
    Column("browser_hash", Text, nullable=False),
    Column("nonce_enc", Text, nullable=False),
    Column("code_verifier_enc", Text, nullable=False),
    Column("return_to", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("used_at", UtcDateTime, nullable=True),
)

# Sign-in on StepGuard itself (docs/login.md). A subject's password as an argon2id PHC
# string; its consecutive failed sign-ins (LockoutPolicy); failed sign-ins per client IP
# (a sliding window, rows pruned as the window moves); usernameless passkey ceremonies, bound
# to the SHA-256 of the browser's pre-login cookie and consumed once.
passwords = Table(
    "passwords",
    metadata,
    Column("subject_id", Text, ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True),
    Column("hash", Text, nullable=False),
    Column("set_at", UtcDateTime, nullable=False),
)

login_counters = Table(
    "login_counters",
    metadata,
    Column("subject_id", Text, ForeignKey("subjects.id", ondelete="CASCADE"), primary_key=True),
    Column("failed_attempts", Integer, nullable=False),
    Column("locked_until", UtcDateTime, nullable=True),
    Column("updated_at", UtcDateTime, nullable=False),
)

login_ip_failures = Table(
    "login_ip_failures",
    metadata,
    Column("id", big_int_pk(), primary_key=True, autoincrement=True),
    Column("ip", Text, nullable=False),
    Column("at", UtcDateTime, nullable=False),
    Index("ix_login_ip_failures_ip_at", "ip", "at"),
)

login_ceremonies = Table(
    "login_ceremonies",
    metadata,
    Column("id", Text, primary_key=True),
    Column("challenge", LargeBinary, nullable=False, unique=True),
    Column("binding", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False, index=True),
    Column("used_at", UtcDateTime, nullable=True),
)


# OpenID Connect provider (docs/oidc.md). Client secrets, codes, refresh tokens and binding
# cookies are stored as SHA-256 hashes; signing keys are encrypted (SecretBox). Codes and
# refresh tokens are used by a conditional UPDATE (one winner); revoking a grant revokes
# everything issued from it.
oidc_clients = Table(
    "oidc_clients",
    metadata,
    Column("id", Text, primary_key=True),
    Column("name", Text, nullable=False),
    Column("secret_hash", Text, nullable=True),
    Column("redirect_uris", JSON, nullable=False),
    Column("post_logout_redirect_uris", JSON, nullable=False),
    Column("scopes", JSON, nullable=False),
    Column("refresh_tokens", Boolean, nullable=False),
    Column("consent_required", Boolean, nullable=False),
    Column("audience", Text, nullable=True),
    Column("created_at", UtcDateTime, nullable=False),
)

oidc_keys = Table(
    "oidc_keys",
    metadata,
    Column("kid", Text, primary_key=True),
    Column("alg", Text, nullable=False),
    Column("private_enc", Text, nullable=False),  # Fernet token (SecretBox)
    Column("created_at", UtcDateTime, nullable=False),
    Column("retired_at", UtcDateTime, nullable=True),
)

oidc_pending = Table(
    "oidc_pending",
    metadata,
    Column("id", Text, primary_key=True),
    Column("binding_hash", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("params", JSON, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
    Column("challenge_id", Text, nullable=True),
)

oidc_grants = Table(
    "oidc_grants",
    metadata,
    Column("id", Text, primary_key=True),
    Column("client_id", Text, nullable=False),
    Column("subject_id", Text, nullable=False),
    Column("session_id", Text, nullable=False, index=True),
    Column("scope", JSON, nullable=False),
    Column("nonce", Text, nullable=True),
    Column("acr", Text, nullable=False),
    Column("amr", JSON, nullable=False),
    Column("auth_time", UtcDateTime, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("revoked_at", UtcDateTime, nullable=True),
)

oidc_codes = Table(
    "oidc_codes",
    metadata,
    Column("code_hash", Text, primary_key=True),
    Column("grant_id", Text, nullable=False),
    Column("client_id", Text, nullable=False),
    Column("redirect_uri", Text, nullable=False),
    Column("code_challenge", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)

oidc_refresh_tokens = Table(
    "oidc_refresh_tokens",
    metadata,
    Column("token_hash", Text, primary_key=True),
    Column("grant_id", Text, nullable=False, index=True),
    Column("client_id", Text, nullable=False),
    Column("created_at", UtcDateTime, nullable=False),
    Column("expires_at", UtcDateTime, nullable=False),
    Column("used_at", UtcDateTime, nullable=True),
)
