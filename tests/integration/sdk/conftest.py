"""Fixtures for the SDK integrations: a live ``stepguard serve`` (SQLite, one worker), users
with a session and an enrolled TOTP factor, a closed port and a server that never answers."""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import pytest

from stepguard.core.factors.totp import TotpSpec, code_at_step
from stepguard.sdk import Secret, StepGuardClient
from support.server import (
    LiveServer,
    database,
    live_server,
    safe_totp_step,
    secret_from_otpauth_uri,
)
from support.services import free_port

SPEC = TotpSpec()
PUBLIC_URL = "https://stepguard.example.test"


@pytest.fixture(scope="session")
def stepguard(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    workdir = tmp_path_factory.mktemp("sdk-live")
    with (
        database("sqlite", workdir) as url,
        live_server(
            workdir,
            database_url=url,
            workers=1,
            # Where the apps under test believe StepGuard's pages are (their PUBLIC_URL).
            settings={"public_url": PUBLIC_URL},
        ) as server,
    ):
        yield server


@pytest.fixture(scope="session")
def admin(stepguard: LiveServer) -> Iterator[StepGuardClient]:
    with StepGuardClient(stepguard.base_url, stepguard.api_key) as client:
        yield client


@dataclass
class User:
    subject_id: str
    session_id: str
    factor_id: str
    seed: bytes
    used_steps: set[int]

    def step_up(self, admin: StepGuardClient, challenge_id: str) -> Secret | None:
        """Answer ``challenge_id`` with a fresh TOTP code; the grant, if the rule binds."""
        step = safe_totp_step(SPEC)
        while step in self.used_steps:  # each step is single use: wait for the next one
            step = safe_totp_step(SPEC, margin=SPEC.period - 0.5)
        self.used_steps.add(step)
        result = admin.verify(challenge_id, self.factor_id, code_at_step(self.seed, SPEC, step))
        return result.grant


@pytest.fixture
def user(admin: StepGuardClient) -> User:
    subject_id = f"sdk-{secrets.token_hex(4)}"
    admin.put_subject(subject_id)
    step = safe_totp_step(SPEC)
    enrollment = admin.enroll_factor(subject_id, "totp", label="Phone")
    assert enrollment.otpauth_uri is not None
    seed = secret_from_otpauth_uri(enrollment.otpauth_uri.reveal())
    admin.confirm_factor(subject_id, enrollment.factor.id, code_at_step(seed, SPEC, step - 1))
    session = admin.create_session(subject_id, amr=["pwd"])
    return User(subject_id, session.session_id, enrollment.factor.id, seed, {step - 1})


@pytest.fixture
def closed_port_url() -> str:
    """A loopback URL where nothing listens (connection refused)."""
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture
def hanging_url() -> Iterator[str]:
    """A loopback URL that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}"


class DjangoSite:
    """The Django project of these tests: ``urlpatterns`` and the guard the middleware uses
    (settings can be configured once per process, so every Django test shares them)."""

    urlpatterns: ClassVar[list[Any]] = []
    guard: ClassVar[Any] = None


def current_django_guard() -> Any:
    return DjangoSite.guard


@pytest.fixture(scope="session")
def django_site() -> type[DjangoSite]:
    import django
    from django.conf import settings

    if not settings.configured:
        settings.configure(
            DEBUG=False,
            SECRET_KEY="tests-only",
            ROOT_URLCONF=DjangoSite,
            ALLOWED_HOSTS=["testserver"],
            MIDDLEWARE=["stepguard.sdk.django.StepUpMiddleware"],
            STEPGUARD_GUARD=current_django_guard,
            INSTALLED_APPS=[],
            DATABASES={},
        )
        django.setup()
    return DjangoSite
