"""oidc and proxy-jwt end to end over HTTP: keys generated here, a real JWKS (and discovery
document) served on loopback by tests.idp, and PyJWT in Spindle verifying for real. Every bad
token is a 401 with ``WWW-Authenticate: Bearer ... error="invalid_token"`` and the WES
ErrorResponse, and no token ever shows up in an answer or a log line."""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives import serialization

from spindle.config import Settings
from spindle.engines.registry import Catalog
from tests.api.conftest import WES, app_client, make_app
from tests.idp import AUDIENCE, IdentityProvider, b64, idp, new_key, tamper

__all__ = ["idp"]

MODES = ["oidc", "proxy-jwt"]
IAP_HEADER = "X-Goog-IAP-JWT-Assertion"


def jwt_settings(settings: Settings, provider: IdentityProvider, mode: str, **kw: Any) -> Settings:
    values: dict[str, Any] = {
        "auth": mode,
        "jwt_issuer": provider.issuer,
        "jwt_audience": AUDIENCE,
        "jwt_algorithms": ["RS256", "ES256"],
        "jwks_min_refresh_seconds": 0,
    }
    if mode == "proxy-jwt":
        values["jwt_jwks_url"] = provider.jwks_url
    values.update(kw)
    return Settings(**{**settings.model_dump(), **values})


def sent(mode: str, token: str) -> dict[str, str]:
    """The headers carrying a JWT in this mode."""
    if mode == "proxy-jwt":
        return {IAP_HEADER: token}
    return {"Authorization": f"Bearer {token}"}


def assert_refused(response: httpx.Response, secret: str, *, error: str | None) -> None:
    assert response.status_code == 401, response.text
    body = response.json()
    assert body["status_code"] == 401
    assert body["msg"]
    challenge = response.headers["www-authenticate"]
    assert challenge.startswith('Bearer realm="Spindle"')
    if error:
        assert f'error="{error}"' in challenge
        assert "error_description=" in challenge
    else:
        assert "error=" not in challenge
    assert secret not in response.text
    assert secret not in str(response.headers)


@pytest.fixture
def api_for(
    settings: Settings, catalog: Catalog, idp: IdentityProvider
) -> Callable[..., contextlib.AbstractAsyncContextManager[httpx.AsyncClient]]:
    """``async with api_for(mode, **settings) as api``: the app in that mode, no worker."""

    def make(mode: str, **kw: Any) -> contextlib.AbstractAsyncContextManager[httpx.AsyncClient]:
        return app_client(make_app(jwt_settings(settings, idp, mode, **kw), catalog, worker=False))

    return make


@pytest.mark.parametrize("mode", MODES)
async def test_a_valid_token_signs_the_user_in(
    mode: str, api_for: Any, idp: IdentityProvider
) -> None:
    async with api_for(mode) as api:
        token = idp.token()
        me = await api.get(f"{WES}/me", headers=sent(mode, token))
        assert me.status_code == 200, me.text
        info = me.json()
        assert (info["name"], info["email"], info["display_name"]) == (
            "alice-sub",
            "alice@example.org",
            "Alice Example",
        )
        assert (info["admin"], info["auth_method"]) == (False, "jwt")
        assert info["last_login_at"] is not None
        for _ in range(3):
            r = await api.get(f"{WES}/runs", headers=sent(mode, token))
            assert r.status_code == 200
            assert r.json()["runs"] == []
    # the key set was fetched once and then used from the cache
    assert idp.requests["/jwks.json"] == 1
    assert idp.requests["/.well-known/openid-configuration"] == (1 if mode == "oidc" else 0)


def _hs256_with_public_key(provider: IdentityProvider) -> str:
    """The classic algorithm confusion: HMAC keyed with the provider's public key."""
    public = provider.keys[provider.published[0]].public_key()
    secret = public.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    header = {"alg": "HS256", "typ": "JWT", "kid": provider.published[0]}
    signing_input = (
        f"{b64(json.dumps(header).encode())}.{b64(json.dumps(provider.claims()).encode())}"
    )
    mac = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64(mac)}"


#: case → (how to make the token, what the refusal says)
BAD_TOKENS: dict[str, tuple[Callable[[IdentityProvider], str], str]] = {
    "expired": (lambda p: p.token(exp=1_000_000, iat=999_000), "has expired"),
    "wrong audience": (lambda p: p.token(aud="someone-else"), "another audience"),
    "wrong issuer": (lambda p: p.token(iss="https://evil.example"), "another issuer"),
    "unknown key id": (
        lambda p: p.token(p.add_key("rsa", publish=False)),
        "key the identity provider does not publish",
    ),
    "alg none": (lambda p: p.unsigned(), "algorithm is not accepted"),
    "signed by another key": (lambda p: p.token(key=new_key("rsa")), "signature does not verify"),
    "tampered payload": (
        lambda p: tamper(p.token(), sub="root", email="root@example.org"),
        "signature does not verify",
    ),
    "hs256 with the public key": (_hs256_with_public_key, "algorithm is not accepted"),
    "no expiry": (lambda p: p.token(exp=None), "no 'exp' claim"),
    "not yet valid": (lambda p: p.token(nbf=4_000_000_000), "not valid yet"),
    "not a jwt": (lambda p: "abc.def", "not a well-formed JWT"),
    "no user claim": (lambda p: p.token(sub=None), "no 'sub' claim"),
    "unusable user claim": (lambda p: p.token(sub=" root\n"), "not a usable user name"),
}


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("case", sorted(BAD_TOKENS))
async def test_a_bad_token_is_refused_with_401(
    mode: str,
    case: str,
    api_for: Any,
    idp: IdentityProvider,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    async with api_for(mode) as api:
        make, reason = BAD_TOKENS[case]
        token = make(idp)
        for path in ("/runs", "/me", "/service-info"):
            r = await api.get(f"{WES}{path}", headers=sent(mode, token))
            assert_refused(r, token, error="invalid_token")
            assert reason in r.json()["msg"]
        users = (await api.get(f"{WES}/me", headers=sent(mode, idp.token()))).json()
        assert users["name"] == "alice-sub"  # and a good token still works
    assert token not in caplog.text
    for part in token.split("."):
        assert len(part) < 8 or part not in caplog.text


@pytest.mark.parametrize("mode", MODES)
async def test_no_credentials_is_401_without_an_error_code(mode: str, api_for: Any) -> None:
    async with api_for(mode) as api:
        r = await api.get(f"{WES}/runs")
        assert_refused(r, "no-such-secret", error=None)
        # service-info stays readable, counting nothing
        info = await api.get(f"{WES}/service-info")
        assert info.status_code == 200
        assert set(info.json()["system_state_counts"].values()) == {0}


async def test_a_rotated_key_is_fetched_when_a_token_names_it(
    api_for: Any, idp: IdentityProvider
) -> None:
    async with api_for("oidc") as api:
        assert (await api.get(f"{WES}/me", headers=sent("oidc", idp.token()))).status_code == 200
        assert idp.requests["/jwks.json"] == 1
        rotated = idp.add_key("ec")  # the provider publishes a new key, then signs with it
        r = await api.get(f"{WES}/me", headers=sent("oidc", idp.token(rotated)))
        assert r.status_code == 200, r.text
        assert idp.requests["/jwks.json"] == 2
        # the old key still works, from the cache
        assert (await api.get(f"{WES}/me", headers=sent("oidc", idp.token()))).status_code == 200
        assert idp.requests["/jwks.json"] == 2


async def test_unknown_key_ids_do_not_flood_the_provider(
    api_for: Any, idp: IdentityProvider
) -> None:
    async with api_for("oidc", jwks_min_refresh_seconds=3600) as api:
        assert (await api.get(f"{WES}/me", headers=sent("oidc", idp.token()))).status_code == 200
        for _ in range(5):
            stranger = idp.token(idp.add_key("rsa", publish=False))
            assert (await api.get(f"{WES}/me", headers=sent("oidc", stranger))).status_code == 401
        assert idp.requests["/jwks.json"] == 1


async def test_the_admin_claim_decides_who_is_admin(api_for: Any, idp: IdentityProvider) -> None:
    async with api_for("oidc", jwt_admin_claim="groups", jwt_admin_values=["wes-admins"]) as api:
        admin = idp.token(sub="boss", groups=["staff", "wes-admins"])
        me = (await api.get(f"{WES}/me", headers=sent("oidc", admin))).json()
        assert me["admin"] is True
        demoted = idp.token(sub="boss", groups=["staff"])
        me = (await api.get(f"{WES}/me", headers=sent("oidc", demoted))).json()
        assert me["admin"] is False


async def test_an_unreachable_key_set_is_503(api_for: Any, idp: IdentityProvider) -> None:
    idp.down = True
    async with api_for("proxy-jwt") as api:
        token = idp.token()
        r = await api.get(f"{WES}/runs", headers=sent("proxy-jwt", token))
        assert r.status_code == 503
        assert r.json()["status_code"] == 503
        assert idp.jwks_url in r.json()["msg"]
        assert token not in r.text


async def test_proxy_jwt_hosted_domain(api_for: Any, idp: IdentityProvider) -> None:
    async with api_for("proxy-jwt", proxy_jwt_hosted_domain="example.org") as api:
        ok = await api.get(f"{WES}/me", headers=sent("proxy-jwt", idp.token(hd="example.org")))
        assert ok.status_code == 200
        for token in (idp.token(hd="elsewhere.org"), idp.token()):
            r = await api.get(f"{WES}/me", headers=sent("proxy-jwt", token))
            assert r.status_code == 403
            assert "example.org" in r.json()["msg"]


async def test_proxy_jwt_header_name_is_configurable(api_for: Any, idp: IdentityProvider) -> None:
    async with api_for("proxy-jwt", proxy_jwt_header="X-Assertion") as api:
        token = idp.token()
        assert (await api.get(f"{WES}/me", headers={"X-Assertion": token})).status_code == 200
        r = await api.get(f"{WES}/me", headers={IAP_HEADER: token})
        assert r.status_code == 401
        assert "X-Assertion" in r.json()["msg"]
        # a provider's JWT as a bearer token is not how this mode signs in
        r = await api.get(f"{WES}/me", headers=sent("oidc", token))
        assert_refused(r, token, error="invalid_token")


@pytest.mark.parametrize("mode", MODES)
async def test_personal_tokens_work_beside_jwts(
    mode: str, api_for: Any, idp: IdentityProvider
) -> None:
    async with api_for(mode) as api:
        made = await api.post(
            f"{WES}/tokens", json={"name": "laptop"}, headers=sent(mode, idp.token())
        )
        assert made.status_code == 200, made.text
        secret = made.json()["token"]
        me = await api.get(f"{WES}/me", headers={"Authorization": f"Bearer {secret}"})
        assert (me.json()["name"], me.json()["auth_method"]) == ("alice-sub", "token")


async def test_a_provider_user_never_becomes_a_local_one(
    settings: Settings, catalog: Catalog, idp: IdentityProvider
) -> None:
    """``sub=root`` from the identity provider is not the ``root`` made with ``spindle
    users``: it is refused (403), and the local user is left as it was."""
    app = make_app(jwt_settings(settings, idp, "oidc"), catalog, worker=False)
    async with app_client(app) as api:
        await app.state.accounts.add_user("root", password="local secret", admin=True)
        r = await api.get(f"{WES}/me", headers=sent("oidc", idp.token(sub="root")))
        assert r.status_code == 403
        assert r.json()["status_code"] == 403
        assert "local user" in r.json()["msg"]
        root = await app.state.accounts.user("root")
        assert (root.issuer, root.admin, root.email) == (None, True, None)
        # the provider's own users sign in, and stay the provider's
        r = await api.get(f"{WES}/me", headers=sent("oidc", idp.token(sub="carol")))
        assert r.status_code == 200
        assert (await app.state.accounts.user("carol")).issuer == idp.issuer
        r = await api.get(f"{WES}/me", headers=sent("oidc", idp.token(sub="carol")))
        assert r.status_code == 200
