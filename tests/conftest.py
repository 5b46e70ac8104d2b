"""Shared fixtures: a movable clock, a clean environment, the PostgreSQL URL."""

from __future__ import annotations

import os
import signal
import socket
import sys
from datetime import UTC, datetime
from functools import cache

import pytest
from sqlalchemy.engine import make_url

from warden.clock import ManualClock
from warden.logging import configure_logging

START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday, in office hours in Berlin
# The PostgreSQL tests' server. `make test` starts a throwaway one when none answers
# here and PostgreSQL's server binaries are installed (.ci/pg-throwaway).
POSTGRES_URL = os.environ.get(
    "WARDEN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


def pytest_configure(config: pytest.Config) -> None:
    """The daemons and commands the tests start hear Ctrl-C (SIGINT), as they would
    from a terminal: a shell that runs `make test` in the background ignores SIGINT,
    children inherit an ignored signal, and a child told to stop by SIGINT would then
    run on, its test waiting for it. A handled signal is reset to its default in a
    child, so the tests' own process handles it as Python does by default."""
    if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)


@cache
def _postgres_unreachable() -> str | None:
    """Why the PostgreSQL tests cannot run, or None: asked once, by connecting."""
    url = make_url(POSTGRES_URL)
    try:
        socket.create_connection((url.host or "127.0.0.1", url.port or 5432), timeout=3).close()
    except OSError as e:
        return (
            f"PostgreSQL at {url.render_as_string(hide_password=True)} does not answer ({e}). "
            "`make test` starts a throwaway server when PostgreSQL's server binaries are "
            "installed (apt-get install postgresql); or set WARDEN_TEST_POSTGRES_URL."
        )
    return None


def pytest_runtest_setup(item: pytest.Item) -> None:
    """A PostgreSQL test fails (never skips) without a server, saying how to get one."""
    if item.get_closest_marker("postgres") and (problem := _postgres_unreachable()):
        pytest.fail(problem, pytrace=False)


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture(autouse=True)
def _logging_to_this_tests_stream() -> None:
    """Each test logs to its own stderr: a command run by an earlier test (`warden spend`
    under capsys, say) would otherwise leave structlog writing to a stream since closed."""
    configure_logging(level="info", fmt="console", stream=sys.stderr)


@pytest.fixture(autouse=True)
def _clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Each test starts without WARDEN_* variables or systemd credentials leaking in."""
    for key in list(os.environ):
        if key.startswith("WARDEN_") and key != "WARDEN_TEST_POSTGRES_URL":
            monkeypatch.delenv(key)
    monkeypatch.delenv("CREDENTIALS_DIRECTORY", raising=False)
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
