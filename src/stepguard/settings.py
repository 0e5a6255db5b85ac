"""Configuration: environment variables (prefix ``STEPGUARD_``) over ``stepguard.yaml``.

The YAML file is ``./stepguard.yaml`` or the path in ``STEPGUARD_CONFIG``. Environment
variables win over the file; lists are JSON in the environment, e.g.
``STEPGUARD_SECRET_KEYS='["<new key>", "<old key>"]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

PositiveSeconds = Annotated[int, Field(gt=0, strict=True)]


class UpstreamSettings(BaseModel):
    """One upstream OpenID Provider (docs/upstream.md)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,31}$")
    label: str = Field(min_length=1, max_length=64)
    issuer: str = Field(pattern=r"^https?://[^\s#?]+$")
    client_id: str = Field(min_length=1)
    client_secret: SecretStr | None = None
    client_secret_file: Path | None = None
    scopes: str = "openid email profile"
    trusted_assurance: bool = False
    # Upstream amr value -> StepGuard RFC 8176 values; upstream acr -> StepGuard level.
    amr_map: dict[str, list[str]] = Field(default_factory=dict)
    acr_map: dict[str, str] = Field(default_factory=dict)
    # The highest level this upstream may vouch for (acr_map never maps above it).
    max_acr: str = "aal2"
    # What an untrusted upstream's sign-in counts as (one factor kind: aal1).
    untrusted_amr: list[str] = Field(default_factory=lambda: ["pwd"])
    subject_claim: str = Field(default="sub", min_length=1)
    create_subjects: bool = True
    algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256", "PS256", "EdDSA"])


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="STEPGUARD_", extra="forbid", frozen=True, validate_default=True
    )

    database_url: str = "sqlite+aiosqlite:///./var/stepguard.db"
    policy_file: Path = Path("policy.yaml")
    # Fernet keys that encrypt TOTP secrets at rest; the first encrypts, all decrypt.
    secret_keys: list[SecretStr] = Field(default_factory=list)

    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    workers: int = Field(default=1, ge=1, le=64)

    session_ttl_seconds: PositiveSeconds = 12 * 3600
    challenge_ttl_seconds: PositiveSeconds = 600
    grant_ttl_seconds: PositiveSeconds = 300
    management_max_age_seconds: PositiveSeconds = 300
    risk_timeout_seconds: float = Field(default=0.5, gt=0)

    max_failed_attempts: int = Field(default=5, ge=1, le=100)
    lock_base_seconds: PositiveSeconds = 30
    lock_max_seconds: PositiveSeconds = 3600
    recovery_code_count: int = Field(default=10, ge=4, le=32)
    totp_issuer: str = "StepGuard"

    # WebAuthn: the relying party id (a registrable domain of every origin), the exact
    # origins browsers may report, and which authenticators count as hardware-bound (an
    # AAGUID on this list AND an attestation chained to one of these PEM roots). Unset, the
    # rp id is public_url's host and the origins are public_url's origin.
    webauthn_rp_id: str | None = None
    webauthn_rp_name: str = "StepGuard"
    webauthn_origins: list[str] | None = None
    webauthn_timeout_seconds: int = Field(default=300, ge=10, le=3600)
    webauthn_hardware_aaguids: list[str] = Field(default_factory=list)
    webauthn_attestation_roots: list[Path] = Field(default_factory=list)
    # The risk engine (docs/risk.md). "static": every request is low risk (tests, opt-out).
    risk_engine: Literal["live", "static"] = "live"
    risk_model: Literal["full", "freeman"] = "full"
    risk_history_size: int = Field(default=100, ge=1, le=10_000)
    risk_cache_seconds: float = Field(default=5.0, ge=0)
    risk_population_cache_seconds: float = Field(default=60.0, ge=0)
    risk_source_timeout_seconds: float = Field(default=0.2, gt=0)
    risk_geo_databases: list[Path] = Field(default_factory=list)  # .mmdb files; else geoip2fast
    risk_lists_dir: Path | None = None  # <category>.txt CIDR lists, reloaded on change
    risk_threshold_medium: float = Field(default=0.5, gt=0, lt=1)
    risk_threshold_high: float = Field(default=0.8, gt=0, lt=1)
    risk_threshold_critical: float = Field(default=0.95, gt=0, le=1)
    risk_degraded_level: Literal["medium", "high", "critical"] = "high"
    risk_travel_max_kmh: float = Field(default=1000.0, gt=0)
    risk_travel_min_km: float = Field(default=200.0, ge=0)
    risk_velocity_window_seconds: float = Field(default=900.0, gt=0)
    # The hosted pages (docs/pages.md). ``public_url`` is where browsers reach StepGuard
    # (default ``http://localhost:{port}``: WebAuthn refuses IP addresses, and browsers treat
    # http://localhost as a secure context); https there makes the cookie ``__Host-``/Secure.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+$")
    # Origins (scheme://host[:port]) that the pages may send a user back to after a step-up.
    return_to_origins: list[str] = Field(default_factory=list)
    page_token_ttl_seconds: int = Field(default=300, gt=0, le=300, strict=True)
    browser_session_ttl_seconds: PositiveSeconds = 3600
    # Forward-auth (docs/forward-auth.md): the proxies (CIDRs) whose X-Forwarded-* headers
    # are read (default: loopback only), and where a browser without a session logs in.
    forward_auth_trusted_proxies: list[str] = Field(
        default_factory=lambda: ["127.0.0.0/8", "::1/128"]
    )
    # How long one process may reuse a forward-auth allow for the same cookie and request.
    forward_auth_cache_seconds: float = Field(default=1.0, ge=0, le=10)
    # Housekeeping: every worker deletes rows that expired more than the retention ago
    # (tokens, ceremonies, codes, challenges, sessions; never the audit log). 0 turns it off.
    purge_interval_seconds: float = Field(default=3600, ge=0)
    purge_retention_seconds: int = Field(default=86400, ge=3600)
    forward_auth_login_url: str | None = Field(default=None, pattern=r"^https?://[!-\"$-~]+$")

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    # Unauthenticated flows that store a row before anyone proves anything (a passkey sign-in
    # ceremony, an upstream sign-in, a parked authorization request): per client address
    # (IPv6 /64), per flow and worker process; more get 429.
    flow_starts_per_minute: int = Field(default=60, ge=1)
    api_key_cache_seconds: float = Field(default=5.0, ge=0)
    log_level: str = "info"
    log_json: bool = True

    # Development conveniences that must never run in production (the console sender).
    dev_mode: bool = False

    # Email and SMS codes and notices (docs/delivery.md).
    email_backend: Literal["none", "smtp", "console"] = "none"
    smtp_host: str = "localhost"
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_security: Literal["starttls", "tls", "none"] = "starttls"
    smtp_username: str | None = None
    smtp_password: SecretStr | None = None
    smtp_from: str = "StepGuard <stepguard@localhost>"
    smtp_ca_file: Path | None = None  # extra CA bundle to verify the server (default: system)
    smtp_timeout_seconds: float = Field(default=10.0, gt=0, le=60)
    sms_backend: Literal["none", "twilio", "webhook", "console"] = "none"
    twilio_base_url: str = "https://api.twilio.com"
    twilio_account_sid: str | None = None
    twilio_auth_token: SecretStr | None = None
    twilio_from: str | None = None
    twilio_messaging_service_sid: str | None = None
    sms_webhook_url: SecretStr | None = None
    sms_webhook_auth_header: str = "Authorization"
    sms_webhook_auth_value: SecretStr | None = None
    sms_webhook_body_template: str = '{"to": "{to}", "body": "{body}"}'
    sms_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    console_delivery_file: Path | None = None  # dev mode: append messages here, else stderr
    delivery_code_digits: int = Field(default=6, ge=6, le=8)
    delivery_code_ttl_seconds: int = Field(default=600, gt=0, le=600, strict=True)
    delivery_limit_window_seconds: PositiveSeconds = 900
    delivery_limit_per_subject: int = Field(default=5, ge=1)
    delivery_limit_per_destination: int = Field(default=5, ge=1)
    delivery_global_email_per_hour: int = Field(default=1000, ge=1)
    delivery_global_sms_per_hour: int = Field(default=200, ge=1)
    notice_limit_per_hour: int = Field(default=3, ge=1)

    # Push approval with number matching (docs/push.md).
    push_request_ttl_seconds: int = Field(default=120, ge=30, le=600)
    push_pairing_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    push_max_outstanding: int = Field(default=2, ge=1, le=20)
    push_max_per_window: int = Field(default=10, ge=1)
    push_window_seconds: PositiveSeconds = 900
    push_pause_after: int = Field(default=3, ge=1)
    push_pause_seconds: PositiveSeconds = 1800
    # Web Push: off without a VAPID private key (PEM, or base64url; py-vapid's `vapid --gen`).
    webpush_vapid_private_key: SecretStr | None = None
    webpush_vapid_subject: str = "mailto:security@localhost"
    # The push services a subscription may point at (a host or parent domain; HTTPS only,
    # except a loopback host listed here).
    webpush_endpoint_hosts: list[str] = Field(
        default_factory=lambda: [
            "fcm.googleapis.com",
            "updates.push.services.mozilla.com",
            "push.services.mozilla.com",
            "notify.windows.com",
            "push.apple.com",
        ]
    )
    webpush_timeout_seconds: float = Field(default=5.0, gt=0, le=30)

    # Sign-in at upstream OpenID Providers (docs/upstream.md); JSON list in the environment.
    upstreams: list[UpstreamSettings] = Field(default_factory=list)
    upstream_timeout_seconds: float = Field(default=5.0, gt=0, le=30)
    # Sign-in on StepGuard itself (docs/login.md).
    # argon2id parameters for new hashes; old hashes are rehashed on sign-in. "test" is for
    # tests only (cheap), and refused outside dev mode (STEPGUARD_DEV_MODE=1).
    password_hash_profile: Literal["rfc9106_low_memory", "rfc9106_high_memory", "test"] = (
        "rfc9106_low_memory"  # noqa: S105 - a parameter profile's name, not a password
    )
    password_min_length: int = Field(default=8, ge=8, le=64)
    # Failed sign-ins per client IP (IPv6: per /64) within the window, then refused.
    login_ip_max_failures: int = Field(default=20, ge=1)
    login_ip_window_seconds: PositiveSeconds = 900
    # OpenID Connect provider (docs/oidc.md). The issuer defaults to public_url.
    oidc_issuer: str | None = Field(default=None, pattern=r"^https?://[^?#\s]+$")
    oidc_signing_alg: Literal["ES256", "RS256"] = "ES256"
    oidc_code_ttl_seconds: int = Field(default=60, ge=10, le=600)
    oidc_pending_ttl_seconds: int = Field(default=600, ge=60, le=3600)
    oidc_id_token_ttl_seconds: int = Field(default=300, ge=30, le=86400)
    oidc_access_token_ttl_seconds: int = Field(default=300, ge=30, le=86400)
    oidc_refresh_token_ttl_seconds: int = Field(default=30 * 86400, ge=60)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        config_file = Path(os.environ.get("STEPGUARD_CONFIG", "stepguard.yaml"))
        return (
            init_settings,
            env_settings,
            YamlConfigSettingsSource(settings_cls, yaml_file=config_file),
        )
