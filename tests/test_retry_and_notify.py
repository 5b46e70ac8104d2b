"""Retries honour Retry-After and give up on refusals; the notify protocol reaches a socket."""

from __future__ import annotations

import random
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from warden.errors import ProviderRejected, ProviderUnavailable
from warden.retry import Backoff, CircuitBreaker, with_retries
from warden.sdnotify import Notifier

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


async def test_retry_after_sets_the_wait_and_a_later_success_returns():
    waits: list[float] = []
    answers = [ProviderUnavailable("p", "busy", status=429, retry_after=timedelta(seconds=7)), "ok"]

    async def call():
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer

    async def sleep(seconds: float) -> None:
        waits.append(seconds)

    assert await with_retries(call, backoff=Backoff(attempts=3), sleep=sleep) == "ok"
    assert waits == [7.0]


async def test_refusals_are_not_retried():
    calls = 0

    async def call():
        nonlocal calls
        calls += 1
        raise ProviderRejected("p", "400", status=400)

    async def sleep(_seconds: float) -> None:
        raise AssertionError("a refusal must not wait for a retry")

    with pytest.raises(ProviderRejected):
        await with_retries(call, backoff=Backoff(attempts=5), sleep=sleep)
    assert calls == 1


async def test_transient_failures_give_up_after_the_attempts():
    calls = 0

    async def call():
        nonlocal calls
        calls += 1
        raise ProviderUnavailable("p", "503", status=503)

    async def sleep(_seconds: float) -> None:
        return None

    with pytest.raises(ProviderUnavailable):
        await with_retries(call, backoff=Backoff(attempts=3), sleep=sleep)
    assert calls == 3


def test_backoff_is_exponential_jittered_and_capped():
    backoff = Backoff(base=1.0, cap=5.0)
    rng = random.Random(1)
    waits = [backoff.wait(attempt, None, rng) for attempt in range(1, 8)]
    assert all(0 <= w <= 5.0 for w in waits)
    assert backoff.wait(1, timedelta(seconds=60), rng) == 5.0


def test_circuit_opens_after_repeated_failures_and_lets_one_try_after_cooldown():
    breaker = CircuitBreaker(threshold=2, cooldown=timedelta(minutes=1))
    assert not breaker.record_failure(NOW)
    assert breaker.record_failure(NOW)
    assert not breaker.allows(NOW + timedelta(seconds=30))
    assert breaker.allows(NOW + timedelta(minutes=1))
    breaker.record_success()
    assert breaker.allows(NOW)


def test_notifier_sends_ready_status_and_watchdog_to_the_socket(tmp_path: Path):
    path = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as server:
        server.bind(str(path))
        notifier = Notifier({"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "10000000"})
        assert notifier.ready("watching 1/1 providers")
        assert notifier.watchdog()
        assert server.recv(1024).decode().splitlines() == [
            "READY=1",
            "STATUS=watching 1/1 providers",
        ]
        assert server.recv(1024) == b"WATCHDOG=1"
    assert notifier.watchdog_seconds == 10.0


def test_notifier_without_systemd_does_nothing():
    assert not Notifier({}).ready("x")
