"""Run the bank next to StepGuard for ``stepguard demo`` (``make demo``).

:meth:`DemoBank.prepare` makes the demo login (a fresh random password, hashed for the bank)
and the bank's environment; :meth:`DemoBank.running` starts ``python -m stepguard.demo.bank``
as a child process, waits until it answers, and stops it when the block ends (StepGuard
stopped, Ctrl-C, an error).
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Final

import httpx

from stepguard.demo.bank.passwords import hash_password

__all__ = ["DEMO_USER", "BankStartError", "DemoBank"]

DEMO_USER: Final = "alice"
START_TIMEOUT: Final = 30.0
STOP_TIMEOUT: Final = 10.0


class BankStartError(Exception):
    """The bank process exited or did not answer in time."""


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _password() -> str:
    return "-".join(secrets.token_hex(2) for _ in range(3))


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoBank:
    url: str
    username: str
    password: str = field(repr=False)
    environment: Mapping[str, str] = field(repr=False)

    @classmethod
    def prepare(
        cls,
        *,
        port: int,
        stepguard_url: str,
        stepguard_public_url: str,
        api_key: str,
        host: str = "127.0.0.1",
    ) -> DemoBank:
        url = f"http://localhost:{port}"
        password = _password()
        environment = {
            "ACME_BANK_STEPGUARD_URL": stepguard_url,
            "ACME_BANK_STEPGUARD_PUBLIC_URL": stepguard_public_url,
            "ACME_BANK_API_KEY": api_key,
            "ACME_BANK_PUBLIC_URL": url,
            "ACME_BANK_SESSION_SECRET": secrets.token_urlsafe(32),
            "ACME_BANK_USERS": f'{{"{DEMO_USER}": "{hash_password(password)}"}}',
            "ACME_BANK_HOST": host,
            "ACME_BANK_PORT": str(port),
        }
        return cls(url=url, username=DEMO_USER, password=password, environment=environment)

    def instructions(self, *, demo_code: str) -> str:
        return f"""
Acme Bank, the demo application protected through the SDK: {self.url}

  Sign in as     {self.username} / {self.password}
  Second factor  the TOTP above: add the TOTP URI to an authenticator app, or run
                   {demo_code}
                 for the current code; or use one of the recovery codes.

  Try: send 50 (no prompt); send 5000 (StepGuard's page shows the amount and the payee);
  change the email (a prompt every time); add a payee; then "Pretend I'm abroad" and send
  50 again (high risk: a prompt). What each step shows: docs/demo.md.

Press Ctrl-C to stop StepGuard and the bank.
"""

    @contextlib.contextmanager
    def running(self) -> Iterator[subprocess.Popen[bytes]]:
        process = subprocess.Popen(  # our own interpreter, fixed arguments
            [sys.executable, "-m", "stepguard.demo.bank"],
            env={**os.environ, **self.environment},
        )
        # uvicorn re-raises the SIGTERM it handled once it has shut down; with the default
        # handler that would end this process before it stops the bank. Exit cleanly instead.
        previous = signal.signal(signal.SIGTERM, _exit_on_sigterm)
        try:
            self._wait_until_ready(process)
            yield process
        finally:
            signal.signal(signal.SIGTERM, previous)
            if process.poll() is None:
                process.terminate()
                try:
                    process.wait(timeout=STOP_TIMEOUT)
                except subprocess.TimeoutExpired:
                    process.kill()
                    process.wait()

    def _wait_until_ready(self, process: subprocess.Popen[bytes]) -> None:
        health = f"http://{self.environment['ACME_BANK_HOST']}:{self.environment['ACME_BANK_PORT']}/healthz"
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if process.poll() is not None:
                raise BankStartError(f"the demo bank exited with status {process.returncode}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(health, timeout=1.0).status_code == 200:
                    return
            time.sleep(0.2)
        raise BankStartError(f"the demo bank did not answer at {health}")
