"""Secrets at rest: SecretBox, and rotating every stored secret to a new key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet
from sqlalchemy import select

from stepguard.adapters.crypto import SecretBox, SecretDecryptionError
from stepguard.adapters.storage.tables import factors
from stepguard.core.errors import StepGuardError

from .conftest import StoreFactory
from .factories import SEED, recovery_factor, subject, totp_factor


def test_a_secret_round_trips_as_ascii_text() -> None:
    box = SecretBox([SecretBox.generate_key()])
    token = box.encrypt(SEED)
    assert token.isascii()
    assert box.decrypt(token) == SEED
    assert box.encrypt(SEED) != token  # fresh IV every time


def test_older_keys_decrypt_and_rotation_moves_to_the_current_key() -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    token = SecretBox([old]).encrypt(SEED)
    both = SecretBox([new, old])
    assert both.decrypt(token) == SEED
    assert not both.is_current(token)
    rotated = both.rotate(token)
    assert both.is_current(rotated)
    assert SecretBox([new]).decrypt(rotated) == SEED
    with pytest.raises(SecretDecryptionError):
        SecretBox([old]).decrypt(rotated)


@pytest.mark.parametrize("token", ["", "not-a-token", "gAAAAA" + "A" * 80, "ünïcode"])
def test_a_bad_token_raises_one_opaque_error(token: str) -> None:
    box = SecretBox([SecretBox.generate_key()])
    with pytest.raises(SecretDecryptionError) as caught:
        box.decrypt(token)
    assert isinstance(caught.value, StepGuardError)
    assert caught.value.code == "secret_decryption_failed"
    assert caught.value.__cause__ is None  # no chained InvalidToken detail
    with pytest.raises(SecretDecryptionError):
        box.rotate(token)


def test_a_tampered_token_is_refused() -> None:
    box = SecretBox([SecretBox.generate_key()])
    token = box.encrypt(SEED)
    flipped = token[:-6] + ("A" if token[-6] != "A" else "B") + token[-5:]
    with pytest.raises(SecretDecryptionError):
        box.decrypt(flipped)


def test_bad_key_configuration_is_refused_without_echoing_the_key() -> None:
    with pytest.raises(ValueError, match="at least one key"):
        SecretBox([])
    with pytest.raises(TypeError):
        SecretBox(SecretBox.generate_key())
    not_a_key = "hunter2-hunter2-hunter2"
    with pytest.raises(ValueError, match="key #2") as caught:
        SecretBox([SecretBox.generate_key(), not_a_key])
    assert not_a_key not in str(caught.value)
    assert caught.value.__cause__ is None


def test_keys_are_fernet_keys_and_never_shown() -> None:
    key = SecretBox.generate_key()
    Fernet(key)  # accepted as is
    box = SecretBox([key, SecretBox.generate_key()])
    assert repr(box) == "SecretBox(keys=2)"
    assert key not in repr(box)


async def test_reencrypt_moves_every_stored_secret_to_the_new_key(
    make_store: StoreFactory,
) -> None:
    old, new = SecretBox.generate_key(), SecretBox.generate_key()
    before = make_store(secret_box=SecretBox([old]))
    sub = subject()
    totps = [totp_factor(sub.id) for _ in range(5)]
    async with before.transaction() as uow:
        await uow.subjects.upsert(sub)
        for factor in totps:
            await uow.factors.add(factor)
        await uow.factors.add(recovery_factor(sub.id))  # no secret: left alone
    async with before.engine.connect() as conn:
        raw_before = dict((await conn.execute(select(factors.c.id, factors.c.secret_enc))).all())

    rotating = make_store(secret_box=SecretBox([new, old]))
    assert await rotating.reencrypt_secrets(batch_size=2) == 5
    assert await rotating.reencrypt_secrets(batch_size=2) == 0  # idempotent

    async with rotating.engine.connect() as conn:
        raw_after = dict((await conn.execute(select(factors.c.id, factors.c.secret_enc))).all())
    for factor in totps:
        assert raw_after[factor.id] != raw_before[factor.id]
    new_only = make_store(secret_box=SecretBox([new]))
    async with new_only.read() as uow:
        loaded = await uow.factors.list_for_subject(sub.id)
    assert sorted(f.secret.reveal() for f in loaded if f.secret) == [SEED] * 5

    old_only = make_store(secret_box=SecretBox([old]))
    with pytest.raises(SecretDecryptionError):
        async with old_only.read() as uow:
            await uow.factors.get(sub.id, totps[0].id)


async def test_reencrypt_refuses_a_bad_batch_size(make_store: StoreFactory) -> None:
    with pytest.raises(ValueError, match="batch_size"):
        await make_store().reencrypt_secrets(batch_size=0)
