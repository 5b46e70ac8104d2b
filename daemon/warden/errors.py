"""Warden's own error types, one family per layer.

Messages say what was tried on which workspace and never contain a secret; bodies
from platforms are cut short so that payloads do not end up in logs.
"""

from __future__ import annotations

from datetime import timedelta

from warden.logging import REDACTOR

BODY_EXCERPT = 256


def excerpt(text: str, limit: int = BODY_EXCERPT) -> str:
    """A platform's answer, cut so that logs stay small."""
    text = text.strip()
    return text if len(text) <= limit else text[:limit] + "…"


class WardenError(Exception):
    """The root of Warden's errors."""


class ProviderError(WardenError):
    """A platform call failed in a way that retrying will not fix."""

    def __init__(self, provider: str, message: str, *, status: int | None = None) -> None:
        # A platform may echo what it was sent: mask every secret we know of, here, once,
        # before the message reaches a log, an event or the store.
        super().__init__(REDACTOR.mask_text(f"{provider}: {message}"))
        self.provider = provider
        self.status = status


class ProviderUnavailable(ProviderError):
    """A transient failure (5xx, 429, timeout, connection): retry later."""

    def __init__(
        self,
        provider: str,
        message: str,
        *,
        status: int | None = None,
        retry_after: timedelta | None = None,
        held: bool = False,
    ) -> None:
        super().__init__(provider, message, status=status)
        self.retry_after = retry_after
        # Not sent at all: the platform's Retry-After still holds this provider's requests.
        self.held = held


class ProviderRejected(ProviderError):
    """The platform refused the request (4xx): do not retry the same request."""


class Unauthorized(ProviderRejected):
    """The credentials were refused (401) or lack a permission, scope or plan (403)."""

    def __init__(
        self, provider: str, message: str, *, status: int, missing: str | None = None
    ) -> None:
        super().__init__(provider, message, status=status)
        self.missing = missing  # the scope or plan capability the platform named


class WorkspaceGone(ProviderRejected):
    """The workspace no longer exists (404)."""


class Conflict(ProviderRejected):
    """The platform says the workspace is busy with another operation (409)."""


class BadAnswer(ProviderError):
    """The platform answered with something Warden cannot trust (malformed, unknown)."""


class RedirectRefused(BadAnswer):
    """The platform answered 3xx: never followed, so the credentials reach no other origin."""


class AnswerTooLarge(BadAnswer):
    """The answer's body was larger than the provider's cap: reading stopped at the cap."""


class SyncFailed(ProviderRejected):
    """A data-safety step before a stop (Strongly's sync) failed: the stop must not happen."""


class PlanLimited(Unauthorized):
    """The platform's plan lacks a capability (a 403 that no retry will fix)."""
