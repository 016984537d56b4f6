"""Settings: ``SPINDLE_*`` environment variables, then an optional TOML file.

Nothing reads configuration at import time: ``Settings()`` is built by the CLI (or a test)
and handed to ``create_app`` / the worker.
"""

from __future__ import annotations

import os
import shutil
from ipaddress import ip_network
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, IPvAnyNetwork, SecretStr, ValidationError, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)
from sqlalchemy.engine import make_url

from spindle.compute import ComputeEnvConfig, validate_envs
from spindle.errors import ConfigError
from spindle.plugins import registry

#: Algorithms a JWT may be signed with: asymmetric ones only. ``none`` and the HMAC family
#: (``HS*``) are never accepted, since the keys come from a public JWKS.
JWT_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA"}
)

AuthMode = Literal["none", "basic", "oidc", "proxy-jwt"]


def _cpu_count() -> int:
    return max(1, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1)


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="SPINDLE_",
        extra="forbid",
    )

    # --- serving -------------------------------------------------------------------------
    host: str = "127.0.0.1"
    port: int = Field(default=8000, ge=0, le=65535)
    #: Base URL clients use to reach this service, for links in responses (log, output and
    #: task URLs). Empty: derived from each request.
    public_url: str = ""
    #: Signs the web UI's session cookies (sign-in) and CSRF tokens, each purpose with its
    #: own salt. Empty: a random key per process, so sessions end and open forms must be
    #: reloaded when it restarts; set the same value on every server behind a load balancer.
    secret_key: SecretStr = SecretStr("")

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Path(".spindle")
    #: SQLAlchemy async URL. Empty: SQLite at ``<data_dir>/spindle.db``.
    database_url: str = ""
    #: Largest accepted ``POST /runs`` body, all attachments together (bytes).
    max_upload_bytes: int = Field(default=1 << 30, gt=0)

    # --- the network (docs/security.md, "The network") -----------------------------------
    #: Host names a request's Host header may carry besides IP addresses, ``localhost``,
    #: ``host`` and ``public_url``'s host: ``*`` accepts any, ``*.example.org`` any name
    #: under it. Anything else is refused (421), which stops DNS rebinding.
    allowed_hosts: list[str] = Field(default_factory=list)
    #: Origins (``https://app.example.org``) besides Spindle's own whose pages may make
    #: changes (POST, PUT, PATCH, DELETE); any other Origin is refused (403).
    allowed_origins: list[str] = Field(default_factory=list)
    #: Seconds a client has to send a request's line and headers (then 408 and closed).
    header_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Seconds an idle keep-alive connection stays open between requests.
    keep_alive_seconds: int = Field(default=5, gt=0)
    #: Largest request line plus headers (bytes); larger is a 400.
    max_header_bytes: int = Field(default=32 * 1024, ge=4096)
    #: Seconds of grace before a request body must keep up with body_min_bytes_per_second.
    body_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Slowest average rate a request body may arrive at after the grace period (bytes/s);
    #: a slower body is cut with a 408.
    body_min_bytes_per_second: int = Field(default=1024, gt=0)
    #: Networks Spindle may fetch http(s) workflow URLs from although they are not public
    #: (loopback, private, link-local, ...), e.g. ``["10.1.0.0/16"]``. Empty: public only.
    fetch_allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    #: Largest workflow file Spindle fetches from an http(s) workflow_url (bytes).
    fetch_max_bytes: int = Field(default=10 * 1024 * 1024, gt=0)
    #: Seconds a workflow_url fetch may take in all (connecting, redirects, the body).
    fetch_timeout_seconds: float = Field(default=30.0, gt=0)
    #: Redirects a workflow_url fetch follows (each target checked as the first).
    fetch_max_redirects: int = Field(default=5, ge=0)

    # --- worker --------------------------------------------------------------------------
    #: Runs one worker owns at once.
    max_concurrent_runs: int = Field(default_factory=_cpu_count, gt=0)
    #: Seconds a worker's claim on a run lasts without renewal; an expired run is adopted.
    lease_seconds: float = Field(default=30.0, gt=0)
    #: Fallback poll for new runs when no wake-up arrives (seconds).
    poll_interval: float = Field(default=2.0, gt=0)
    #: How often a running run's progress and status are read (seconds).
    monitor_interval: float = Field(default=0.5, gt=0)
    #: Seconds between SIGTERM and SIGKILL when cancelling.
    cancel_grace_seconds: float = Field(default=10.0, ge=0)

    # --- engines -------------------------------------------------------------------------
    #: Folder of per-engine virtual environments (``<dir>/<engine>/bin/<engine>``).
    engines_dir: Path = Path(".engines")
    #: Explicit engine executables; empty means ``engines_dir`` then ``PATH``.
    snakemake: str = ""
    cwltool: str = ""
    #: Cores Snakemake may use per run.
    snakemake_cores: int = Field(default_factory=_cpu_count, gt=0)
    #: Each engine's own settings, by engine name (``[engines.NAME]`` TOML tables or a JSON
    #: object in ``SPINDLE_ENGINES``), checked by the engine's settings model.
    engines: dict[str, Any] = Field(default_factory=dict)

    # --- what a workflow runs with (docs/security.md) ------------------------------------
    #: More variables of Spindle's environment that engines on this host get, besides the
    #: allow-list (PATH, HOME, USER, LOGNAME, LANG, LANGUAGE, LC_*, TMPDIR, TZ); a name may
    #: end in ``*`` (e.g. ``CONDA_*``). ``SPINDLE_*`` never gets through.
    engine_env_passthrough: list[str] = Field(default_factory=list)
    #: Variables every engine on this host gets, with these values.
    engine_env: dict[str, str] = Field(default_factory=dict)
    #: OS account every local engine runs as (Spindle must run as root); empty: Spindle's own.
    run_as_user: str = ""
    #: OS account by Spindle user name, for local engines (over ``run_as_user``; a user in
    #: neither cannot run on ``local``). Spindle must run as root.
    run_as_users: dict[str, str] = Field(default_factory=dict)
    #: Folders of this host whose files a CWL input may name by absolute path or ``file://``
    #: URI; empty: none (inputs are attachments or http(s) URLs).
    cwl_input_roots: list[Path] = Field(default_factory=list)
    #: Confine every local engine with Landlock: it reads the host but not Spindle's data
    #: folder (database, other runs), settings file, SSH keys or ``confine_deny_paths``, and
    #: writes only its own run folder. False runs engines unconfined (docs/security.md).
    confine_engines: bool = True
    #: More files or folders a confined engine may not read (e.g. other secrets of
    #: Spindle's account).
    confine_deny_paths: list[Path] = Field(default_factory=list)
    #: Folders a confined engine may write besides its own run folder (shared caches, e.g.
    #: Snakemake's conda environments); never one holding a denied path.
    confine_write_paths: list[Path] = Field(default_factory=list)

    @field_validator("engine_env_passthrough", "engine_env")
    @classmethod
    def _no_spindle_names(cls, v: Any) -> Any:
        bad = [name for name in v if name.upper().startswith("SPINDLE_") or name == "*"]
        if bad:
            raise ValueError(
                f"{', '.join(bad)}: Spindle's own variables are never handed to engines"
            )
        return v

    @field_validator("cwl_input_roots")
    @classmethod
    def _absolute_roots(cls, v: list[Path]) -> list[Path]:
        for root in v:
            if not root.is_absolute():
                raise ValueError(f"must be absolute paths, not {str(root)!r}")
        return [root.resolve() for root in v]

    # --- compute environments ----------------------------------------------------------
    #: Named compute environments besides ``local`` (see docs/hpc.md): TOML tables
    #: ``[compute_envs.NAME]`` or a JSON object in ``SPINDLE_COMPUTE_ENVS``.
    compute_envs: dict[str, ComputeEnvConfig] = Field(default_factory=dict)
    #: What runs the containers of workflows in the ``local`` environment: "none" or
    #: "podman" (each ``[compute_envs.NAME]`` has its own ``containers``; docs/containers.md).
    containers: Literal["none", "podman"] = "none"
    #: Whether those containers may reach the network.
    container_network: bool = False

    # --- service-info --------------------------------------------------------------------
    service_id: str = "org.spindle.wes"
    service_name: str = "Spindle"
    organization_name: str = "Spindle"
    organization_url: str = "https://spindle.invalid/"
    auth_instructions_url: str = ""
    environment: str = "dev"

    # --- authentication (docs/auth.md) ---------------------------------------------------
    #: none (one local user, loopback only), basic, oidc or proxy-jwt.
    auth: AuthMode = "none"
    #: Let ``auth = "none"`` serve on an address other than loopback (everyone who reaches
    #: it is the local user, an admin).
    auth_none_allow_remote: bool = False
    #: ``realm`` of the ``WWW-Authenticate`` challenges.
    auth_realm: str = "Spindle"
    #: GET /service-info answers without credentials (its state counts are then all zero).
    service_info_public: bool = True
    #: Seconds a session cookie stays valid after sign-in.
    session_max_age_seconds: int = Field(default=12 * 3600, gt=0)
    #: Failed sign-ins (wrong password) for one account within ``signin_window_seconds``
    #: after which its password checks are refused with 429 until the window moves on; 0: no
    #: limit.
    signin_max_failures_per_account: int = Field(default=10, ge=0)
    #: The same, for one client address (all accounts together); 0: no limit.
    signin_max_failures_per_address: int = Field(default=30, ge=0)
    #: The window, in seconds, failed sign-ins are counted in.
    signin_window_seconds: float = Field(default=300.0, gt=0)
    #: Threads that hash and check passwords (argon2id: CPU and 64 MiB each), apart from
    #: every other thread, so password checks never hold up other requests.
    password_hash_workers: int = Field(default=2, ge=1)
    #: Event streams (``/events``, ``/runs/{id}/events``, the UI's live pages) one user may
    #: have open at once; one more is refused with 429.
    streams_per_user: int = Field(default=20, ge=1)
    #: Event streams open at once on this process, all users together.
    streams_total: int = Field(default=500, ge=1)
    #: Seconds between two checks that a long event stream's credentials still hold (a
    #: revoked token, a signed-out session); they are also checked before each batch of
    #: events is sent.
    stream_recheck_seconds: float = Field(default=60.0, gt=0)
    # JWT verification, for oidc and proxy-jwt
    #: Expected ``iss`` claim (oidc: also where ``/.well-known/openid-configuration`` is).
    jwt_issuer: str = ""
    #: Expected ``aud`` claim (oidc: the client id; IAP: ``/projects/NUMBER/apps/ID``).
    jwt_audience: str = ""
    #: The JWKS URL. Empty in oidc mode: the ``jwks_uri`` of the issuer's discovery document.
    jwt_jwks_url: str = ""
    #: Signature algorithms accepted (asymmetric only).
    jwt_algorithms: list[str] = Field(default_factory=lambda: ["RS256", "ES256"])
    #: Seconds of clock skew allowed on ``exp``, ``nbf`` and ``iat``.
    jwt_leeway_seconds: float = Field(default=30.0, ge=0)
    #: Seconds the fetched JWKS is used before it is fetched again.
    jwks_cache_seconds: float = Field(default=300.0, ge=0)
    #: Least seconds between two fetches caused by an unknown key id (a token naming a key
    #: the cached set lacks makes Spindle fetch the set again, at most this often).
    jwks_min_refresh_seconds: float = Field(default=10.0, ge=0)
    #: Claim holding the user's name in Spindle (stable and unique: ``sub`` or ``email``).
    jwt_user_claim: str = "sub"
    jwt_email_claim: str = "email"
    jwt_name_claim: str = "name"
    #: Claim that makes a user an admin; empty: admins are set with ``spindle users``.
    jwt_admin_claim: str = ""
    #: Values of ``jwt_admin_claim`` that mean admin (the claim may be a string, a list of
    #: strings, or ``true``).
    jwt_admin_values: list[str] = Field(default_factory=lambda: ["spindle-admin"])
    #: proxy-jwt: the header the trusted proxy puts its signed assertion in.
    proxy_jwt_header: str = "X-Goog-IAP-JWT-Assertion"
    #: proxy-jwt: accept only users of this hosted domain (the ``hd`` claim); empty: any.
    proxy_jwt_hosted_domain: str = ""

    # --- outputs, sharing and S3 storage (docs/storage.md) ------------------------------
    #: Seconds a signed download link lasts when its maker asks for no other lifetime.
    link_seconds: int = Field(default=7 * 24 * 3600, gt=0)
    #: Longest lifetime a signed download link may be given (seconds).
    link_max_seconds: int = Field(default=30 * 24 * 3600, gt=0)
    #: Former ``secret_key`` values whose signed download links are still accepted (key
    #: rotation: put the old key here, the new one in ``secret_key``; drop it once its links
    #: have expired). Links are always signed with ``secret_key``.
    link_old_secret_keys: list[SecretStr] = Field(default_factory=list)
    #: S3 bucket finished runs' outputs and logs are copied to; empty: no S3 storage.
    #: Credentials come from the standard AWS chain (environment, shared files, instance
    #: role), never from these settings.
    s3_bucket: str = ""
    #: Key prefix inside the bucket: a run's files go to ``<prefix>/<run_id>/<path>``.
    s3_prefix: str = "spindle"
    #: Endpoint of an S3-compatible service (MinIO, Ceph, ...); empty: AWS S3.
    s3_endpoint_url: str = ""
    #: Region of the bucket; empty: the AWS chain's.
    s3_region: str = ""
    #: Part size of multipart uploads (bytes); files larger than this are sent in parts.
    #: S3 requires at least 5 MiB.
    s3_part_size_bytes: int = Field(default=64 * 1024 * 1024, ge=5 * 1024 * 1024)
    #: Seconds a presigned S3 download URL lasts.
    s3_presign_seconds: int = Field(default=3600, gt=0, le=7 * 24 * 3600)
    #: Remove the local copies of a run's uploaded outputs once their upload is verified (its
    #: logs stay: the log endpoints and the web UI read them here).
    s3_remove_local: bool = False
    #: Buckets ``s3://`` inputs may come from; empty: any the AWS credentials can read.
    s3_input_buckets: list[str] = Field(default_factory=list)
    #: Largest ``s3://`` input Spindle stages into a run folder (bytes).
    s3_input_max_bytes: int = Field(default=50 * 1024**3, gt=0)

    # --- retention (runs/retention.py: the janitor in each worker) ------------------------
    #: Days after a run ended when its work folder is removed (outputs and logs kept); empty:
    #: never.
    retention_work_days: float | None = Field(default=None, gt=0)
    #: Days after a run ended when all its files are removed (the run stays listed); empty:
    #: never.
    retention_files_days: float | None = Field(default=None, gt=0)
    #: Runs the janitor handles per sweep, at most.
    retention_batch: int = Field(default=50, gt=0)
    #: Seconds between the janitor's sweeps.
    retention_interval: float = Field(default=600.0, gt=0)

    # --- operations: metrics and audit (docs/operations.md) -----------------------------
    #: A bearer token that lets a scraper read ``/metrics`` from any address
    #: (``Authorization: Bearer <token>``). Empty: no token is accepted.
    metrics_token: SecretStr = SecretStr("")
    #: Client networks that may read ``/metrics`` without a token (default: loopback only;
    #: ``[]``: none, only the token).
    metrics_networks: list[IPvAnyNetwork] = Field(
        default_factory=lambda: [ip_network("127.0.0.0/8"), ip_network("::1/128")]
    )
    #: Days audit log entries are kept; the worker prunes older ones. 0: kept for ever.
    audit_retention_days: int = Field(default=365, ge=0)

    # --- notifications (docs/notifications.md) -----------------------------------------
    #: Networks webhook and Slack URLs may point into although they are not public
    #: (loopback, private, link-local, ...); empty: public addresses only.
    notify_allowed_networks: list[IPvAnyNetwork] = Field(default_factory=list)
    #: Seconds a delivery is retried for (from its creation or its last redeliver).
    notify_max_age_seconds: float = Field(default=24 * 3600.0, gt=0)
    #: First retry delay (seconds); each further one doubles, with jitter. 0: no wait.
    notify_retry_base_seconds: float = Field(default=5.0, ge=0)
    #: Longest delay between two attempts (seconds).
    notify_retry_max_seconds: float = Field(default=3600.0, ge=0)
    #: Failed attempts in a row after which a subscription is marked failing (and its
    #: owner told in-app).
    notify_failing_after: int = Field(default=5, ge=1)
    #: Seconds one attempt (HTTP request or SMTP session) may take.
    notify_timeout_seconds: float = Field(default=10.0, gt=0)
    #: Seconds between the dispatcher's looks for due deliveries.
    notify_poll_interval: float = Field(default=1.0, gt=0)
    #: Deliveries one dispatcher sends at once.
    notify_concurrency: int = Field(default=8, ge=1)
    #: Seconds a dispatcher's claim on a delivery lasts; a delivery whose sender died is
    #: taken again after it.
    notify_lease_seconds: float = Field(default=60.0, gt=0)
    #: Whether worker processes run the dispatcher.
    notify_dispatcher: bool = True
    #: SMTP server for email notifications; empty: email is not sent (deliveries fail).
    smtp_host: str = ""
    smtp_port: int = Field(default=587, ge=1, le=65535)
    smtp_username: str = ""
    smtp_password: SecretStr = SecretStr("")
    #: Upgrade the connection with STARTTLS (port 587).
    smtp_starttls: bool = True
    #: Connect over TLS from the start (port 465); excludes smtp_starttls.
    smtp_tls: bool = False
    #: The From address of notification emails.
    smtp_from: str = "spindle@localhost"
    #: CA certificates (PEM file) the SMTP server's certificate is checked against, for a
    #: private CA; empty: the system's.
    smtp_ca_file: Path | None = None

    @field_validator("jwt_algorithms")
    @classmethod
    def _asymmetric(cls, v: list[str]) -> list[str]:
        bad = [a for a in v if a not in JWT_ALGORITHMS]
        if bad:
            raise ValueError(
                f"{', '.join(bad)} not accepted; choose from {', '.join(sorted(JWT_ALGORITHMS))} "
                "(never none or HS*: keys come from a public JWKS)"
            )
        if not v:
            raise ValueError("name at least one algorithm")
        return v

    @field_validator("data_dir", "engines_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

    @field_validator("compute_envs", mode="before")
    @classmethod
    def _envs(cls, v: Any) -> Any:
        return validate_envs(v)

    @field_validator("engines", mode="before")
    @classmethod
    def _engines(cls, v: Any) -> Any:
        if not isinstance(v, dict) or not v:
            return v
        plugins = registry()
        unknown = sorted(set(v) - set(plugins.engines))
        if unknown:
            raise ValueError(
                f"{', '.join(map(repr, unknown))} is not an engine; installed: "
                + ", ".join(sorted(plugins.engines))
            )
        return {name: plugins.engine_settings(name, raw) for name, raw in v.items()}

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # The file is looked up when settings are built, not when this module is imported.
        toml_file = os.environ.get("SPINDLE_CONFIG", "spindle.toml")
        return (
            init_settings,
            env_settings,
            TomlConfigSettingsSource(settings_cls, toml_file=toml_file),
        )

    @property
    def effective_database_url(self) -> str:
        return self.database_url or f"sqlite+aiosqlite:///{self.data_dir / 'spindle.db'}"

    @property
    def database_url_for_display(self) -> str:
        """The database URL with its password masked, for messages and logs."""
        return make_url(self.effective_database_url).render_as_string(hide_password=True)

    def engine_executable(self, name: str, explicit: str = "") -> str:
        """Path of an engine's executable: ``explicit`` (its setting), engines_dir, then
        PATH."""
        if explicit:
            return explicit
        candidate = self.engines_dir / name / "bin" / name
        if candidate.exists():
            return str(candidate)
        return shutil.which(name) or name


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment and the TOML file (``overrides`` first), or ConfigError
    naming every setting that is wrong, e.g. ``compute_envs.hpc.work_root: must be an
    absolute path on the cluster, not 'x'``."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = [
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: "
            f"{err['msg'].removeprefix('Value error, ')}"
            for err in exc.errors()
        ]
        raise ConfigError("invalid settings: " + "; ".join(problems)) from None
