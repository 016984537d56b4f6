"""Session cookies for the web UI: a signed, timestamped statement "this is user N" (itsdangerous),
so the server keeps no session table.

A session names the user, a fingerprint of their password hash and the user's session epoch
(``users.session_epoch``) when it was made. Signing out, changing the password and disabling
the user raise the epoch, which ends every session made before at its next request (the user
row is read each time), wherever its cookie is kept: the cookie is a claim the server checks
against the user row, not a key that holds by itself.
"""

from __future__ import annotations

import hashlib
import secrets

from itsdangerous import BadSignature, URLSafeTimedSerializer

from spindle.domain import User
from spindle.errors import Unauthenticated

#: The cookie's name.
COOKIE = "spindle_session"


def fingerprint(user: User) -> str:
    return hashlib.sha256(f"{user.id}:{user.password_hash or ''}".encode()).hexdigest()[:16]


class SessionSigner:
    def __init__(self, secret: str, max_age_seconds: int) -> None:
        # An empty secret: a random one for this process (sessions end at restart).
        self._serializer = URLSafeTimedSerializer(
            secret or secrets.token_urlsafe(32), salt="spindle.session"
        )
        self.max_age = max_age_seconds

    def sign(self, user: User) -> str:
        """The cookie value for a user who just signed in."""
        return self._serializer.dumps(
            {"u": user.id, "f": fingerprint(user), "e": user.session_epoch}
        )

    def read(self, value: str) -> tuple[int, str, int]:
        """The user id, fingerprint and session epoch in a cookie; Unauthenticated if it
        was not made here, was altered, or is older than ``max_age``."""
        expired = Unauthenticated("the session has expired or is not valid; sign in again")
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is a BadSignature too
            raise expired from None
        if not (isinstance(data, dict) and isinstance(data.get("u"), int)):
            raise Unauthenticated("the session is not valid; sign in again")
        epoch = data.get("e", 0)
        return data["u"], str(data.get("f", "")), epoch if isinstance(epoch, int) else -1
