"""The demo bank's own parts: password hashes, input parsing, the ledger's execute-once rule,
and failing closed when StepGuard cannot be reached (a real closed port, the real app)."""

from __future__ import annotations

import base64
import json
import re
from decimal import Decimal

import httpx
import itsdangerous
import pytest

from stepguard.demo.bank.app import SESSION_COOKIE, build_app
from stepguard.demo.bank.ledger import Bank, BankError, Status, parse_amount, parse_iban
from stepguard.demo.bank.passwords import hash_password, verify_password
from stepguard.demo.bank.settings import BankSettings
from support.services import free_port

SECRET = "s" * 40
BANK = "http://localhost:8001"


def test_a_password_verifies_against_its_hash_and_nothing_else() -> None:
    stored = hash_password("correct horse")
    assert stored.startswith("scrypt$16384$8$1$")
    assert verify_password("correct horse", stored)
    assert not verify_password("correct hors", stored)
    assert hash_password("correct horse") != stored  # a fresh salt each time


@pytest.mark.parametrize(
    "stored", [None, "", "scrypt$1$2", "bcrypt$16384$8$1$AA$AA", "scrypt$x$8$1$AA$AA"]
)
def test_missing_or_malformed_hashes_never_match(stored: str | None) -> None:
    assert not verify_password("anything", stored)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("50", Decimal(50)), ("5,000", Decimal(5000)), (" 12.5 ", Decimal("12.5"))],
)
def test_amounts_parse(text: str, expected: Decimal) -> None:
    assert parse_amount(text) == expected


@pytest.mark.parametrize("text", ["", "0", "-5", "1e3", "12.345", "NaN", "١٢", "1" * 10])
def test_bad_amounts_are_refused(text: str) -> None:
    with pytest.raises(BankError):
        parse_amount(text)


def test_ibans_are_normalized_and_checked() -> None:
    assert parse_iban("de02 1203 0000 0000 2020 51") == "DE02120300000000202051"
    with pytest.raises(BankError):
        parse_iban("DE03120300000000202051")  # wrong check digits
    with pytest.raises(BankError):
        parse_iban("not an iban")


def test_a_pending_transfer_executes_once_and_only_for_its_owner() -> None:
    bank = Bank(["alice", "bob"])
    transfer = bank.create_transfer(
        "alice", account_id="checking", payee_id="acme", amount=Decimal(5000)
    )
    assert bank.transfer("bob", transfer.id) is None
    assert transfer.context() == {"amount": 5000, "currency": "EUR", "payee": "ACME GmbH"}
    bank.execute(transfer)
    assert transfer.status is Status.DONE
    with pytest.raises(BankError):
        bank.execute(transfer)
    assert bank.customer("alice").accounts["checking"].balance == Decimal("7450.00")


def test_fractional_amounts_reach_stepguard_as_numbers() -> None:
    bank = Bank(["alice"])
    transfer = bank.create_transfer(
        "alice", account_id="checking", payee_id="acme", amount=Decimal("100.01")
    )
    assert transfer.context()["amount"] == 100.01


def test_a_transfer_beyond_the_balance_is_refused() -> None:
    bank = Bank(["alice"])
    with pytest.raises(BankError):
        bank.create_transfer(
            "alice", account_id="checking", payee_id="acme", amount=Decimal(20_000)
        )
    with pytest.raises(BankError):
        bank.create_transfer("alice", account_id="checking", payee_id="eve", amount=Decimal(1))


# -- failing closed -------------------------------------------------------------------------


def _settings() -> BankSettings:
    closed = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    return BankSettings(
        stepguard_url=closed,
        stepguard_public_url="http://localhost:8000",
        api_key="sgk_test",  # type: ignore[arg-type]  # coerced to SecretStr
        public_url=BANK,
        session_secret=SECRET,  # type: ignore[arg-type]
        users={"alice": hash_password("pw")},
    )


def _session_cookie(data: dict[str, object]) -> str:
    # What Starlette's SessionMiddleware writes: signed base64 JSON.
    payload = base64.b64encode(json.dumps(data).encode())
    return itsdangerous.TimestampSigner(SECRET).sign(payload).decode()


async def _csrf(client: httpx.AsyncClient) -> str:
    page = await client.get("/login")
    match = re.search(r'name="csrf" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


async def test_without_stepguard_nobody_signs_in() -> None:
    app = build_app(_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BANK) as client:
        csrf = await _csrf(client)
        answer = await client.post(
            "/login", data={"csrf": csrf, "username": "alice", "password": "pw"}
        )
        assert answer.status_code == 503
        assert (await client.get("/")).headers["location"] == "/login"


async def test_without_stepguard_a_small_transfer_is_not_executed() -> None:
    app = build_app(_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BANK) as client:
        csrf = await _csrf(client)
        client.cookies.set(
            SESSION_COOKIE,
            _session_cookie({"user": "alice", "sg_session": "ses_gone", "csrf": csrf}),
        )
        home = await client.get("/")
        assert home.status_code == 503  # even viewing: the guard could not ask
        created = await client.post(
            "/transfers", data={"csrf": csrf, "account": "checking", "payee": "acme", "amount": "5"}
        )
        assert created.status_code == 303
        confirm = await client.get(created.headers["location"])
        assert confirm.status_code == 503
        assert "was not done" in confirm.text


async def test_forms_need_the_sessions_csrf_token() -> None:
    app = build_app(_settings())
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BANK) as client:
        csrf = await _csrf(client)
        client.cookies.set(
            SESSION_COOKIE,
            _session_cookie({"user": "alice", "sg_session": "ses_x", "csrf": csrf}),
        )
        for data in ({}, {"csrf": "x" * len(csrf)}):
            answer = await client.post(
                "/transfers", data={**data, "account": "checking", "payee": "acme", "amount": "5"}
            )
            assert answer.status_code == 403
        foreign = await client.post(
            "/transfers",
            data={"csrf": csrf, "account": "checking", "payee": "acme", "amount": "5"},
            headers={"Origin": "http://localhost:9999"},
        )
        assert foreign.status_code == 403
