"""Fixtures for the tests against a real ``stepguard serve`` (uvicorn, 2 worker processes).

Starting a server takes seconds, so each backend's server starts on first use and serves the
whole test session; every test works with its own subjects, so tests stay independent. When
a test fails, the output of the servers it used is added to its report.
"""

from __future__ import annotations

from collections.abc import Generator, Iterator
from contextlib import ExitStack

import httpx
import pytest
from playwright.sync_api import Browser

from support.browser import running_browser
from support.server import LiveServer, database, live_server

BACKEND_PARAMS = [
    pytest.param("sqlite", id="sqlite"),
    pytest.param("postgres", id="postgres", marks=pytest.mark.postgres),
]

_LOG_TAIL = 200  # lines


class LiveServers:
    """One server per backend, started on first use and stopped with :meth:`close`.

    A backend that could not start (PostgreSQL absent: a skip, or a failure in CI; a server
    that did not come up) is not tried again: its later tests get the same outcome at once.
    """

    def __init__(self, tmp_path_factory: pytest.TempPathFactory) -> None:
        self._tmp = tmp_path_factory
        self._stack = ExitStack()
        self._running: dict[str, LiveServer] = {}
        self._failed: dict[str, BaseException] = {}

    def get(self, backend: str) -> LiveServer:
        if backend in self._failed:
            raise self._failed[backend]
        if backend not in self._running:
            workdir = self._tmp.mktemp(f"live-{backend}")
            try:
                with ExitStack() as stack:
                    url = stack.enter_context(database(backend, workdir))
                    running = stack.enter_context(live_server(workdir, database_url=url))
                    self._stack.push(stack.pop_all())
            except BaseException as error:
                self._failed[backend] = error
                raise
            self._running[backend] = running
        return self._running[backend]

    def close(self) -> None:
        self._stack.close()


@pytest.fixture(scope="session")
def live_servers(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServers]:
    servers = LiveServers(tmp_path_factory)
    try:
        yield servers
    finally:
        servers.close()


@pytest.fixture(params=BACKEND_PARAMS)
def server(request: pytest.FixtureRequest, live_servers: LiveServers) -> LiveServer:
    """A live server with 2 workers on SQLite or PostgreSQL (each test runs on both)."""
    return live_servers.get(str(request.param))


@pytest.fixture(scope="session")
def sqlite_server(live_servers: LiveServers) -> LiveServer:
    """The live SQLite server, for tests that do not depend on the backend."""
    return live_servers.get("sqlite")


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Headless Chromium for a module's browser tests."""
    with running_browser() as launched:
        yield launched


@pytest.fixture
def api(server: LiveServer) -> Iterator[httpx.Client]:
    """An admin API client for the test's ``server`` (a module may override ``server``)."""
    with httpx.Client(
        base_url=server.base_url,
        headers={"Authorization": f"Bearer {server.api_key}"},
        timeout=10,
    ) as client:
        yield client


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    """On failure, attach the tail of each live server's output to the report."""
    report = yield
    if report.failed:
        funcargs = getattr(item, "funcargs", {})
        for name, value in funcargs.items():
            if isinstance(value, LiveServer):
                lines = value.logs().splitlines()[-_LOG_TAIL:]
                report.sections.append(
                    (f"server output ({name}, {value.base_url})", "\n".join(lines))
                )
    return report
