"""Configuration: environment variables (prefix ``STEPGUARD_``) over ``stepguard.yaml``.

The YAML file is ``./stepguard.yaml`` or the path in ``STEPGUARD_CONFIG``. Environment
variables win over the file; lists are JSON in the environment, e.g.
``STEPGUARD_SECRET_KEYS='["<new key>", "<old key>"]'``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    YamlConfigSettingsSource,
)

PositiveSeconds = Annotated[int, Field(gt=0, strict=True)]


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

    # The hosted pages (docs/pages.md). ``public_url`` is where browsers reach StepGuard
    # (default ``http://127.0.0.1:{port}``); https there makes the cookie ``__Host-``/Secure.
    public_url: str | None = Field(default=None, pattern=r"^https?://[^/?#\s]+$")
    # Origins (scheme://host[:port]) that the pages may send a user back to after a step-up.
    return_to_origins: list[str] = Field(default_factory=list)
    page_token_ttl_seconds: int = Field(default=300, gt=0, le=300, strict=True)
    browser_session_ttl_seconds: PositiveSeconds = 3600

    max_body_bytes: int = Field(default=64 * 1024, ge=1024)
    api_key_cache_seconds: float = Field(default=5.0, ge=0)
    log_level: str = "info"
    log_json: bool = True

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
