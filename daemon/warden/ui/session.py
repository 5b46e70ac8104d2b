"""The status page's login: a token typed once, then an HttpOnly, SameSite=Strict cookie.

The cookie never holds the token. It holds a signed claim (the role and an expiry),
its MAC keyed by a hash of the token that logged in: it works on every replica and
across restarts, and changing the token ends every session made with it. A session
lasts `SESSION_TTL`; logging out drops the cookie.
"""

from __future__ import annotations

import hashlib
import hmac
from datetime import datetime, timedelta
from typing import Final

from warden.events.snooze import TOKEN_VERSION, SnoozeRefused, TokenSigner, epoch_moment

COOKIE: Final = "warden_ui"
SESSION_TTL: Final = timedelta(hours=12)
_DOMAIN: Final = b"warden-ui-session."
ROLES: Final = ("read", "admin")


def _signer(token: str) -> TokenSigner:
    return TokenSigner(hashlib.sha256(b"warden-ui|" + token.encode()).digest(), _DOMAIN)


class Sessions:
    """Makes and checks session cookies for the tokens the admin API accepts."""

    def __init__(self, *, readonly_token: str | None, admin_token: str | None) -> None:
        self._tokens = {"read": readonly_token, "admin": admin_token}

    @property
    def open(self) -> bool:
        """Whether any token can log in (none set: the page cannot be opened)."""
        return any(self._tokens.values())

    def role_of_token(self, presented: str) -> str | None:
        """The role a typed token grants; every comparison runs (constant time)."""
        found = None
        for role, expected in self._tokens.items():
            if expected and hmac.compare_digest(presented.encode(), expected.encode()):
                found = found or role
        return found

    def cookie_for(self, role: str, *, now: datetime) -> str:
        token = self._tokens[role]
        assert token is not None
        expires = int((now + SESSION_TTL).timestamp())
        return _signer(token).sign_claims({"v": TOKEN_VERSION, "r": role, "e": expires})

    def role_of_cookie(self, value: str | None, *, now: datetime) -> str | None:
        """The role a session cookie holds, if it is ours, intact and not expired."""
        if not value:
            return None
        for role, token in self._tokens.items():
            if not token:
                continue
            try:
                claims = _signer(token).claims(value, "session")
            except SnoozeRefused:
                continue
            try:
                expires_at = epoch_moment(claims.get("e"))
            except ValueError:
                continue
            if claims.get("r") == role and now < expires_at:
                return role
        return None
