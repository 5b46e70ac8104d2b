"""Structured logging: JSON lines off a terminal, readable lines on one, secrets redacted.

Redaction is the last line of defence (SecretStr is the first): any field named like
a secret is blanked, and known secret values are masked wherever they appear in a line.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Iterable, MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

SECRET_FIELDS = frozenset(
    {
        "token",
        "api_key",
        "apikey",
        "authorization",
        "password",
        "secret",
        "routing_key",
        "coder-session-token",
        "x-api-key",
        "session_token",
        "signing_secret",
    }
)
REDACTED = "[redacted]"
MIN_SECRET_LENGTH = 4  # shorter values would mask ordinary words


class SecretRedactor:
    """A structlog processor that blanks secret fields and masks known secret values."""

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        self._values: set[str] = set()
        self.add(secrets)

    def add(self, secrets: Iterable[str]) -> None:
        self._values.update(s for s in secrets if s and len(s) >= MIN_SECRET_LENGTH)

    def __call__(self, _logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
        for key in list(event):
            if key.lower() in SECRET_FIELDS:
                event[key] = REDACTED
            else:
                event[key] = self._mask(event[key])
        return event

    def mask(self, value: Any) -> Any:
        """`value` with fields named like secrets blanked and known secret values masked."""
        return self._mask(value)

    def _mask(self, value: Any) -> Any:
        if isinstance(value, str):
            return self.mask_text(value)
        if isinstance(value, MutableMapping):
            return {
                k: REDACTED if str(k).lower() in SECRET_FIELDS else self._mask(v)
                for k, v in value.items()
            }
        if isinstance(value, list | tuple):
            return [self._mask(v) for v in value]
        return value

    def mask_text(self, text: str) -> str:
        for secret in self._values:
            if secret in text:
                text = text.replace(secret, REDACTED)
        return text


REDACTOR = SecretRedactor()  # one per process: secrets are registered as settings load


def configure_logging(
    *, level: str = "info", fmt: str = "auto", stream: TextIO | None = None
) -> None:
    """Set up structlog for the process. `fmt` is json, console or auto (console on a tty)."""
    stream = stream or sys.stderr
    use_console = fmt == "console" or (fmt == "auto" and stream.isatty())
    processors: list[Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        REDACTOR,
    ]
    renderer: Processor = (
        structlog.dev.ConsoleRenderer(colors=False)
        if use_console
        else structlog.processors.JSONRenderer(default=str)
    )
    structlog.configure(
        processors=[*processors, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(
            logging.getLevelNamesMapping()[level.upper()]
        ),
        logger_factory=structlog.PrintLoggerFactory(file=stream),
        cache_logger_on_first_use=False,
    )
