"""The schema. Alembic migrations in ``migrations/`` must produce exactly this
(tests/db/test_migrations.py compares them on every database)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    Column,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
)

from spindle.db.types import UTCDateTime

metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
    }
)

#: On MySQL/MariaDB, ids and task ids compare byte for byte (the server's default collation
#: would make task ids differing only in case collide in the primary key).
MYSQL_TABLE: dict[str, Any] = {"mysql_charset": "utf8mb4", "mysql_collate": "utf8mb4_bin"}

#: SQLite only auto-increments an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

#: The user ``auth = "none"`` acts as; migration 0002 creates it and gives it the runs that
#: existed before users did.
LOCAL_USER = "local"

users = Table(
    "users",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    # the sign-in name (basic), or the value of the configured user claim (oidc, proxy-jwt)
    Column("name", String(255), nullable=False, unique=True),
    Column("email", String(320), nullable=True),
    Column("display_name", String(255), nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_login_at", UTCDateTime, nullable=True),
    Column("preferences", JSON, nullable=False),
    Column("is_admin", Boolean, nullable=False),
    Column("disabled", Boolean, nullable=False),
    # argon2 hash (PHC string); null for users who sign in through an identity provider
    Column("password_hash", String(255), nullable=True),
    # raised to end every session of the user (sign-out, password change, disable); a
    # session cookie carries the epoch it was made in (NULL: 0)
    Column("session_epoch", Integer, nullable=True),
    # the identity provider (``iss``) that made the user; NULL for local users (made with
    # ``spindle users``): a provider's token never signs in as a local user
    Column("issuer", String(1024), nullable=True),
    **MYSQL_TABLE,
)

api_tokens = Table(
    "api_tokens",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("name", String(255), nullable=False),
    # SHA-256 (hex) of the token; the token itself is shown once and never stored
    Column("token_hash", String(64), nullable=False, unique=True),
    Column("created_at", UTCDateTime, nullable=False),
    Column("last_used_at", UTCDateTime, nullable=True),
    Column("expires_at", UTCDateTime, nullable=True),
    Column("revoked_at", UTCDateTime, nullable=True),
    Index("ix_api_tokens_user_id", "user_id"),
    **MYSQL_TABLE,
)

run_groups = Table(
    "run_groups",
    metadata,
    # seq gives the stable keyset order of group lists; id is the public group id.
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("name", String(255), nullable=False),
    Column("description", Text, nullable=False),
    Column("owner_id", BigId, ForeignKey("users.id"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    # limits; null: no limit. The claim reads them (runs.runs_group_id_state_priority_seq).
    Column("max_runs", Integer, nullable=True),
    Column("max_cpus", Integer, nullable=True),
    Column("max_duration_seconds", Integer, nullable=True),
    Column("compute_env", String(64), nullable=True),
    # a user's groups in creation order; by name
    Index("ix_run_groups_owner_id_seq", "owner_id", "seq"),
    Index("ix_run_groups_name_seq", "name", "seq"),
    Index("ix_run_groups_owner_id_name_seq", "owner_id", "name", "seq"),
    **MYSQL_TABLE,
)

runs = Table(
    "runs",
    metadata,
    # seq gives the stable keyset order of GET /runs; id is the public, unguessable run id.
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("state", String(16), nullable=False),
    Column("workflow_type", String(32), nullable=False),
    Column("workflow_type_version", String(64), nullable=False),
    Column("workflow_url", Text, nullable=False),
    Column("workflow_engine", String(64), nullable=True),
    Column("workflow_engine_version", String(64), nullable=True),
    Column("workflow_params", JSON, nullable=False),
    Column("workflow_engine_parameters", JSON, nullable=False),
    Column("tags", JSON, nullable=False),
    # The engine and compute environment Spindle resolved for this run.
    Column("engine", String(64), nullable=False),
    Column("compute_env", String(64), nullable=False),
    Column("submitted_at", UTCDateTime, nullable=False),
    Column("updated_at", UTCDateTime, nullable=False),
    Column("start_time", UTCDateTime, nullable=True),
    Column("end_time", UTCDateTime, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("cmd", JSON, nullable=False),
    Column("system_logs", JSON, nullable=False),
    Column("outputs", JSON, nullable=False),
    # {"done": n, "total": m | null, "current": [task names]} as the engine last reported it
    Column("progress", JSON, nullable=True),
    # Backend handle: saved the moment the engine is submitted, so any worker can re-attach.
    Column("handle", JSON, nullable=True),
    Column("worker_id", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("owner_id", BigId, ForeignKey("users.id"), nullable=False),
    # run groups: membership, order inside the group, CPUs counted against max_cpus
    Column("group_id", String(36), ForeignKey("run_groups.id"), nullable=True),
    Column("priority", Integer, nullable=False, server_default="0"),
    Column("cpus", Integer, nullable=False, server_default="1"),
    # files removed (migration 0009): DELETE /runs/{id} (a tombstone: hidden from lists by
    # default), retention of work folders and of whole runs' files
    Column("deleted_at", UTCDateTime, nullable=True),
    Column("work_removed_at", UTCDateTime, nullable=True),
    Column("files_removed_at", UTCDateTime, nullable=True),
    # claim: oldest QUEUED first; counts by state
    Index("ix_runs_state_seq", "state", "seq"),
    # adopt: active runs whose lease ran out
    Index("ix_runs_state_lease", "state", "lease_expires_at"),
    Index("ix_runs_worker_id", "worker_id"),
    # a user's runs, newest first (keyset pages); a user's counts by state (and stats)
    Index("ix_runs_owner_id_seq", "owner_id", "seq"),
    Index("ix_runs_owner_id_state", "owner_id", "state"),
    # the web UI (each as is for an admin, and led by owner_id for a user's own runs):
    # lists filtered (or sorted) by workflow type, in submission order
    Index("ix_runs_workflow_type_seq", "workflow_type", "seq"),
    Index("ix_runs_owner_id_workflow_type_seq", "owner_id", "workflow_type", "seq"),
    # dashboard: runs submitted in the last 24 h, one state at a time
    Index("ix_runs_state_submitted_at", "state", "submitted_at"),
    Index("ix_runs_owner_id_state_submitted_at", "owner_id", "state", "submitted_at"),
    # dashboard: the most recent failures
    Index("ix_runs_state_end_time", "state", "end_time"),
    Index("ix_runs_owner_id_state_end_time", "owner_id", "state", "end_time"),
    # claim: a group's active runs (its usage) and its queued runs in priority order; a
    # group's runs by state (counts, lists)
    Index("ix_runs_group_id_state_priority_seq", "group_id", "state", "priority", "seq"),
    Index("ix_runs_group_id_seq", "group_id", "seq"),
    # /metrics: runs by state and compute environment, counted from the index alone
    Index("ix_runs_state_compute_env", "state", "compute_env"),
    **MYSQL_TABLE,
)

tasks = Table(
    "tasks",
    metadata,
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("id", String(255), primary_key=True),
    # order in which the engine reported the task; keyset order of GET /runs/{id}/tasks
    Column("ordinal", Integer, nullable=False),
    Column("name", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("cmd", JSON, nullable=False),
    Column("start_time", UTCDateTime, nullable=True),
    Column("end_time", UTCDateTime, nullable=True),
    Column("exit_code", Integer, nullable=True),
    Column("stdout", JSON, nullable=True),
    Column("stderr", JSON, nullable=True),
    Column("system_logs", JSON, nullable=False),
    Index("ix_tasks_run_id_ordinal", "run_id", "ordinal", unique=True),
    **MYSQL_TABLE,
)

events = Table(
    "events",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    Column("at", UTCDateTime, nullable=False),
    Column("kind", String(32), nullable=False),
    Column("data", JSON, nullable=False),
    Index("ix_events_run_id_id", "run_id", "id"),
    **MYSQL_TABLE,
)

run_texts = Table(
    "run_texts",
    metadata,
    # What a free-text search of runs reads: the run id, workflow URL and tags, lowercased,
    # in a narrow table of its own, so a search that matches few runs reads ~100 bytes a run
    # instead of the whole wide runs row (written with the run, never changed).
    Column(
        "seq",
        BigId,
        ForeignKey("runs.seq", ondelete="CASCADE"),
        primary_key=True,
        autoincrement=False,
    ),
    Column("text", Text, nullable=False),
    **MYSQL_TABLE,
)

run_lineage = Table(
    "run_lineage",
    metadata,
    # A run made from another (POST /runs/{id}/recover, resubmission): its parent, whether
    # it is a recovery, the notes given, and ``work_from``: the run whose working folder it
    # took over (unique: a working folder is handed over once, so two recoveries of one
    # parent never run in the same folder).
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), primary_key=True),
    Column("parent_run_id", String(36), ForeignKey("runs.id"), nullable=False),
    Column("recovery", Boolean, nullable=False),
    Column("notes", Text, nullable=False),
    Column("work_from", String(36), nullable=True, unique=True),
    Index("ix_run_lineage_parent_run_id", "parent_run_id"),
    **MYSQL_TABLE,
)


audit_log = Table(
    "audit_log",
    metadata,
    # security-relevant actions (spindle/audit.py), newest first by id; pruned by age
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("at", UTCDateTime, nullable=False),
    # what happened: ``signin.failure``, ``token.create``, ``run.cancel``, ...
    Column("action", String(64), nullable=False),
    # who did it (no foreign key: the entry outlives the user); NULL: the CLI or nobody
    Column("actor_id", BigInteger, nullable=True),
    Column("actor_name", String(255), nullable=True),
    Column("address", String(64), nullable=True),
    # what it was done to: ``user``, ``token``, ``run``, ``group`` and its id
    Column("target_kind", String(32), nullable=True),
    Column("target_id", String(255), nullable=True),
    Column("detail", JSON, nullable=False),
    Index("ix_audit_log_at", "at"),
    Index("ix_audit_log_action_id", "action", "id"),
    Index("ix_audit_log_actor_name_id", "actor_name", "id"),
    Index("ix_audit_log_target_id_id", "target_id", "id"),
    **MYSQL_TABLE,
)


# --- notifications (docs/notifications.md) ---------------------------------------------------

notify_subscriptions = Table(
    "notify_subscriptions",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    Column("id", String(36), nullable=False, unique=True),
    Column("owner_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    # webhook | slack | email | inapp
    Column("channel", String(16), nullable=False),
    Column("url", Text, nullable=True),
    # the Standard Webhooks signing secret (whsec_...), webhooks only
    Column("secret", String(255), nullable=True),
    # event names (run.complete, run.failed, run.canceled, run.started, group.drained)
    Column("events", JSON, nullable=False),
    # scope: one run, one run group, or (both null) every run of the owner
    Column("run_id", String(36), ForeignKey("runs.id", ondelete="CASCADE"), nullable=True),
    Column("group_id", String(36), ForeignKey("run_groups.id", ondelete="CASCADE"), nullable=True),
    # active | failing (persistent errors; its owner was told in-app)
    Column("status", String(16), nullable=False),
    Column("failures", Integer, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("created_at", UTCDateTime, nullable=False),
    Index("ix_notify_subscriptions_owner_id_seq", "owner_id", "seq"),
    Index("ix_notify_subscriptions_run_id", "run_id"),
    Index("ix_notify_subscriptions_group_id", "group_id"),
    **MYSQL_TABLE,
)

notify_deliveries = Table(
    "notify_deliveries",
    metadata,
    Column("seq", BigId, primary_key=True, autoincrement=True),
    # msg_...: the webhook-id, the same on every attempt
    Column("id", String(40), nullable=False, unique=True),
    Column(
        "subscription_id",
        String(36),
        ForeignKey("notify_subscriptions.id", ondelete="CASCADE"),
        nullable=True,
    ),
    Column("owner_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("channel", String(16), nullable=False),
    # the URL, or the email address
    Column("target", Text, nullable=False),
    Column("event", String(32), nullable=False),
    Column("run_id", String(36), nullable=True),
    Column("group_id", String(36), nullable=True),
    Column("payload", JSON, nullable=False),
    # pending | sending | delivered | failed (gave up)
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("next_attempt_at", UTCDateTime, nullable=False),
    # retries are counted from it (created_at, or the last redeliver) for
    # notify_max_age_seconds
    Column("window_start", UTCDateTime, nullable=False),
    Column("worker_id", String(64), nullable=True),
    Column("lease_expires_at", UTCDateTime, nullable=True),
    Column("delivered_at", UTCDateTime, nullable=True),
    Column("last_error", Text, nullable=True),
    # the dispatcher's claim: due deliveries in order
    Index("ix_notify_deliveries_state_next_attempt_at", "state", "next_attempt_at"),
    Index("ix_notify_deliveries_owner_id_seq", "owner_id", "seq"),
    Index("ix_notify_deliveries_subscription_id_seq", "subscription_id", "seq"),
    **MYSQL_TABLE,
)

notify_attempts = Table(
    "notify_attempts",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column(
        "delivery_seq",
        BigId,
        ForeignKey("notify_deliveries.seq", ondelete="CASCADE"),
        nullable=False,
    ),
    Column("at", UTCDateTime, nullable=False),
    Column("status_code", Integer, nullable=True),
    Column("error", Text, nullable=True),
    Column("duration_ms", Integer, nullable=False),
    Index("ix_notify_attempts_delivery_seq_id", "delivery_seq", "id"),
    **MYSQL_TABLE,
)

notifications = Table(
    "notifications",
    metadata,
    Column("id", BigId, primary_key=True, autoincrement=True),
    Column("user_id", BigId, ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
    Column("created_at", UTCDateTime, nullable=False),
    Column("event", String(32), nullable=False),
    Column("title", Text, nullable=False),
    Column("body", Text, nullable=False),
    Column("run_id", String(36), nullable=True),
    Column("group_id", String(36), nullable=True),
    Column("read_at", UTCDateTime, nullable=True),
    Index("ix_notifications_user_id_id", "user_id", "id"),
    Index("ix_notifications_user_id_read_at", "user_id", "read_at"),
    **MYSQL_TABLE,
)
