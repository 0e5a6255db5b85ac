"""The ``stepguard`` command line: serve, demo, migrate, keys, secrets, policy, audit."""

from __future__ import annotations

import asyncio
import json
import os
import sys
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

import click

from stepguard.core.errors import StepGuardError

T = TypeVar("T")


def _run(coroutine: Coroutine[Any, Any, T]) -> T:
    try:
        return asyncio.run(coroutine)
    except StepGuardError as error:
        raise click.ClickException(f"{error.code}: {error.message}") from None


def _settings(**overrides: Any) -> Any:
    from stepguard.settings import Settings

    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except Exception as error:  # pydantic's ValidationError, shown without a traceback
        raise click.ClickException(f"invalid configuration: {error}") from None


@click.group()
@click.version_option(package_name="stepguard")
def main() -> None:
    """StepGuard: self-hosted step-up authentication."""


# --- serve and migrate ------------------------------------------------------------------


async def _migrate(url: str) -> None:
    from stepguard.adapters.storage import migrate

    await migrate(url)


@main.command()
def migrate() -> None:
    """Apply the database migrations (also done by ``serve``)."""
    settings = _settings()
    _run(_migrate(settings.database_url))
    click.echo("database is up to date")


def _serve(settings: Any, *, migrate_first: bool) -> None:
    import uvicorn

    from stepguard.bootstrap import load_policy_file, secret_box

    try:
        secret_box(settings)  # refuse to start without usable encryption keys
        load_policy_file(settings.policy_file)  # ... or with a broken policy
    except StepGuardError as error:
        raise click.ClickException(error.message) from None
    if migrate_first:
        _run(_migrate(settings.database_url))
    # Workers build their own app from the environment: hand them the effective settings.
    os.environ["STEPGUARD_DATABASE_URL"] = settings.database_url
    # The port too: the default public_url (and so the WebAuthn origin) derives from it.
    os.environ["STEPGUARD_HOST"] = settings.host
    os.environ["STEPGUARD_PORT"] = str(settings.port)
    os.environ["STEPGUARD_POLICY_FILE"] = str(settings.policy_file)
    os.environ["STEPGUARD_SECRET_KEYS"] = json.dumps(
        [key.get_secret_value() for key in settings.secret_keys]
    )
    uvicorn.run(
        "stepguard.bootstrap:create_app",
        factory=True,
        host=settings.host,
        port=settings.port,
        workers=settings.workers,
        log_level=settings.log_level,
        access_log=False,
        proxy_headers=False,  # X-Forwarded-* from clients are never trusted
        server_header=False,
    )


@main.command()
@click.option("--host", default=None, help="Address to bind (default from settings).")
@click.option("--port", type=int, default=None, help="Port to bind.")
@click.option("--workers", type=int, default=None, help="Worker processes.")
@click.option("--no-migrate", is_flag=True, help="Do not apply migrations first.")
def serve(host: str | None, port: int | None, workers: int | None, no_migrate: bool) -> None:
    """Run the HTTP API."""
    settings = _settings(host=host, port=port, workers=workers)
    _serve(settings, migrate_first=not no_migrate)


# --- keys (API keys) and secrets (encryption keys) --------------------------------------


@main.group()
def keys() -> None:
    """API keys for the applications that call StepGuard."""


async def _with_runtime(action: Any) -> Any:
    from stepguard.bootstrap import build_runtime
    from stepguard.core.policy.loader import load_policy

    settings = _settings()
    await _migrate(settings.database_url)
    # Key and audit commands need no policy: a deny-all one keeps them independent of it.
    deny_all = load_policy("version: 1\nrules: []\ndefault: {deny: true}\n", source="<cli>")
    runtime = build_runtime(settings, policy=deny_all)
    try:
        return await action(runtime)
    finally:
        await runtime.store.close()


@keys.command("create")
@click.option("--name", required=True, help="Who uses the key, e.g. the app's name.")
def keys_create(name: str) -> None:
    """Create an API key and print it (shown once)."""

    async def action(runtime: Any) -> Any:
        return await runtime.services.api_keys.create(name)

    created = _run(_with_runtime(action))
    click.echo(f"id:    {created.key.id}", err=True)
    click.echo(created.token.reveal())


@keys.command("list")
def keys_list() -> None:
    """List API keys (never their secrets)."""

    async def action(runtime: Any) -> Any:
        return await runtime.services.api_keys.list()

    for key in _run(_with_runtime(action)):
        state = f"revoked {key.revoked_at.isoformat()}" if key.revoked_at else "active"
        click.echo(f"{key.id}\t{key.name}\t{key.created_at.isoformat()}\t{state}")


@keys.command("revoke")
@click.argument("key_id")
def keys_revoke(key_id: str) -> None:
    """Revoke an API key."""

    async def action(runtime: Any) -> Any:
        return await runtime.services.api_keys.revoke(key_id)

    if not _run(_with_runtime(action)):
        raise click.ClickException("no such active key")
    click.echo("revoked")


@main.command()
def purge() -> None:
    """Delete rows that expired more than ``purge_retention_seconds`` ago, once (``serve``
    also does it every ``purge_interval_seconds``). The audit log is never purged."""
    from datetime import timedelta

    async def action(runtime: Any) -> Any:
        retention = timedelta(seconds=runtime.settings.purge_retention_seconds)
        return await runtime.services.maintenance.purge_expired(retention=retention, actor="cli")

    report = _run(_with_runtime(action))
    click.echo(f"expired before {report.before.isoformat()}:", err=True)
    for table, count in report.deleted.items():
        click.echo(f"{table}\t{count}")


@main.group()
def secrets() -> None:
    """Encryption keys for factor secrets at rest."""


@secrets.command("generate")
def secrets_generate() -> None:
    """Print a new encryption key. Put it first in STEPGUARD_SECRET_KEYS to rotate."""
    from stepguard.adapters.crypto import SecretBox

    click.echo(SecretBox.generate_key())


@secrets.command("rotate")
def secrets_rotate() -> None:
    """Re-encrypt every stored secret with the first configured key."""

    async def action(runtime: Any) -> Any:
        return await runtime.store.reencrypt_secrets()

    count = _run(_with_runtime(action))
    click.echo(f"re-encrypted {count} secrets")


# --- policy -----------------------------------------------------------------------------


@main.group()
def policy() -> None:
    """Validate and test policies."""


def _load(path: Path) -> Any:
    from stepguard.bootstrap import load_policy_file

    try:
        return load_policy_file(path)
    except StepGuardError as error:
        raise click.ClickException(error.message) from None


@policy.command("check")
@click.argument("file", type=click.Path(path_type=Path))
def policy_check(file: Path) -> None:
    """Validate a policy file."""
    compiled = _load(file)
    click.echo(f"{file}: ok ({compiled.rule_count} rules)")


@policy.command("test")
@click.argument("file", type=click.Path(path_type=Path))
@click.argument("cases", type=click.Path(path_type=Path))
def policy_test(file: Path, cases: Path) -> None:
    """Run test cases (request -> expected decision and rule) against a policy."""
    from stepguard.core.policy.cases import parse_cases, run_cases

    compiled = _load(file)
    try:
        report = run_cases(
            compiled, parse_cases(cases.read_text(encoding="utf-8"), source=str(cases))
        )
    except OSError as error:
        raise click.ClickException(f"{cases}: {error.strerror}") from None
    except StepGuardError as error:
        raise click.ClickException(error.message) from None
    for result in report.results:
        mark = "PASS" if result.passed else "FAIL"
        line = f"{mark} {result.name}"
        if not result.passed:
            line += f": {result.message}"
        click.echo(line)
    click.echo(f"{report.passed} passed, {report.failed} failed")
    if report.failed:
        sys.exit(1)


# --- audit ------------------------------------------------------------------------------


@main.group()
def audit() -> None:
    """The hash-chained audit log."""


@audit.command("verify")
def audit_verify() -> None:
    """Check that no audit record was altered or removed."""

    async def action(runtime: Any) -> Any:
        return await runtime.services.audit.verify()

    report = _run(_with_runtime(action))
    if report.ok:
        click.echo(f"audit chain intact: {report.records} records")
        return
    click.echo(
        f"audit chain BROKEN at record {report.first_bad_seq}: {report.problem} "
        f"({report.records} records verified before it)",
        err=True,
    )
    sys.exit(1)


# --- risk -------------------------------------------------------------------------------


@main.group()
def risk() -> None:
    """The risk engine: replay a login log through it."""


@risk.command("replay")
@click.argument("input_csv", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--output",
    "-o",
    type=click.Path(dir_okay=False, path_type=Path),
    required=True,
    help="Where to write index,risk_score,risk_level.",
)
@click.option(
    "--model",
    type=click.Choice(["full", "freeman"]),
    default="full",
    show_default=True,
    help="freeman: only the plain Freeman ratio over the IP and UA hierarchies.",
)
@click.option(
    "--max-history",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="Trusted logins kept per user.",
)
@click.option("--quiet", is_flag=True, help="No progress bar.")
def risk_replay(input_csv: Path, output: Path, model: str, max_history: int, quiet: bool) -> None:
    """Score a login log in the RBA dataset's columns, each row from the rows before it."""
    import time

    from stepguard.adapters.risk.replay import ReplayError, replay
    from stepguard.core.risk.engine import RiskConfig, RiskModel

    config = RiskConfig(model=RiskModel(model))
    started = time.perf_counter()
    try:
        with output.open("w", encoding="utf-8", newline="") as out:
            if quiet:
                stats = replay(input_csv, out, config=config, max_history=max_history)
            else:
                with click.progressbar(
                    length=sum(1 for _ in input_csv.open("rb")) - 1,
                    label="scoring",
                    file=sys.stderr,
                ) as bar:
                    stats = replay(
                        input_csv, out, config=config, max_history=max_history, progress=bar.update
                    )
    except ReplayError as error:
        raise click.ClickException(str(error)) from None
    elapsed = time.perf_counter() - started
    rate = stats.rows / elapsed if elapsed > 0 else 0.0
    order = "in order" if stats.sorted_input else "sorted in memory"
    click.echo(
        f"scored {stats.rows} rows ({order}) in {elapsed:.1f} s, {rate:.0f} rows/s", err=True
    )


# --- demo -------------------------------------------------------------------------------


@main.command()
@click.option("--port", type=int, default=8000, show_default=True)
@click.option(
    "--var",
    "var_dir",
    type=click.Path(path_type=Path),
    default=Path("var"),
    show_default=True,
    help="Where the demo keeps its SQLite file.",
)
@click.option("--no-serve", is_flag=True, help="Seed and print, but do not start the server.")
@click.option(
    "--bank-port", type=int, default=8001, show_default=True, help="The demo bank's port."
)
@click.option("--no-bank", is_flag=True, help="Do not start the demo bank (Acme Bank).")
def demo(port: int, var_dir: Path, no_serve: bool, bank_port: int, no_bank: bool) -> None:
    """Start StepGuard on SQLite with a demo subject, policy and API key, and the demo bank."""
    from stepguard.demo.seed import prepare_demo

    with_bank = not (no_bank or no_serve)
    bank_origin = f"http://localhost:{bank_port}" if with_bank else None
    setup = _run(prepare_demo(var_dir=var_dir, port=port, bank_origin=bank_origin))
    click.echo(setup.instructions)
    if no_serve:
        return
    os.environ["STEPGUARD_LOG_JSON"] = "false"
    if not with_bank:
        _serve(setup.settings, migrate_first=False)
        return
    _serve_with_bank(setup, var_dir=var_dir, bank_port=bank_port)


def _serve_with_bank(setup: Any, *, var_dir: Path, bank_port: int) -> None:
    from stepguard.demo.bank.runner import BankStartError, DemoBank

    settings = setup.settings
    # Workers build their settings from the environment: hand them the pages' settings too.
    os.environ["STEPGUARD_PUBLIC_URL"] = settings.public_url
    os.environ["STEPGUARD_RETURN_TO_ORIGINS"] = json.dumps(settings.return_to_origins)
    if settings.webauthn_origins is not None:  # else derived from public_url, as above
        os.environ["STEPGUARD_WEBAUTHN_ORIGINS"] = json.dumps(settings.webauthn_origins)
    bank = DemoBank.prepare(
        port=bank_port,
        stepguard_url=f"http://{settings.host}:{settings.port}",
        stepguard_public_url=settings.public_url,
        api_key=setup.api_key,
    )
    program = os.path.relpath(sys.argv[0])  # .venv/bin/stepguard under `make demo`
    program = Path(sys.argv[0]).name if program.startswith("..") else program
    demo_code = f"{program} demo-code --var {var_dir}"
    try:
        with bank.running():
            click.echo(bank.instructions(demo_code=demo_code))
            _serve(settings, migrate_first=False)
    except BankStartError as error:
        raise click.ClickException(str(error)) from None


@main.command("demo-code")
@click.option(
    "--var", "var_dir", type=click.Path(path_type=Path), default=Path("var"), show_default=True
)
def demo_code(var_dir: Path) -> None:
    """Print the demo subject's current TOTP code (what an authenticator app would show)."""
    from stepguard.demo.seed import current_demo_code

    click.echo(current_demo_code(var_dir))


# --- subjects: passwords for sign-in on StepGuard (docs/login.md) ------------------------


@main.group()
def subjects() -> None:
    """The subjects (users) StepGuard knows."""


@subjects.command("set-password")
@click.argument("subject_id")
@click.option(
    "--stdin",
    "from_stdin",
    is_flag=True,
    help="Read the password from the first line of standard input (for scripts).",
)
def subjects_set_password(subject_id: str, from_stdin: bool) -> None:
    """Set SUBJECT_ID's password for /login. Prompted for (twice, hidden), or read from
    standard input; never taken from the command line."""
    from stepguard.bootstrap import login_service
    from stepguard.core.secret import Secret

    if from_stdin or not sys.stdin.isatty():
        line = sys.stdin.readline()
        password = line[:-1] if line.endswith("\n") else line
        password = password.removesuffix("\r")
    else:
        password = click.prompt(
            "New password", hide_input=True, confirmation_prompt=True, show_default=False
        )
    if not password:
        raise click.ClickException("no password given")

    async def action(runtime: Any) -> Any:
        login = login_service(runtime.settings, runtime)
        await login.set_password(subject_id, Secret(password), actor="cli")

    _run(_with_runtime(action))
    click.echo("password set", err=True)


# --- OpenID Connect provider (docs/oidc.md) -------------------------------------------------


@main.group()
def oidc() -> None:
    """The OpenID Connect provider: clients and signing keys."""


@oidc.group("clients")
def oidc_clients() -> None:
    """Relying parties allowed to sign users in through StepGuard."""


@oidc_clients.command("add")
@click.option("--name", required=True, help="Shown to users on the consent page.")
@click.option("--redirect-uri", "redirect_uris", multiple=True, required=True)
@click.option("--post-logout-redirect-uri", "logout_uris", multiple=True)
@click.option("--client-id", default=None, help="Default: a random id.")
@click.option("--public", is_flag=True, help="No secret (PKCE only), e.g. a SPA or CLI.")
@click.option("--refresh-tokens", is_flag=True, help="Issue refresh tokens without offline_access.")
@click.option("--consent-required", is_flag=True, help="Ask the user before issuing.")
@click.option("--audience", default=None, help="Access tokens' aud (default: the client id).")
def oidc_clients_add(
    name: str,
    redirect_uris: tuple[str, ...],
    logout_uris: tuple[str, ...],
    client_id: str | None,
    public: bool,
    refresh_tokens: bool,
    consent_required: bool,
    audience: str | None,
) -> None:
    """Register a client; prints its id and (confidential clients) its secret, shown once."""
    from stepguard.core.errors import StepGuardError

    async def action(runtime: Any) -> Any:
        return await runtime.oidc.add_client(
            name=name,
            client_id=client_id,
            redirect_uris=redirect_uris,
            post_logout_redirect_uris=logout_uris,
            public=public,
            refresh_tokens=refresh_tokens,
            consent_required=consent_required,
            audience=audience,
            actor="cli",
        )

    try:
        created = _run(_with_runtime(action))
    except StepGuardError as error:
        raise click.ClickException(error.message) from None
    click.echo(f"client_id:     {created.client.id}")
    if created.secret is not None:
        click.echo(f"client_secret: {created.secret.reveal()}")


@oidc_clients.command("list")
def oidc_clients_list() -> None:
    """List clients (never their secrets)."""

    async def action(runtime: Any) -> Any:
        return await runtime.oidc.list_clients()

    for client in _run(_with_runtime(action)):
        kind = "public" if client.public else "confidential"
        click.echo(f"{client.id}\t{client.name}\t{kind}\t{' '.join(client.redirect_uris)}")


@oidc_clients.command("remove")
@click.argument("client_id")
def oidc_clients_remove(client_id: str) -> None:
    """Remove a client (its codes and refresh tokens stop working)."""
    from stepguard.core.errors import NotFoundError

    async def action(runtime: Any) -> Any:
        await runtime.oidc.remove_client(client_id, actor="cli")

    try:
        _run(_with_runtime(action))
    except NotFoundError:
        raise click.ClickException("no such client") from None
    click.echo("removed")


@oidc.group("keys")
def oidc_keys() -> None:
    """The ID and access token signing keys."""


@oidc_keys.command("rotate")
@click.option("--alg", type=click.Choice(["ES256", "RS256"]), default=None)
def oidc_keys_rotate(alg: str | None) -> None:
    """Create a new signing key (used at once); keys whose tokens have all expired are
    retired from the JWKS."""

    async def action(runtime: Any) -> Any:
        return await runtime.oidc.rotate_keys(alg=alg, actor="cli")

    key = _run(_with_runtime(action))
    click.echo(f"kid: {key.kid} ({key.alg})")
