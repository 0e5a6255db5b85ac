"""The pure rules of the upstream sign-in: ID token claim checks (after the signature), the
subject mapping, the assurance mapping and its cap, and the configuration's safe floors."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from stepguard.bootstrap import upstream_configs
from stepguard.core.assurance import AssuranceLevel, AuthMethod, derive_level, summarize
from stepguard.core.errors import ConfigurationError
from stepguard.core.secret import Secret
from stepguard.core.upstream import (
    FailureReason,
    IdTokenClaims,
    UpstreamConfig,
    UpstreamLoginFailedError,
    check_id_token_claims,
    session_factors,
    subject_id_for,
)
from stepguard.settings import Settings, UpstreamSettings

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
ISSUER = "https://idp.example"


def _config(**overrides: Any) -> UpstreamConfig:
    fields: dict[str, Any] = {
        "name": "corp",
        "label": "Corp",
        "issuer": ISSUER,
        "client_id": "sg",
        "client_secret": Secret("secret"),
        **overrides,
    }
    return UpstreamConfig(**fields)


def _claims(**overrides: Any) -> dict[str, Any]:
    now = int(NOW.timestamp())
    return {
        "iss": ISSUER,
        "aud": "sg",
        "sub": "u1",
        "iat": now,
        "exp": now + 300,
        "nonce": "n",
        "auth_time": now - 60,
        **overrides,
    }


def _check(claims: dict[str, Any]) -> IdTokenClaims:
    return check_id_token_claims(
        claims, expected_issuer=ISSUER, expected_audience="sg", expected_nonce="n", now=NOW
    )


def _reason(claims: dict[str, Any]) -> FailureReason:
    with pytest.raises(UpstreamLoginFailedError) as caught:
        _check(claims)
    return caught.value.reason


def test_valid_claims_pass() -> None:
    checked = _check(_claims(amr=["pwd"], acr="x", email="a@b", email_verified=True))
    assert checked.subject == "u1"
    assert checked.auth_time == NOW - timedelta(seconds=60)
    assert checked.email_verified is True


@pytest.mark.parametrize(
    ("overrides", "reason"),
    [
        ({"iss": ISSUER + "/"}, FailureReason.ISSUER_MISMATCH),
        ({"aud": "other"}, FailureReason.AUDIENCE_MISMATCH),
        ({"aud": ["other", "sg"]}, FailureReason.AZP_MISMATCH),
        ({"aud": ["other", "sg"], "azp": "other"}, FailureReason.AZP_MISMATCH),
        ({"azp": "other"}, FailureReason.AZP_MISMATCH),
        ({"aud": 7}, FailureReason.AUDIENCE_MISMATCH),
        ({"exp": int(NOW.timestamp()) - 61}, FailureReason.EXPIRED),
        ({"exp": "soon"}, FailureReason.CLAIM_INVALID),
        ({"exp": True}, FailureReason.CLAIM_INVALID),
        ({"iat": int(NOW.timestamp()) + 61}, FailureReason.ISSUED_IN_FUTURE),
        ({"nonce": "m"}, FailureReason.NONCE_MISMATCH),
        ({"nonce": None}, FailureReason.NONCE_MISMATCH),
        ({"sub": ""}, FailureReason.CLAIM_INVALID),
        ({"auth_time": int(NOW.timestamp()) + 3600}, FailureReason.CLAIM_INVALID),
        ({"amr": "pwd"}, FailureReason.CLAIM_INVALID),
        ({"acr": 2}, FailureReason.CLAIM_INVALID),
    ],
)
def test_each_bad_claim_has_its_reason(overrides: dict[str, Any], reason: FailureReason) -> None:
    assert _reason(_claims(**overrides)) is reason


@pytest.mark.parametrize("missing", ["exp", "iat", "nonce", "sub"])
def test_required_claims_are_required(missing: str) -> None:
    claims = _claims()
    del claims[missing]
    with pytest.raises(UpstreamLoginFailedError):
        _check(claims)


def test_azp_equal_to_the_client_allows_several_audiences() -> None:
    assert _check(_claims(aud=["sg", "other"], azp="sg")).subject == "u1"


def test_subject_id_is_prefixed_and_must_be_id_safe() -> None:
    assert subject_id_for(_config(), _check(_claims())) == "corp:u1"
    by_email = _config(subject_claim="email")
    assert subject_id_for(by_email, _check(_claims(email="a@b.example"))) == "corp:a@b.example"
    for bad in ("has space", "x" * 130, "ü"):
        with pytest.raises(UpstreamLoginFailedError):
            subject_id_for(_config(), _check(_claims(sub=bad)))
    with pytest.raises(UpstreamLoginFailedError):
        subject_id_for(by_email, _check(_claims()))


def test_untrusted_upstream_is_one_factor_now_whatever_it_claims() -> None:
    checked = _check(_claims(amr=["pwd", "otp", "mfa"], acr="gold"))
    factors = session_factors(_config(acr_map={"gold": AssuranceLevel.AAL2}), checked, now=NOW)
    assurance = summarize(factors)
    assert assurance.level is AssuranceLevel.AAL1
    assert assurance.amr == ("pwd",)
    assert assurance.auth_time == NOW


def test_trusted_upstream_maps_amr_and_acr_at_auth_time() -> None:
    config = _config(
        trusted_assurance=True,
        amr_map={"urn:okta:otp": (AuthMethod.OTP,)},
        acr_map={"gold": AssuranceLevel.AAL2},
    )
    amr_only = session_factors(config, _check(_claims(amr=["pwd", "urn:okta:otp"])), now=NOW)
    assert summarize(amr_only).level is AssuranceLevel.AAL2
    assert set(summarize(amr_only).amr) == {"pwd", "otp", "mfa"}
    assert summarize(amr_only).auth_time == NOW - timedelta(seconds=60)
    acr_only = session_factors(config, _check(_claims(amr=["pwd"], acr="gold")), now=NOW)
    assert summarize(acr_only).level is AssuranceLevel.AAL2
    unmapped = session_factors(config, _check(_claims(amr=["pwd"], acr="silver")), now=NOW)
    assert summarize(unmapped).level is AssuranceLevel.AAL1
    nothing = session_factors(config, _check(_claims()), now=NOW)
    assert summarize(nothing).level is AssuranceLevel.AAL1  # untrusted_amr at auth_time


def test_trusted_upstream_needs_auth_time() -> None:
    claims = _claims(amr=["pwd"])
    del claims["auth_time"]
    with pytest.raises(UpstreamLoginFailedError) as caught:
        session_factors(_config(trusted_assurance=True), _check(claims), now=NOW)
    assert caught.value.reason is FailureReason.AUTH_TIME_MISSING


@pytest.mark.parametrize("level", list(AssuranceLevel))
def test_an_acr_maps_to_exactly_its_level_within_the_cap(level: AssuranceLevel) -> None:
    config = _config(trusted_assurance=True, acr_map={"x": level}, max_level=AssuranceLevel.AAL3)
    factors = session_factors(config, _check(_claims(acr="x")), now=NOW)
    assert derive_level(factors) is level


def test_the_cap_bounds_what_amr_claims() -> None:
    config = _config(trusted_assurance=True, max_level=AssuranceLevel.AAL1)
    factors = session_factors(config, _check(_claims(amr=["pwd", "otp", "mfa"])), now=NOW)
    assert derive_level(factors) is AssuranceLevel.AAL1
    assert "mfa" not in summarize(factors).amr


@pytest.mark.parametrize(
    "overrides",
    [
        {"algorithms": ("none",)},
        {"algorithms": ("HS256",), "client_secret": Secret("")},
        {"algorithms": ()},
        {"name": "Bad Name"},
        {"scopes": ("email",)},
        {"acr_map": {"x": AssuranceLevel.PHR}},  # above the default cap aal2
        {"untrusted_amr": (AuthMethod.MFA,)},
        {"untrusted_amr": (AuthMethod.PWD, AuthMethod.OTP)},
        {"untrusted_amr": ()},
    ],
)
def test_unsafe_configurations_are_refused(overrides: dict[str, Any]) -> None:
    with pytest.raises(ValueError, match=r"upstream corp|upstream name"):
        _config(**overrides)


def test_hs256_with_a_client_secret_is_allowed_when_configured() -> None:
    assert _config(algorithms=("HS256",)).algorithms == ("HS256",)


def test_secrets_stay_out_of_reprs() -> None:
    assert "secret" not in repr(_config(client_secret=Secret("hunter2"))).replace(
        "client_secret", ""
    )
    assert "hunter2" not in repr(_config(client_secret=Secret("hunter2")))


def _settings(tmp_path: Any, upstream: dict[str, Any]) -> Settings:
    entry = {"name": "corp", "label": "Corp", "issuer": ISSUER, "client_id": "sg", **upstream}
    return Settings(
        upstreams=[UpstreamSettings.model_validate(entry)],
        secret_keys=[],
        policy_file=tmp_path / "p.yaml",
    )


def test_settings_become_configs(tmp_path: Any) -> None:
    secret_file = tmp_path / "secret"
    secret_file.write_text("from-file\n")
    configs = upstream_configs(
        _settings(
            tmp_path,
            {
                "client_secret_file": str(secret_file),
                "trusted_assurance": True,
                "amr_map": {"hwk": ["hwk"]},
                "acr_map": {"gold": "aal2"},
            },
        )
    )
    assert configs["corp"].client_secret.reveal() == "from-file"
    assert configs["corp"].acr_map == {"gold": AssuranceLevel.AAL2}


@pytest.mark.parametrize(
    "upstream",
    [
        {},  # no secret
        {"client_secret": "a", "client_secret_file": "/etc/hostname"},
        {"client_secret_file": "/nonexistent/secret"},
        {"client_secret": "a", "issuer": "http://idp.example"},  # plain http off loopback
        {"client_secret": "a", "acr_map": {"gold": "aal9"}},
        {"client_secret": "a", "amr_map": {"x": ["not-rfc8176"]}},
        {"client_secret": "a", "max_acr": "aal1", "acr_map": {"gold": "aal2"}},
    ],
)
def test_bad_settings_refuse_to_start(tmp_path: Any, upstream: dict[str, Any]) -> None:
    with pytest.raises(ConfigurationError):
        upstream_configs(_settings(tmp_path, upstream))
