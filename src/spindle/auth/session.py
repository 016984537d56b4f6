"""Session cookies for the web UI: a signed, timestamped statement "this is user N" (itsdangerous),
so the server keeps no session table.

A session names the user and a fingerprint of their password hash: changing the password
ends every session made before, and a disabled user's session stops working at the next
request (the user row is read each time).
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
        return self._serializer.dumps({"u": user.id, "f": fingerprint(user)})

    def read(self, value: str) -> tuple[int, str]:
        """The user id and fingerprint in a cookie; Unauthenticated if it was not made here,
        was altered, or is older than ``max_age``."""
        expired = Unauthenticated("the session has expired or is not valid; sign in again")
        try:
            data = self._serializer.loads(value, max_age=self.max_age)
        except BadSignature:  # SignatureExpired is a BadSignature too
            raise expired from None
        if not (isinstance(data, dict) and isinstance(data.get("u"), int)):
            raise Unauthenticated("the session is not valid; sign in again")
        return data["u"], str(data.get("f", ""))
