"""The HTTP adapter (FastAPI): API v1, health, metrics. HTTP status codes live here only."""

from stepguard.adapters.web.app import build_app

__all__ = ["build_app"]
