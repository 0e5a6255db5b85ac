"""The bank's settings (``ACME_BANK_*`` environment variables)."""

from __future__ import annotations

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

__all__ = ["ABROAD_IP", "BankSettings"]

#: What the "pretend I'm abroad" switch sends as the client's address: a Brazilian network
#: (geoip2fast places 200.147.67.142 in BR), far from where the demo user signed in.
ABROAD_IP = "200.147.67.142"

_ORIGIN = r"^https?://[^/?#\s]+$"


class BankSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="ACME_BANK_", extra="forbid", frozen=True)

    # Where the bank calls StepGuard's API, and where browsers reach StepGuard's pages.
    stepguard_url: str = Field(pattern=_ORIGIN)
    stepguard_public_url: str = Field(pattern=_ORIGIN)
    api_key: SecretStr
    # Where browsers reach the bank (``return_to`` after a step-up).
    public_url: str = Field(pattern=_ORIGIN)
    # Signs the session cookie.
    session_secret: SecretStr = Field(min_length=32)
    # username -> password hash (:func:`stepguard.demo.bank.passwords.hash_password`).
    users: dict[str, str]
    abroad_ip: str = ABROAD_IP
    host: str = "127.0.0.1"
    port: int = Field(default=8001, ge=0, le=65535)
