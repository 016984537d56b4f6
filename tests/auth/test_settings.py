"""Configurations that would leave Spindle open by mistake, or cannot work, are refused at
start-up with a message that says what to set."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner
from pydantic import ValidationError

from spindle.app import create_app
from spindle.cli import main
from spindle.config import Settings
from spindle.errors import ConfigError


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "192.0.2.10", "wes.example.org", ""])
def test_no_auth_refuses_an_address_others_can_reach(settings: Settings, host: str) -> None:
    with pytest.raises(ConfigError) as err:
        create_app(settings.model_copy(update={"host": host}), worker=False)
    assert "SPINDLE_AUTH_NONE_ALLOW_REMOTE" in err.value.message
    assert repr(host) in err.value.message


@pytest.mark.parametrize("host", ["127.0.0.1", "127.0.0.2", "::1", "[::1]", "localhost"])
def test_no_auth_serves_loopback(settings: Settings, host: str) -> None:
    create_app(settings.model_copy(update={"host": host}), worker=False)


def test_no_auth_on_the_network_when_explicitly_allowed(settings: Settings) -> None:
    create_app(
        settings.model_copy(update={"host": "0.0.0.0", "auth_none_allow_remote": True}),
        worker=False,
    )
    # any real authentication mode may bind anywhere
    create_app(settings.model_copy(update={"host": "0.0.0.0", "auth": "basic"}), worker=False)


def test_spindle_serve_refuses_with_a_clear_error(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["serve", "--host", "0.0.0.0", "--port", "1"],
        env={"SPINDLE_DATA_DIR": str(tmp_path), "SPINDLE_CONFIG": str(tmp_path / "none.toml")},
    )
    assert result.exit_code == 1
    assert "Error: auth is 'none'" in result.stderr
    assert "SPINDLE_AUTH_NONE_ALLOW_REMOTE=true" in result.stderr
    assert "Traceback" not in result.output


@pytest.mark.parametrize(
    ("mode", "values", "needed"),
    [
        ("oidc", {}, "SPINDLE_JWT_ISSUER, SPINDLE_JWT_AUDIENCE"),
        ("oidc", {"jwt_issuer": "https://idp.example"}, "SPINDLE_JWT_AUDIENCE"),
        (
            "proxy-jwt",
            {"jwt_issuer": "https://cloud.google.com/iap", "jwt_audience": "/projects/1/apps/x"},
            "SPINDLE_JWT_JWKS_URL",
        ),
    ],
)
def test_jwt_modes_need_their_settings(
    settings: Settings, mode: str, values: dict[str, str], needed: str
) -> None:
    with pytest.raises(ConfigError) as err:
        create_app(settings.model_copy(update={"auth": mode, **values}), worker=False)
    assert err.value.message == f"auth {mode!r} needs {needed}"


@pytest.mark.parametrize("algorithm", ["none", "HS256", "HS512", "rs256"])
def test_only_asymmetric_algorithms_are_accepted(algorithm: str) -> None:
    with pytest.raises(ValidationError) as err:
        Settings(jwt_algorithms=["RS256", algorithm])
    assert algorithm in str(err.value)
    assert "never none or HS*" in str(err.value)


def test_an_unknown_mode_is_refused() -> None:
    with pytest.raises(ValidationError):
        Settings(auth="ldap")  # type: ignore[arg-type]


def test_an_invalid_setting_is_a_clear_error_from_serve(tmp_path: Path) -> None:
    result = CliRunner().invoke(
        main,
        ["serve"],
        env={
            "SPINDLE_AUTH": "ldap",
            "SPINDLE_DATA_DIR": str(tmp_path),
            "SPINDLE_CONFIG": str(tmp_path / "none.toml"),
        },
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("Error: invalid settings: auth: ")
    assert "'basic'" in result.stderr
    assert "Traceback" not in result.output
