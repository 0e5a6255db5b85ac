"""The bank's state, in memory: customers, accounts, payees and pending operations.

Every operation that needs a step-up is stored first as *pending* (a transfer, an email
change, a new payee) under an unguessable id, and executed later by a guarded request, once.
The transitions from ``pending`` run without an ``await`` in between, so on the one event loop
of the bank's single process they are atomic: a pending transfer executes at most once.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from typing import Final

__all__ = [
    "Account",
    "Bank",
    "BankError",
    "Customer",
    "EmailChange",
    "NewPayee",
    "Payee",
    "Status",
    "Transfer",
    "parse_amount",
    "parse_iban",
]

CURRENCY: Final = "EUR"
_AMOUNT: Final = re.compile(r"^[0-9]{1,9}(\.[0-9]{1,2})?$")
_IBAN: Final = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}$")


class BankError(Exception):
    """A request the bank refuses (the message is shown to the user)."""


class Status(StrEnum):
    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


def parse_amount(text: str) -> Decimal:
    """A positive amount with at most two decimals (``"5000"``, ``"12.50"``)."""
    cleaned = text.strip().replace(",", "")
    if not _AMOUNT.fullmatch(cleaned) or Decimal(cleaned) <= 0:
        raise BankError("Enter an amount such as 50 or 1250.00.")
    return Decimal(cleaned)


def parse_iban(text: str) -> str:
    """An IBAN in its electronic form, with a valid ISO 13616 check (mod 97)."""
    iban = re.sub(r"\s+", "", text).upper()
    if not _IBAN.fullmatch(iban):
        raise BankError("Enter an IBAN such as DE89 3704 0044 0532 0130 00.")
    digits = "".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])
    if int(digits) % 97 != 1:
        raise BankError("That IBAN's check digits are wrong.")
    return iban


def _new_id(prefix: str) -> str:
    return f"{prefix}_{secrets.token_urlsafe(16)}"


@dataclass(slots=True, kw_only=True)
class Account:
    id: str
    name: str
    balance: Decimal


@dataclass(frozen=True, slots=True, kw_only=True)
class Payee:
    id: str
    name: str
    iban: str


@dataclass(slots=True, kw_only=True)
class Transfer:
    id: str
    username: str
    account_id: str
    payee: Payee
    amount: Decimal
    status: Status = Status.PENDING
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    note: str = ""

    def context(self) -> dict[str, object]:
        """What StepGuard binds the step-up to: amount, currency and payee (and, through the
        resource, this transfer's id)."""
        amount = (
            int(self.amount) if self.amount == self.amount.to_integral() else float(self.amount)
        )
        return {"amount": amount, "currency": CURRENCY, "payee": self.payee.name}


@dataclass(slots=True, kw_only=True)
class EmailChange:
    id: str
    username: str
    email: str
    status: Status = Status.PENDING


@dataclass(slots=True, kw_only=True)
class NewPayee:
    id: str
    username: str
    name: str
    iban: str
    status: Status = Status.PENDING


@dataclass(slots=True, kw_only=True)
class Customer:
    username: str
    display_name: str
    email: str
    accounts: dict[str, Account]
    payees: dict[str, Payee]
    history: list[Transfer] = field(default_factory=list)


def _demo_customer(username: str) -> Customer:
    checking = Account(id="checking", name="Everyday account", balance=Decimal("12450.00"))
    savings = Account(id="savings", name="Savings", balance=Decimal("30000.00"))
    payees = [
        Payee(id="acme", name="ACME GmbH", iban="DE89370400440532013000"),
        Payee(id="landlord", name="Northside Lettings", iban="GB82WEST12345698765432"),
    ]
    return Customer(
        username=username,
        display_name=username.capitalize(),
        email=f"{username}@example.com",
        accounts={a.id: a for a in (checking, savings)},
        payees={p.id: p for p in payees},
    )


class Bank:
    """All customers and pending operations of this process."""

    def __init__(self, usernames: list[str]) -> None:
        self.customers = {name: _demo_customer(name) for name in usernames}
        self.transfers: dict[str, Transfer] = {}
        self.email_changes: dict[str, EmailChange] = {}
        self.new_payees: dict[str, NewPayee] = {}

    def customer(self, username: str) -> Customer:
        return self.customers[username]

    # Transfers

    def create_transfer(
        self, username: str, *, account_id: str, payee_id: str, amount: Decimal
    ) -> Transfer:
        customer = self.customer(username)
        account = customer.accounts.get(account_id)
        payee = customer.payees.get(payee_id)
        if account is None or payee is None:
            raise BankError("Choose one of your accounts and one of your payees.")
        if amount > account.balance:
            raise BankError("The amount is more than the account's balance.")
        transfer = Transfer(
            id=_new_id("tr"), username=username, account_id=account.id, payee=payee, amount=amount
        )
        self.transfers[transfer.id] = transfer
        return transfer

    def transfer(self, username: str, transfer_id: str) -> Transfer | None:
        found = self.transfers.get(transfer_id)
        return found if found is not None and found.username == username else None

    def execute(self, transfer: Transfer) -> None:
        """Move the money, once: only a pending transfer executes."""
        if transfer.status is not Status.PENDING:
            raise BankError("This transfer was already processed.")
        account = self.customer(transfer.username).accounts[transfer.account_id]
        if transfer.amount > account.balance:
            transfer.status = Status.FAILED
            transfer.note = "insufficient funds"
            raise BankError("The amount is more than the account's balance.")
        account.balance -= transfer.amount
        transfer.status = Status.DONE
        self.customer(transfer.username).history.insert(0, transfer)

    # Email changes

    def create_email_change(self, username: str, email: str) -> EmailChange:
        change = EmailChange(id=_new_id("em"), username=username, email=email)
        self.email_changes[change.id] = change
        return change

    def email_change(self, username: str, change_id: str) -> EmailChange | None:
        found = self.email_changes.get(change_id)
        return found if found is not None and found.username == username else None

    def apply_email_change(self, change: EmailChange) -> None:
        if change.status is not Status.PENDING:
            raise BankError("This change was already processed.")
        change.status = Status.DONE
        self.customer(change.username).email = change.email

    # Payees

    def create_new_payee(self, username: str, *, name: str, iban: str) -> NewPayee:
        name = " ".join(name.split())
        if not 1 <= len(name) <= 60 or not name.isprintable():
            raise BankError("Enter the payee's name (up to 60 characters).")
        if any(p.iban == iban for p in self.customer(username).payees.values()):
            raise BankError("That account is already one of your payees.")
        addition = NewPayee(id=_new_id("py"), username=username, name=name, iban=iban)
        self.new_payees[addition.id] = addition
        return addition

    def new_payee(self, username: str, addition_id: str) -> NewPayee | None:
        found = self.new_payees.get(addition_id)
        return found if found is not None and found.username == username else None

    def add_payee(self, addition: NewPayee) -> Payee:
        if addition.status is not Status.PENDING:
            raise BankError("This payee was already processed.")
        addition.status = Status.DONE
        payee = Payee(id=_new_id("p"), name=addition.name, iban=addition.iban)
        self.customer(addition.username).payees[payee.id] = payee
        return payee
