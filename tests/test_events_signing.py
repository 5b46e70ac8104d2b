"""Standard Webhooks signatures, checked by the `standardwebhooks` library."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from tests.events_rig import SECRET
from warden.events.signing import SigningSecret, signature, timestamp_of, webhook_headers

MOMENT = datetime(2026, 11, 24, 10, 0, 30, 900_000, tzinfo=UTC)


@given(
    msg_id=st.text(st.characters(min_codepoint=33, max_codepoint=126), min_size=1, max_size=40),
    body=st.text(max_size=200),
    seconds=st.integers(min_value=0, max_value=4_000_000_000),
)
def test_the_library_computes_the_same_signature(msg_id: str, body: str, seconds: int) -> None:
    secret = SigningSecret.parse(SECRET)
    moment = datetime.fromtimestamp(seconds, UTC)
    ours = signature(secret, msg_id=msg_id, timestamp=seconds, body=body.encode())
    assert ours == Webhook(SECRET).sign(msg_id, moment, body)


def test_a_signed_request_verifies_with_the_library_at_the_real_time() -> None:
    now = datetime.now(UTC)
    body = b'{"specversion":"1.0","data":{"reason":"idle \xe2\x89\xa5 2h"}}'
    headers = webhook_headers(SigningSecret.parse(SECRET), msg_id="evt-1", now=now, body=body)
    assert Webhook(SECRET).verify(body, dict(headers))["specversion"] == "1.0"
    assert headers["webhook-timestamp"] == str(timestamp_of(now))


def test_a_tampered_body_or_another_secret_fails_verification() -> None:
    now = datetime.now(UTC)
    headers = dict(webhook_headers(SigningSecret.parse(SECRET), msg_id="e", now=now, body=b"{}"))
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(b'{"x":1}', headers)
    other = SigningSecret.generate().text()
    with pytest.raises(WebhookVerificationError):
        Webhook(other).verify(b"{}", headers)


def test_the_timestamp_is_whole_seconds_of_the_attempt() -> None:
    assert timestamp_of(MOMENT) == int(MOMENT.timestamp())
    later = webhook_headers(None, msg_id="e", now=MOMENT + timedelta(minutes=3), body=b"")
    assert later == {"webhook-id": "e", "webhook-timestamp": str(timestamp_of(MOMENT) + 180)}


@pytest.mark.parametrize(
    ("text", "why"),
    [
        ("MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw", "whsec_"),
        ("whsec_not base64!", "base64"),
        ("whsec_" + base64.b64encode(b"short").decode(), "16 bytes"),
    ],
)
def test_a_secret_that_is_not_whsec_base64_is_refused(text: str, why: str) -> None:
    with pytest.raises(ValueError, match=why) as caught:
        SigningSecret.parse(text)
    assert text not in str(caught.value)


def test_a_secret_reads_back_and_never_shows() -> None:
    secret = SigningSecret.parse(SECRET)
    assert SigningSecret.parse(secret.text()) == secret
    assert "MfKQ" not in repr(secret)
    assert secret.key not in repr(secret).encode()
    unpadded = SigningSecret.parse(secret.text().rstrip("="))
    assert unpadded == secret
