"""The WebAuthn recipe (``core.factors.webauthn``) and how assertions count (the table in
``core.assurance``), with the software authenticator as the peer."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import pytest

from stepguard.core.assurance import (
    AssuranceLevel,
    AuthMethod,
    FactorType,
    primary_factors,
    step_up_factor,
    summarize,
    webauthn_factor,
)
from stepguard.core.errors import InvalidCredentialError, SignCountRegressionError
from stepguard.core.factors.webauthn import (
    CredentialRef,
    RelyingParty,
    authentication_options,
    client_challenge,
    is_hardware_bound,
    registration_options,
    verify_assertion,
    verify_registration,
)
from support.authenticator import AttestationCA, SoftAuthenticator

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
AAGUID = uuid.UUID("6d44ba9b-f6ec-2e49-b930-0c8fe920cb73")
CHALLENGE = bytes(range(32))
HANDLE = b"\x01" * 32


# --- the assurance table -----------------------------------------------------------------


def level(primary_amr: list[AuthMethod], *, uv: bool, hardware: bool) -> AssuranceLevel | None:
    factors = (
        *primary_factors(primary_amr, at=NOW),
        webauthn_factor(factor_id="f", at=NOW, user_verified=uv, hardware_bound=hardware),
    )
    return summarize(factors).level


@pytest.mark.parametrize(
    ("primary", "uv", "hardware", "expected"),
    [
        ([AuthMethod.PWD], True, False, AssuranceLevel.PHR),
        ([AuthMethod.PWD], True, True, AssuranceLevel.AAL3),
        ([AuthMethod.PWD], False, False, AssuranceLevel.AAL2),
        ([AuthMethod.PWD], False, True, AssuranceLevel.AAL2),
        # UV makes the assertion multi-factor on its own: any primary gives phr.
        ([AuthMethod.HWK], True, False, AssuranceLevel.PHR),
        ([AuthMethod.HWK], False, True, AssuranceLevel.AAL1),  # two possession factors
        ([AuthMethod.PWD, AuthMethod.OTP], False, False, AssuranceLevel.AAL2),
        ([AuthMethod.USER], True, True, None),  # no primary factor: no level at all
    ],
)
def test_how_an_assertion_combines_with_the_primary_factor(
    primary: list[AuthMethod], uv: bool, hardware: bool, expected: AssuranceLevel | None
) -> None:
    assert level(primary, uv=uv, hardware=hardware) == expected


@pytest.mark.parametrize(
    ("uv", "hardware", "amr"),
    [
        (True, True, ("hwk", "user", "mfa")),
        (True, False, ("swk", "user", "mfa")),
        (False, True, ("hwk", "user")),
        (False, False, ("swk", "user")),
    ],
)
def test_the_amr_of_an_assertion(uv: bool, hardware: bool, amr: tuple[str, ...]) -> None:
    factor = webauthn_factor(factor_id="f", at=NOW, user_verified=uv, hardware_bound=hardware)
    assert tuple(m.value for m in factor.amr) == amr
    assert factor.method == FactorType.WEBAUTHN.value
    assert factor.multi_factor is uv


@pytest.mark.parametrize("hardware", [True, False])
@pytest.mark.parametrize(
    "primary", [[AuthMethod.PWD], [AuthMethod.HWK], [AuthMethod.MFA], [AuthMethod.FPT]]
)
def test_user_verification_never_lowers_and_hardware_never_lowers_the_level(
    primary: list[AuthMethod], hardware: bool
) -> None:
    with_uv = level(primary, uv=True, hardware=hardware)
    without = level(primary, uv=False, hardware=hardware)
    assert with_uv is not None
    assert without is not None
    assert with_uv >= without
    hardware_level = level(primary, uv=True, hardware=True)
    assert hardware_level is not None
    assert hardware_level >= with_uv


def test_a_webauthn_assertion_is_not_a_code_factor() -> None:
    with pytest.raises(ValueError, match="webauthn_factor"):
        step_up_factor(FactorType.WEBAUTHN, factor_id="f", at=NOW)


# --- the relying party -------------------------------------------------------------------


@pytest.mark.parametrize(
    "options",
    [
        {"rp_id": ""},
        {"rp_id": "Example.com"},
        {"rp_name": ""},
        {"origins": ()},
        {"origins": ("https://example.com/",)},
        {"origins": ("http://example.com",)},
        {"origins": ("http://localhost.evil.example",)},
        {"origins": ("https://example.com/login",)},
        {"origins": ("https://Example.com",)},
        {"origins": ("https://example.com:99999",)},
        {"origins": ("example.com",)},
        {"timeout_seconds": 5},
        {"attestation_roots": (b"not a certificate",)},
    ],
)
def test_a_relying_party_refuses_unsafe_configuration(options: dict[str, Any]) -> None:
    with pytest.raises(ValueError):  # noqa: PT011 - each case has its own message
        RelyingParty(**options)


def test_good_origins_are_accepted() -> None:
    origins = ("https://example.com", "https://auth.example.com:8443", "http://localhost:8000")
    assert RelyingParty(rp_id="example.com", origins=origins).origins == origins


def test_aaguids_are_normalized_and_attestation_is_asked_for_only_with_roots() -> None:
    rp = RelyingParty(hardware_aaguids=frozenset({" 6D44BA9B-F6EC-2E49-B930-0C8FE920CB73 "}))
    assert rp.hardware_aaguids == {str(AAGUID)}
    options = registration_options(
        rp, challenge=CHALLENGE, user_handle=HANDLE, user_name="ada", exclude=()
    )
    assert options["attestation"] == "none"
    with_roots = RelyingParty(attestation_roots=(AttestationCA().root_pem,))
    options = registration_options(
        with_roots, challenge=CHALLENGE, user_handle=HANDLE, user_name="ada", exclude=()
    )
    assert options["attestation"] == "direct"


def test_challenges_must_be_long_and_assertions_need_a_credential() -> None:
    rp = RelyingParty()
    with pytest.raises(ValueError, match="16 bytes"):
        registration_options(rp, challenge=b"short", user_handle=HANDLE, user_name="a", exclude=())
    with pytest.raises(ValueError, match="at least one"):
        authentication_options(rp, challenge=CHALLENGE, allow=(), require_user_verification=True)


def test_request_options_name_the_allowed_credentials_and_their_transports() -> None:
    options = authentication_options(
        RelyingParty(),
        challenge=CHALLENGE,
        allow=[CredentialRef(credential_id=b"\x01\x02", transports=("usb", "smoke-signal"))],
        require_user_verification=False,
    )
    assert options["allowCredentials"] == [
        {"id": "AQI", "type": "public-key", "transports": ["usb"]}
    ]
    assert options["userVerification"] == "preferred"
    assert options["rpId"] == "localhost"
    assert options["timeout"] == 300_000


@pytest.mark.parametrize(
    ("aaguid", "trusted", "backup_eligible", "expected"),
    [
        (str(AAGUID), True, False, True),
        (str(AAGUID).upper(), True, False, True),
        (str(AAGUID), False, False, False),
        (str(AAGUID), True, True, False),
        ("00000000-0000-0000-0000-000000000000", True, False, False),
    ],
)
def test_hardware_bound_needs_allow_list_attestation_and_no_sync(
    aaguid: str, trusted: bool, backup_eligible: bool, expected: bool
) -> None:
    rp = RelyingParty(hardware_aaguids=frozenset({str(AAGUID)}))
    bound = is_hardware_bound(
        rp, aaguid=aaguid, attestation_trusted=trusted, backup_eligible=backup_eligible
    )
    assert bound is expected


# --- ceremonies against the software authenticator ---------------------------------------


def _register(
    rp: RelyingParty, key: SoftAuthenticator, *, now: datetime = NOW
) -> tuple[Any, dict[str, Any]]:
    options = registration_options(
        rp, challenge=CHALLENGE, user_handle=HANDLE, user_name="ada", exclude=()
    )
    response = key.create(options)
    verified = verify_registration(
        rp,
        credential=response,
        expected_challenge=CHALLENGE,
        require_user_verification=True,
        resident_key="preferred",
        now=now,
    )
    return verified, response


def test_attestation_is_trusted_only_within_the_certificates_validity() -> None:
    ca = AttestationCA()
    rp = RelyingParty(attestation_roots=(ca.root_pem,))
    key = SoftAuthenticator(attestation="packed", ca=ca, aaguid=AAGUID.bytes)
    assert _register(rp, key)[0].attestation_trusted is True
    key = SoftAuthenticator(attestation="packed", ca=ca, aaguid=AAGUID.bytes)
    assert _register(rp, key, now=datetime(2041, 1, 1, tzinfo=UTC))[0].attestation_trusted is False
    key = SoftAuthenticator(attestation="packed", ca=ca, aaguid=AAGUID.bytes)
    assert _register(rp, key, now=datetime(2019, 1, 1, tzinfo=UTC))[0].attestation_trusted is False


def test_without_roots_no_attestation_is_trusted() -> None:
    key = SoftAuthenticator(attestation="packed", ca=AttestationCA(), aaguid=AAGUID.bytes)
    verified, _ = _register(RelyingParty(), key)
    assert verified.attestation_format == "packed"
    assert verified.attestation_trusted is False


def test_an_attestation_certificate_must_name_the_credentials_aaguid() -> None:
    ca = AttestationCA()
    other = uuid.uuid4().bytes
    key = SoftAuthenticator(
        attestation="packed", ca=ca, aaguid=AAGUID.bytes, aaguid_extension=other
    )
    with pytest.raises(InvalidCredentialError, match="another AAGUID"):
        _register(RelyingParty(attestation_roots=(ca.root_pem,)), key)


def test_a_malformed_response_is_an_invalid_credential() -> None:
    with pytest.raises(InvalidCredentialError):
        client_challenge({"response": {"clientDataJSON": "!!!"}})
    with pytest.raises(InvalidCredentialError):
        verify_registration(
            RelyingParty(),
            credential={"id": "x", "rawId": "x", "type": "public-key", "response": {}},
            expected_challenge=CHALLENGE,
            require_user_verification=True,
            resident_key=None,
            now=NOW,
        )


def _assert(key: SoftAuthenticator, public_key: bytes, stored: int, **get: Any) -> Any:
    rp = RelyingParty()
    options = authentication_options(
        rp,
        challenge=CHALLENGE,
        allow=[CredentialRef(credential_id=c) for c in key.credentials],
        require_user_verification=True,
    )
    return verify_assertion(
        rp,
        credential=key.get(options, **get),
        expected_challenge=CHALLENGE,
        public_key=public_key,
        stored_sign_count=stored,
        user_handle=HANDLE,
        require_user_verification=True,
    )


def test_a_counter_that_does_not_increase_is_a_regression_only_when_signed() -> None:
    key = SoftAuthenticator()
    verified, _ = _register(RelyingParty(), key)
    assert _assert(key, verified.public_key, 0).new_sign_count == 1
    with pytest.raises(SignCountRegressionError):
        _assert(key, verified.public_key, 5, sign_count=5)
    with pytest.raises(SignCountRegressionError):
        _assert(key, verified.public_key, 5, sign_count=0)
    with pytest.raises(InvalidCredentialError) as forged:
        _assert(key, verified.public_key, 5, sign_count=3, tamper_signature=True)
    assert not isinstance(forged.value, SignCountRegressionError)
    assert _assert(key, verified.public_key, 5, sign_count=6).new_sign_count == 6


def test_a_counterless_authenticator_stays_at_zero() -> None:
    key = SoftAuthenticator(counter_step=0)
    verified, _ = _register(RelyingParty(), key)
    for _ in range(3):
        assert _assert(key, verified.public_key, 0).new_sign_count == 0


def test_an_assertion_for_another_user_handle_is_refused() -> None:
    key = SoftAuthenticator()
    verified, _ = _register(RelyingParty(), key)
    with pytest.raises(InvalidCredentialError, match="user handle"):
        _assert(key, verified.public_key, 0, user_handle=b"\x02" * 32)
    # A response without a user handle (non-discoverable credentials) is fine.
    assert _assert(key, verified.public_key, 0, user_handle=None).user_verified is True


def test_verification_reports_the_flags() -> None:
    key = SoftAuthenticator(backup_eligible=True, backed_up=True, transports=("usb", "usb"))
    verified, _ = _register(RelyingParty(), key)
    assert verified.backup_eligible is True
    assert verified.backed_up is True
    assert verified.discoverable is True  # credProps: rk
    assert verified.transports == ("usb",)
    assertion = _assert(key, verified.public_key, 0)
    assert assertion.backed_up is True
    assert assertion.user_verified is True


def test_without_cred_props_only_a_required_resident_key_counts_as_discoverable() -> None:
    rp = RelyingParty()
    options = registration_options(
        rp, challenge=CHALLENGE, user_handle=HANDLE, user_name="ada", exclude=()
    )
    response = SoftAuthenticator().create(options)
    response["clientExtensionResults"] = {}
    for resident_key, expected in (("required", True), ("preferred", False)):
        verified = verify_registration(
            rp,
            credential=response,
            expected_challenge=CHALLENGE,
            require_user_verification=True,
            resident_key=resident_key,  # type: ignore[arg-type]
            now=NOW,
        )
        assert verified.discoverable is expected
