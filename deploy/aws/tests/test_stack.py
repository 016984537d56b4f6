"""The stack's resources have the properties docs/deploy.md promises, checked on the
synthesized template with aws_cdk.assertions; then cfn-lint on that template.

Run in this folder's own environment (``make -C deploy/aws test``, or the main suite's
tests/deploy/test_aws.py does it)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import aws_cdk as cdk
import pytest
from aws_cdk.assertions import Match, Template

HERE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(HERE))

from spindle_stack import SpindleStack  # noqa: E402

CONTEXT = {
    "certificate_arn": "arn:aws:acm:eu-west-1:123456789012:certificate/test",
    "domain_name": "wes.example.org",
    "image": "123456789012.dkr.ecr.eu-west-1.amazonaws.com/spindle:1.0",
    "api_count": 3,
    "worker_count": 4,
    "worker_cpu": 4096,
    "worker_memory_mib": 8192,
    "db_instance_type": "t4g.medium",
    "log_retention_days": 90,
    "work_expiration_days": 7,
    # What `cdk synth` would have looked up and cached in cdk.context.json.
    "availability-zones:account=123456789012:region=eu-west-1": ["eu-west-1a", "eu-west-1b"],
}
ENV = cdk.Environment(account="123456789012", region="eu-west-1")


def synth(context: dict[str, Any]) -> cdk.Stack:
    app = cdk.App(context=context)
    return SpindleStack(app, "Spindle", env=ENV)


@pytest.fixture(scope="module")
def stack() -> cdk.Stack:
    return synth(CONTEXT)


@pytest.fixture(scope="module")
def template(stack: cdk.Stack) -> Template:
    return Template.from_stack(stack)


@pytest.fixture(scope="module")
def resources(template: Template) -> dict[str, Any]:
    out: dict[str, Any] = template.to_json()["Resources"]
    return out


def of_type(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    return {k: v for k, v in resources.items() if v["Type"] == kind}


def one(resources: dict[str, Any], kind: str) -> dict[str, Any]:
    found = of_type(resources, kind)
    assert len(found) == 1, f"{kind}: {sorted(found)}"
    props: dict[str, Any] = next(iter(found.values()))["Properties"]
    return props


def task_with_command(resources: dict[str, Any], command: list[str]) -> dict[str, Any]:
    for res in of_type(resources, "AWS::ECS::TaskDefinition").values():
        container = res["Properties"]["ContainerDefinitions"][0]
        if container["Command"] == command:
            return dict(res["Properties"])
    raise AssertionError(f"no task definition runs {command}")


def image_of(container: dict[str, Any]) -> tuple[str, str]:
    """(repository, tag) of a container whose image is in the account's ECR."""
    rendered = json.dumps(container["Image"])
    assert "123456789012.dkr.ecr.eu-west-1." in rendered, rendered
    name, _, tag = rendered.rpartition("/")[2].split('"')[0].partition(":")
    return name, tag


def test_the_execution_role_may_pull_from_the_image_repository_only(
    resources: dict[str, Any],
) -> None:
    pulls = [s for _, s in policy_statements(resources) if "ecr:BatchGetImage" in actions(s)]
    assert pulls
    for s in pulls:
        assert json.dumps(s["Resource"]).count("repository/spindle") == 1, s


def test_the_load_balancer_serves_https_with_the_certificate_and_redirects_http(
    resources: dict[str, Any],
) -> None:
    lb = one(resources, "AWS::ElasticLoadBalancingV2::LoadBalancer")
    assert lb["Scheme"] == "internet-facing"
    listeners = [
        r["Properties"]
        for r in of_type(resources, "AWS::ElasticLoadBalancingV2::Listener").values()
    ]
    https = [p for p in listeners if p["Protocol"] == "HTTPS"]
    assert len(https) == 1
    assert https[0]["Port"] == 443
    assert https[0]["Certificates"] == [{"CertificateArn": CONTEXT["certificate_arn"]}]
    http = [p for p in listeners if p["Protocol"] == "HTTP"]
    assert [p["DefaultActions"][0]["Type"] for p in http] == ["redirect"]
    assert http[0]["DefaultActions"][0]["RedirectConfig"]["Protocol"] == "HTTPS"


def test_the_target_group_checks_readiness(resources: dict[str, Any]) -> None:
    tg = one(resources, "AWS::ElasticLoadBalancingV2::TargetGroup")
    assert tg["HealthCheckPath"] == "/ga4gh/wes/v1/ready"
    assert tg["TargetType"] == "ip"


def test_the_api_and_the_workers_are_fargate_services_of_the_given_counts(
    resources: dict[str, Any],
) -> None:
    services = [r["Properties"] for r in of_type(resources, "AWS::ECS::Service").values()]
    assert sorted(s["DesiredCount"] for s in services) == [3, 4]
    for s in services:
        assert s["LaunchType"] == "FARGATE"
        network = s["NetworkConfiguration"]["AwsvpcConfiguration"]
        assert network["AssignPublicIp"] == "DISABLED"
    api = next(s for s in services if s["DesiredCount"] == 3)
    assert api["LoadBalancers"][0]["ContainerPort"] == 8000
    worker = next(s for s in services if s["DesiredCount"] == 4)
    assert "LoadBalancers" not in worker


def test_the_tasks_run_serve_without_worker_worker_and_the_migration(
    resources: dict[str, Any],
) -> None:
    api = task_with_command(resources, ["serve", "--no-worker"])
    worker = task_with_command(resources, ["worker"])
    migrate = task_with_command(resources, ["db", "upgrade"])
    assert (worker["Cpu"], worker["Memory"]) == ("4096", "8192")
    for task in (api, worker, migrate):
        container = task["ContainerDefinitions"][0]
        assert image_of(container) == ("spindle", "1.0")
        assert task["RequiresCompatibilities"] == ["FARGATE"]
        env = {e["Name"]: e["Value"] for e in container["Environment"]}
        assert env["SPINDLE_AUTH"] == "basic"
        assert env["SPINDLE_PUBLIC_URL"] == "https://wes.example.org"
        assert json.loads(env["SPINDLE_ALLOWED_HOSTS"]) == ["wes.example.org"]
        secrets = {s["Name"] for s in container["Secrets"]}
        assert secrets == {"DB_USERNAME", "DB_PASSWORD", "SPINDLE_SECRET_KEY"}
        assert container["MountPoints"] == [
            {"ContainerPath": "/data", "ReadOnly": False, "SourceVolume": "data"}
        ]
        efs = task["Volumes"][0]["EFSVolumeConfiguration"]
        assert efs["TransitEncryption"] == "ENABLED"
        assert efs["AuthorizationConfig"]["IAM"] == "ENABLED"
        assert container["LogConfiguration"]["LogDriver"] == "awslogs"
        assert container["LinuxParameters"]["InitProcessEnabled"] is True


def test_the_database_is_private_encrypted_postgresql_with_a_generated_secret(
    resources: dict[str, Any],
) -> None:
    db = one(resources, "AWS::RDS::DBInstance")
    assert db["Engine"] == "postgres"
    assert db["DBInstanceClass"] == "db.t4g.medium"
    assert db["StorageEncrypted"] is True
    assert db["PubliclyAccessible"] is False
    assert db["BackupRetentionPeriod"] == 7
    assert db["DeletionProtection"] is True
    # The password is resolved from Secrets Manager, never written into the template.
    assert "resolve:secretsmanager" in json.dumps(db["MasterUserPassword"])
    secrets = of_type(resources, "AWS::SecretsManager::Secret")
    generated = [s["Properties"]["GenerateSecretString"] for s in secrets.values()]
    assert any(g.get("SecretStringTemplate") == '{"username":"spindle"}' for g in generated)
    assert any(g.get("PasswordLength") == 48 for g in generated)  # the session secret


def test_run_data_on_encrypted_efs_through_an_access_point_as_the_image_user(
    resources: dict[str, Any],
) -> None:
    fs = one(resources, "AWS::EFS::FileSystem")
    assert fs["Encrypted"] is True
    ap = one(resources, "AWS::EFS::AccessPoint")
    assert ap["PosixUser"] == {"Uid": "10001", "Gid": "10001"}


def test_the_run_bucket_is_private_and_expires_work(resources: dict[str, Any]) -> None:
    bucket = one(resources, "AWS::S3::Bucket")
    assert bucket["PublicAccessBlockConfiguration"] == {
        "BlockPublicAcls": True,
        "BlockPublicPolicy": True,
        "IgnorePublicAcls": True,
        "RestrictPublicBuckets": True,
    }
    rules = bucket["LifecycleConfiguration"]["Rules"]
    work = next(r for r in rules if r.get("Prefix") == "work/")
    assert work["ExpirationInDays"] == 7
    assert work["Status"] == "Enabled"


def test_the_healthomics_role_is_for_omics_and_the_run_bucket_only(
    template: Template, resources: dict[str, Any]
) -> None:
    template.has_resource_properties(
        "AWS::IAM::Role",
        {
            "AssumeRolePolicyDocument": {
                "Statement": [
                    Match.object_like(
                        {"Principal": {"Service": "omics.amazonaws.com"}, "Effect": "Allow"}
                    )
                ]
            }
        },
    )
    # Workers may pass that role to HealthOmics and to nothing else.
    statements = [s for _, s in policy_statements(resources)]
    passes = [s for s in statements if "iam:PassRole" in actions(s)]
    assert len(passes) == 1
    assert passes[0]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "omics.amazonaws.com"}
    }


def test_log_groups_keep_logs_for_the_given_days(resources: dict[str, Any]) -> None:
    groups = [r["Properties"] for r in of_type(resources, "AWS::Logs::LogGroup").values()]
    assert len(groups) == 2
    assert {g["RetentionInDays"] for g in groups} == {90}


def policy_statements(resources: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    for name, res in resources.items():
        if res["Type"] in {"AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"}:
            for s in res["Properties"]["PolicyDocument"]["Statement"]:
                yield name, s
        if res["Type"] == "AWS::IAM::Role":
            for policy in res["Properties"].get("Policies", []):
                for s in policy["PolicyDocument"]["Statement"]:
                    yield name, s


def actions(statement: dict[str, Any]) -> list[str]:
    value = statement.get("Action", [])
    return [value] if isinstance(value, str) else list(value)


def test_no_iam_statement_allows_a_wildcard_action(resources: dict[str, Any]) -> None:
    statements = list(policy_statements(resources))
    assert statements
    wild = [(name, a) for name, s in statements for a in actions(s) if "*" in a]
    assert wild == []
    assert all(s["Effect"] == "Allow" for _, s in statements)
    assert not [n for n, s in statements if "NotAction" in s]


def test_the_migration_can_run_a_newer_image_first() -> None:
    newer = "123456789012.dkr.ecr.eu-west-1.amazonaws.com/spindle:1.1"
    resources = Template.from_stack(synth({**CONTEXT, "migrate_image": newer})).to_json()
    images = {
        command: image_of(
            task_with_command(resources["Resources"], list(command))["ContainerDefinitions"][0]
        )
        for command in (("db", "upgrade"), ("serve", "--no-worker"), ("worker",))
    }
    assert images == {
        ("db", "upgrade"): ("spindle", "1.1"),
        ("serve", "--no-worker"): ("spindle", "1.0"),
        ("worker",): ("spindle", "1.0"),
    }


def test_the_file_system_is_backed_up(resources: dict[str, Any]) -> None:
    fs = one(resources, "AWS::EFS::FileSystem")
    assert fs["BackupPolicy"] == {"Status": "ENABLED"}


def test_missing_certificate_is_refused() -> None:
    with pytest.raises(Exception, match="certificate_arn"):
        synth({k: v for k, v in CONTEXT.items() if k != "certificate_arn"})


def test_the_app_synthesizes_the_image_from_the_dockerfile_and_cfn_lint_passes(
    tmp_path: Path,
) -> None:
    """app.py run directly, as `cdk synth` runs it, without ``image``: the image is an asset
    built from the repository's Dockerfile; then cfn-lint on the template it wrote."""
    out = tmp_path / "cdk.out"
    context = {k: v for k, v in CONTEXT.items() if k != "image"}
    env = {
        **os.environ,
        "CDK_OUTDIR": str(out),
        "CDK_CONTEXT_JSON": json.dumps(context),
        "CDK_DEFAULT_ACCOUNT": "123456789012",
        "CDK_DEFAULT_REGION": "eu-west-1",
    }
    app = subprocess.run(
        [sys.executable, str(HERE / "app.py")],
        cwd=HERE,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert app.returncode == 0, app.stderr[-4000:]
    assets = json.loads((out / "Spindle.assets.json").read_text())["dockerImages"]
    (source,) = (a["source"] for a in assets.values())
    staged = out / source["directory"]
    assert (staged / "Dockerfile").is_file()
    assert not (staged / ".venv").exists()
    assert not (staged / "deploy" / "aws" / ".venv").exists()

    lint = Path(sys.executable).parent / "cfn-lint"
    template = out / "Spindle.template.json"
    result = subprocess.run(
        # W3010: the AZs are CDK's lookup, written into the template by design; W3005: an
        # explicit DependsOn the ECS pattern adds beside a Ref.
        [
            str(lint),
            "--regions",
            "eu-west-1",
            "--ignore-checks",
            "W3010",
            "W3005",
            "--",
            str(template),
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout + result.stderr
