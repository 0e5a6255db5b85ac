"""Seed the demo store: a subject with TOTP and recovery codes, an API key, a session.

It goes through the same use cases as the API (enrollment, a real step-up to add the second
factor), so the demo shows the real flows. The demo database is recreated on every run.
"""

from __future__ import annotations

import base64
import json
import secrets
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.storage import migrate
from stepguard.bootstrap import build_runtime, login_service, pages_config, public_url
from stepguard.core.assurance import FactorType
from stepguard.core.factors.totp import TotpSpec, code_at_step, current_code, totp_step
from stepguard.core.model import TotpParameters
from stepguard.core.secret import Secret
from stepguard.service.decisions import DecisionRequest
from stepguard.settings import Settings

POLICY_FILE = Path(__file__).with_name("policy.yaml")
SUBJECT = "alice"


@dataclass(frozen=True, slots=True, kw_only=True)
class DemoSetup:
    settings: Settings
    instructions: str
    api_key: str = field(default="", repr=False)  # for the demo bank (stepguard.demo.bank)


def _reset(var_dir: Path) -> Path:
    var_dir.mkdir(parents=True, exist_ok=True)
    database = var_dir / "demo.db"
    for suffix in ("", "-wal", "-shm", "-journal"):
        Path(f"{database}{suffix}").unlink(missing_ok=True)
    return database


async def prepare_demo(*, var_dir: Path, port: int, bank_origin: str | None = None) -> DemoSetup:
    """Seed a fresh demo store. With ``bank_origin`` (the demo bank's ``http://localhost:N``),
    the pages are served at ``http://localhost:{port}`` and may send users back to the bank."""
    database = _reset(var_dir)
    bank: dict[str, object] = {}
    if bank_origin is not None:
        bank = {"public_url": f"http://localhost:{port}", "return_to_origins": [bank_origin]}
    settings = Settings(
        database_url=f"sqlite+aiosqlite:///{database.resolve()}",
        policy_file=POLICY_FILE,
        secret_keys=[SecretBox.generate_key()],  # type: ignore[list-item]  # coerced to SecretStr
        port=port,
        log_json=False,
        # public_url defaults to http://localhost:{port}, and the WebAuthn relying party (rp
        # id "localhost", that origin) derives from it: browsers treat http://localhost as a
        # secure context, so passkeys work there (never on 127.0.0.1: no IP rp ids).
        **bank,  # type: ignore[arg-type]  # public_url, return_to_origins
    )
    await migrate(settings.database_url)
    runtime = build_runtime(settings)
    services = runtime.services
    try:
        api_key = await services.api_keys.create("demo")
        await services.subjects.put(
            SUBJECT, email="alice@example.com", phone=None, groups=("customers",), actor=None
        )
        # Recovery codes first: the first factor needs no step-up.
        recovery = await services.factors.enroll(
            SUBJECT,
            factor_type=FactorType.RECOVERY_CODE,
            label="",
            session_id=None,
            totp=None,
            actor=None,
        )
        # Adding TOTP now needs a fresh step-up with an existing factor, as in the API.
        session, _ = await services.sessions.create(
            subject_id=SUBJECT,
            amr=["pwd"],
            ip="203.0.113.7",
            user_agent="demo",
            ttl_seconds=None,
            actor=None,
        )
        gate = await services.decisions.decide(
            DecisionRequest(session_id=session.id, action="stepguard.factors.manage", context={}),
            actor=None,
        )
        assert gate.challenge is not None
        used_code = recovery.recovery_codes[0].reveal()
        await services.verification.verify(
            gate.challenge.id, factor_id=recovery.factor.id, code=used_code, actor=None
        )
        totp = await services.factors.enroll(
            SUBJECT,
            factor_type=FactorType.TOTP,
            label="Phone",
            session_id=session.id,
            totp=None,
            actor=None,
        )
        assert totp.factor.secret is not None
        assert totp.otpauth_uri is not None
        secret = totp.factor.secret.reveal()
        spec = TotpSpec()
        now = runtime.services.deps.clock.now()
        # Confirm with the previous step's code (inside the window), so the code the reader's
        # authenticator shows right now is still unused.
        await services.factors.confirm(
            SUBJECT,
            totp.factor.id,
            code=code_at_step(secret, spec, totp_step(spec, now) - 1),
            session_id=session.id,
            actor=None,
        )
        # The demo session for the reader starts with a password only.
        reader_session, _ = await services.sessions.create(
            subject_id=SUBJECT,
            amr=["pwd"],
            ip="203.0.113.7",
            user_agent="curl",
            ttl_seconds=None,
            actor=None,
        )
        # A password for signing in on StepGuard itself (/login, and the OIDC provider).
        password = f"demo-{secrets.token_urlsafe(9)}"
        await login_service(settings, runtime).set_password(SUBJECT, Secret(password), actor="demo")
        account_link = await services.pages.account_link(reader_session.id, actor=None)
        account_url = pages_config(settings).page_url(
            "/account/factors", account_link.token.reveal()
        )
    finally:
        await runtime.store.close()

    (var_dir / "demo.json").write_text(
        json.dumps(
            {
                "totp_secret": base64.b32encode(secret).decode("ascii"),
                "algorithm": spec.algorithm.value,
                "digits": spec.digits,
                "period": spec.period,
            }
        ),
        encoding="utf-8",
    )
    base = public_url(settings)
    codes = "\n".join(f"      {code.reveal()}" for code in recovery.recovery_codes[1:])
    instructions = f"""
StepGuard demo (SQLite at {database}, policy {POLICY_FILE})

  API key        {api_key.token.reveal()}
  Subject        {SUBJECT} (TOTP factor {totp.factor.id})
  TOTP URI       {totp.otpauth_uri.reveal()}
  Recovery codes (factor {recovery.factor.id}; the seed used one to add TOTP):
{codes}
  A session      {reader_session.id} (password only)
  Password       {password} (alice@example.com, for {base}/login)

Try it in another terminal:

  export SG={base} KEY='{api_key.token.reveal()}' SES={reader_session.id}
  H=(-H "Authorization: Bearer $KEY" -H 'content-type: application/json')

  # Viewing the account is allowed:
  curl -s "${{H[@]}}" $SG/v1/decisions -d '{{"session_id":"'$SES'","action":"account.view"}}'

  # A EUR 2,500 transfer needs a step-up bound to exactly this transaction:
  curl -s "${{H[@]}}" $SG/v1/decisions -d '{{"session_id":"'$SES'","action":"payments.transfer",
    "context":{{"amount":2500,"currency":"EUR","payee":"ACME GmbH"}}}}'

  # Answer the challenge with the current code (what the authenticator app shows):
  CHL=<challenge id from above>
  curl -s "${{H[@]}}" $SG/v1/challenges/$CHL/verifications \\
    -d '{{"factor_id":"{totp.factor.id}","code":"'$(.venv/bin/stepguard demo-code)'"}}'

  # Retry the transfer with the grant: allowed once; the same grant for 10000 is not.
  curl -s "${{H[@]}}" $SG/v1/decisions -d '{{"session_id":"'$SES'","action":"payments.transfer",
    "context":{{"amount":2500,"currency":"EUR","payee":"ACME GmbH"}},"grant":"<grant>"}}'

  # The same step-up in a browser: open the challenge's "page_url" from the step-up answer
  # (append &return_to=... for an origin in STEPGUARD_RETURN_TO_ORIGINS), enter the code, then
  # redeem it without a grant:  ... "context":{{...}},"challenge_id":"'$CHL'"

  # The account page (add TOTP, recovery codes, remove factors). This link works once, for
  # five minutes from the start of the demo:
  #   {account_url}
  # A fresh one:
  curl -s "${{H[@]}}" $SG/v1/sessions/$SES/page-links -d '{{"page":"account"}}'

  # Passkeys (open the pages on {base}, not 127.0.0.1: WebAuthn needs a host name):
  #  1. Open the account link above (or a fresh one) in your browser.
  #  2. Click "Add a passkey"; StepGuard first asks you to confirm it's you: enter the
  #     current TOTP code (.venv/bin/stepguard demo-code, or your authenticator app).
  #  3. Click "Add a passkey" again and follow your browser (Touch ID, Windows Hello, your
  #     phone, or a security key with "Add a security key").
  #  4. A database update needs a passkey (acr phr), every time, bound to the request:
  curl -s "${{H[@]}}" $SG/v1/decisions -d '{{"session_id":"'$SES'","action":"database.update",
    "context":{{"migration":"0042"}}}}'
  #     open its challenge's "page_url", click "Use your passkey or security key", then
  #     redeem it:  ... "action":"database.update","context":{{...}},"challenge_id":"'$CHL'"

  # Sign in on StepGuard itself: {base}/login as alice@example.com with {password}
  # (then add a passkey on the account page, and sign in with it next time).

  # StepGuard as an OpenID Provider for your apps (docs/oidc.md): register a client
  curl -s "${{H[@]}}" $SG/v1/oidc/clients \\
    -d '{{"name":"My app","redirect_uris":["http://localhost:3000/callback"]}}'
  # then point any OIDC client at {base} (discovery: /.well-known/openid-configuration)
  # and ask for acr_values=phr: StepGuard signs alice in and steps her up with a passkey.

  # The API's schema: {base}/docs   Metrics: {base}/metrics

From Python:

  from stepguard.sdk import StepGuardClient
  with StepGuardClient("{base}", "{api_key.token.reveal()}") as sg:
      d = sg.decide(session_id="{reader_session.id}", action="payments.transfer",
                    context={{"amount": 2500, "currency": "EUR", "payee": "ACME GmbH"}})
      print(d.decision, d.rule, d.www_authenticate)
"""
    return DemoSetup(settings=settings, instructions=instructions, api_key=api_key.token.reveal())


def current_demo_code(var_dir: Path, *, now: datetime | None = None) -> str:
    from stepguard.adapters.system import SystemClock

    data = json.loads((var_dir / "demo.json").read_text(encoding="utf-8"))
    spec = TotpSpec.from_parameters(
        TotpParameters(algorithm=data["algorithm"], digits=data["digits"], period=data["period"])
    )
    secret = base64.b32decode(data["totp_secret"])
    return current_code(secret, spec, now or SystemClock().now())
