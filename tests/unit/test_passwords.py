"""The password policy, the per-IP window, the IP buckets, the argon2id adapter, and the
usernameless options: pure rules and one adapter, no server."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from argon2 import PasswordHasher as RawArgon2
from hypothesis import given
from hypothesis import strategies as st

from stepguard.adapters.passwords import Argon2Hasher
from stepguard.core.errors import InvalidCredentialError, PasswordRejectedError
from stepguard.core.factors.webauthn import RelyingParty
from stepguard.core.factors.webauthn_signin import assertion_user_handle, discoverable_options
from stepguard.core.passwords import HashProfile, IpLimitPolicy, PasswordPolicy
from stepguard.core.secret import Secret
from stepguard.service.login import ip_bucket

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
POLICY = PasswordPolicy()


@pytest.mark.parametrize(
    ("password", "fragment"),
    [
        ("", "at least 8"),
        ("1234567", "at least 8"),
        ("x" * 1025, "at most 1024"),
        ("alice@example.com", "email or id"),
        ("  ALICE@Example.COM ", "email or id"),
        ("alice-id", "email or id"),
        ("pass\x00word", "NUL"),
    ],
)
def test_the_policy_refuses_short_long_and_own_name_passwords(password: str, fragment: str) -> None:
    with pytest.raises(PasswordRejectedError) as caught:
        POLICY.check(password, subject_id="alice-id", email="alice@example.com")
    assert fragment in caught.value.message
    assert caught.value.code == "password_rejected"


def test_no_composition_rules_and_unicode_is_normalized() -> None:
    assert POLICY.check("aaaaaaaa", subject_id="a", email=None) == "aaaaaaaa"
    # NFKC: the ligature and the full-width letters are what a user would type elsewhere.
    assert POLICY.check(
        "\ufb01\ufb01\ufb01\ufb01 \uff21\uff22\uff23", subject_id="a", email=None
    ) == ("fifififi ABC")


def test_the_policy_has_safe_floors() -> None:
    with pytest.raises(ValueError, match="at least 8"):
        PasswordPolicy(min_length=6)
    with pytest.raises(ValueError, match="max_length"):
        PasswordPolicy(max_length=16)


@given(st.integers(min_value=0, max_value=100))
def test_the_ip_window_limits_at_its_maximum(failures: int) -> None:
    policy = IpLimitPolicy(max_failures=20, window_seconds=900)
    assert policy.is_limited(failures) is (failures >= 20)
    assert policy.window_start(NOW) == NOW - timedelta(seconds=900)


@pytest.mark.parametrize(
    ("ip", "bucket"),
    [
        ("203.0.113.9", "203.0.113.9"),
        ("2001:db8:1:2:3:4:5:6", "2001:db8:1:2::/64"),
        ("2001:db8:1:2::ffff", "2001:db8:1:2::/64"),
        ("::ffff:203.0.113.9", "203.0.113.9"),
        (None, "unknown"),
        ("not an address", "unknown"),
    ],
)
def test_ip_buckets(ip: str | None, bucket: str) -> None:
    assert ip_bucket(ip) == bucket


def test_the_hasher_verifies_refuses_and_asks_for_rehash_on_other_parameters() -> None:
    hasher = Argon2Hasher(HashProfile.TEST)

    async def run() -> None:
        stored = await hasher.hash(Secret("correct horse"))
        assert stored.startswith("$argon2id$")
        assert await hasher.verify(stored, Secret("correct horse"))
        assert not await hasher.verify(stored, Secret("wrong horse"))
        assert not await hasher.verify("not a hash", Secret("correct horse"))
        await hasher.verify_dummy(Secret("anything"))
        assert not hasher.needs_rehash(stored)
        other = RawArgon2(time_cost=2, memory_cost=128, parallelism=1).hash("correct horse")
        assert hasher.needs_rehash(other)
        assert await hasher.verify(other, Secret("correct horse"))
        assert hasher.needs_rehash("garbage")

    asyncio.run(run())
    assert "correct" not in repr(hasher)


def test_usernameless_options_list_no_credentials_and_require_user_verification() -> None:
    rp = RelyingParty(rp_id="localhost", origins=("http://localhost:8000",))
    options = discoverable_options(rp, challenge=bytes(range(32)))
    assert options["allowCredentials"] == []
    assert options["userVerification"] == "required"
    assert options["rpId"] == "localhost"
    with pytest.raises(ValueError, match="16"):
        discoverable_options(rp, challenge=b"short")


def test_the_user_handle_is_read_strictly() -> None:
    assert assertion_user_handle({"response": {"userHandle": "AQID"}}) == b"\x01\x02\x03"
    assert assertion_user_handle({"response": {"userHandle": None}}) is None
    assert assertion_user_handle({"response": {}}) is None
    with pytest.raises(InvalidCredentialError):
        assertion_user_handle({"response": {"userHandle": 5}})
    with pytest.raises(InvalidCredentialError):
        assertion_user_handle({})
