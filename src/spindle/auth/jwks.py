"""The identity provider's signing keys (a JWKS), fetched over HTTP and cached.

The set is fetched on first use and again after ``jwks_cache_seconds``; a token naming a key
id the cached set lacks (the provider rotated its keys) makes it fetch the set at once, at
most every ``jwks_min_refresh_seconds``, so tokens with made-up key ids cannot turn Spindle
into a flood of requests to the provider. Concurrent requests share one fetch. If a fetch
fails, the keys fetched before stay in use.

This is PyJWT's ``PyJWKClient`` done with httpx on the event loop (that one fetches with
blocking ``urllib`` calls and refreshes on every unknown key id); the keys themselves are
parsed and checked by PyJWT (``spindle.auth.verifier``).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import Any

import httpx

from spindle.errors import ServiceUnavailable, Unauthenticated

log = logging.getLogger(__name__)

#: Key types that sign with a private key. Symmetric ("oct") keys are never taken from a
#: JWKS: anyone can read the set.
ASYMMETRIC = frozenset({"RSA", "EC", "OKP"})


class JwksCache:
    def __init__(
        self,
        http: httpx.AsyncClient,
        *,
        jwks_url: str = "",
        discovery_issuer: str = "",
        cache_seconds: float = 300.0,
        min_refresh_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if not jwks_url and not discovery_issuer:
            raise ValueError("a JWKS URL or an issuer to discover it from is needed")
        self._http = http
        self._url = jwks_url
        self._issuer = discovery_issuer
        self._cache_seconds = cache_seconds
        self._min_refresh = min_refresh_seconds
        self._clock = clock
        self._keys: dict[str, dict[str, Any]] = {}
        self._fetched_at: float | None = None
        self._lock = asyncio.Lock()
        #: fetches made so far (for tests and metrics)
        self.fetches = 0

    async def key(self, kid: str) -> dict[str, Any]:
        """The JWK with this key id, as a dict."""
        if self._stale():
            await self._refresh(lambda: self._stale())
        found = self._keys.get(kid)
        if found is None and self._may_refresh():
            await self._refresh(lambda: kid not in self._keys and self._may_refresh())
            found = self._keys.get(kid)
        if found is None:
            raise Unauthenticated(
                "the token is signed with a key the identity provider does not publish",
                error="invalid_token",
            )
        return found

    def _stale(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._cache_seconds

    def _may_refresh(self) -> bool:
        return self._fetched_at is None or self._clock() - self._fetched_at >= self._min_refresh

    async def _refresh(self, still_needed: Callable[[], bool]) -> None:
        async with self._lock:
            if not still_needed():  # another request fetched it while this one waited
                return
            try:
                keys = await self._fetch()
            except (httpx.HTTPError, ValueError) as exc:
                where = self._url or f"the discovery document of {self._issuer}"
                if self._fetched_at is None:
                    raise ServiceUnavailable(
                        f"cannot verify tokens: the signing keys at {where} could not be "
                        f"fetched ({type(exc).__name__})"
                    ) from None
                log.warning(
                    "fetching the signing keys at %s failed (%s); keeping the %d keys "
                    "fetched before",
                    where,
                    type(exc).__name__,
                    len(self._keys),
                )
                self._fetched_at = self._clock()
                return
            self._keys = keys
            self._fetched_at = self._clock()

    async def _fetch(self) -> dict[str, dict[str, Any]]:
        self.fetches += 1
        url = self._url or await self._discover()
        response = await self._http.get(url)
        response.raise_for_status()
        document = response.json()
        raw = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(raw, list):
            raise ValueError("the JWKS has no 'keys' list")
        keys: dict[str, dict[str, Any]] = {}
        for jwk in raw:
            if (
                isinstance(jwk, dict)
                and isinstance(jwk.get("kid"), str)
                and jwk.get("kty") in ASYMMETRIC
                and jwk.get("use", "sig") == "sig"
            ):
                keys[jwk["kid"]] = jwk
        log.info("fetched %d signing keys from %s", len(keys), url)
        return keys

    async def _discover(self) -> str:
        """The ``jwks_uri`` of the issuer's OpenID Connect discovery document, which must
        name the same issuer (OpenID Connect Discovery 1.0, section 4.3)."""
        url = self._issuer.rstrip("/") + "/.well-known/openid-configuration"
        response = await self._http.get(url)
        response.raise_for_status()
        document = response.json()
        if not isinstance(document, dict) or document.get("issuer") != self._issuer:
            raise ValueError(f"the discovery document at {url} names another issuer")
        jwks_uri = document.get("jwks_uri")
        if not isinstance(jwks_uri, str) or not jwks_uri.startswith(("https://", "http://")):
            raise ValueError(f"the discovery document at {url} has no jwks_uri")
        self._url = jwks_uri
        return jwks_uri
