"""Verifying a JWT from an identity provider (oidc) or a trusted proxy (proxy-jwt) with PyJWT:
signature against the provider's published keys, algorithm from an allow-list of asymmetric
algorithms (never ``none``, never HMAC), issuer, audience, expiry and not-before.

Every refusal is an :class:`~spindle.errors.Unauthenticated` whose message is chosen here by
the kind of failure: nothing from the token (let alone the token) reaches a message or a log.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jwt
from jwt.exceptions import (
    DecodeError,
    ExpiredSignatureError,
    ImmatureSignatureError,
    InvalidAlgorithmError,
    InvalidAudienceError,
    InvalidIssuedAtError,
    InvalidIssuerError,
    InvalidKeyError,
    InvalidSignatureError,
    InvalidTokenError,
    MissingRequiredClaimError,
    PyJWKError,
)

from spindle.auth.jwks import JwksCache
from spindle.config import Settings
from spindle.errors import Unauthenticated


@dataclass(frozen=True)
class Identity:
    """Who a verified token says the caller is, read through the configured claims."""

    name: str
    email: str | None = None
    display_name: str | None = None
    #: what the admin claim says; None when no admin claim is configured
    admin: bool | None = None
    #: Google's ``hd`` claim: the Workspace domain of the account
    hosted_domain: str | None = None
    #: the verified ``iss`` claim: the identity provider whose user this is
    issuer: str = ""


def _refused(message: str) -> Unauthenticated:
    return Unauthenticated(message, error="invalid_token")


#: PyJWT's failures, most specific first, and what the caller is told.
_REASONS: list[tuple[type[Exception], str]] = [
    (ExpiredSignatureError, "the token has expired"),
    (ImmatureSignatureError, "the token is not valid yet"),
    (InvalidAudienceError, "the token is meant for another audience"),
    (InvalidIssuerError, "the token comes from another issuer"),
    (InvalidIssuedAtError, "the token's issue time is not valid"),
    (InvalidAlgorithmError, "the token's signature algorithm is not accepted"),
    (InvalidSignatureError, "the token's signature does not verify"),
    (DecodeError, "the token is not a well-formed JWT"),
]


def _optional_str(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


class JwtVerifier:
    def __init__(self, settings: Settings, keys: JwksCache) -> None:
        self.keys = keys
        self.algorithms = list(settings.jwt_algorithms)
        self.issuer = settings.jwt_issuer
        self.audience = settings.jwt_audience
        self.leeway = settings.jwt_leeway_seconds
        self.user_claim = settings.jwt_user_claim
        self.email_claim = settings.jwt_email_claim
        self.name_claim = settings.jwt_name_claim
        self.admin_claim = settings.jwt_admin_claim
        self.admin_values = frozenset(settings.jwt_admin_values)

    async def verify(self, token: str) -> Identity:
        claims = await self.claims(token)
        name = claims.get(self.user_claim)
        if not isinstance(name, str) or not name.strip():
            raise _refused(f"the token has no {self.user_claim!r} claim to name the user by")
        return Identity(
            name=name,
            email=_optional_str(claims.get(self.email_claim)),
            display_name=_optional_str(claims.get(self.name_claim)),
            admin=self._admin(claims),
            hosted_domain=_optional_str(claims.get("hd")),
            issuer=str(claims.get("iss") or self.issuer),
        )

    async def claims(self, token: str) -> dict[str, Any]:
        """The token's claims once every check passed."""
        try:
            header = jwt.get_unverified_header(token)
        except InvalidTokenError:
            raise _refused("the token is not a well-formed JWT") from None
        alg = header.get("alg")
        if alg not in self.algorithms:
            raise _refused("the token's signature algorithm is not accepted")
        kid = header.get("kid")
        if not isinstance(kid, str):
            raise _refused("the token does not name its signing key (kid)")
        jwk = await self.keys.key(kid)
        try:
            # A key that declares its algorithm is used with that one only; PyJWT then
            # refuses a token whose header names another.
            key = jwt.PyJWK(jwk, algorithm=jwk.get("alg") or alg)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iss", "aud"]},
            )
        except (PyJWKError, InvalidKeyError):
            raise _refused("the token's signature does not verify") from None
        except MissingRequiredClaimError as exc:
            raise _refused(f"the token has no {exc.claim!r} claim") from None
        except InvalidTokenError as exc:
            for kind, reason in _REASONS:
                if isinstance(exc, kind):
                    raise _refused(reason) from None
            raise _refused("the token is not valid") from None
        return claims

    def _admin(self, claims: dict[str, Any]) -> bool | None:
        if not self.admin_claim:
            return None
        value = claims.get(self.admin_claim)
        if value is True:
            return True
        if isinstance(value, str):
            return value in self.admin_values
        if isinstance(value, list):
            return any(isinstance(v, str) and v in self.admin_values for v in value)
        return False
