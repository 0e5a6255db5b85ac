"""The composition root: the one place that builds the object graph from settings.

Nothing else constructs adapters. ``create_app`` is the ASGI factory that ``stepguard serve``
hands to uvicorn (each worker process calls it once).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import random
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit
from weakref import WeakKeyDictionary

import structlog
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from fastapi import FastAPI
from prometheus_client import Counter

from stepguard.adapters.crypto import SecretBox
from stepguard.adapters.delivery import (
    ConsoleSender,
    Renderer,
    SmtpEmailSender,
    SmtpSecurity,
    TwilioSmsSender,
    WebhookSmsSender,
)
from stepguard.adapters.observability import (
    LoginMetrics,
    Metrics,
    MetricsObserver,
    configure_logging,
)
from stepguard.adapters.passwords import Argon2Hasher
from stepguard.adapters.storage import SqlStore
from stepguard.adapters.system import SystemClock, SystemRng
from stepguard.adapters.upstream import HttpUpstreamClient
from stepguard.adapters.web import build_app
from stepguard.adapters.web.app import install_login
from stepguard.adapters.web.forward_auth import ForwardAuthConfig
from stepguard.adapters.web.pages import PagesConfig
from stepguard.adapters.web.upstream import upstream_router
from stepguard.core.assurance import AssuranceLevel, AuthMethod
from stepguard.core.errors import ConfigurationError, InvalidRequestError, PolicyError
from stepguard.core.factors.oob import Channel
from stepguard.core.factors.webauthn import RelyingParty
from stepguard.core.lockout import LockoutPolicy
from stepguard.core.passwords import HashProfile, IpLimitPolicy, PasswordPolicy
from stepguard.core.policy.loader import load_policy
from stepguard.core.policy.model import CompiledPolicy
from stepguard.core.ports import Rng
from stepguard.core.risk import LevelThresholds, RiskLevel
from stepguard.core.risk.engine import RiskConfig, RiskModel
from stepguard.core.secret import Secret
from stepguard.core.upstream import UpstreamConfig
from stepguard.service.container import Services
from stepguard.service.deps import Deps, PolicyHolder, ServiceConfig
from stepguard.service.login import LoginConfig, LoginService
from stepguard.service.oidc import OidcService
from stepguard.service.oidc_ports import OidcConfig
from stepguard.service.outbound import DeliveryConfig, Outbound, SendLimit
from stepguard.service.ports import Clock, EmailSender, RiskAssessor, SmsSender
from stepguard.service.push_ports import PushConfig, PushPorts
from stepguard.service.risk import EngineSettings, StaticRiskAssessor
from stepguard.service.upstream import UpstreamService
from stepguard.settings import Settings

_log = structlog.get_logger("stepguard.maintenance")


def load_policy_file(path: Path) -> CompiledPolicy:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as error:
        raise PolicyError(
            f"cannot read the policy file: {error.strerror}", source=str(path)
        ) from None
    return load_policy(text, source=str(path))


def public_url(settings: Settings) -> str:
    """Where browsers reach StepGuard: ``public_url``, else ``http://localhost:{port}``.

    ``localhost``, not ``127.0.0.1``: WebAuthn refuses IP addresses as relying party ids, and
    browsers treat ``http://localhost`` as a secure context, so passkeys work out of the box."""
    return (settings.public_url or f"http://localhost:{settings.port}").rstrip("/")


def _browser_origin(url: str) -> str:
    """``scheme://host[:port]`` as a browser reports it (lower case, no default port)."""
    parts = urlsplit(url)
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    port = parts.port
    default = {"http": 80, "https": 443}.get(parts.scheme.lower())
    return f"{parts.scheme.lower()}://{host}" + (f":{port}" if port and port != default else "")


def relying_party(settings: Settings) -> RelyingParty:
    """The WebAuthn relying party; reads the attestation root files (refuses to start if one
    is unreadable or not a PEM certificate).

    Unset, the rp id is ``public_url``'s host and the origins are its origin; explicit
    settings win. Refuses to start when ``public_url``'s host is not within the rp id (the
    hosted pages could then never run a ceremony)."""
    url = public_url(settings)
    host = (urlsplit(url).hostname or "").lower()
    rp_id = settings.webauthn_rp_id if settings.webauthn_rp_id is not None else host
    origins = (
        settings.webauthn_origins
        if settings.webauthn_origins is not None
        else [_browser_origin(url)]
    )
    if host != rp_id and not host.endswith(f".{rp_id}"):
        raise ConfigurationError(
            f"public_url's host {host!r} is not within the WebAuthn rp id {rp_id!r}: set "
            "public_url to where browsers reach StepGuard (a host name within the rp id), "
            "or webauthn_rp_id to a registrable domain of that host"
        )
    roots: list[bytes] = []
    for path in settings.webauthn_attestation_roots:
        try:
            roots.append(path.read_bytes())
        except OSError as error:
            raise ConfigurationError(
                f"cannot read the WebAuthn attestation root {path}: {error.strerror}"
            ) from None
    try:
        return RelyingParty(
            rp_id=rp_id,
            rp_name=settings.webauthn_rp_name,
            origins=tuple(origins),
            timeout_seconds=settings.webauthn_timeout_seconds,
            hardware_aaguids=frozenset(settings.webauthn_hardware_aaguids),
            attestation_roots=tuple(roots),
        )
    except ValueError as error:
        raise ConfigurationError(f"{error} (public_url {url})") from None


def service_config(settings: Settings) -> ServiceConfig:
    return ServiceConfig(
        session_ttl=timedelta(seconds=settings.session_ttl_seconds),
        challenge_ttl=timedelta(seconds=settings.challenge_ttl_seconds),
        grant_ttl=timedelta(seconds=settings.grant_ttl_seconds),
        management_max_age=settings.management_max_age_seconds,
        risk_timeout_seconds=settings.risk_timeout_seconds,
        recovery_code_count=settings.recovery_code_count,
        totp_issuer=settings.totp_issuer,
        lockout=LockoutPolicy(
            max_consecutive_failures=settings.max_failed_attempts,
            base_lock_seconds=settings.lock_base_seconds,
            max_lock_seconds=settings.lock_max_seconds,
        ),
        webauthn=relying_party(settings),
        page_token_ttl=timedelta(seconds=settings.page_token_ttl_seconds),
        browser_session_ttl=timedelta(seconds=settings.browser_session_ttl_seconds),
    )


def risk_thresholds(settings: Settings) -> LevelThresholds:
    try:
        return LevelThresholds(
            medium=settings.risk_threshold_medium,
            high=settings.risk_threshold_high,
            critical=settings.risk_threshold_critical,
        )
    except ValueError as error:
        raise ConfigurationError(str(error)) from None


def engine_settings(settings: Settings) -> EngineSettings:
    config = RiskConfig(
        model=RiskModel(settings.risk_model),
        thresholds=risk_thresholds(settings),
        degraded_level=RiskLevel.parse(settings.risk_degraded_level),
        travel_max_kmh=settings.risk_travel_max_kmh,
        travel_min_km=settings.risk_travel_min_km,
    )
    return EngineSettings(
        config=config,
        history_size=settings.risk_history_size,
        cache_seconds=settings.risk_cache_seconds,
        population_cache_seconds=settings.risk_population_cache_seconds,
        source_timeout_seconds=settings.risk_source_timeout_seconds,
        velocity_window_seconds=settings.risk_velocity_window_seconds,
    )


def secret_box(settings: Settings) -> SecretBox:
    """The encryption keys for factor secrets; refuses to run without a valid one."""
    if not settings.secret_keys:
        raise ConfigurationError(
            "no encryption key: set STEPGUARD_SECRET_KEYS (create one with "
            "`stepguard secrets generate`)"
        )
    try:
        return SecretBox([key.get_secret_value() for key in settings.secret_keys])
    except ValueError as error:
        raise ConfigurationError(str(error)) from None


def risk_engine(settings: Settings, store: SqlStore, observer: MetricsObserver) -> RiskAssessor:
    """The live risk engine (or the static one when ``risk_engine`` is ``static``)."""
    if settings.risk_engine == "static":
        return StaticRiskAssessor()
    from stepguard.adapters.risk.geo import geo_locator
    from stepguard.adapters.risk.reputation import CidrLists
    from stepguard.adapters.risk.useragent import UaParser
    from stepguard.service.risk import RiskEngine

    return RiskEngine(
        store=store,
        geo=geo_locator(settings.risk_geo_databases),
        reputation=CidrLists(settings.risk_lists_dir),
        agents=UaParser(),
        settings=engine_settings(settings),
        on_error=lambda where, error: observer.fail_closed(where=where, error=error),
    )


def pages_config(settings: Settings) -> PagesConfig:
    try:
        return PagesConfig(
            public_url=public_url(settings),
            return_to_origins=tuple(settings.return_to_origins),
            webauthn_origins=relying_party(settings).origins,
        )
    except ValueError as error:
        raise ConfigurationError(f"return_to_origins or public_url: {error}") from None


def forward_auth_config(settings: Settings) -> ForwardAuthConfig:
    try:
        return ForwardAuthConfig.parse(
            settings.forward_auth_trusted_proxies, settings.forward_auth_login_url
        )
    except ValueError as error:
        raise ConfigurationError(f"forward_auth_trusted_proxies: {error}") from None


def delivery_code_key(settings: Settings) -> bytes:
    """The key of the email/SMS code HMACs, derived (HKDF-SHA256) from the current secret key.

    Rotating the secret keys invalidates codes in flight (they live at most 10 minutes).
    """
    if not settings.secret_keys:
        raise ConfigurationError("no encryption key: set STEPGUARD_SECRET_KEYS")
    raw = base64.urlsafe_b64decode(settings.secret_keys[0].get_secret_value())
    return HKDF(
        algorithm=hashes.SHA256(), length=32, salt=None, info=b"stepguard delivery codes v1"
    ).derive(raw)


def _require_dev_mode(settings: Settings, what: str) -> None:
    if not settings.dev_mode:
        raise ConfigurationError(
            f"{what} writes codes in clear text: it is allowed only with STEPGUARD_DEV_MODE=1"
        )


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _email_sender(settings: Settings, renderer: Renderer) -> EmailSender | None:
    if settings.email_backend == "console":
        _require_dev_mode(settings, "the console email sender")
        return ConsoleSender("email", path=settings.console_delivery_file, renderer=renderer)
    if settings.email_backend != "smtp":
        return None
    security = SmtpSecurity(settings.smtp_security)
    if (
        security is SmtpSecurity.NONE
        and not settings.dev_mode
        and not _is_loopback(settings.smtp_host)
    ):
        raise ConfigurationError(
            "smtp_security none (plaintext) is allowed only for a relay on the loopback "
            "interface or in dev mode"
        )
    return SmtpEmailSender(
        host=settings.smtp_host,
        port=settings.smtp_port,
        sender=settings.smtp_from,
        security=security,
        username=settings.smtp_username,
        password=(
            Secret(settings.smtp_password.get_secret_value()) if settings.smtp_password else None
        ),
        timeout_seconds=settings.smtp_timeout_seconds,
        ca_file=settings.smtp_ca_file,
        renderer=renderer,
    )


def _sms_sender(settings: Settings, renderer: Renderer) -> SmsSender | None:
    if settings.sms_backend == "console":
        _require_dev_mode(settings, "the console SMS sender")
        return ConsoleSender("sms", path=settings.console_delivery_file, renderer=renderer)
    if settings.sms_backend == "twilio":
        if settings.twilio_account_sid is None or settings.twilio_auth_token is None:
            raise ConfigurationError("the Twilio SMS sender needs an account SID and auth token")
        return TwilioSmsSender(
            account_sid=settings.twilio_account_sid,
            auth_token=Secret(settings.twilio_auth_token.get_secret_value()),
            from_number=settings.twilio_from,
            messaging_service_sid=settings.twilio_messaging_service_sid,
            base_url=settings.twilio_base_url,
            timeout_seconds=settings.sms_timeout_seconds,
            renderer=renderer,
        )
    if settings.sms_backend == "webhook":
        if settings.sms_webhook_url is None:
            raise ConfigurationError("the SMS webhook sender needs STEPGUARD_SMS_WEBHOOK_URL")
        value = settings.sms_webhook_auth_value
        return WebhookSmsSender(
            url=settings.sms_webhook_url.get_secret_value(),
            body_template=settings.sms_webhook_body_template,
            auth_header=settings.sms_webhook_auth_header,
            auth_value=Secret(value.get_secret_value()) if value else None,
            timeout_seconds=settings.sms_timeout_seconds,
            renderer=renderer,
        )
    return None


def outbound(settings: Settings) -> Outbound:
    """The email/SMS senders and the delivery configuration."""
    renderer = Renderer()
    window = timedelta(seconds=settings.delivery_limit_window_seconds)
    hour = timedelta(hours=1)
    return Outbound(
        email=_email_sender(settings, renderer),
        sms=_sms_sender(settings, renderer),
        config=DeliveryConfig(
            code_key=Secret(delivery_code_key(settings)),
            code_digits=settings.delivery_code_digits,
            code_ttl=timedelta(seconds=settings.delivery_code_ttl_seconds),
            # An SMS send may take two attempts; the senders time out on their own first.
            send_timeout_seconds=max(
                settings.smtp_timeout_seconds, 2 * settings.sms_timeout_seconds
            )
            + 1,
            per_subject=SendLimit(count=settings.delivery_limit_per_subject, window=window),
            per_destination=SendLimit(count=settings.delivery_limit_per_destination, window=window),
            global_limits={
                Channel.EMAIL: SendLimit(
                    count=settings.delivery_global_email_per_hour, window=hour
                ),
                Channel.SMS: SendLimit(count=settings.delivery_global_sms_per_hour, window=hour),
            },
            notice_limit=SendLimit(count=settings.notice_limit_per_hour, window=hour),
            issuer=settings.totp_issuer,
        ),
    )


def push_ports(settings: Settings) -> PushPorts:
    """Push approval's configuration, its Web Push sender (when a VAPID key is configured)
    and the origin describer (the risk engine's geo and user-agent sources)."""
    from stepguard.adapters.push import RiskOriginDescriber, VapidWebPushSender
    from stepguard.adapters.risk.geo import geo_locator
    from stepguard.adapters.risk.useragent import UaParser

    try:
        config = PushConfig(
            public_url=public_url(settings),
            request_ttl=timedelta(seconds=settings.push_request_ttl_seconds),
            pairing_ttl=timedelta(seconds=settings.push_pairing_ttl_seconds),
            max_outstanding=settings.push_max_outstanding,
            max_per_window=settings.push_max_per_window,
            window=timedelta(seconds=settings.push_window_seconds),
            pause_after=settings.push_pause_after,
            pause=timedelta(seconds=settings.push_pause_seconds),
            send_timeout_seconds=settings.webpush_timeout_seconds + 1,
        )
        sender = None
        if settings.webpush_vapid_private_key is not None:
            sender = VapidWebPushSender(
                private_key=Secret(settings.webpush_vapid_private_key.get_secret_value()),
                subject=settings.webpush_vapid_subject,
                endpoint_hosts=settings.webpush_endpoint_hosts,
                timeout_seconds=settings.webpush_timeout_seconds,
            )
    except ValueError as error:
        raise ConfigurationError(f"push: {error}") from None
    origins = RiskOriginDescriber(geo=geo_locator(settings.risk_geo_databases), agents=UaParser())
    return PushPorts(config=config, sender=sender, origins=origins)


@dataclass(frozen=True, slots=True, kw_only=True)
class Runtime:
    settings: Settings
    store: SqlStore
    services: Services
    metrics: Metrics
    oidc: OidcService | None = None


def build_runtime(
    settings: Settings,
    *,
    clock: Clock | None = None,
    rng: Rng | None = None,
    risk: RiskAssessor | None = None,
    policy: CompiledPolicy | None = None,
) -> Runtime:
    """Wire everything. Tests pass their own clock, risk port or policy; nothing else differs."""
    store = SqlStore(settings.database_url, secret_box=secret_box(settings))
    metrics = Metrics()
    observer = MetricsObserver(metrics)
    deps = Deps(
        store=store,
        clock=clock or SystemClock(),
        rng=rng or SystemRng(),
        policy=PolicyHolder(policy or load_policy_file(settings.policy_file)),
        risk=risk or risk_engine(settings, store, observer),
        config=service_config(settings),
        observer=observer,
        outbound=outbound(settings),
        push=push_ports(settings),
    )
    services = Services.build(
        deps,
        api_key_cache_seconds=settings.api_key_cache_seconds,
        risk_thresholds=risk_thresholds(settings),
        forward_auth_cache_seconds=settings.forward_auth_cache_seconds,
    )
    return Runtime(
        settings=settings,
        store=store,
        services=services,
        metrics=metrics,
        oidc=oidc_service(settings, services, metrics),
    )


async def _purge_periodically(runtime: Runtime) -> None:
    """Purge expired rows every ``purge_interval_seconds`` (the first run at a random point
    of the first interval, so workers started together do not purge together). A failure is
    logged and retried next time: purging is housekeeping, never on a request's path."""
    settings = runtime.settings
    interval = settings.purge_interval_seconds
    retention = timedelta(seconds=settings.purge_retention_seconds)
    delay = interval * random.uniform(0.1, 1.0)  # noqa: S311 (spreading load, not a secret)
    while True:
        await asyncio.sleep(delay)
        delay = interval
        try:
            report = await runtime.services.maintenance.purge_expired(
                retention=retention, actor="maintenance"
            )
        except Exception as error:  # housekeeping must not end the worker
            _log.warning("purge_failed", error=type(error).__name__)
            continue
        if report.total:
            _log.info("purged_expired_rows", deleted=dict(report.deleted))


def app_for(runtime: Runtime) -> FastAPI:
    settings = runtime.settings
    app = build_app(
        runtime.services,
        metrics=runtime.metrics,
        max_body_bytes=settings.max_body_bytes,
        pages=pages_config(settings),
        forward_auth=forward_auth_config(settings),
        oidc=runtime.oidc,
        flow_starts_per_minute=settings.flow_starts_per_minute,
    )
    upstreams = include_upstream_login(app, runtime)
    install_login(
        app,
        runtime.services,
        login_service(settings, runtime),
        pages=pages_config(settings),
        upstreams=[(config.label, f"/login/upstream/{name}") for name, config in upstreams.items()],
    )

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        purging = (
            asyncio.create_task(_purge_periodically(runtime))
            if settings.purge_interval_seconds > 0
            else None
        )
        yield
        if purging is not None:
            purging.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await purging
        await runtime.services.push.drain()
        await runtime.services.notifications.drain()
        await runtime.store.close()

    app.router.lifespan_context = lifespan
    return app


def create_app() -> FastAPI:
    """ASGI factory: settings from the environment and ``stepguard.yaml``."""
    settings = Settings()
    configure_logging(level=settings.log_level, json=settings.log_json)
    return app_for(build_runtime(settings))


# --- sign-in at upstream OpenID Providers (docs/upstream.md) ---------------------------------


def upstream_configs(settings: Settings) -> dict[str, UpstreamConfig]:
    """The configured upstreams, checked (refuses to start on a bad entry)."""
    configs: dict[str, UpstreamConfig] = {}
    for entry in settings.upstreams:
        where = f"upstream {entry.name}"
        if entry.name in configs:
            raise ConfigurationError(f"{where}: the name is used twice")
        if (entry.client_secret is None) == (entry.client_secret_file is None):
            raise ConfigurationError(
                f"{where}: set exactly one of client_secret, client_secret_file"
            )
        if entry.client_secret is not None:
            secret = entry.client_secret.get_secret_value()
        else:
            assert entry.client_secret_file is not None
            try:
                secret = entry.client_secret_file.read_text(encoding="utf-8").strip()
            except OSError as error:
                raise ConfigurationError(
                    f"{where}: cannot read client_secret_file: {error.strerror}"
                ) from None
        parts = urlsplit(entry.issuer)
        if parts.scheme != "https" and not _is_loopback((parts.hostname or "").lower()):
            raise ConfigurationError(f"{where}: the issuer must be https (or on loopback)")
        try:
            configs[entry.name] = UpstreamConfig(
                name=entry.name,
                label=entry.label,
                issuer=entry.issuer,
                client_id=entry.client_id,
                client_secret=Secret(secret),
                scopes=tuple(entry.scopes.split()),
                trusted_assurance=entry.trusted_assurance,
                amr_map={
                    key: tuple(AuthMethod(v) for v in values)
                    for key, values in entry.amr_map.items()
                },
                acr_map={key: AssuranceLevel.from_acr(v) for key, v in entry.acr_map.items()},
                max_level=AssuranceLevel.from_acr(entry.max_acr),
                untrusted_amr=tuple(AuthMethod(v) for v in entry.untrusted_amr),
                subject_claim=entry.subject_claim,
                create_subjects=entry.create_subjects,
                algorithms=tuple(entry.algorithms),
            )
        except (ValueError, InvalidRequestError) as error:
            raise ConfigurationError(f"{where}: {error}") from None
    return configs


_UPSTREAM_COUNTERS: WeakKeyDictionary[Metrics, Counter] = WeakKeyDictionary()


def _upstream_counter(metrics: Metrics) -> Counter:
    """The upstream sign-in counter of this registry (one per registry, however many apps
    are built on one runtime)."""
    counter = _UPSTREAM_COUNTERS.get(metrics)
    if counter is None:
        counter = Counter(
            "stepguard_upstream_logins",
            "Upstream sign-ins by upstream and outcome (started, succeeded, failed:<reason>).",
            ["upstream", "outcome"],
            registry=metrics.registry,
        )
        _UPSTREAM_COUNTERS[metrics] = counter
    return counter


def include_upstream_login(app: FastAPI, runtime: Runtime) -> dict[str, UpstreamConfig]:
    """``/login/upstream/{name}`` and its callback, for the configured upstreams (returned,
    for the sign-in page's links)."""
    settings = runtime.settings
    configs = upstream_configs(settings)
    counter = _upstream_counter(runtime.metrics)
    service = UpstreamService(
        runtime.services.deps,
        sessions=runtime.services.sessions,
        client=HttpUpstreamClient(timeout_seconds=settings.upstream_timeout_seconds),
        upstreams=configs,
        on_outcome=lambda name, outcome: counter.labels(
            upstream=name if name in configs else "unknown", outcome=outcome
        ).inc(),
    )
    app.state.upstream = service
    app.include_router(upstream_router(runtime.services, service, pages_config(settings)))
    return configs


# --- sign-in on StepGuard itself (docs/login.md) -----------------------------------------


def password_hasher(settings: Settings) -> Argon2Hasher:
    """argon2id with the configured parameters; the cheap test profile only in dev mode."""
    profile = HashProfile(settings.password_hash_profile)
    if profile is HashProfile.TEST and not settings.dev_mode:
        raise ConfigurationError(
            "password_hash_profile test (cheap hashes) is allowed only with STEPGUARD_DEV_MODE=1"
        )
    return Argon2Hasher(profile)


def login_config(settings: Settings) -> LoginConfig:
    try:
        return LoginConfig(
            policy=PasswordPolicy(min_length=settings.password_min_length),
            ip_limit=IpLimitPolicy(
                max_failures=settings.login_ip_max_failures,
                window_seconds=settings.login_ip_window_seconds,
            ),
            lockout=service_config(settings).lockout,
        )
    except ValueError as error:
        raise ConfigurationError(f"login: {error}") from None


def login_service(settings: Settings, runtime: Runtime) -> LoginService:
    """Sign-in with a password or a passkey, over the runtime's services and metrics."""
    services = runtime.services
    return LoginService(
        services.deps,
        sessions=services.sessions,
        hasher=password_hasher(settings),
        config=login_config(settings),
        on_outcome=LoginMetrics(runtime.metrics),
    )


# --- the OpenID Connect provider (docs/oidc.md) ------------------------------------------


def oidc_config(settings: Settings) -> OidcConfig:
    return OidcConfig(
        issuer=(settings.oidc_issuer or public_url(settings)).rstrip("/"),
        code_ttl_seconds=settings.oidc_code_ttl_seconds,
        pending_ttl_seconds=settings.oidc_pending_ttl_seconds,
        id_token_ttl_seconds=settings.oidc_id_token_ttl_seconds,
        access_token_ttl_seconds=settings.oidc_access_token_ttl_seconds,
        refresh_token_ttl_seconds=settings.oidc_refresh_token_ttl_seconds,
        signing_alg=settings.oidc_signing_alg,
    )


def oidc_service(settings: Settings, services: Services, metrics: Metrics) -> OidcService:
    """The OpenID Connect provider (docs/oidc.md) over the same services."""
    from stepguard.adapters.oidc import JoserfcJose

    return OidcService(
        services.deps,
        config=oidc_config(settings),
        jose=JoserfcJose(),
        decisions=services.decisions,
        pages=services.pages,
        count=lambda event, outcome: metrics.oidc.labels(event=event, outcome=outcome).inc(),
    )
