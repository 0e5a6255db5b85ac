"""The WebAuthn repository on every backend: credentials, ceremonies, and their races."""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta

import pytest

from stepguard.adapters.storage import SqlStore, SqlUnitOfWork
from stepguard.core.assurance import FactorType
from stepguard.core.errors import ConflictError
from stepguard.core.model import (
    CeremonyPurpose,
    Factor,
    FactorStatus,
    WebAuthnCeremony,
    WebAuthnCredential,
)

from .conftest import StoreFactory
from .factories import NOW, World, build_world, new_id, subject
from .test_races import N, _race

AT = NOW + timedelta(seconds=30)


def webauthn_factor(subject_id: str) -> Factor:
    return Factor(
        id=new_id("fac"),
        subject_id=subject_id,
        type=FactorType.WEBAUTHN,
        status=FactorStatus.ACTIVE,
        label="key",
        created_at=NOW,
        confirmed_at=NOW,
    )


def credential(factor: Factor, **overrides: object) -> WebAuthnCredential:
    fields: dict[str, object] = {
        "factor_id": factor.id,
        "subject_id": factor.subject_id,
        "credential_id": b"\x00\xffcred" + secrets.token_bytes(16),  # NUL and high bytes
        "user_handle": secrets.token_bytes(32),
        "public_key": b"\xa5\x01\x02\x03\x26" + secrets.token_bytes(64),
        "sign_count": 2**32 - 1,
        "aaguid": "6d44ba9b-f6ec-2e49-b930-0c8fe920cb73",
        "transports": ("usb", "nfc"),
        "backup_eligible": True,
        "backed_up": False,
        "discoverable": True,
        "attestation_format": "packed",
        "attestation_trusted": True,
    }
    fields.update(overrides)
    return WebAuthnCredential(**fields)  # type: ignore[arg-type]


def ceremony(world: World, **overrides: object) -> WebAuthnCeremony:
    fields: dict[str, object] = {
        "id": new_id("wac"),
        "subject_id": world.subject.id,
        "purpose": CeremonyPurpose.AUTHENTICATE,
        "challenge": secrets.token_bytes(32),
        "require_user_verification": True,
        "created_at": NOW,
        "expires_at": NOW + timedelta(minutes=5),
        "challenge_id": world.challenge.id,
    }
    fields.update(overrides)
    return WebAuthnCeremony(**fields)  # type: ignore[arg-type]


async def _with_credential(store: SqlStore, world: World) -> WebAuthnCredential:
    factor = webauthn_factor(world.subject.id)
    stored = credential(factor)
    async with store.transaction() as uow:
        await uow.factors.add(factor)
        await uow.webauthn.add_credential(stored)
    return stored


async def test_a_credential_round_trips(store: SqlStore) -> None:
    world = await build_world(store)
    stored = await _with_credential(store, world)
    async with store.read() as uow:
        assert await uow.webauthn.get_credential(stored.factor_id) == stored
        assert await uow.webauthn.find_credential(stored.credential_id) == stored
        assert await uow.webauthn.list_credentials(world.subject.id) == [stored]
        assert await uow.webauthn.find_credential(b"unknown") is None


async def test_use_and_clone_marks_are_recorded(store: SqlStore) -> None:
    world = await build_world(store)
    stored = await _with_credential(store, world)
    async with store.transaction() as uow:
        await uow.webauthn.record_use(stored.factor_id, sign_count=7, backed_up=True)
        assert await uow.webauthn.mark_suspected_clone(stored.factor_id, at=AT) is True
        assert await uow.webauthn.mark_suspected_clone(stored.factor_id, at=NOW) is False
    async with store.read() as uow:
        row = await uow.webauthn.get_credential(stored.factor_id)
    assert row is not None
    assert (row.sign_count, row.backed_up, row.suspected_clone_at) == (7, True, AT)


async def test_a_credential_id_is_unique_across_subjects(store: SqlStore) -> None:
    world = await build_world(store)
    stored = await _with_credential(store, world)
    other = subject()
    factor = webauthn_factor(other.id)
    async with store.transaction() as uow:
        await uow.subjects.upsert(other)
        await uow.factors.add(factor)
    duplicate = credential(factor, credential_id=stored.credential_id)
    with pytest.raises(ConflictError):
        await _add(store, duplicate)


async def _add(store: SqlStore, stored: WebAuthnCredential) -> None:
    async with store.transaction() as uow:
        await uow.webauthn.add_credential(stored)


async def test_removing_the_factor_or_the_subject_removes_the_credential(store: SqlStore) -> None:
    world = await build_world(store)
    first = await _with_credential(store, world)
    second = await _with_credential(store, world)
    async with store.transaction() as uow:
        await uow.factors.delete(first.factor_id)
    async with store.read() as uow:
        assert await uow.webauthn.get_credential(first.factor_id) is None
        assert await uow.webauthn.get_credential(second.factor_id) is not None
    async with store.transaction() as uow:
        await uow.subjects.delete(world.subject.id)
    async with store.read() as uow:
        assert await uow.webauthn.find_credential(second.credential_id) is None


async def test_a_ceremony_is_consumed_once_and_only_with_its_binding(store: SqlStore) -> None:
    world = await build_world(store)
    open_ceremony = ceremony(world)
    async with store.transaction() as uow:
        await uow.webauthn.add_ceremony(open_ceremony)

    async def consume(
        uow: SqlUnitOfWork,
        *,
        purpose: CeremonyPurpose = CeremonyPurpose.AUTHENTICATE,
        challenge: bytes = open_ceremony.challenge,
        subject_id: str = world.subject.id,
        binding: str = world.challenge.id,
        at: datetime = AT,
    ) -> WebAuthnCeremony | None:
        return await uow.webauthn.consume_ceremony(
            purpose=purpose, challenge=challenge, subject_id=subject_id, binding=binding, at=at
        )

    async with store.transaction() as uow:
        assert await consume(uow, purpose=CeremonyPurpose.REGISTER) is None
        assert await consume(uow, challenge=secrets.token_bytes(32)) is None
        assert await consume(uow, subject_id="sub_other") is None
        assert await consume(uow, binding="chl_other") is None
        assert await consume(uow, at=open_ceremony.expires_at) is None  # expired
        used = await consume(uow)
        assert used is not None
        assert used.used_at == AT
        assert used.challenge == open_ceremony.challenge
        assert await consume(uow) is None


async def test_newer_options_supersede_unused_ceremonies(store: SqlStore) -> None:
    world = await build_world(store)
    older, newer = ceremony(world), ceremony(world)
    async with store.transaction() as uow:
        await uow.webauthn.add_ceremony(older)
        await uow.webauthn.add_ceremony(newer)
        for c, expected in ((older, False), (newer, True)):
            used = await uow.webauthn.consume_ceremony(
                purpose=CeremonyPurpose.AUTHENTICATE,
                challenge=c.challenge,
                subject_id=world.subject.id,
                binding=world.challenge.id,
                at=AT,
            )
            assert (used is not None) is expected


async def test_exactly_one_of_n_concurrent_transactions_consumes_a_ceremony(
    make_store: StoreFactory,
) -> None:
    store = make_store(pool_size=N, max_overflow=0)
    world = await build_world(store)
    open_ceremony = ceremony(world)
    async with store.transaction() as uow:
        await uow.webauthn.add_ceremony(open_ceremony)

    async def consume(uow: SqlUnitOfWork) -> bool:
        used = await uow.webauthn.consume_ceremony(
            purpose=CeremonyPurpose.AUTHENTICATE,
            challenge=open_ceremony.challenge,
            subject_id=world.subject.id,
            binding=world.challenge.id,
            at=AT,
        )
        return used is not None

    results = await _race(store, consume)
    assert results.count(True) == 1
