"""Standard Webhooks signatures for the generic webhook sink.

The scheme (https://www.standardwebhooks.com): three headers, `webhook-id` (the
event's id, the same on every retry so receivers de-duplicate), `webhook-timestamp`
(integer seconds of this attempt) and `webhook-signature: v1,<base64 HMAC-SHA256 of
"{id}.{timestamp}.{body}">`, keyed by the secret given as `whsec_<base64>`.

This module owns the secret's format (strictly: the library's reader accepts any
text and short keys) and hands the signature itself to `standardwebhooks`, the
scheme's reference implementation that receivers verify with. It is pure and keeps
the key out of every repr and message.
"""

from __future__ import annotations

import base64
import binascii
import math
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Final

from standardwebhooks import Webhook

SECRET_PREFIX: Final = "whsec_"  # noqa: S105 - the format's prefix, not a secret
MIN_KEY_BYTES: Final = 16  # the scheme asks for 24 to 64; shorter keys are too weak


@dataclass(frozen=True, slots=True)
class SigningSecret:
    """A Standard Webhooks key. `repr()` never shows it."""

    key: bytes = field(repr=False)

    @classmethod
    def parse(cls, text: str) -> SigningSecret:
        """Read `whsec_<base64>`; ValueError (without the secret) when it is not that."""
        if not text.startswith(SECRET_PREFIX):
            raise ValueError("a webhook secret must look like whsec_<base64>")
        encoded = text.removeprefix(SECRET_PREFIX)
        try:
            key = base64.b64decode(encoded + "=" * (-len(encoded) % 4), validate=True)
        except (binascii.Error, ValueError):
            raise ValueError("a webhook secret must be whsec_ followed by base64") from None
        if len(key) < MIN_KEY_BYTES:
            raise ValueError(f"a webhook secret needs at least {MIN_KEY_BYTES} bytes of key")
        return cls(key)

    @classmethod
    def generate(cls) -> SigningSecret:
        """A fresh random key (32 bytes), for docs, tests and `warden` helpers."""
        return cls(secrets.token_bytes(32))

    def text(self) -> str:
        """The secret as receivers configure it: `whsec_<base64>`."""
        return SECRET_PREFIX + base64.b64encode(self.key).decode("ascii")


def timestamp_of(now: datetime) -> int:
    """Whole seconds since the epoch, as the `webhook-timestamp` header carries them."""
    return math.floor(now.timestamp())


def signature(secret: SigningSecret, *, msg_id: str, timestamp: int, body: bytes) -> str:
    """`v1,<base64 HMAC-SHA256 of "{msg_id}.{timestamp}.{body}">`, by the library."""
    return Webhook(secret.key).sign(msg_id, datetime.fromtimestamp(timestamp, UTC), body)


def webhook_headers(
    secret: SigningSecret | None, *, msg_id: str, now: datetime, body: bytes
) -> Mapping[str, str]:
    """The three Standard Webhooks headers for one attempt; unsigned without a secret."""
    timestamp = timestamp_of(now)
    headers = {"webhook-id": msg_id, "webhook-timestamp": str(timestamp)}
    if secret is not None:
        headers["webhook-signature"] = signature(
            secret, msg_id=msg_id, timestamp=timestamp, body=body
        )
    return headers
