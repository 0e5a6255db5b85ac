"""The pure part of push approval: what a device signs (byte for byte what approve.js
produces), how signatures are checked, which keys are accepted, and the numbers shown."""

from __future__ import annotations

import base64
import json
import random

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given, settings
from hypothesis import strategies as st

from stepguard.core.assurance import (
    AssuranceLevel,
    AuthMethod,
    FactorType,
    Requirement,
    can_reach,
    primary_factors,
    step_up_factor,
)
from stepguard.core.errors import InvalidCredentialError
from stepguard.core.factors.push import (
    PushAnswer,
    answer_payload,
    device_key_from_jwk,
    device_key_jwk,
    number_choices,
    pair_payload,
    verify_device_signature,
)
from support.approver import SoftwareApprover, canonical
from support.clock import ManualClock


class BytesRng:
    def __init__(self, seed: int) -> None:
        self._random = random.Random(seed)

    def token_bytes(self, n: int) -> bytes:
        return bytes(self._random.randrange(256) for _ in range(n))


def test_the_answer_payload_is_the_sorted_compact_json_a_browser_signs() -> None:
    payload = answer_payload(
        challenge_id="chl_a", push_id="psh_b", digest="ab" * 32, number=42, answer=PushAnswer.DENY
    )
    expected = {
        "answer": "deny",
        "challenge_id": "chl_a",
        "digest": "ab" * 32,
        "number": 42,
        "push_id": "psh_b",
        "typ": "stepguard.push.answer.v1",
    }
    assert payload == canonical(expected)
    assert payload == json.dumps(expected, separators=(",", ":")).encode()
    assert pair_payload(nonce="sgp_x") == b'{"nonce":"sgp_x","typ":"stepguard.push.pair.v1"}'


def test_a_raw_es256_signature_verifies_and_any_change_fails() -> None:
    device = SoftwareApprover()
    point = device_key_from_jwk(device.jwk())
    payload = pair_payload(nonce="sgp_token")
    raw = device.sign({"nonce": "sgp_token", "typ": "stepguard.push.pair.v1"})
    signature = base64.urlsafe_b64decode(raw + "==")
    verify_device_signature(public_key=point, payload=payload, signature=signature)
    with pytest.raises(InvalidCredentialError):
        verify_device_signature(public_key=point, payload=payload + b" ", signature=signature)
    flipped = bytes([signature[0] ^ 1]) + signature[1:]
    with pytest.raises(InvalidCredentialError):
        verify_device_signature(public_key=point, payload=payload, signature=flipped)
    der = device.key.sign(payload, ec.ECDSA(hashes.SHA256()))  # DER is not WebCrypto's form
    with pytest.raises(InvalidCredentialError):
        verify_device_signature(public_key=point, payload=payload, signature=der)


def test_only_public_p256_keys_on_the_curve_are_accepted() -> None:
    jwk = SoftwareApprover().jwk()
    assert device_key_jwk(device_key_from_jwk(jwk)) == jwk
    bad = [
        {**jwk, "crv": "P-384"},
        {**jwk, "kty": "RSA"},
        {**jwk, "d": "AAAA"},
        {**jwk, "x": jwk["y"]},  # off the curve
        {**jwk, "x": "AAAA"},
        {k: v for k, v in jwk.items() if k != "y"},
        {**jwk, "x": "!!"},
    ]
    for candidate in bad:
        with pytest.raises(InvalidCredentialError):
            device_key_from_jwk(candidate)


@settings(max_examples=200)
@given(st.integers(min_value=0, max_value=2**32), st.integers(min_value=2, max_value=9))
def test_number_choices_are_distinct_two_digit_numbers_including_the_one_to_match(
    seed: int, count: int
) -> None:
    number, choices = number_choices(BytesRng(seed), count=count)
    assert 10 <= number <= 99
    assert number in choices
    assert len(choices) == count == len(set(choices))
    assert all(10 <= c <= 99 for c in choices)


def test_the_number_is_not_always_in_the_same_place() -> None:
    rng = BytesRng(7)
    positions = set()
    for _ in range(60):
        number, choices = number_choices(rng)
        positions.add(choices.index(number))
    assert positions == {0, 1, 2}


def test_push_is_a_possession_factor_for_aal2_never_phishing_resistant() -> None:
    now = ManualClock().now()
    push = step_up_factor(FactorType.PUSH, factor_id="fac_1", at=now)
    assert push.amr == (AuthMethod.SWK, AuthMethod.USER)
    assert not push.phishing_resistant
    password = primary_factors([AuthMethod.PWD], at=now)
    assert can_reach(password, push, Requirement(acr=AssuranceLevel.AAL2))
    assert not can_reach(password, push, Requirement(acr=AssuranceLevel.PHR))
    assert not can_reach(
        password, push, Requirement(acr=AssuranceLevel.AAL2, methods=frozenset({"totp"}))
    )
