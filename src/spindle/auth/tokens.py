"""Personal API tokens: 256 random bits with a recognisable prefix. Only their SHA-256 digest
is stored: a token is a random secret, not a password someone chose, so a fast hash is enough
to make a stolen database useless, and it lets a token be found by an indexed lookup."""

from __future__ import annotations

import hashlib
import secrets

#: Every personal token starts with this, so a bearer credential can be told apart from a
#: JWT at a glance (and secret scanners can find leaked ones).
PREFIX = "spindle_"


def new_token() -> str:
    return PREFIX + secrets.token_urlsafe(32)


def is_personal_token(value: str) -> bool:
    return value.startswith(PREFIX)


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()
