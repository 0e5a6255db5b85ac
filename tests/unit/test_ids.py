"""Random ids and bearer tokens from the Rng port, and token hashing."""

from __future__ import annotations

import base64
import hashlib
import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stepguard.core.ids import new_id, new_token, random_bytes, token_hash
from stepguard.core.secret import Secret
from support.fakes import FixedRng


class ShortRng:
    """A broken Rng that returns one byte too few."""

    def token_bytes(self, n: int) -> bytes:
        return bytes(n - 1)


def test_an_id_is_the_prefix_and_128_random_bits_in_lowercase_base32() -> None:
    rng = FixedRng(5)
    value = new_id(rng, "ses")

    assert re.fullmatch(r"ses_[a-z2-7]{26}", value)
    assert rng.bytes_drawn == 16
    body = value.removeprefix("ses_").upper() + "======"
    assert base64.b32decode(body) == FixedRng(5).token_bytes(16)


def test_the_prefix_may_be_given_with_or_without_its_underscore() -> None:
    assert new_id(FixedRng(1), "ses_") == new_id(FixedRng(1), "ses")


@pytest.mark.parametrize(
    "prefix",
    ["", "_", "Ses", "1ses", "se-s", "ses__", "sés", "a" * 17, "ses ", " ses", "ses\n"],
)
def test_malformed_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError, match="prefix"):
        new_id(FixedRng(), prefix)
    with pytest.raises(ValueError, match="prefix"):
        new_token(FixedRng(), prefix)


def test_ids_from_one_rng_are_distinct() -> None:
    rng = FixedRng()
    ids = {new_id(rng, "chl") for _ in range(1000)}
    assert len(ids) == 1000


def test_a_token_is_the_prefix_and_256_random_bits_and_never_prints() -> None:
    rng = FixedRng(9)
    token = new_token(rng, "sgk")

    assert isinstance(token, Secret)
    assert re.fullmatch(r"sgk_[a-z2-7]{52}", token.reveal())
    assert rng.bytes_drawn == 32
    assert token.reveal() not in repr(token)
    assert token.reveal() not in str(token)


def test_token_hash_is_sha256_hex_of_the_whole_token() -> None:
    token = new_token(FixedRng(), "grt").reveal()
    assert token_hash(token) == hashlib.sha256(token.encode()).hexdigest()
    assert re.fullmatch(r"[0-9a-f]{64}", token_hash(token))


@given(a=st.text(), b=st.text())
def test_token_hashes_differ_exactly_when_tokens_differ(a: str, b: str) -> None:
    assert (token_hash(a) == token_hash(b)) == (a == b)


def test_a_short_read_from_the_rng_is_an_error() -> None:
    with pytest.raises(RuntimeError, match="15 bytes instead of 16"):
        new_id(ShortRng(), "ses")


def test_random_bytes_needs_a_positive_length() -> None:
    with pytest.raises(ValueError, match="positive"):
        random_bytes(FixedRng(), 0)
    assert len(random_bytes(FixedRng(), 1)) == 1
