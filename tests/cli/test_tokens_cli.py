"""Signing in from the CLI against a real ``spindle serve`` in basic mode: users made with
``spindle users``, a token made with ``spindle tokens create --username``, then every run
command with that token (from the environment or the client config file), and the server's
own log checked for every secret afterwards."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from spindle.cli import main
from tests.live import running_server
from tests.support import EXAMPLES

ALICE_PASSWORD = "alice pass ✓ 1"
BOB_PASSWORD = "bob-pass-2"


def spindle(*args: str | Path, env: dict[str, str], input: str | None = None) -> Result:
    return CliRunner().invoke(main, [str(a) for a in args], env=env, input=input)


def ok(result: Result) -> Result:
    assert result.exit_code == 0, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    return result


def refused(result: Result, fragment: str) -> None:
    assert result.exit_code == 1, result.stdout + result.stderr
    assert result.stderr.startswith("error: "), result.stderr
    assert fragment in result.stderr


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """(URL, log file) of a basic-mode server whose users are alice and bob (an admin)."""
    workdir = tmp_path_factory.mktemp("basic-server")
    env = {"SPINDLE_DATA_DIR": str(workdir / "data"), "SPINDLE_CONFIG": str(workdir / "x.toml")}
    ok(spindle("db", "upgrade", env=env))
    ok(spindle("users", "add", "alice", input=ALICE_PASSWORD + "\n", env=env))
    ok(spindle("users", "add", "bob", "--admin", input=BOB_PASSWORD + "\n", env=env))
    admin = "Basic " + base64.b64encode(f"bob:{BOB_PASSWORD}".encode()).decode()
    with running_server(
        workdir, env={"SPINDLE_AUTH": "basic"}, headers={"Authorization": admin}
    ) as url:
        yield url, workdir / "server.log"


def client_env(tmp_path: Path, **values: str) -> dict[str, str]:
    """A CLI environment with no credentials but those given (and no config file)."""
    return {
        "SPINDLE_TOKEN": "",
        "SPINDLE_USERNAME": "",
        "SPINDLE_PASSWORD": "",
        "SPINDLE_URL": "",
        "SPINDLE_CLIENT_CONFIG": str(tmp_path / "no-config.toml"),
        **values,
    }


@pytest.mark.engine
def test_tokens_and_runs_from_the_cli(server: tuple[str, Path], tmp_path: Path) -> None:
    url, log = server
    nobody = client_env(tmp_path, SPINDLE_URL=url)
    refused(spindle("runs", env=nobody), "sign in")
    refused(
        spindle("tokens", "create", "x", "--username", "alice", input="wrong\n", env=nobody),
        "wrong user name or password",
    )

    made = ok(
        spindle(
            "tokens",
            "create",
            "laptop",
            "--expires-days",
            "30",
            "--username",
            "alice",
            input=ALICE_PASSWORD + "\n",
            env=nobody,
        )
    )
    token = made.stdout.strip()
    assert token.startswith("spindle_")
    assert "shown this once" in made.stderr

    alice = client_env(tmp_path, SPINDLE_URL=url, SPINDLE_TOKEN=token)
    assert ok(spindle("whoami", env=alice)).stdout.startswith("alice (user, signed in with token)")
    submitted = ok(
        spindle(
            "submit",
            EXAMPLES / "snakemake" / "wordcount" / "Snakefile",
            "--wait",
            "--poll",
            "0.2",
            env=alice,
        )
    )
    run_id = submitted.stdout.splitlines()[0]
    assert "COMPLETE" in submitted.stdout.splitlines()
    assert run_id in ok(spindle("runs", env=alice)).stdout
    ok(spindle("outputs", run_id, "--download", tmp_path / "out", env=alice))
    assert any((tmp_path / "out").iterdir())

    # bob (an admin) sees alice's run; a Basic sign-in from the environment works too
    bob = client_env(
        tmp_path, SPINDLE_URL=url, SPINDLE_USERNAME="bob", SPINDLE_PASSWORD=BOB_PASSWORD
    )
    assert run_id in ok(spindle("runs", env=bob)).stdout
    assert ok(spindle("status", run_id, env=bob)).stdout.strip() == "COMPLETE"

    # the client config file: url and token, for that server only
    config = tmp_path / "config.toml"
    config.write_text(f'url = "{url}"\ntoken = "{token}"\n')
    config.chmod(0o600)
    from_file = client_env(tmp_path, SPINDLE_CLIENT_CONFIG=str(config))
    assert run_id in ok(spindle("runs", env=from_file)).stdout

    listed = ok(spindle("tokens", "list", env=alice)).stdout
    assert "laptop" in listed
    assert token not in listed
    token_id = listed.splitlines()[1].split()[0]
    ok(spindle("tokens", "revoke", token_id, env=alice))
    refused(spindle("runs", env=alice), "the token was revoked")
    refused(spindle("runs", env=from_file), "the token was revoked")

    # nothing secret in the server's log (uvicorn's access log included)
    text = log.read_text()
    assert "GET /ga4gh/wes/v1/runs" in text  # the access log is there
    bob_basic = base64.b64encode(f"bob:{BOB_PASSWORD}".encode()).decode()
    for secret in (token, ALICE_PASSWORD, BOB_PASSWORD, bob_basic):
        assert secret not in text
