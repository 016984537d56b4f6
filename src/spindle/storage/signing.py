"""Signed, time-limited download links: a link names one file of one run and the moment it
stops working, and carries an HMAC over the three (itsdangerous' ``Signer``, HMAC-SHA256
with a purpose of its own as salt), so whoever holds the link can download that file until
then, without credentials (curl, wget, a browser, a link in an email), and nothing else.

Keys rotate: links are signed with the current key (``secret_key``) and checked against it
and every former key still listed (``link_old_secret_keys``). A link that expired, was
changed in any part (run, path, expiry, signature) or signed with a key no longer listed is
refused with 403.
"""

from __future__ import annotations

import hashlib
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from itsdangerous import Signer

from spindle.config import Settings
from spindle.errors import Forbidden, InvalidRequest

#: The salt of download-link signatures (so no other signature of the same key is one).
SALT = "spindle.download-link"


@dataclass(frozen=True)
class SignedLink:
    run_id: str
    path: str
    #: whole seconds since the epoch (UTC)
    expires: int

    @property
    def expires_at(self) -> datetime:
        return datetime.fromtimestamp(self.expires, UTC)


def _message(run_id: str, path: str, expires: int) -> bytes:
    # NUL cannot appear in a run id or a run path (both are refused with it), so the three
    # parts cannot be shifted into each other
    return f"{run_id}\x00{path}\x00{expires}".encode()


class LinkSigner:
    def __init__(
        self,
        key: str,
        old_keys: Sequence[str] = (),
        *,
        default_seconds: int,
        max_seconds: int,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
    ) -> None:
        # itsdangerous signs with the last key and accepts any of them
        self._signer = Signer([*old_keys, key], salt=SALT, digest_method=hashlib.sha256)
        self.default_seconds = default_seconds
        self.max_seconds = max_seconds
        self.clock = clock

    @classmethod
    def from_settings(cls, settings: Settings) -> LinkSigner:
        """From ``secret_key`` (a random key per process when it is empty: links then end
        when the process does) and ``link_old_secret_keys``."""
        key = settings.secret_key.get_secret_value() or secrets.token_urlsafe(32)
        return cls(
            key,
            [k.get_secret_value() for k in settings.link_old_secret_keys],
            default_seconds=settings.link_seconds,
            max_seconds=settings.link_max_seconds,
        )

    def sign(self, run_id: str, path: str, seconds: int | None = None) -> tuple[SignedLink, str]:
        """A link to ``path`` of ``run_id`` lasting ``seconds`` (the default when None), and
        its signature."""
        if seconds is None:
            seconds = self.default_seconds
        if not 0 < seconds <= self.max_seconds:
            raise InvalidRequest(
                "expires_in",
                f"must be 1 to {self.max_seconds} seconds (setting link_max_seconds)",
            )
        expires = int(self.clock().timestamp()) + seconds
        link = SignedLink(run_id, path, expires)
        signature = self._signer.get_signature(_message(run_id, path, expires)).decode()
        return link, signature

    def verify(self, run_id: str, path: str, expires: str, signature: str) -> SignedLink:
        """The link, if ``signature`` is one of ours over these three parts and ``expires``
        has not passed; else Forbidden (403) without saying which part failed."""
        refused = Forbidden("this download link is not valid (expired, changed or revoked)")
        if not expires.isdigit() or len(expires) > 12:
            raise refused
        when = int(expires)
        if not self._signer.verify_signature(_message(run_id, path, when), signature.encode()):
            raise refused
        if when <= self.clock().timestamp():
            raise refused
        return SignedLink(run_id, path, when)
