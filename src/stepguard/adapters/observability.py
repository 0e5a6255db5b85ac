"""Prometheus metrics and structured logs. Nothing here ever receives a secret."""

from __future__ import annotations

import logging
import sys
from weakref import WeakKeyDictionary

import structlog
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    disable_created_metrics,
    generate_latest,
)


class Metrics:
    """One registry per app, so tests and several apps in a process never collide.

    With several worker processes each process reports its own counters (scrape through a
    per-process port or sum in Prometheus); see ARCHITECTURE.md.
    """

    def __init__(self) -> None:
        # The *_created series only add noise to counters. (The function is untyped upstream.)
        disable_created_metrics()  # type: ignore[no-untyped-call]
        self.registry = CollectorRegistry()
        self.decisions = Counter(
            "stepguard_decisions",
            "Decisions by outcome and rule.",
            ["outcome", "rule"],
            registry=self.registry,
        )
        self.verifications = Counter(
            "stepguard_verifications",
            "Challenge verifications by outcome and factor type.",
            ["outcome", "factor_type"],
            registry=self.registry,
        )
        self.fail_closed = Counter(
            "stepguard_fail_closed",
            "Times a component failed and the decision failed closed.",
            ["where"],
            registry=self.registry,
        )
        self.oidc = Counter(
            "stepguard_oidc_events",
            "OpenID Connect provider events (authorize, code, token, refresh, logout) by outcome.",
            ["event", "outcome"],
            registry=self.registry,
        )

    def render(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class MetricsObserver:
    """The service layer's ``Observer``: counts and logs what happened."""

    def __init__(self, metrics: Metrics) -> None:
        self._metrics = metrics
        self._log = structlog.get_logger("stepguard")

    def decision(self, *, outcome: str, rule: str) -> None:
        self._metrics.decisions.labels(outcome=outcome, rule=rule).inc()

    def oidc(self, *, event: str, outcome: str) -> None:
        self._metrics.oidc.labels(event=event, outcome=outcome).inc()

    def verification(self, *, outcome: str, factor_type: str | None) -> None:
        self._metrics.verifications.labels(
            outcome=outcome, factor_type=factor_type or "unknown"
        ).inc()

    def fail_closed(self, *, where: str, error: BaseException) -> None:
        self._metrics.fail_closed.labels(where=where).inc()
        # The error's type and message only: messages never carry secrets by construction.
        self._log.warning(
            "failed_closed", where=where, error=type(error).__name__, detail=str(error)[:200]
        )


def configure_logging(*, level: str = "info", json: bool = True) -> None:
    """Structured logs on stderr: JSON lines in production, readable in a terminal."""
    renderer: structlog.types.Processor = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer()
    )
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping().get(level.upper(), logging.INFO)
        ),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )


_LOGIN_COUNTERS: WeakKeyDictionary[Metrics, Counter] = WeakKeyDictionary()


class LoginMetrics:
    """Sign-ins on StepGuard (docs/login.md), by method and outcome, on the app's registry."""

    def __init__(self, metrics: Metrics) -> None:
        # One counter per registry, however many apps are built over the same runtime.
        counter = _LOGIN_COUNTERS.get(metrics)
        if counter is None:
            counter = Counter(
                "stepguard_logins",
                "Sign-ins on StepGuard by method (password, passkey) and outcome "
                "(succeeded, failed, locked).",
                ["method", "outcome"],
                registry=metrics.registry,
            )
            _LOGIN_COUNTERS[metrics] = counter
        self._logins = counter

    def __call__(self, method: str, outcome: str) -> None:
        self._logins.labels(method=method, outcome=outcome).inc()
