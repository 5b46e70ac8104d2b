"""Shared fixtures: a movable clock, a clean environment, the PostgreSQL URL."""

from __future__ import annotations

import os
import sys
from datetime import UTC, datetime

import pytest

from warden.clock import ManualClock
from warden.logging import configure_logging

START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)  # a Tuesday, in office hours in Berlin
POSTGRES_URL = os.environ.get(
    "WARDEN_TEST_POSTGRES_URL", "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
)


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
