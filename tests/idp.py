"""A small, real identity provider for tests: keys generated in the test, a JWKS and an
OpenID Connect discovery document served over HTTP on a loopback port, and tokens signed
with those keys (or, to be refused, with others, none, or tampered with).

Use the ``idp`` fixture (``from tests.idp import idp``).
"""

from __future__ import annotations

import base64
import json
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm

AUDIENCE = "spindle-tests"
PrivateKey = rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey


def new_key(kind: str = "rsa") -> PrivateKey:
    if kind == "ec":
        return ec.generate_private_key(ec.SECP256R1())
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def public_jwk(key: PrivateKey, kid: str) -> dict[str, Any]:
    if isinstance(key, rsa.RSAPrivateKey):
        jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
        alg = "RS256"
    else:
        jwk = ECAlgorithm.to_jwk(key.public_key(), as_dict=True)
        alg = "ES256"
    return {**jwk, "kid": kid, "use": "sig", "alg": alg}


def b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class IdentityProvider:
    def __init__(self) -> None:
        self.keys: dict[str, PrivateKey] = {}
        self.published: list[str] = []
        self.requests: Counter[str] = Counter()
        self.down = False
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self.issuer = f"http://127.0.0.1:{self._server.server_address[1]}"
        self.jwks_url = f"{self.issuer}/jwks.json"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(10)

    # --- keys ---------------------------------------------------------------------------

    def add_key(self, kind: str = "rsa", *, publish: bool = True) -> str:
        kid = f"{kind}-{uuid.uuid4().hex[:8]}"
        self.keys[kid] = new_key(kind)
        if publish:
            self.published.append(kid)
        return kid

    def jwks(self) -> dict[str, Any]:
        return {"keys": [public_jwk(self.keys[kid], kid) for kid in self.published]}

    # --- tokens -------------------------------------------------------------------------

    def claims(self, **overrides: Any) -> dict[str, Any]:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": AUDIENCE,
            "sub": "alice-sub",
            "email": "alice@example.org",
            "name": "Alice Example",
            "iat": now,
            "exp": now + 600,
        }
        claims.update(overrides)
        return {k: v for k, v in claims.items() if v is not None}

    def token(
        self,
        kid: str | None = None,
        *,
        key: PrivateKey | None = None,
        headers: dict[str, Any] | None = None,
        **claims: Any,
    ) -> str:
        """A token signed with the key ``kid`` (default: the first published), or with
        ``key`` while naming ``kid``."""
        kid = kid or self.published[0]
        signer = key or self.keys[kid]
        alg = "RS256" if isinstance(signer, rsa.RSAPrivateKey) else "ES256"
        return jwt.encode(
            self.claims(**claims), signer, algorithm=alg, headers={"kid": kid, **(headers or {})}
        )

    def unsigned(self, **claims: Any) -> str:
        """``alg: none``: a token with no signature at all."""
        header = {"alg": "none", "typ": "JWT", "kid": self.published[0]}
        return (
            f"{b64(json.dumps(header).encode())}.{b64(json.dumps(self.claims(**claims)).encode())}."
        )

    # --- HTTP ---------------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        idp = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                idp.requests[self.path] += 1
                if idp.down:
                    body, status = b"down", 503
                elif self.path == "/jwks.json":
                    body, status = json.dumps(idp.jwks()).encode(), 200
                elif self.path == "/.well-known/openid-configuration":
                    doc = {"issuer": idp.issuer, "jwks_uri": idp.jwks_url}
                    body, status = json.dumps(doc).encode(), 200
                else:
                    body, status = b"not found", 404
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # quiet: pytest shows what matters

        return Handler


def tamper(token: str, **claims: Any) -> str:
    """The token with its payload replaced (claims changed), signature kept."""
    header, payload, signature = token.split(".")
    data = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    data.update(claims)
    return f"{header}.{b64(json.dumps(data).encode())}.{signature}"


@pytest.fixture
def idp() -> Iterator[IdentityProvider]:
    provider = IdentityProvider()
    provider.add_key("rsa")
    provider.start()
    try:
        yield provider
    finally:
        provider.stop()
