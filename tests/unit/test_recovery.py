"""Recovery codes: generation, strict normalization, hashing and verification."""

from __future__ import annotations

import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepguard.core.errors import InvalidCodeError
from stepguard.core.factors.codes import MALFORMED
from stepguard.core.factors.recovery import (
    CROCKFORD_ALPHABET,
    MISMATCH,
    GeneratedRecoveryCodes,
    VerifiedRecoveryCode,
    generate_recovery_codes,
    normalize_recovery_code,
    recovery_code_hash,
    verify_recovery_code,
)
from support.fakes import FixedRng

DISPLAY = re.compile(r"[0-9A-HJKMNP-TV-Z]{4}(-[0-9A-HJKMNP-TV-Z]{4}){3}", re.ASCII)
CODE = "7Q2M-XK4P-9ZTV-H3RB"
CANONICAL = "7Q2MXK4P9ZTVH3RB"


class RepeatingRng:
    """A broken Rng that returns the same bytes every time."""

    def token_bytes(self, n: int) -> bytes:
        return bytes(n)


@st.composite
def canonical_codes(draw: st.DrawFn) -> str:
    return "".join(draw(st.lists(st.sampled_from(CROCKFORD_ALPHABET), min_size=16, max_size=16)))


def display(canonical: str) -> str:
    return "-".join(canonical[i : i + 4] for i in range(0, 16, 4))


# --- generation -------------------------------------------------------------------------------


def test_a_new_set_has_ten_distinct_codes_in_display_form() -> None:
    generated = generate_recovery_codes(FixedRng())

    assert isinstance(generated, GeneratedRecoveryCodes)
    shown = [code.reveal() for code in generated.codes]
    assert len(shown) == 10
    assert len(set(shown)) == 10
    assert all(DISPLAY.fullmatch(code) for code in shown)


def test_each_code_carries_80_bits_from_the_rng() -> None:
    rng = FixedRng(3)
    generate_recovery_codes(rng, count=4)
    assert rng.bytes_drawn == 4 * 10


def test_generation_is_a_function_of_the_rng() -> None:
    first = generate_recovery_codes(FixedRng(1))
    again = generate_recovery_codes(FixedRng(1))
    other = generate_recovery_codes(FixedRng(2))

    assert first.hashes == again.hashes
    assert set(first.hashes).isdisjoint(other.hashes)


def test_the_stored_hashes_are_the_hashes_of_the_shown_codes() -> None:
    generated = generate_recovery_codes(FixedRng())
    assert generated.hashes == tuple(recovery_code_hash(c.reveal()) for c in generated.codes)
    assert all(re.fullmatch(r"[0-9a-f]{64}", h) for h in generated.hashes)


def test_shown_codes_never_print() -> None:
    generated = generate_recovery_codes(FixedRng(), count=1)
    code = generated.codes[0].reveal()
    assert code not in repr(generated)
    assert code not in str(generated.codes)


@pytest.mark.parametrize("count", [1, 100])
def test_a_set_may_hold_one_to_a_hundred_codes(count: int) -> None:
    assert len(generate_recovery_codes(FixedRng(), count=count).codes) == count


@pytest.mark.parametrize("count", [0, -1, 101])
def test_a_set_outside_one_to_a_hundred_is_refused(count: int) -> None:
    with pytest.raises(ValueError, match="1 to 100"):
        generate_recovery_codes(FixedRng(), count=count)


def test_a_repeating_rng_is_detected() -> None:
    with pytest.raises(RuntimeError, match="twice"):
        generate_recovery_codes(RepeatingRng(), count=2)


# --- normalization ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "typed",
    [
        CODE,
        CANONICAL,
        CODE.lower(),
        CANONICAL.lower(),
        "7q2M-xK4p-9ZtV-h3Rb",
    ],
)
def test_display_form_with_or_without_hyphens_in_any_case_normalizes(typed: str) -> None:
    assert normalize_recovery_code(typed) == CANONICAL


@pytest.mark.parametrize(
    ("typed", "canonical"),
    [
        ("O000-0000-0000-0000", "0000000000000000"),
        ("o000-0000-0000-0000", "0000000000000000"),
        ("I111-L111-i111-l111", "1111111111111111"),
    ],
)
def test_crockford_look_alikes_read_as_the_digit_they_resemble(typed: str, canonical: str) -> None:
    assert normalize_recovery_code(typed) == canonical


MALFORMED_CODES = [
    pytest.param("", id="empty"),
    pytest.param(CANONICAL[:-1], id="too-short"),
    pytest.param(CANONICAL + "0", id="too-long"),
    pytest.param(CODE + "-", id="trailing-hyphen"),
    pytest.param(" " + CODE, id="leading-space"),
    pytest.param(CODE + " ", id="trailing-space"),
    pytest.param(CODE + "\n", id="trailing-newline"),
    pytest.param("7Q2M XK4P 9ZTV H3RB", id="spaces-for-hyphens"),
    pytest.param("7Q2M-XK4P9ZTV-H3RB", id="missing-one-hyphen"),
    pytest.param("7Q2MX-K4P-9ZTV-H3RB", id="hyphen-misplaced"),
    pytest.param("7Q2M--XK4P9ZTVH3RB", id="hyphens-elsewhere"),
    pytest.param("7Q2M_XK4P_9ZTV_H3RB", id="underscores"),
    pytest.param("7Q2M\u2013XK4P\u20139ZTV\u2013H3RB", id="en-dashes"),
    pytest.param("7Q2MXK4P9ZTVH3RU", id="letter-u"),
    pytest.param("7Q2MXK4P9ZTVH3R!", id="punctuation"),
    pytest.param("７Q2MXK4P9ZTVH3RB", id="fullwidth-digit"),
    pytest.param("7Q2MXK4P9ZTVH3RＢ", id="fullwidth-letter"),
    pytest.param("7Q2MXK4P9ZTVH3R\u0660", id="arabic-indic-digit"),
    pytest.param("7Q2MXK4P9ZTVH3ß", id="sharp-s-would-uppercase-to-two-letters"),
    pytest.param("7Q2MXK4P9ZTVH3R\u0131", id="dotless-i"),
    pytest.param("7Q2MXK4P9ZTVH3R\u212a", id="kelvin-sign-lowercases-to-k"),
]


@pytest.mark.parametrize("typed", MALFORMED_CODES)
def test_anything_else_is_malformed(typed: str) -> None:
    with pytest.raises(InvalidCodeError, match=MALFORMED):
        normalize_recovery_code(typed)
    with pytest.raises(InvalidCodeError, match=MALFORMED):
        recovery_code_hash(typed)


@given(text=st.text(max_size=24).filter(lambda t: not t.isascii()))
def test_normalization_never_accepts_non_ascii(text: str) -> None:
    with pytest.raises(InvalidCodeError):
        normalize_recovery_code(text)


@given(canonical=canonical_codes(), lower=st.booleans(), hyphens=st.booleans())
def test_every_accepted_spelling_hashes_like_the_canonical_code(
    canonical: str, lower: bool, hyphens: bool
) -> None:
    typed = display(canonical) if hyphens else canonical
    typed = typed.lower() if lower else typed

    assert normalize_recovery_code(typed) == canonical
    assert recovery_code_hash(typed) == recovery_code_hash(canonical)


@given(canonical=canonical_codes())
def test_normalization_is_idempotent(canonical: str) -> None:
    once = normalize_recovery_code(display(canonical).lower())
    assert normalize_recovery_code(once) == once


@given(seed=st.integers(0, 2**64))
def test_every_generated_code_round_trips_through_its_hash(seed: int) -> None:
    generated = generate_recovery_codes(FixedRng(seed), count=3)
    for code, stored in zip(generated.codes, generated.hashes, strict=True):
        shown = code.reveal()
        assert recovery_code_hash(shown) == stored
        assert recovery_code_hash(shown.replace("-", "").lower()) == stored


def test_the_hash_is_sha256_hex_of_the_canonical_code() -> None:
    assert recovery_code_hash(CODE) == hashlib.sha256(CANONICAL.encode()).hexdigest()


def test_different_codes_hash_differently() -> None:
    assert recovery_code_hash(CODE) != recovery_code_hash("7Q2M-XK4P-9ZTV-H3RC")


# --- verification -----------------------------------------------------------------------------


def test_a_code_from_the_set_verifies_and_names_the_hash_to_consume() -> None:
    generated = generate_recovery_codes(FixedRng())
    typed = generated.codes[6].reveal().lower()

    verified = verify_recovery_code(code=typed, expected_hashes=generated.hashes)

    assert verified == VerifiedRecoveryCode(hash=generated.hashes[6])


def test_a_code_from_another_set_does_not_verify() -> None:
    old = generate_recovery_codes(FixedRng(1))
    new = generate_recovery_codes(FixedRng(2))

    with pytest.raises(InvalidCodeError, match=MISMATCH):
        verify_recovery_code(code=old.codes[0].reveal(), expected_hashes=new.hashes)


def test_no_code_verifies_against_an_empty_set() -> None:
    with pytest.raises(InvalidCodeError, match=MISMATCH):
        verify_recovery_code(code=CODE, expected_hashes=())


def test_a_malformed_code_fails_verification_with_the_same_error() -> None:
    generated = generate_recovery_codes(FixedRng())
    with pytest.raises(InvalidCodeError, match=MALFORMED) as excinfo:
        verify_recovery_code(code="not a code", expected_hashes=generated.hashes)
    assert excinfo.value.code == "invalid_code"


def test_verification_accepts_any_iterable_of_hashes() -> None:
    generated = generate_recovery_codes(FixedRng(), count=3)
    verified = verify_recovery_code(
        code=generated.codes[2].reveal(), expected_hashes=iter(generated.hashes)
    )
    assert verified.hash == generated.hashes[2]
