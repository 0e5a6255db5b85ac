"""The WebAuthn relying party and the pages agree out of the box: ``public_url`` defaults to
``http://localhost:{port}``, the rp id and origins derive from it, explicit settings win, and
a configuration under which the hosted pages could never run a ceremony refuses to start."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from stepguard.bootstrap import pages_config, public_url, relying_party
from stepguard.core.errors import ConfigurationError
from stepguard.settings import Settings

KEY = "0" * 43 + "="


def settings(**values: Any) -> Settings:
    return Settings(secret_keys=[KEY], policy_file=Path("unused.yaml"), **values)  # type: ignore[list-item]


def test_the_defaults_put_the_pages_and_passkeys_on_localhost() -> None:
    s = settings(port=8123)
    assert public_url(s) == "http://localhost:8123"
    rp = relying_party(s)
    assert rp.rp_id == "localhost"
    assert rp.origins == ("http://localhost:8123",)
    assert pages_config(s).webauthn is True


@pytest.mark.parametrize(
    ("url", "rp_id", "origin"),
    [
        ("https://login.example.com", "login.example.com", "https://login.example.com"),
        ("https://Login.Example.com:443", "login.example.com", "https://login.example.com"),
        ("https://login.example.com:8443", "login.example.com", "https://login.example.com:8443"),
        ("http://localhost:9000", "localhost", "http://localhost:9000"),
    ],
)
def test_the_rp_id_and_origin_derive_from_public_url(url: str, rp_id: str, origin: str) -> None:
    s = settings(public_url=url)
    rp = relying_party(s)
    assert (rp.rp_id, rp.origins) == (rp_id, (origin,))
    assert pages_config(s).webauthn is True


def test_explicit_settings_win() -> None:
    s = settings(
        public_url="https://login.example.com",
        webauthn_rp_id="example.com",
        webauthn_origins=["https://example.com", "https://login.example.com"],
    )
    rp = relying_party(s)
    assert rp.rp_id == "example.com"
    assert rp.origins == ("https://example.com", "https://login.example.com")
    assert pages_config(s).webauthn is True


def test_the_pages_offer_no_passkeys_when_their_origin_is_not_the_relying_partys() -> None:
    s = settings(
        public_url="https://login.example.com",
        webauthn_rp_id="example.com",
        webauthn_origins=["https://app.example.com"],
    )
    assert relying_party(s).origins == ("https://app.example.com",)
    assert pages_config(s).webauthn is False


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"public_url": "http://127.0.0.1:8000"}, "IP address"),
        ({"public_url": "https://[::1]:8443"}, "IP address"),
        ({"public_url": "https://login.example.com", "webauthn_rp_id": "other.example"}, "within"),
        ({"public_url": "https://notexample.com", "webauthn_rp_id": "example.com"}, "within"),
        ({"webauthn_rp_id": "example.com"}, "within"),  # the default public_url is localhost
        ({"public_url": "http://login.example.com"}, "http only for localhost"),
        ({"webauthn_origins": ["https://localhost:8000/"]}, "trailing slash"),
    ],
)
def test_incoherent_settings_refuse_to_start(values: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigurationError, match=message):
        relying_party(settings(**values))
