"""Retries honour Retry-After and give up on refusals; the notify protocol reaches a socket."""

from __future__ import annotations

import math
import random
import socket
from datetime import UTC, datetime, timedelta
from pathlib import Path

from warden.retry import ACTIONS, Backoff, CircuitBreaker
from warden.sdnotify import Notifier

NOW = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


def test_backoff_doubles_from_its_base_never_sooner_and_caps():
    backoff = Backoff(base=timedelta(seconds=30), cap=timedelta(hours=1), jitter=0.2)
    rng = random.Random(1)
    for failures in range(1, 20):
        step = min(timedelta(seconds=30) * 2 ** (failures - 1), timedelta(hours=1))
        wait = backoff.delay(failures, rng=rng)
        assert step <= wait <= min(step * 1.2, timedelta(hours=1))


def test_backoff_waits_at_least_what_retry_after_asks():
    backoff = Backoff(base=timedelta(seconds=5), cap=timedelta(minutes=30))
    assert backoff.delay(1, timedelta(minutes=7)) == timedelta(minutes=7)
    assert backoff.delay(1, timedelta(seconds=1)) >= timedelta(seconds=5)


def test_attempts_over_time_grow_as_the_log_of_the_time():
    """What the backoff promises an operator: about log2(T / 30 s) + 1 attempts in T."""
    rng = random.Random(7)
    for hours in (1, 6, 24):
        elapsed, attempts = timedelta(0), 0
        while elapsed <= timedelta(hours=hours):
            attempts += 1
            elapsed += ACTIONS.delay(attempts, rng=rng)
        bound = math.log2(timedelta(hours=hours) / timedelta(seconds=30)) + 1
        capped = max(0, hours - 1)  # past the cap, one an hour
        assert attempts <= math.ceil(bound) + capped


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


def test_a_notify_socket_nobody_reads_never_blocks_the_sender(tmp_path: Path) -> None:
    """A full datagram queue drops the message: the daemon's loop must not freeze."""
    path = tmp_path / "notify"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as listener:
        listener.bind(str(path))  # bound, never read
        notifier = Notifier({"NOTIFY_SOCKET": str(path)})
        sent = [notifier.watchdog() for _ in range(5000)]
    assert sent[0] is True
    assert sent[-1] is False  # the queue filled up: dropped, and the call returned
