"""`jobline keys`: create, list and revoke API keys from the command line."""

from __future__ import annotations

import subprocess

import pytest
from click.testing import CliRunner

from jobline.cli import main
from jobline.core.settings import Settings
from jobline.local import servers as local
from jobline.store.jobs import JobStore
from tests.conftest import Api, ServedApp, settings_env


def keys(settings: Settings, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        local.jobline_argv("keys", *args),
        env=settings_env(settings),
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_a_created_key_is_printed_once_as_the_last_word_and_works(
    settings: Settings, store: JobStore, keyed_served: ServedApp
) -> None:
    created = keys(settings, "create", "--name", "cli-user")
    assert created.returncode == 0, created.stderr
    key = created.stdout.split()[-1]
    assert key.startswith("jl_") and len(key) > 40
    assert key not in str(list(store.db["api_keys"].find()))
    api = Api(keyed_served.base, key)
    assert api.get("/api/v1/calculations").status_code == 200

    listed = keys(settings, "list")
    assert listed.returncode == 0, listed.stderr
    row = next(line for line in listed.stdout.splitlines() if line.startswith("cli-user "))
    assert key[:11] in row  # the short prefix identifies it
    assert key not in listed.stdout
    assert " no " in row and row.rstrip().endswith("-")

    revoked = keys(settings, "revoke", "--name", "cli-user")
    assert revoked.returncode == 0, revoked.stderr
    row = next(line for line in keys(settings, "list").stdout.splitlines() if "cli-user" in line)
    assert not row.rstrip().endswith("-")


def test_an_admin_key_is_listed_as_admin(settings: Settings) -> None:
    assert keys(settings, "create", "--name", "cli-admin", "--admin").returncode == 0
    row = next(line for line in keys(settings, "list").stdout.splitlines() if "cli-admin" in line)
    assert " yes " in row


def test_a_name_with_a_live_key_cannot_get_a_second_one(settings: Settings) -> None:
    assert keys(settings, "create", "--name", "cli-twice").returncode == 0
    again = keys(settings, "create", "--name", "cli-twice")
    assert again.returncode != 0
    assert "revoke it first" in again.stderr


def test_revoking_an_unknown_name_fails_clearly(settings: Settings) -> None:
    result = keys(settings, "revoke", "--name", "nobody-here")
    assert result.returncode != 0
    assert "no live key named 'nobody-here'" in result.stderr


@pytest.mark.parametrize("name", ["", "has space", "$ne", "x" * 65, "-leading-dash"])
def test_key_names_are_validated_before_anything_is_stored(name: str) -> None:
    result = CliRunner().invoke(main, ["keys", "create", "--name", name])
    assert result.exit_code == 2
    assert "Invalid value for '--name'" in result.output
