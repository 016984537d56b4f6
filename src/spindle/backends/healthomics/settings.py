"""``[compute_envs.NAME]`` of type ``healthomics``. Credentials are never here: boto3 finds
them in the standard AWS chain (environment, shared files, instance or task role)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from spindle.compute import EnvSettings


class HealthOmicsEnv(EnvSettings):
    """Where and how runs start on AWS HealthOmics."""

    type: Literal["healthomics"]
    #: AWS region of the HealthOmics service (e.g. ``us-east-1``).
    region: str = Field(min_length=1)
    #: IAM role HealthOmics runs assume (``StartRun`` ``roleArn``).
    role_arn: str = Field(pattern=r"^arn:.+:iam::\d{12}:role/.+$")
    #: S3 URI under which HealthOmics writes each run's outputs.
    output_uri: str = Field(pattern=r"^s3://[^/]+(/.*)?$")
    storage_type: Literal["DYNAMIC", "STATIC"] = "DYNAMIC"
    #: GiB of run storage, for ``storage_type = "STATIC"`` only.
    storage_capacity: int | None = Field(default=None, ge=1)
    log_level: Literal["OFF", "FATAL", "ERROR", "ALL"] | None = None
    #: A HealthOmics run cache id, and how runs use it.
    cache_id: str | None = None
    cache_behavior: Literal["CACHE_ON_FAILURE", "CACHE_ALWAYS"] | None = None
    retention_mode: Literal["RETAIN", "REMOVE"] | None = None
    #: Tags put on every workflow and run Spindle creates (with ``spindle:run-id``).
    tags: dict[str, str] = Field(default_factory=dict)
    #: Another endpoint of the HealthOmics API (tests, a VPC endpoint); empty: AWS's own.
    endpoint_url: str | None = None
    #: Another endpoint of S3, where the runs' outputs are (tests); empty: AWS's own.
    s3_endpoint_url: str | None = None
    #: Another endpoint of CloudWatch Logs, where the runs' logs are (tests); empty: AWS's.
    logs_endpoint_url: str | None = None
    #: Seconds between polls of the environment's runs.
    poll_interval: float = Field(default=30.0, gt=0)

    @model_validator(mode="after")
    def _storage(self) -> HealthOmicsEnv:
        if self.storage_type == "STATIC" and self.storage_capacity is None:
            raise ValueError("storage_capacity is required when storage_type is STATIC")
        if self.storage_type == "DYNAMIC" and self.storage_capacity is not None:
            raise ValueError("storage_capacity is only for storage_type STATIC")
        if self.cache_behavior is not None and self.cache_id is None:
            raise ValueError("cache_behavior needs a cache_id")
        return self
