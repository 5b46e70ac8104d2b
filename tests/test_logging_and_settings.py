"""Logging redacts secrets; settings read secret files and systemd credentials."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
import structlog

from warden.logging import REDACTED, SecretRedactor, configure_logging
from warden.settings import Settings, policy_environment


def test_redactor_blanks_fields_named_like_secrets():
    redact = SecretRedactor()
    event = redact(None, "info", {"event": "x", "token": "abc123", "Authorization": "Bearer z"})
    assert event == {"event": "x", "token": REDACTED, "Authorization": REDACTED}


def test_redactor_masks_known_secret_values_anywhere_in_a_line():
    redact = SecretRedactor(["s3cr3t-value"])
    event = redact(
        None,
        "info",
        {
            "event": "call failed",
            "error": "GET /x?key=s3cr3t-value: 500",
            "n": [{"a": "s3cr3t-value"}],
        },
    )
    assert "s3cr3t-value" not in json.dumps(event)
    assert event["error"] == f"GET /x?key={REDACTED}: 500"


def test_json_lines_off_a_terminal_carry_bound_context():
    stream = io.StringIO()
    configure_logging(level="info", fmt="auto", stream=stream)
    with structlog.contextvars.bound_contextvars(provider="coder-prod", workspace="coder-prod/1"):
        structlog.get_logger("t").info("poll.finished", workspaces=3)
    line = json.loads(stream.getvalue().strip().splitlines()[-1])
    assert line["event"] == "poll.finished"
    assert line["provider"] == "coder-prod"
    assert line["workspace"] == "coder-prod/1"
    assert line["level"] == "info"


def test_secret_settings_come_from_files(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    secret = tmp_path / "admin"
    secret.write_text("admin-token-from-file\n")
    monkeypatch.setenv("WARDEN_ADMIN_TOKEN_FILE", str(secret))
    settings = Settings()
    assert settings.admin_token is not None
    assert settings.admin_token.get_secret_value() == "admin-token-from-file"
    assert "admin-token-from-file" not in repr(settings)


def test_secret_settings_come_from_systemd_credentials(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    (tmp_path / "warden_readonly_token").write_text("ro-token")
    monkeypatch.setenv("CREDENTIALS_DIRECTORY", str(tmp_path))
    assert Settings().readonly_token.get_secret_value() == "ro-token"


def test_policy_variables_include_credentials_and_var_files(tmp_path: Path):
    creds = tmp_path / "creds"
    creds.mkdir()
    (creds / "CODER_TOKEN").write_text("from-credential\n")
    file = tmp_path / "pd"
    file.write_text("from-file")
    env = policy_environment(
        {"CREDENTIALS_DIRECTORY": str(creds), "PD_KEY_FILE": str(file), "X": "1"}
    )
    assert env["CODER_TOKEN"] == "from-credential"
    assert env["PD_KEY"] == "from-file"
    assert env["X"] == "1"


def test_policy_path_is_comma_separated(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WARDEN_POLICY_PATH", "a.yaml, dir")
    assert Settings().policy_path == [Path("a.yaml"), Path("dir")]


def test_default_database_is_sqlite_in_the_state_dir(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("WARDEN_STATE_DIR", "/var/lib/warden")
    assert Settings().effective_database_url == "sqlite+aiosqlite:////var/lib/warden/warden.sqlite"
