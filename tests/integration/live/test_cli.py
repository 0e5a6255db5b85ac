"""The ``stepguard`` command line, run as the console script in a subprocess.

What an operator sees: exit codes, what goes to stdout and stderr, and that refusals are one
clear line, never a traceback. Databases are SQLite files in the test's directory; where a
test needs data, it seeds it in-process through the same use cases the API runs.
"""

from __future__ import annotations

import json
import re
import sqlite3
import subprocess
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from cryptography.fernet import Fernet, InvalidToken

import stepguard.demo
from stepguard.adapters.storage import migrate
from stepguard.bootstrap import Runtime, build_runtime
from stepguard.core.assurance import FactorType
from stepguard.core.errors import UnauthenticatedError
from stepguard.core.factors.totp import TotpSpec, code_at_step
from stepguard.service.decisions import DecisionRequest
from stepguard.settings import Settings
from support.server import (
    async_safe_totp_step,
    cli_env,
    live_server,
    new_secret_key,
    run_cli,
)
from support.services import free_port

pytestmark = pytest.mark.slow

DEMO = Path(stepguard.demo.__file__).parent
DEMO_POLICY = DEMO / "policy.yaml"
DEMO_CASES = DEMO / "policy_cases.yaml"

BROKEN_POLICY = """\
version: 1
rules:
  - id: view
    match: {actions: ["account.view"]}
    allow: true
  - id: transfer
    match: {actions: ["payments.transfer"]}
    step_up: {acr: aal9, max_age: 300}
default:
  deny: true
"""

FAILING_CASES = """\
cases:
  - name: viewing the account is allowed
    input: {action: account.view}
    expect: {outcome: allow, rule: account-view}
  - name: viewing the account is denied (wrong on purpose)
    input: {action: account.view}
    expect: {outcome: deny, rule: account-view}
"""


def assert_clean_refusal(result: subprocess.CompletedProcess[str]) -> str:
    """A non-zero exit with a message and no traceback; returns the whole output."""
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "Traceback" not in output, output
    assert result.stderr.strip(), "a refusal says why, on stderr"
    return output


@dataclass(frozen=True)
class Workspace:
    """A directory with a SQLite database and the settings for commands that use it."""

    path: Path
    database: Path
    secret_keys: tuple[str, ...]

    @property
    def url(self) -> str:
        return f"sqlite+aiosqlite:///{self.database}"

    def env(self, **settings: str) -> dict[str, str]:
        return cli_env(
            self.path,
            {
                "database_url": self.url,
                "policy_file": str(DEMO_POLICY),
                "secret_keys": json.dumps(list(self.secret_keys)),
                **settings,
            },
        )

    def cli(self, *args: str, **settings: str) -> subprocess.CompletedProcess[str]:
        return run_cli(*args, env=self.env(**settings), cwd=self.path)

    def settings(self, *secret_keys: str) -> Settings:
        return Settings(
            database_url=self.url,
            policy_file=DEMO_POLICY,
            secret_keys=list(secret_keys or self.secret_keys),  # type: ignore[arg-type]
            api_key_cache_seconds=0,
        )

    @asynccontextmanager
    async def runtime(self, *secret_keys: str) -> AsyncIterator[Runtime]:
        """The services on this database, in-process (migrated first)."""
        await migrate(self.url)
        runtime = build_runtime(self.settings(*secret_keys))
        try:
            yield runtime
        finally:
            await runtime.store.close()

    def sql(
        self, statement: str, parameters: Mapping[str, object] | None = None
    ) -> list[tuple[Any, ...]]:
        with sqlite3.connect(self.database) as connection:
            rows = connection.execute(statement, parameters or {}).fetchall()
        connection.close()
        return rows


@pytest.fixture
def workspace(tmp_path: Path) -> Workspace:
    return Workspace(
        path=tmp_path, database=tmp_path / "stepguard.db", secret_keys=(new_secret_key(),)
    )


# --- policy -------------------------------------------------------------------------------


def test_policy_check_accepts_the_demo_policy(workspace: Workspace) -> None:
    result = workspace.cli("policy", "check", str(DEMO_POLICY))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip().endswith("ok (13 rules)")
    assert str(DEMO_POLICY) in result.stdout


def test_policy_check_names_the_file_the_rule_and_the_field(workspace: Workspace) -> None:
    broken = workspace.path / "broken.yaml"
    broken.write_text(BROKEN_POLICY, encoding="utf-8")

    output = assert_clean_refusal(workspace.cli("policy", "check", str(broken)))

    assert str(broken) in output
    assert "rule 'transfer'" in output
    assert "field 'step_up.acr'" in output
    assert "aal9" in output


def test_policy_test_passes_every_demo_case(workspace: Workspace) -> None:
    count = len(yaml.safe_load(DEMO_CASES.read_text(encoding="utf-8"))["cases"])

    result = workspace.cli("policy", "test", str(DEMO_POLICY), str(DEMO_CASES))

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[-1] == f"{count} passed, 0 failed"
    assert result.stdout.count("PASS ") == count


def test_policy_test_exits_1_when_a_case_fails(workspace: Workspace) -> None:
    cases = workspace.path / "cases.yaml"
    cases.write_text(FAILING_CASES, encoding="utf-8")

    result = workspace.cli("policy", "test", str(DEMO_POLICY), str(cases))

    assert result.returncode == 1
    assert "PASS viewing the account is allowed" in result.stdout
    assert (
        "FAIL viewing the account is denied (wrong on purpose): expected outcome deny, got allow"
        in result.stdout
    )
    assert result.stdout.splitlines()[-1] == "1 passed, 1 failed"


# --- audit --------------------------------------------------------------------------------


@pytest.fixture
async def audited(workspace: Workspace) -> Workspace:
    """A database whose audit chain holds three records (three subjects created)."""
    async with workspace.runtime() as runtime:
        for name in ("alice", "bob", "carol"):
            await runtime.services.subjects.put(
                name, email=None, phone=None, groups=(), actor="cli-test"
            )
    assert workspace.sql("SELECT count(*) FROM audit_events") == [(3,)]
    return workspace


def test_audit_verify_accepts_an_intact_chain(audited: Workspace) -> None:
    result = audited.cli("audit", "verify")
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "audit chain intact: 3 records"


def test_audit_verify_names_an_altered_record(audited: Workspace) -> None:
    audited.sql("UPDATE audit_events SET details = :d WHERE seq = 2", {"d": '{"tampered":true}'})

    result = audited.cli("audit", "verify")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "BROKEN at record 2: record altered" in result.stderr
    assert "1 records verified before it" in result.stderr


def test_audit_verify_notices_a_removed_last_record(audited: Workspace) -> None:
    audited.sql("DELETE FROM audit_events WHERE seq = 3")

    result = audited.cli("audit", "verify")

    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "BROKEN at record 3" in result.stderr
    assert "removed" in result.stderr


# --- keys and secrets ---------------------------------------------------------------------


async def test_keys_create_list_and_revoke(workspace: Workspace) -> None:
    created = workspace.cli("keys", "create", "--name", "billing")
    assert created.returncode == 0, created.stderr
    token = created.stdout.strip()
    assert re.fullmatch(r"sgk_\w+\.key_\w+", token), "stdout is the token alone, for scripts"
    key_id = re.search(r"id:\s+(key_\w+)", created.stderr)
    assert key_id is not None, created.stderr
    assert token.endswith(f".{key_id[1]}")
    async with workspace.runtime() as runtime:
        assert (await runtime.services.api_keys.authenticate(token)).name == "billing"
        other = await runtime.services.api_keys.create("reports")

    revoked = workspace.cli("keys", "revoke", key_id[1])
    assert revoked.returncode == 0, revoked.stderr
    assert revoked.stdout.strip() == "revoked"

    listed = workspace.cli("keys", "list")
    assert listed.returncode == 0, listed.stderr
    rows = {line.split("\t")[0]: line.split("\t") for line in listed.stdout.splitlines()}
    assert set(rows) == {key_id[1], other.key.id}
    assert rows[key_id[1]][1] == "billing"
    assert rows[key_id[1]][3].startswith("revoked ")
    assert rows[other.key.id][1:4:2] == ["reports", "active"]
    assert token not in listed.stdout

    async with workspace.runtime() as runtime:
        with pytest.raises(UnauthenticatedError):
            await runtime.services.api_keys.authenticate(token)
        assert (await runtime.services.api_keys.authenticate(other.token.reveal())).id

    assert "no such active key" in assert_clean_refusal(workspace.cli("keys", "revoke", key_id[1]))


# --- purge --------------------------------------------------------------------------------


async def test_purge_deletes_sessions_that_expired_long_ago_and_audits_it(
    workspace: Workspace,
) -> None:
    async with workspace.runtime() as runtime:
        await runtime.services.subjects.put(
            "alice", email=None, phone=None, groups=(), actor="cli-test"
        )
        for _ in range(2):
            await runtime.services.sessions.create(
                subject_id="alice",
                amr=["pwd"],
                ip=None,
                user_agent=None,
                ttl_seconds=None,
                actor="cli-test",
            )
    workspace.sql(
        "UPDATE sessions SET expires_at = :old WHERE id = (SELECT min(id) FROM sessions)",
        {"old": "2020-01-01 00:00:00.000000"},
    )

    result = workspace.cli("purge")

    assert result.returncode == 0, result.stderr
    assert "sessions\t1" in result.stdout.splitlines()
    assert workspace.sql("SELECT count(*) FROM sessions") == [(1,)]
    purged = workspace.sql("SELECT details FROM audit_events WHERE type = 'maintenance.purged'")
    assert len(purged) == 1
    assert json.loads(purged[0][0])["deleted"]["sessions"] == 1
    assert workspace.cli("audit", "verify").returncode == 0


def test_serve_purges_expired_rows_in_the_background(tmp_path: Path) -> None:
    database = tmp_path / "stepguard.db"
    with live_server(
        tmp_path,
        database_url=f"sqlite+aiosqlite:///{database}",
        workers=1,
        settings={"purge_interval_seconds": "0.2"},
    ) as server:
        with httpx.Client(
            base_url=server.base_url, headers={"Authorization": f"Bearer {server.api_key}"}
        ) as api:
            assert api.put("/v1/subjects/alice", json={}).status_code in (200, 201)
            for _ in range(2):
                created = api.post("/v1/sessions", json={"subject_id": "alice", "amr": ["pwd"]})
                assert created.status_code == 201, created.text
        with sqlite3.connect(database) as connection:
            connection.execute(
                "UPDATE sessions SET expires_at = '2020-01-01 00:00:00.000000'"
                " WHERE id = (SELECT min(id) FROM sessions)"
            )
        connection.close()
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            with sqlite3.connect(database) as connection:
                (left,) = connection.execute("SELECT count(*) FROM sessions").fetchone()
            connection.close()
            if left == 1:
                break
            time.sleep(0.2)
        assert left == 1, server.logs()


def test_secrets_generate_prints_a_new_fernet_key(tmp_path: Path) -> None:
    env = cli_env(tmp_path)
    first = run_cli("secrets", "generate", env=env, cwd=tmp_path)
    second = run_cli("secrets", "generate", env=env, cwd=tmp_path)
    assert first.returncode == 0, first.stderr
    key = first.stdout.strip()
    assert len(key) == 44
    Fernet(key)  # a valid key: 32 bytes, URL-safe base64
    assert second.stdout.strip() != key


async def test_secrets_rotate_reencrypts_so_the_old_key_can_go(tmp_path: Path) -> None:
    """Serve with key A, enroll TOTP; rotate with ``[B, A]``; with only B it still verifies."""
    old, new = new_secret_key(), new_secret_key()
    workspace = Workspace(path=tmp_path, database=tmp_path / "stepguard.db", secret_keys=(old,))
    spec = TotpSpec()
    async with workspace.runtime(old) as runtime:
        services = runtime.services
        await services.subjects.put("alice", email=None, phone=None, groups=(), actor=None)
        enrolled = await services.factors.enroll(
            "alice",
            factor_type=FactorType.TOTP,
            label="",
            session_id=None,
            totp=None,
            actor=None,
        )
        assert enrolled.factor.secret is not None
        seed = enrolled.factor.secret.reveal()
        step = await async_safe_totp_step(spec)
        await services.factors.confirm(
            "alice",
            enrolled.factor.id,
            code=code_at_step(seed, spec, step - 1),
            session_id=None,
            actor=None,
        )
    ((stored,),) = workspace.sql("SELECT secret_enc FROM factors")
    Fernet(old).decrypt(stored)

    rotated = workspace.cli("secrets", "rotate", secret_keys=json.dumps([new, old]))

    assert rotated.returncode == 0, rotated.stderr
    assert rotated.stdout.strip() == "re-encrypted 1 secrets"
    ((stored,),) = workspace.sql("SELECT secret_enc FROM factors")
    Fernet(new).decrypt(stored)
    with pytest.raises(InvalidToken):
        Fernet(old).decrypt(stored)

    async with workspace.runtime(new) as runtime:  # the old key is gone
        services = runtime.services
        session, _ = await services.sessions.create(
            subject_id="alice",
            amr=["pwd"],
            ip=None,
            user_agent=None,
            ttl_seconds=None,
            actor=None,
        )
        decided = await services.decisions.decide(
            DecisionRequest(session_id=session.id, action="account.email.change", context={}),
            actor=None,
        )
        assert decided.challenge is not None
        verified = await services.verification.verify(
            decided.challenge.id,
            factor_id=enrolled.factor.id,
            code=code_at_step(seed, spec, step),
            actor=None,
        )
    assert verified.assurance.level is not None
    assert verified.assurance.level.acr == "aal2"


# --- demo and serve -----------------------------------------------------------------------


def test_demo_seeds_and_prints_how_to_try_it(tmp_path: Path) -> None:
    var = tmp_path / "var"

    result = run_cli("demo", "--no-serve", "--var", str(var), env=cli_env(tmp_path), cwd=tmp_path)

    assert result.returncode == 0, result.stdout + result.stderr
    out = result.stdout
    api_key = re.search(r"API key\s+(sgk_\S+)", out)
    session = re.search(r"A session\s+(ses_\S+)", out)
    assert api_key is not None, out
    assert session is not None, out
    assert "curl -s" in out
    assert f"KEY='{api_key[1]}' SES={session[1]}" in out
    assert (var / "demo.db").exists()
    # The printed key really is a key of the seeded database.
    connection = sqlite3.connect(var / "demo.db")
    try:
        ids = [row[0] for row in connection.execute("SELECT id FROM api_keys")]
    finally:
        connection.close()
    assert [api_key[1].rsplit(".", 1)[1]] == ids


@pytest.mark.parametrize(
    ("keys", "policy", "expected"),
    [
        pytest.param("absent", DEMO_POLICY, "no encryption key", id="no-secret-keys"),
        pytest.param(
            "invalid", DEMO_POLICY, "secret key #1 is not a valid Fernet key", id="invalid-key"
        ),
        pytest.param("valid", None, "rule 'transfer': field 'step_up.acr'", id="broken-policy"),
    ],
)
def test_serve_refuses_to_start_without_what_it_needs(
    tmp_path: Path, keys: str, policy: Path | None, expected: str
) -> None:
    if policy is None:
        policy = tmp_path / "broken.yaml"
        policy.write_text(BROKEN_POLICY, encoding="utf-8")
    settings = {
        "database_url": f"sqlite+aiosqlite:///{tmp_path / 'stepguard.db'}",
        "policy_file": str(policy),
        "port": str(free_port()),
        "workers": "1",  # one process: the timeout below would end it, were it to start
    }
    if keys != "absent":
        key = new_secret_key() if keys == "valid" else "not-a-fernet-key"
        settings["secret_keys"] = json.dumps([key])

    result = run_cli("serve", env=cli_env(tmp_path, settings), cwd=tmp_path, timeout=30)

    output = assert_clean_refusal(result)
    assert expected in output
    assert str(policy) in output or policy == DEMO_POLICY
    assert not (tmp_path / "stepguard.db").exists(), "refused before touching the database"
