"""HOTP (RFC 4226) and TOTP (RFC 6238): spec vectors, window, replay, strict codes, floors."""

from __future__ import annotations

import base64
import hashlib
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import pyotp
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

import stepguard.core.factors as factors
from stepguard.core.errors import InvalidCodeError
from stepguard.core.factors._hotp import Hotp, OtpAlgorithm, hotp_code
from stepguard.core.factors.codes import MALFORMED, parse_otp_code
from stepguard.core.factors.totp import (
    MISMATCH,
    REPLAYED,
    TotpSpec,
    VerifiedTotp,
    code_at_step,
    current_code,
    generate_totp_secret,
    totp_step,
    totp_uri,
    verify_totp,
)
from stepguard.core.model import TotpParameters
from stepguard.core.secret import Secret
from support.fakes import FixedRng

VECTORS = Path(__file__).parent.parent / "vectors"
RFC_SEED = b"12345678901234567890"
SPEC = TotpSpec()
SECRET = bytes(range(20))
NOW = datetime(2025, 6, 1, 12, 0, 10, tzinfo=UTC)


def _load(name: str) -> dict[str, Any]:
    data: dict[str, Any] = json.loads((VECTORS / name).read_text(encoding="utf-8"))
    return data


RFC4226 = _load("rfc4226.json")
RFC6238 = _load("rfc6238.json")


def at_step(step: int, spec: TotpSpec = SPEC, *, offset: int = 0) -> datetime:
    """A time inside ``step`` (``offset`` seconds after it starts)."""
    return datetime.fromtimestamp(step * spec.period + offset, UTC)


# Found offline for RFC_SEED, SHA1, 6 digits: two nearby steps that share a code.
ADJACENT_COLLISION = 910737  # code(910737) == code(910738)
DISTANCE_TWO_COLLISION = 153567  # code(153567) == code(153569)


# --- spec vectors ------------------------------------------------------------------------


@pytest.mark.parametrize("vector", RFC4226["vectors"], ids=lambda v: f"counter={v['counter']}")
def test_hotp_matches_rfc4226_appendix_d(vector: dict[str, Any]) -> None:
    key = bytes.fromhex(RFC4226["secret_hex"])
    algorithm = OtpAlgorithm(RFC4226["algorithm"])
    hotp = Hotp(key, algorithm=algorithm, digits=RFC4226["digits"])

    assert hotp.generate(vector["counter"]) == vector["code"]
    assert hotp.matches(vector["code"], vector["counter"])
    assert hotp_code(key, vector["counter"], algorithm=algorithm, digits=6) == vector["code"]


@pytest.mark.parametrize(
    "vector", RFC6238["vectors"], ids=lambda v: f"{v['algorithm']}-{v['unix_time']}"
)
def test_totp_matches_rfc6238_appendix_b(vector: dict[str, Any]) -> None:
    spec = TotpSpec(
        algorithm=OtpAlgorithm(vector["algorithm"]),
        digits=RFC6238["digits"],
        period=RFC6238["period"],
        window=0,
    )
    secret = bytes.fromhex(vector["secret_hex"])
    now = datetime.fromtimestamp(vector["unix_time"], UTC)
    step = int(vector["step_hex"], 16)

    assert totp_step(spec, now) == step
    assert current_code(secret, spec, now) == vector["code"]
    verified = verify_totp(
        code=vector["code"], secret=secret, spec=spec, now=now, last_accepted_step=None
    )
    assert verified == VerifiedTotp(step=step, drift=0)


@given(
    secret=st.binary(min_size=20, max_size=64),
    algorithm=st.sampled_from(OtpAlgorithm),
    digits=st.integers(6, 8),
    period=st.sampled_from([15, 30, 60, 120]),
    unix_time=st.integers(0, 2**34),
)
def test_current_code_agrees_with_pyotp(
    secret: bytes, algorithm: OtpAlgorithm, digits: int, period: int, unix_time: int
) -> None:
    """An independent implementation computes the same code for every parameter set."""
    spec = TotpSpec(algorithm=algorithm, digits=digits, period=period)
    digest = {"SHA1": hashlib.sha1, "SHA256": hashlib.sha256, "SHA512": hashlib.sha512}
    reference = pyotp.TOTP(
        base64.b32encode(secret).decode(),
        digits=digits,
        digest=digest[algorithm.value],
        interval=period,
    )
    now = datetime.fromtimestamp(unix_time, UTC)

    assert current_code(secret, spec, now) == reference.at(unix_time)


# --- the window ----------------------------------------------------------------------------


@given(
    secret=st.binary(min_size=16, max_size=64),
    window=st.integers(0, 2),
    step=st.integers(10, 2**32),
    offset=st.integers(0, 29),
    delta=st.integers(-5, 5),
)
def test_window_accepts_exactly_the_steps_within_it_and_returns_the_matched_step(
    secret: bytes, window: int, step: int, offset: int, delta: int
) -> None:
    spec = TotpSpec(window=window)
    now = at_step(step, spec, offset=offset)
    code = code_at_step(secret, spec, step + delta)
    others = {code_at_step(secret, spec, s) for s in range(step - 5, step + 6) if s != step + delta}
    assume(code not in others)  # a coincidental collision is tested deterministically below

    if abs(delta) <= window:
        verified = verify_totp(
            code=code, secret=secret, spec=spec, now=now, last_accepted_step=None
        )
        assert verified == VerifiedTotp(step=step + delta, drift=delta)
    else:
        with pytest.raises(InvalidCodeError, match=MISMATCH):
            verify_totp(code=code, secret=secret, spec=spec, now=now, last_accepted_step=None)


def test_window_zero_rejects_the_previous_code() -> None:
    spec = TotpSpec(window=0)
    step = totp_step(spec, NOW)
    previous = code_at_step(SECRET, spec, step - 1)

    with pytest.raises(InvalidCodeError):
        verify_totp(code=previous, secret=SECRET, spec=spec, now=NOW, last_accepted_step=None)


def test_step_boundaries_follow_the_period_exactly() -> None:
    step = 55_000_000
    assert totp_step(SPEC, at_step(step)) == step
    assert totp_step(SPEC, at_step(step, offset=29) + timedelta(microseconds=999_999)) == step
    assert totp_step(SPEC, at_step(step + 1)) == step + 1


def test_any_aware_time_zone_gives_the_same_step() -> None:
    elsewhere = NOW.astimezone(timezone(timedelta(hours=-7, minutes=-30)))
    assert totp_step(SPEC, elsewhere) == totp_step(SPEC, NOW)
    assert current_code(SECRET, SPEC, elsewhere) == current_code(SECRET, SPEC, NOW)


def test_when_two_fresh_steps_match_the_latest_one_wins() -> None:
    spec = TotpSpec(window=1)
    early = DISTANCE_TWO_COLLISION
    code = code_at_step(RFC_SEED, spec, early)
    assert code == code_at_step(RFC_SEED, spec, early + 2)

    verified = verify_totp(
        code=code, secret=RFC_SEED, spec=spec, now=at_step(early + 1), last_accepted_step=None
    )

    assert verified == VerifiedTotp(step=early + 2, drift=1)


def test_steps_before_the_epoch_are_skipped() -> None:
    before = datetime(1969, 12, 31, 23, 59, 50, tzinfo=UTC)
    assert totp_step(SPEC, before) == -1
    code = code_at_step(SECRET, SPEC, 0)
    verified = verify_totp(code=code, secret=SECRET, spec=SPEC, now=before, last_accepted_step=None)
    assert verified.step == 0  # step 0 is inside the window; negative steps are skipped
    with pytest.raises(InvalidCodeError):
        verify_totp(
            code=code,
            secret=SECRET,
            spec=TotpSpec(window=0),
            now=before,
            last_accepted_step=None,
        )


# --- replay ----------------------------------------------------------------------------------


@given(
    secret=st.binary(min_size=16, max_size=32),
    step=st.integers(10, 2**32),
    used=st.integers(-2, 2),
    floor_above=st.integers(0, 3),
)
def test_a_code_for_a_step_at_or_below_the_last_accepted_one_never_succeeds(
    secret: bytes, step: int, used: int, floor_above: int
) -> None:
    spec = TotpSpec(window=2)
    used_step = step + used
    code = code_at_step(secret, spec, used_step)

    with pytest.raises(InvalidCodeError):
        verify_totp(
            code=code,
            secret=secret,
            spec=spec,
            now=at_step(step),
            last_accepted_step=used_step + floor_above,
        )


@given(
    secret=st.binary(min_size=16, max_size=32),
    step=st.integers(10, 2**32),
    later=st.integers(0, 1),
)
def test_a_code_that_verified_once_never_verifies_again_while_its_step_is_in_the_window(
    secret: bytes, step: int, later: int
) -> None:
    """Once the used step has left the window, the code is just a guess (1 in 10**6)."""
    code = current_code(secret, SPEC, at_step(step))
    first = verify_totp(
        code=code, secret=secret, spec=SPEC, now=at_step(step), last_accepted_step=None
    )

    with pytest.raises(InvalidCodeError):
        verify_totp(
            code=code,
            secret=secret,
            spec=SPEC,
            now=at_step(step + later),
            last_accepted_step=first.step,
        )


def test_a_replay_is_reported_as_such_for_the_audit_log() -> None:
    step = totp_step(SPEC, NOW)
    code = code_at_step(SECRET, SPEC, step)

    with pytest.raises(InvalidCodeError, match=REPLAYED) as excinfo:
        verify_totp(code=code, secret=SECRET, spec=SPEC, now=NOW, last_accepted_step=step)
    assert excinfo.value.code == "invalid_code"


def test_a_code_from_the_previous_step_is_accepted_with_negative_drift() -> None:
    step = totp_step(SPEC, NOW)
    code = code_at_step(SECRET, SPEC, step - 1)

    verified = verify_totp(code=code, secret=SECRET, spec=SPEC, now=NOW, last_accepted_step=None)

    assert verified == VerifiedTotp(step=step - 1, drift=-1)


def test_a_fresh_code_after_the_floor_is_accepted() -> None:
    step = totp_step(SPEC, NOW)
    code = code_at_step(SECRET, SPEC, step)

    verified = verify_totp(
        code=code, secret=SECRET, spec=SPEC, now=NOW, last_accepted_step=step - 1
    )

    assert verified.step == step


def test_a_used_code_is_refused_even_when_it_also_matches_a_fresh_step() -> None:
    used = ADJACENT_COLLISION
    code = code_at_step(RFC_SEED, SPEC, used)
    assert code == code_at_step(RFC_SEED, SPEC, used + 1)

    with pytest.raises(InvalidCodeError, match=REPLAYED):
        verify_totp(
            code=code, secret=RFC_SEED, spec=SPEC, now=at_step(used + 1), last_accepted_step=used
        )


def test_a_code_colliding_with_a_used_step_two_away_is_refused() -> None:
    used = DISTANCE_TWO_COLLISION
    code = code_at_step(RFC_SEED, SPEC, used)

    with pytest.raises(InvalidCodeError, match=REPLAYED):
        verify_totp(
            code=code, secret=RFC_SEED, spec=SPEC, now=at_step(used + 1), last_accepted_step=used
        )


# --- strict code format ----------------------------------------------------------------------

WRONG_FORMATS = [
    pytest.param("", id="empty"),
    pytest.param("12345", id="too-short"),
    pytest.param("1234567", id="too-long"),
    pytest.param(" 123456", id="leading-space"),
    pytest.param("123456 ", id="trailing-space"),
    pytest.param("123456\n", id="trailing-newline"),
    pytest.param("\t123456", id="leading-tab"),
    pytest.param("123 456", id="inner-space"),
    pytest.param("123-456", id="hyphen"),
    pytest.param("12_345", id="underscore-short"),
    pytest.param("123_456", id="underscore"),
    pytest.param("+12345", id="plus-sign"),
    pytest.param("-12345", id="minus-sign"),
    pytest.param("12345a", id="letter"),
    pytest.param("0x1234", id="hex-prefix"),
    pytest.param("١٢٣٤٥٦", id="arabic-indic-digits"),
    pytest.param("۱۲۳۴۵۶", id="extended-arabic-indic-digits"),
    pytest.param("１２３４５６", id="fullwidth-digits"),
    pytest.param("²³⁴⁵⁶⁷", id="superscript-digits"),
    pytest.param("𝟏𝟐𝟑𝟒𝟓𝟔", id="mathematical-bold-digits"),
    pytest.param("१२३४५६", id="devanagari-digits"),
    pytest.param("12345\u0660", id="one-unicode-digit"),
    pytest.param("123456\x00", id="nul"),
]


@pytest.mark.parametrize("code", WRONG_FORMATS)
def test_parse_rejects_anything_but_exactly_six_ascii_digits(code: str) -> None:
    with pytest.raises(InvalidCodeError, match=MALFORMED):
        parse_otp_code(code, digits=6)


@pytest.mark.parametrize("code", ["000000", "123456", "999999"])
def test_parse_accepts_six_ascii_digits_unchanged(code: str) -> None:
    assert parse_otp_code(code, digits=6) == code


def test_parse_checks_the_configured_length() -> None:
    assert parse_otp_code("12345678", digits=8) == "12345678"
    with pytest.raises(InvalidCodeError):
        parse_otp_code("123456", digits=8)


@pytest.mark.parametrize("digits", [0, 5, 9, 10])
def test_parse_refuses_unsupported_lengths_as_a_programming_error(digits: int) -> None:
    with pytest.raises(ValueError, match="digits"):
        parse_otp_code("123456", digits=digits)


@given(text=st.text(), digits=st.integers(6, 8))
def test_parse_accepts_a_string_only_if_it_is_ascii_digits_of_the_right_length(
    text: str, digits: int
) -> None:
    expected = len(text) == digits and all(c in "0123456789" for c in text)
    try:
        parse_otp_code(text, digits=digits)
    except InvalidCodeError:
        assert not expected
    else:
        assert expected


@given(
    text=st.text(min_size=6, max_size=6).filter(lambda t: not t.isascii()),
)
def test_parse_never_accepts_non_ascii(text: str) -> None:
    with pytest.raises(InvalidCodeError):
        parse_otp_code(text, digits=6)


_UNICODE_DIGIT_SETS = [0x0660, 0x06F0, 0x0966, 0xFF10, 0x1D7CE]


@pytest.mark.parametrize("zero", _UNICODE_DIGIT_SETS, ids=hex)
def test_verify_rejects_the_right_code_written_in_other_unicode_digits(zero: int) -> None:
    code = current_code(SECRET, SPEC, NOW)
    lookalike = "".join(chr(zero + int(c)) for c in code)
    assert int(lookalike) == int(code)  # what a lax parser would have accepted

    with pytest.raises(InvalidCodeError, match=MALFORMED):
        verify_totp(code=lookalike, secret=SECRET, spec=SPEC, now=NOW, last_accepted_step=None)


@pytest.mark.parametrize("wrap", [" {}", "{} ", "{}\n", "+{}"])
def test_verify_rejects_the_right_code_with_extra_characters(wrap: str) -> None:
    code = current_code(SECRET, SPEC, NOW)

    with pytest.raises(InvalidCodeError):
        verify_totp(
            code=wrap.format(code), secret=SECRET, spec=SPEC, now=NOW, last_accepted_step=None
        )


def test_verify_rejects_a_wrong_code() -> None:
    code = current_code(SECRET, SPEC, NOW)
    wrong = f"{(int(code) + 1) % 1_000_000:06d}"

    with pytest.raises(InvalidCodeError, match=MISMATCH):
        verify_totp(code=wrong, secret=SECRET, spec=SPEC, now=NOW, last_accepted_step=None)


def test_verify_rejects_a_code_from_another_secret() -> None:
    code = current_code(bytes(20), SPEC, NOW)
    step = totp_step(SPEC, NOW)
    assert all(code != code_at_step(SECRET, SPEC, s) for s in range(step - 1, step + 2))

    with pytest.raises(InvalidCodeError):
        verify_totp(code=code, secret=SECRET, spec=SPEC, now=NOW, last_accepted_step=None)


# --- programming errors and floors -------------------------------------------------------------


def test_verify_refuses_a_naive_datetime() -> None:
    naive = datetime(2025, 6, 1, 12, 0, 0)  # noqa: DTZ001 - naive on purpose
    with pytest.raises(ValueError, match="timezone-aware"):
        verify_totp(code="123456", secret=SECRET, spec=SPEC, now=naive, last_accepted_step=None)
    with pytest.raises(ValueError, match="timezone-aware"):
        current_code(SECRET, SPEC, naive)
    with pytest.raises(ValueError, match="timezone-aware"):
        totp_step(SPEC, naive)


def test_verify_refuses_a_secret_under_128_bits() -> None:
    with pytest.raises(ValueError, match="128 bits"):
        verify_totp(code="123456", secret=bytes(15), spec=SPEC, now=NOW, last_accepted_step=None)


def test_a_wrapped_secret_works_like_raw_bytes() -> None:
    code = current_code(Secret(SECRET), SPEC, NOW)
    assert code == current_code(SECRET, SPEC, NOW)
    verified = verify_totp(
        code=code, secret=Secret(SECRET), spec=SPEC, now=NOW, last_accepted_step=None
    )
    assert verified.drift == 0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"digits": 5}, "digits"),
        ({"digits": 9}, "digits"),
        ({"period": 14}, "period"),
        ({"period": 121}, "period"),
        ({"window": -1}, "window"),
        ({"window": 3}, "window"),
        ({"algorithm": "MD5"}, "algorithm"),
        ({"algorithm": "sha1"}, "algorithm"),
    ],
)
def test_spec_refuses_unsafe_settings(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TotpSpec(**kwargs)


def test_spec_defaults_are_sha1_six_digits_thirty_seconds_window_one() -> None:
    assert TotpSpec(algorithm=OtpAlgorithm.SHA1, digits=6, period=30, window=1) == SPEC


def test_spec_accepts_the_algorithm_as_its_string_value() -> None:
    spec = TotpSpec(algorithm="SHA256")  # type: ignore[arg-type]  # the stored form
    assert spec.algorithm is OtpAlgorithm.SHA256


def test_spec_round_trips_through_stored_parameters() -> None:
    spec = TotpSpec(algorithm=OtpAlgorithm.SHA512, digits=8, period=60, window=2)
    parameters = spec.to_parameters()

    assert parameters == TotpParameters(algorithm="SHA512", digits=8, period=60)
    assert TotpSpec.from_parameters(parameters, window=2) == spec
    assert TotpSpec.from_parameters(TotpParameters()) == SPEC


def test_hotp_refuses_short_keys_bad_lengths_and_bad_counters() -> None:
    with pytest.raises(ValueError, match="128 bits"):
        Hotp(bytes(15), algorithm=OtpAlgorithm.SHA1, digits=6)
    with pytest.raises(ValueError, match="digits"):
        Hotp(bytes(16), algorithm=OtpAlgorithm.SHA1, digits=5)
    with pytest.raises(ValueError, match="digits"):
        Hotp(bytes(16), algorithm=OtpAlgorithm.SHA1, digits=9)
    hotp = Hotp(bytes(16), algorithm=OtpAlgorithm.SHA1, digits=6)
    with pytest.raises(ValueError, match="counter"):
        hotp.generate(-1)
    with pytest.raises(ValueError, match="counter"):
        hotp.generate(2**64)
    assert len(hotp.generate(2**64 - 1)) == 6


def test_hotp_match_treats_non_ascii_as_a_mismatch_not_an_error() -> None:
    hotp = Hotp(RFC_SEED, algorithm=OtpAlgorithm.SHA1, digits=6)
    assert not hotp.matches("７５５２２４", 0)
    assert not hotp.matches("755224 ", 0)
    assert hotp.matches("755224", 0)


# --- enrollment --------------------------------------------------------------------------------


def test_generated_secret_is_160_bits_from_the_rng() -> None:
    rng = FixedRng(7)
    secret = generate_totp_secret(rng)

    assert len(secret) == 20
    assert secret == FixedRng(7).token_bytes(20)
    assert generate_totp_secret(rng) != secret


def test_generated_secret_may_be_longer_but_not_shorter_than_128_bits() -> None:
    assert len(generate_totp_secret(FixedRng(), nbytes=32)) == 32
    assert len(generate_totp_secret(FixedRng(), nbytes=16)) == 16
    with pytest.raises(ValueError, match="16 bytes"):
        generate_totp_secret(FixedRng(), nbytes=15)


def test_uri_names_issuer_account_and_every_parameter() -> None:
    spec = TotpSpec(algorithm=OtpAlgorithm.SHA256, digits=8, period=60)
    uri = totp_uri(secret=SECRET, spec=spec, account_name="alice@example.com", issuer="Acme Co")

    parts = urlsplit(uri)
    assert parts.scheme == "otpauth"
    assert parts.netloc == "totp"
    assert unquote(parts.path) == "/Acme Co:alice@example.com"
    query = parse_qs(parts.query, strict_parsing=True)
    assert query == {
        "secret": [base64.b32encode(SECRET).decode().rstrip("=")],
        "issuer": ["Acme Co"],
        "algorithm": ["SHA256"],
        "digits": ["8"],
        "period": ["60"],
    }


def test_uri_spells_out_default_parameters_too() -> None:
    uri = totp_uri(secret=SECRET, spec=SPEC, account_name="bob", issuer="StepGuard")
    assert uri.endswith("&algorithm=SHA1&digits=6&period=30")
    assert "=" not in parse_qs(urlsplit(uri).query)["secret"][0]


def test_uri_encodes_colons_so_the_label_stays_unambiguous() -> None:
    uri = totp_uri(secret=SECRET, spec=SPEC, account_name="user:42", issuer="A:B")
    label = urlsplit(uri).path.removeprefix("/")
    assert label == "A%3AB:user%3A42"


@given(secret=st.binary(min_size=16, max_size=40), unix_time=st.integers(0, 2**33))
def test_an_authenticator_reading_the_uri_shows_our_codes(secret: bytes, unix_time: int) -> None:
    spec = TotpSpec(algorithm=OtpAlgorithm.SHA512, digits=7, period=45)
    uri = totp_uri(secret=secret, spec=spec, account_name="alice", issuer="Acme")

    authenticator = pyotp.parse_uri(uri)
    assert isinstance(authenticator, pyotp.TOTP)

    now = datetime.fromtimestamp(unix_time, UTC)
    assert authenticator.at(unix_time) == current_code(secret, spec, now)


@pytest.mark.parametrize(("account", "issuer"), [("", "Acme"), ("alice", "")])
def test_uri_needs_an_issuer_and_an_account(account: str, issuer: str) -> None:
    with pytest.raises(ValueError, match="non-empty"):
        totp_uri(secret=SECRET, spec=SPEC, account_name=account, issuer=issuer)


def test_uri_refuses_a_short_secret() -> None:
    with pytest.raises(ValueError, match="128 bits"):
        totp_uri(secret=bytes(10), spec=SPEC, account_name="alice", issuer="Acme")


# --- public surface ---------------------------------------------------------------------------


def test_factors_package_states_its_public_api_once() -> None:
    assert sorted(factors.__all__) == [
        "GeneratedRecoveryCodes",
        "OtpAlgorithm",
        "TotpSpec",
        "VerifiedRecoveryCode",
        "VerifiedTotp",
        "code_at_step",
        "current_code",
        "generate_recovery_codes",
        "generate_totp_secret",
        "normalize_recovery_code",
        "parse_otp_code",
        "recovery_code_hash",
        "totp_step",
        "totp_uri",
        "verify_recovery_code",
        "verify_totp",
    ]
    for name in factors.__all__:
        assert getattr(factors, name) is not None
