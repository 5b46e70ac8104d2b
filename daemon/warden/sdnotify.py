"""The systemd notify protocol, spoken directly over $NOTIFY_SOCKET.

A datagram of `KEY=value` lines; nothing happens when not run by systemd. Small
enough that no dependency does it better.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping


class Notifier:
    """Sends READY=1, WATCHDOG=1 and STATUS= lines to systemd, if it is listening."""

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        if address.startswith("@"):  # an abstract socket
            address = "\0" + address[1:]
        self._address = address or None
        usec = env.get("WATCHDOG_USEC", "")
        self.watchdog_seconds = int(usec) / 1_000_000 if usec.isdigit() else None

    @property
    def enabled(self) -> bool:
        return self._address is not None

    def send(self, **fields: str) -> bool:
        """Send one notification; False when there is no socket or it failed.

        Never blocks: a socket whose queue is full (nobody reading it) drops the
        message rather than freezing the event loop that sent it."""
        if self._address is None:
            return False
        message = "\n".join(f"{key}={value}" for key, value in fields.items()).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                sock.setblocking(False)
                sock.connect(self._address)
                sock.send(message)
        except OSError:
            return False
        return True

    def ready(self, status: str) -> bool:
        return self.send(READY="1", STATUS=status)

    def status(self, status: str) -> bool:
        return self.send(STATUS=status)

    def watchdog(self) -> bool:
        return self.send(WATCHDOG="1")

    def stopping(self) -> bool:
        return self.send(STOPPING="1", STATUS="stopping")

    def reloading(self) -> bool:
        return self.send(RELOADING="1", STATUS="reloading policies")
