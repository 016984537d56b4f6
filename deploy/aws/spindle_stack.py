"""Spindle on AWS: the API on ECS Fargate behind an HTTPS load balancer, workers on Fargate,
PostgreSQL on RDS, run data on EFS, an S3 bucket for HealthOmics runs, and the secrets in
Secrets Manager. docs/deploy.md says how to deploy it; ``Options`` lists the knobs, each a
CDK context value (``cdk deploy -c api_count=2``) or an entry in cdk.json.

Every IAM statement this stack writes names its actions outright (no ``*`` in an action),
scoped to the resources they act on.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from aws_cdk import ArnFormat, CfnOutput, Duration, RemovalPolicy, Stack
from aws_cdk import aws_certificatemanager as acm
from aws_cdk import aws_ec2 as ec2
from aws_cdk import aws_ecr as ecr
from aws_cdk import aws_ecs as ecs
from aws_cdk import aws_ecs_patterns as ecs_patterns
from aws_cdk import aws_efs as efs
from aws_cdk import aws_elasticloadbalancingv2 as elbv2
from aws_cdk import aws_iam as iam
from aws_cdk import aws_logs as logs
from aws_cdk import aws_rds as rds
from aws_cdk import aws_s3 as s3
from aws_cdk import aws_secretsmanager as secretsmanager
from constructs import Construct

#: The repository root: the Dockerfile the image is built from when ``image`` is not given.
REPO = Path(__file__).resolve().parents[2]
#: The image's unprivileged user (Dockerfile); EFS's access point writes files as it.
SPINDLE_UID = 10001
READY_PATH = "/ga4gh/wes/v1/ready"
DATA_DIR = "/data"
PORT = 8000

# The database URL is put together in the container from the RDS secret's fields (ECS injects
# secret fields as variables, not a URL). The generated password leaves out the characters
# a URL would need escaped (RDS's default exclusions: " %+~`#$&*()|[]{}:;<>?!'/@\).
URL_ENTRYPOINT = [
    "/bin/sh",
    "-c",
    # $NAME, not ${NAME}: CloudFormation linters read ${...} as an Fn::Sub parameter.
    'SPINDLE_DATABASE_URL="postgresql+asyncpg://$DB_USERNAME:$DB_PASSWORD'
    '@$DB_HOST:$DB_PORT/$DB_NAME" exec spindle "$@"',
    "spindle",
]


@dataclass(frozen=True)
class Options:
    """Sizes, counts and names; each field is a context value of the same name."""

    #: ACM certificate for the load balancer's HTTPS listener (required).
    certificate_arn: str = ""
    #: The host name users reach Spindle at (Spindle's public_url is https://<domain_name>).
    domain_name: str = ""
    #: Container image (e.g. an ECR URI with tag). Empty: built from the repository's
    #: Dockerfile by `cdk deploy` (needs Docker or podman where cdk runs).
    image: str = ""
    #: Image of the one-off migration task only; empty: ``image``. An upgrade sets it to the
    #: new image first, runs the migration, then moves ``image`` (docs/deploy.md).
    migrate_image: str = ""
    #: Spindle's sign-in mode: basic, oidc or proxy-jwt (docs/auth.md).
    auth: str = "basic"
    max_azs: int = 2
    nat_gateways: int = 1
    api_count: int = 2
    api_cpu: int = 512
    api_memory_mib: int = 1024
    worker_count: int = 2
    worker_cpu: int = 2048
    worker_memory_mib: int = 4096
    #: Runs each worker runs at once (Spindle's worker_concurrency).
    worker_concurrency: int = 2
    db_instance_type: str = "t4g.small"
    db_allocated_storage_gib: int = 20
    db_max_allocated_storage_gib: int = 100
    db_multi_az: bool = False
    db_backup_retention_days: int = 7
    #: Full PostgreSQL version RDS offers (its major version is the part before the dot).
    postgres_version: str = "17.6"
    log_retention_days: int = 30
    #: Days after which objects under work/ in the run bucket expire.
    work_expiration_days: int = 14
    #: Keep the database, the file system and the bucket when the stack is deleted.
    retain_data: bool = True

    @classmethod
    def from_context(cls, scope: Construct) -> Options:
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = scope.node.try_get_context(f.name)
            if raw is None:
                continue
            default = getattr(cls, f.name)
            if isinstance(default, bool):
                values[f.name] = raw if isinstance(raw, bool) else str(raw).lower() == "true"
            elif isinstance(default, int):
                values[f.name] = int(raw)
            else:
                values[f.name] = str(raw)
        return cls(**values)

    def check(self) -> None:
        if not self.certificate_arn.startswith("arn:"):
            raise ValueError("context certificate_arn: the ACM certificate's ARN is required")
        if not self.domain_name:
            raise ValueError("context domain_name: the host name users reach Spindle at")
        if self.auth not in {"basic", "oidc", "proxy-jwt"}:
            raise ValueError("context auth: basic, oidc or proxy-jwt (none is loopback only)")
        for name in ("max_azs", "worker_concurrency"):
            if getattr(self, name) < 1:
                raise ValueError(f"context {name}: at least 1")
        for name in ("api_count", "worker_count", "nat_gateways"):
            if getattr(self, name) < 0:
                raise ValueError(f"context {name}: 0 or more")
        if self.migrate_image and not self.image:
            raise ValueError("context migrate_image: only together with image")


class SpindleStack(Stack):
    def __init__(self, scope: Construct, construct_id: str, **kwargs: Any) -> None:
        super().__init__(scope, construct_id, **kwargs)
        o = Options.from_context(self)
        o.check()
        removal = RemovalPolicy.RETAIN if o.retain_data else RemovalPolicy.DESTROY

        vpc = ec2.Vpc(
            self,
            "Vpc",
            max_azs=o.max_azs,
            nat_gateways=o.nat_gateways,
            subnet_configuration=[
                ec2.SubnetConfiguration(name="public", subnet_type=ec2.SubnetType.PUBLIC),
                ec2.SubnetConfiguration(name="app", subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
                ec2.SubnetConfiguration(name="db", subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            ],
        )

        # --- database: PostgreSQL, its master credentials generated into Secrets Manager --
        db = rds.DatabaseInstance(
            self,
            "Database",
            engine=rds.DatabaseInstanceEngine.postgres(
                version=rds.PostgresEngineVersion.of(
                    o.postgres_version, o.postgres_version.split(".")[0]
                )
            ),
            instance_type=ec2.InstanceType(o.db_instance_type),
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_ISOLATED),
            credentials=rds.Credentials.from_generated_secret("spindle"),
            database_name="spindle",
            allocated_storage=o.db_allocated_storage_gib,
            max_allocated_storage=o.db_max_allocated_storage_gib,
            storage_encrypted=True,
            multi_az=o.db_multi_az,
            backup_retention=Duration.days(o.db_backup_retention_days),
            deletion_protection=o.retain_data,
            publicly_accessible=False,
            removal_policy=RemovalPolicy.SNAPSHOT if o.retain_data else RemovalPolicy.DESTROY,
        )
        assert db.secret is not None

        # --- the key that signs session cookies and CSRF tokens, shared by every API task --
        session_secret = secretsmanager.Secret(
            self,
            "SessionSecret",
            description="Spindle secret_key (session cookies and CSRF tokens)",
            generate_secret_string=secretsmanager.SecretStringGenerator(
                password_length=48, exclude_punctuation=True
            ),
        )

        # --- run data: EFS shared by the API and the workers ------------------------------
        fs = efs.FileSystem(
            self,
            "RunData",
            vpc=vpc,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            encrypted=True,
            lifecycle_policy=efs.LifecyclePolicy.AFTER_30_DAYS,
            performance_mode=efs.PerformanceMode.GENERAL_PURPOSE,
            throughput_mode=efs.ThroughputMode.ELASTIC,
            removal_policy=removal,
            # AWS Backup's default plan: daily, kept 35 days.
            enable_automatic_backups=True,
        )
        access_point = fs.add_access_point(
            "SpindleData",
            path="/spindle",
            posix_user=efs.PosixUser(uid=str(SPINDLE_UID), gid=str(SPINDLE_UID)),
            create_acl=efs.Acl(
                owner_uid=str(SPINDLE_UID), owner_gid=str(SPINDLE_UID), permissions="750"
            ),
        )

        # --- S3 for HealthOmics runs: inputs, outputs, and work/ that expires ---------------
        bucket = s3.Bucket(
            self,
            "RunBucket",
            block_public_access=s3.BlockPublicAccess.BLOCK_ALL,
            encryption=s3.BucketEncryption.S3_MANAGED,
            enforce_ssl=True,
            versioned=False,
            removal_policy=removal,
            lifecycle_rules=[
                s3.LifecycleRule(
                    id="expire-work",
                    prefix="work/",
                    expiration=Duration.days(o.work_expiration_days),
                    abort_incomplete_multipart_upload_after=Duration.days(1),
                ),
            ],
        )
        bucket_objects = bucket.arn_for_objects("*")
        s3_object_actions = ["s3:GetObject", "s3:PutObject", "s3:DeleteObject"]

        # The role HealthOmics assumes while it runs a workflow: the run bucket and its own
        # log group, nothing else.
        omics_role = iam.Role(
            self,
            "HealthOmicsRunRole",
            assumed_by=iam.ServicePrincipal(
                "omics.amazonaws.com",
                conditions={"StringEquals": {"aws:SourceAccount": self.account}},
            ),
            description="Assumed by AWS HealthOmics for Spindle's runs",
        )
        omics_role.add_to_policy(
            iam.PolicyStatement(actions=s3_object_actions, resources=[bucket_objects])
        )
        omics_role.add_to_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
        )
        omics_log_group_arn = self.format_arn(
            service="logs",
            resource="log-group",
            resource_name="/aws/omics/WorkflowLog",
            arn_format=ArnFormat.COLON_RESOURCE_NAME,
        )
        omics_role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogGroup", "logs:DescribeLogStreams"],
                resources=[omics_log_group_arn + ":*"],
            )
        )
        omics_role.add_to_policy(
            iam.PolicyStatement(
                actions=["logs:CreateLogStream", "logs:PutLogEvents"],
                resources=[omics_log_group_arn + ":log-stream:*"],
            )
        )

        # --- ECS ------------------------------------------------------------------------
        cluster = ecs.Cluster(
            self,
            "Cluster",
            vpc=vpc,
            container_insights_v2=ecs.ContainerInsights.ENABLED,
        )
        image = (
            self._image(o.image, "ImageRepository")
            if o.image
            else ecs.ContainerImage.from_asset(str(REPO), exclude=_asset_exclude())
        )
        environment = {
            "SPINDLE_AUTH": o.auth,
            "SPINDLE_PUBLIC_URL": f"https://{o.domain_name}",
            "SPINDLE_ALLOWED_HOSTS": f'["{o.domain_name}"]',
            "SPINDLE_WORKER_CONCURRENCY": str(o.worker_concurrency),
            "SPINDLE_ENVIRONMENT": "prod",
            "DB_HOST": db.db_instance_endpoint_address,
            "DB_PORT": db.db_instance_endpoint_port,
            "DB_NAME": "spindle",
        }
        secrets = {
            "DB_USERNAME": ecs.Secret.from_secrets_manager(db.secret, "username"),
            "DB_PASSWORD": ecs.Secret.from_secrets_manager(db.secret, "password"),
            "SPINDLE_SECRET_KEY": ecs.Secret.from_secrets_manager(session_secret),
        }

        api_logs = logs.LogGroup(
            self,
            "ApiLogs",
            retention=_retention(o.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )
        worker_logs = logs.LogGroup(
            self,
            "WorkerLogs",
            retention=_retention(o.log_retention_days),
            removal_policy=RemovalPolicy.DESTROY,
        )

        migrate_image = (
            self._image(o.migrate_image, "MigrateImageRepository") if o.migrate_image else image
        )

        def task_definition(
            name: str,
            cpu: int,
            memory: int,
            command: list[str],
            log_group: logs.LogGroup,
            image: ecs.ContainerImage = image,
        ) -> ecs.FargateTaskDefinition:
            task = ecs.FargateTaskDefinition(
                self,
                name,
                cpu=cpu,
                memory_limit_mib=memory,
                runtime_platform=ecs.RuntimePlatform(
                    cpu_architecture=ecs.CpuArchitecture.X86_64,
                    operating_system_family=ecs.OperatingSystemFamily.LINUX,
                ),
                volumes=[
                    ecs.Volume(
                        name="data",
                        efs_volume_configuration=ecs.EfsVolumeConfiguration(
                            file_system_id=fs.file_system_id,
                            transit_encryption="ENABLED",
                            authorization_config=ecs.AuthorizationConfig(
                                access_point_id=access_point.access_point_id, iam="ENABLED"
                            ),
                        ),
                    )
                ],
            )
            container = task.add_container(
                "spindle",
                image=image,
                entry_point=URL_ENTRYPOINT,
                command=command,
                environment=environment,
                secrets=secrets,
                logging=ecs.LogDrivers.aws_logs(stream_prefix="spindle", log_group=log_group),
                port_mappings=[ecs.PortMapping(container_port=PORT)]
                if command[0] == "serve"
                else None,
                stop_timeout=Duration.seconds(60) if command[0] == "worker" else None,
                # An init as PID 1 reaps what engines leave behind.
                linux_parameters=ecs.LinuxParameters(
                    self, f"{name}Linux", init_process_enabled=True
                ),
            )
            container.add_mount_points(
                ecs.MountPoint(container_path=DATA_DIR, source_volume="data", read_only=False)
            )
            task.task_role.add_to_principal_policy(
                iam.PolicyStatement(
                    actions=["elasticfilesystem:ClientMount", "elasticfilesystem:ClientWrite"],
                    resources=[fs.file_system_arn],
                    conditions={
                        "StringEquals": {
                            "elasticfilesystem:AccessPointArn": access_point.access_point_arn
                        }
                    },
                )
            )
            return task

        api_task = task_definition(
            "ApiTask", o.api_cpu, o.api_memory_mib, ["serve", "--no-worker"], api_logs
        )
        worker_task = task_definition(
            "WorkerTask", o.worker_cpu, o.worker_memory_mib, ["worker"], worker_logs
        )
        # The one-off migration (`spindle db upgrade`), run with `aws ecs run-task` before
        # the services start or are updated (docs/deploy.md).
        migrate_task = task_definition(
            "MigrateTask", 256, 512, ["db", "upgrade"], api_logs, image=migrate_image
        )

        # Workers start and watch HealthOmics runs that use the run role, and move their
        # files in the run bucket.
        worker_task.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=[
                    "omics:StartRun",
                    "omics:GetRun",
                    "omics:CancelRun",
                    "omics:ListRunTasks",
                    "omics:GetRunTask",
                    "omics:TagResource",
                ],
                resources=[
                    self.format_arn(service="omics", resource="run", resource_name="*"),
                    self.format_arn(service="omics", resource="workflow", resource_name="*"),
                ],
            )
        )
        worker_task.task_role.add_to_principal_policy(
            iam.PolicyStatement(
                actions=["iam:PassRole"],
                resources=[omics_role.role_arn],
                conditions={"StringEquals": {"iam:PassedToService": "omics.amazonaws.com"}},
            )
        )
        worker_task.task_role.add_to_principal_policy(
            iam.PolicyStatement(actions=s3_object_actions, resources=[bucket_objects])
        )
        worker_task.task_role.add_to_principal_policy(
            iam.PolicyStatement(actions=["s3:ListBucket"], resources=[bucket.bucket_arn])
        )

        certificate = acm.Certificate.from_certificate_arn(self, "Certificate", o.certificate_arn)
        api = ecs_patterns.ApplicationLoadBalancedFargateService(
            self,
            "Api",
            cluster=cluster,
            task_definition=api_task,
            desired_count=o.api_count,
            public_load_balancer=True,
            protocol=elbv2.ApplicationProtocol.HTTPS,
            certificate=certificate,
            ssl_policy=elbv2.SslPolicy.RECOMMENDED_TLS,
            redirect_http=True,
            task_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            health_check_grace_period=Duration.seconds(180),
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            enable_execute_command=True,
            min_healthy_percent=50,
        )
        api.target_group.configure_health_check(
            path=READY_PATH, healthy_http_codes="200", interval=Duration.seconds(15)
        )
        api.load_balancer.set_attribute("routing.http.drop_invalid_header_fields.enabled", "true")

        workers = ecs.FargateService(
            self,
            "Workers",
            cluster=cluster,
            task_definition=worker_task,
            desired_count=o.worker_count,
            vpc_subnets=ec2.SubnetSelection(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS),
            circuit_breaker=ecs.DeploymentCircuitBreaker(rollback=True),
            enable_execute_command=True,
            min_healthy_percent=50,
        )
        migrate_sg = ec2.SecurityGroup(
            self, "MigrateSecurityGroup", vpc=vpc, description="Spindle migration task"
        )

        for peer in (api.service, workers):
            db.connections.allow_default_port_from(peer)
            fs.connections.allow_default_port_from(peer)
        db.connections.allow_default_port_from(migrate_sg)
        fs.connections.allow_default_port_from(migrate_sg)

        private = vpc.select_subnets(subnet_type=ec2.SubnetType.PRIVATE_WITH_EGRESS)
        CfnOutput(self, "Url", value=f"https://{o.domain_name}")
        CfnOutput(self, "LoadBalancerDns", value=api.load_balancer.load_balancer_dns_name)
        CfnOutput(self, "ClusterName", value=cluster.cluster_name)
        CfnOutput(self, "ApiServiceName", value=api.service.service_name)
        CfnOutput(self, "WorkerServiceName", value=workers.service_name)
        CfnOutput(self, "MigrateTaskDefinition", value=migrate_task.task_definition_arn)
        CfnOutput(self, "MigrateSecurityGroupId", value=migrate_sg.security_group_id)
        CfnOutput(self, "PrivateSubnets", value=",".join(private.subnet_ids))
        CfnOutput(self, "DatabaseSecretArn", value=db.secret.secret_arn)
        CfnOutput(self, "RunBucketName", value=bucket.bucket_name)
        CfnOutput(self, "HealthOmicsRunRoleArn", value=omics_role.role_arn)
        CfnOutput(self, "FileSystemId", value=fs.file_system_id)

    def _image(self, uri: str, construct_id: str) -> ecs.ContainerImage:
        """An ECR URI (``ACCOUNT.dkr.ecr.REGION.amazonaws.com/NAME:TAG``) through its
        repository, so the task execution role is granted the pull on that repository
        alone; any other image by name."""
        host, _, rest = uri.partition("/")
        parts = host.split(".")
        if len(parts) < 6 or parts[1:3] != ["dkr", "ecr"] or not rest:
            return ecs.ContainerImage.from_registry(uri)
        if "@" in rest:
            name, _, ref = rest.partition("@")
        else:
            name, _, ref = rest.partition(":")
        repository = ecr.Repository.from_repository_attributes(
            self,
            construct_id,
            repository_arn=f"arn:{self.partition}:ecr:{parts[3]}:{parts[0]}:repository/{name}",
            repository_name=name,
        )
        # A digest (sha256:...) is taken in place of a tag.
        return ecs.ContainerImage.from_ecr_repository(repository, tag=ref or "latest")


#: CloudWatch Logs takes only some retention periods.
_RETENTIONS = {
    1: logs.RetentionDays.ONE_DAY,
    3: logs.RetentionDays.THREE_DAYS,
    7: logs.RetentionDays.ONE_WEEK,
    14: logs.RetentionDays.TWO_WEEKS,
    30: logs.RetentionDays.ONE_MONTH,
    60: logs.RetentionDays.TWO_MONTHS,
    90: logs.RetentionDays.THREE_MONTHS,
    180: logs.RetentionDays.SIX_MONTHS,
    365: logs.RetentionDays.ONE_YEAR,
    731: logs.RetentionDays.TWO_YEARS,
    1827: logs.RetentionDays.FIVE_YEARS,
    3653: logs.RetentionDays.TEN_YEARS,
}


def _retention(days: int) -> logs.RetentionDays:
    """The shortest retention CloudWatch offers that keeps logs at least ``days`` days."""
    return next((_RETENTIONS[d] for d in sorted(_RETENTIONS) if d >= days), _RETENTIONS[3653])


def _asset_exclude() -> list[str]:
    """What the image build never needs (the Dockerfile's .dockerignore says the rest)."""
    return [".git", ".venv", ".engines", "deploy/aws/.venv", "deploy/aws/cdk.out", "**/cdk.out"]
