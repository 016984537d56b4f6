"""The authenticator: the credentials a request carried → the :class:`~spindle.domain.Caller`.

One per application, built at start-up from the settings. What it accepts depends on the
mode (``auth`` setting):

=========== ===========================================================================
none        nothing is checked: every request is the local user, as an admin
basic       HTTP Basic against the users table (argon2); personal tokens; session cookie
oidc        bearer JWTs from the identity provider; personal tokens; session cookie
proxy-jwt   the trusted proxy's signed assertion header; personal tokens; session cookie
=========== ===========================================================================

In every mode but ``none``, a personal API token (``spindle_...``) as a bearer token is
accepted, and so is a session cookie made at sign-in by the web UI.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import httpx

from spindle import audit
from spindle.auth import tokens
from spindle.auth.accounts import AccountService, caller_for
from spindle.auth.jwks import JwksCache
from spindle.auth.session import SessionSigner
from spindle.auth.throttle import SignInThrottle
from spindle.auth.verifier import Identity, JwtVerifier
from spindle.config import Settings
from spindle.domain import Caller, User
from spindle.errors import ConfigError, Forbidden, SpindleError, Unauthenticated

#: Seconds to wait for the identity provider's keys.
JWKS_TIMEOUT = 10.0


@dataclass(frozen=True)
class Credentials:
    """What a request carried, already taken apart (``spindle.api.auth`` reads it from the
    headers). ``malformed`` says what was wrong with an Authorization header that could not
    be read, without repeating it."""

    basic: tuple[str, str] | None = None
    bearer: str | None = None
    proxy_assertion: str | None = None
    session: str | None = None
    malformed: str | None = None
    #: the client's address, for throttling failed sign-ins
    address: str | None = None


def check_settings(settings: Settings) -> None:
    """Refuse a configuration that cannot work or would be open by mistake."""
    open_remote = settings.auth == "none" and not settings.auth_none_allow_remote
    if open_remote and not is_loopback(settings.host):
        raise ConfigError(
            f"auth is 'none' (no sign-in: everyone is the local admin) but host is "
            f"{settings.host!r}, which other machines can reach; set SPINDLE_AUTH to "
            "basic, oidc or proxy-jwt, bind 127.0.0.1, or set "
            "SPINDLE_AUTH_NONE_ALLOW_REMOTE=true if that is really meant"
        )
    if settings.auth in ("oidc", "proxy-jwt"):
        missing = [
            f"SPINDLE_{name.upper()}"
            for name in ("jwt_issuer", "jwt_audience")
            if not getattr(settings, name)
        ]
        if settings.auth == "proxy-jwt" and not settings.jwt_jwks_url:
            missing.append("SPINDLE_JWT_JWKS_URL")
        if missing:
            raise ConfigError(f"auth {settings.auth!r} needs {', '.join(missing)}")
    if settings.auth == "proxy-jwt" and not settings.proxy_jwt_header.strip():
        raise ConfigError("auth 'proxy-jwt' needs SPINDLE_PROXY_JWT_HEADER")


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Authenticator:
    def __init__(self, settings: Settings, accounts: AccountService) -> None:
        check_settings(settings)
        self.settings = settings
        self.mode = settings.auth
        self.accounts = accounts
        self.sessions = SessionSigner(
            settings.secret_key.get_secret_value(), settings.session_max_age_seconds
        )
        self._http: httpx.AsyncClient | None = None
        self.verifier: JwtVerifier | None = None
        if self.mode in ("oidc", "proxy-jwt"):
            self._http = httpx.AsyncClient(timeout=JWKS_TIMEOUT, follow_redirects=False)
            keys = JwksCache(
                self._http,
                jwks_url=settings.jwt_jwks_url,
                discovery_issuer=settings.jwt_issuer,
                cache_seconds=settings.jwks_cache_seconds,
                min_refresh_seconds=settings.jwks_min_refresh_seconds,
            )
            self.verifier = JwtVerifier(settings, keys)
        self._local: User | None = None
        self.throttle = SignInThrottle(
            per_account=settings.signin_max_failures_per_account,
            per_address=settings.signin_max_failures_per_address,
            window_seconds=settings.signin_window_seconds,
        )

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    async def authenticate(self, creds: Credentials, *, required: bool = True) -> Caller | None:
        """The caller, or None when no credentials came and ``required`` is false (an
        anonymous read of service-info). Refusals: Unauthenticated (401) when who is asking
        is not established, Forbidden (403) when they are but may not come in."""
        if self.mode == "none":
            return await self._local_caller()
        if creds.malformed:
            raise Unauthenticated(creds.malformed, error="invalid_request")
        if creds.bearer is not None and tokens.is_personal_token(creds.bearer):
            user, _token = await self.accounts.check_token(creds.bearer)
            return caller_for(user, "token")
        if creds.basic is not None:
            if self.mode != "basic":
                raise Unauthenticated(
                    "HTTP Basic is not accepted here; send a bearer token", error="invalid_request"
                )
            name, password = creds.basic
            return caller_for(await self._check_password(name, password, creds.address), "basic")
        if self.mode == "proxy-jwt" and creds.proxy_assertion:
            return await self._jwt_caller(creds.proxy_assertion)
        if creds.bearer is not None:
            if self.mode == "oidc":
                return await self._jwt_caller(creds.bearer)
            raise Unauthenticated("the bearer token is not a Spindle token", error="invalid_token")
        if creds.session:
            user_id, fingerprint, epoch = self.sessions.read(creds.session)
            user = await self.accounts.session_user(user_id, fingerprint, epoch)
            return caller_for(user, "session")
        if required:
            raise Unauthenticated(self._ask_for())
        return None

    async def still_valid(self, creds: Credentials) -> bool:
        """Whether credentials that were good when a long request (an event stream) began
        still are: the token is not revoked or expired, the session not ended, the user not
        disabled."""
        try:
            await self.authenticate(creds)
        except SpindleError:
            return False
        return True

    async def _check_password(self, name: str, password: str, address: str | None) -> User:
        """``AccountService.check_password`` behind the throttle of failed sign-ins: 429
        (without checking) once the account or the address failed too often lately."""
        self.throttle.check(name, address)
        try:
            user = await self.accounts.check_password(name, password)
        except (Unauthenticated, Forbidden) as exc:
            if isinstance(exc, Unauthenticated):
                self.throttle.failed(name, address)
            action = "signin.failure" if isinstance(exc, Unauthenticated) else "signin.refused"
            await audit.write(
                self.accounts.db,
                action,
                target=("user", name),
                detail={"reason": exc.message},
                actor=audit.Actor(None, None, address),
            )
            raise
        self.throttle.succeeded(name)
        return user

    def _ask_for(self) -> str:
        if self.mode == "basic":
            return "sign in: send HTTP Basic credentials or a personal token (Bearer)"
        if self.mode == "proxy-jwt":
            return (
                f"no {self.settings.proxy_jwt_header} header: reach Spindle through its "
                "proxy, or send a personal token (Bearer)"
            )
        return "sign in: send a bearer token from the identity provider or a personal token"

    async def _jwt_caller(self, token: str) -> Caller:
        assert self.verifier is not None
        identity = await self.verifier.verify(token)
        self._check_domain(identity)
        user = await self.accounts.sign_in_external(identity)
        return caller_for(user, "jwt", admin=identity.admin)

    def _check_domain(self, identity: Identity) -> None:
        wanted = self.settings.proxy_jwt_hosted_domain
        if self.mode == "proxy-jwt" and wanted and identity.hosted_domain != wanted:
            raise Forbidden(f"only accounts of the {wanted} domain may use this service")

    async def _local_caller(self) -> Caller:
        if self._local is None:
            self._local = await self.accounts.local_user()
        return caller_for(self._local, "none", admin=True)

    # --- for the web UI's sign-in page -------------------------------------------------

    async def sign_in(
        self, name: str, password: str, address: str | None = None
    ) -> tuple[User, str]:
        """Check a user name and password (``basic`` mode); the user and the value of the
        session cookie to set. Throttled as HTTP Basic is (429 after too many failures)."""
        if self.mode != "basic":
            raise Forbidden(f"signing in with a password is not possible with auth {self.mode!r}")
        user = await self._check_password(name, password, address)
        await audit.write(
            self.accounts.db,
            "signin.success",
            target=("user", user.name),
            actor=audit.Actor(user.id, user.name, address),
        )
        return user, self.sessions.sign(user)

    async def sign_out(self, session: str | None) -> None:
        """End every session of the user a still valid session cookie names (server-side:
        a copy of the cookie kept elsewhere stops working too). Anything else: nothing."""
        if self.mode == "none" or not session:
            return
        try:
            user_id, fingerprint, epoch = self.sessions.read(session)
            user = await self.accounts.session_user(user_id, fingerprint, epoch)
        except SpindleError:
            return
        await self.accounts.end_sessions(user.id)
