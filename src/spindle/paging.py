"""Opaque keyset page tokens: the key of the last item seen, versioned and base64url-encoded.
A token this service did not issue is a 400 naming ``page_token``."""

from __future__ import annotations

import base64
import binascii
import enum
import json
from typing import Any, TypeVar

from spindle.errors import InvalidRequest

DEFAULT_PAGE_SIZE = 100
MAX_PAGE_SIZE = 1000
#: the longest free-text search accepted
MAX_TEXT = 200
K = TypeVar("K", bound=enum.StrEnum)


def encode_token(kind: str, key: int) -> str:
    raw = json.dumps({"v": 1, "k": kind, "after": key}, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_token(kind: str, token: str | None) -> int | None:
    if not token:
        return None
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        if data["v"] == 1 and data["k"] == kind and isinstance(data["after"], int):
            return int(data["after"])
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    raise InvalidRequest("page_token", "is not a page token this service issued")


def encode_cursor(kind: str, key: list[Any], *, back: bool = False) -> str:
    """A token for a keyset over several columns (``key``: the values of the row to page
    from); ``back`` pages towards the start (the previous page)."""
    data = {"v": 1, "k": kind, "after": key, "back": back}
    raw = json.dumps(data, separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(kind: str, token: str | None, width: int) -> tuple[list[Any] | None, bool]:
    """The key and direction of a token from :func:`encode_cursor`; ``(None, False)`` for no
    token. A token of another kind (another sort order) or key width is a 400."""
    if not token:
        return None, False
    try:
        raw = base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))
        data = json.loads(raw)
        key = data["after"]
        if (
            data["v"] == 1
            and data["k"] == kind
            and isinstance(key, list)
            and len(key) == width
            and all(isinstance(v, str | int) and not isinstance(v, bool) for v in key)
            and isinstance(data["back"], bool)
        ):
            return key, data["back"]
    except (binascii.Error, ValueError, KeyError, TypeError, UnicodeDecodeError):
        pass
    raise InvalidRequest("page_token", "is not a page token this service issued for this order")


def check_page_size(page_size: int | None) -> int:
    if page_size is None:
        return DEFAULT_PAGE_SIZE
    if not 1 <= page_size <= MAX_PAGE_SIZE:
        raise InvalidRequest("page_size", f"must be between 1 and {MAX_PAGE_SIZE}")
    return page_size


def parse_ordering(keys: type[K], sort: str, order: str, default: K) -> tuple[K, bool]:
    """The sort key (``default`` when ``sort`` is empty) and whether it is descending (the
    default) from a list's ``sort`` and ``order`` parameters; a bad value is a 400."""
    try:
        key = keys(sort or default)
    except ValueError:
        raise InvalidRequest(
            "sort", f"{sort!r} is not a sort order; use one of: " + ", ".join(keys)
        ) from None
    if order not in ("", "asc", "desc"):
        raise InvalidRequest("order", f"{order!r} must be asc or desc")
    return key, order != "asc"


def parse_search(text: str) -> str:
    """A list's free-text search (``q``), trimmed; longer than MAX_TEXT is a 400."""
    text = text.strip()
    if len(text) > MAX_TEXT:
        raise InvalidRequest("q", f"is longer than {MAX_TEXT} characters")
    return text
