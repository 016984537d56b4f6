"""Settings: ``SPINDLE_*`` environment variables, then an optional TOML file.

Nothing reads configuration at import time: ``Settings()`` is built by the CLI (or a test)
and handed to ``create_app`` / the worker.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    TomlConfigSettingsSource,
)


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
    #: Signs the web UI's CSRF tokens. Empty: a random key per process (tokens then stop
    #: working when it restarts, and differ between several servers).
    secret_key: SecretStr = SecretStr("")

    # --- storage -------------------------------------------------------------------------
    data_dir: Path = Path(".spindle")
    #: SQLAlchemy async URL. Empty: SQLite at ``<data_dir>/spindle.db``.
    database_url: str = ""
    #: Largest accepted ``POST /runs`` body, all attachments together (bytes).
    max_upload_bytes: int = Field(default=1 << 30, gt=0)

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

    # --- service-info --------------------------------------------------------------------
    service_id: str = "org.spindle.wes"
    service_name: str = "Spindle"
    organization_name: str = "Spindle"
    organization_url: str = "https://spindle.invalid/"
    auth_instructions_url: str = ""
    environment: str = "dev"

    @field_validator("data_dir", "engines_dir")
    @classmethod
    def _absolute(cls, v: Path) -> Path:
        return v.expanduser().resolve()

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

    def engine_executable(self, name: str) -> str:
        """Path of an engine's executable: explicit setting, engines_dir, then PATH."""
        explicit: Any = getattr(self, name, "")
        if explicit:
            return str(explicit)
        candidate = self.engines_dir / name / "bin" / name
        if candidate.exists():
            return str(candidate)
        return shutil.which(name) or name
