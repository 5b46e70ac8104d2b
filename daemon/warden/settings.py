"""Process settings: WARDEN_* environment variables and secret files.

Policies live in YAML files; these settings say where those files are, where the
state lives and how to log. Secrets may be given inline, as `*_FILE` paths, or as
systemd credentials (files named like the setting in $CREDENTIALS_DIRECTORY).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Literal

from pydantic import Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

SECRET_SETTINGS = ("admin_token", "readonly_token", "spend_token", "snooze_secret")


class Settings(BaseSettings):
    """Everything the daemon needs before it reads its policy files."""

    model_config = SettingsConfigDict(env_prefix="WARDEN_", extra="ignore", frozen=True)

    policy_path: Annotated[list[Path], NoDecode] = Field(
        default=[Path("policies")], description="policy files or directories, comma-separated"
    )
    state_dir: Path = Field(default=Path("state"), description="where the SQLite file lives")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite in state_dir"
    )
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    admin_bind: str = Field(default="127.0.0.1:8787", description="host:port of the admin API")
    admin_token: SecretStr | None = None
    readonly_token: SecretStr | None = None
    spend_token: SecretStr | None = Field(
        default=None, description="may only POST /v1/spend: for the systems that report spend"
    )
    snooze_secret: SecretStr | None = None
    public_url: str | None = Field(
        default=None, description="base URL of the admin API as owners reach it (snooze links)"
    )
    dry_run: bool = Field(default=False, description="decide and tell, never act")
    protect_health: bool = Field(
        default=False, description="require a token on /healthz, /readyz and /metrics"
    )
    replica_id: str = Field(default_factory=lambda: f"{os.uname().nodename}-{os.getpid()}")
    lease_ttl: float = Field(
        default=30.0,
        gt=0,
        le=3600,
        description="seconds a replica's lease lasts unrenewed: a paused or dead leader is "
        "replaced this soon; renewed every third of it",
    )

    @field_validator("policy_path", mode="before")
    @classmethod
    def _comma_separated(cls, value: object) -> object:
        if isinstance(value, str):
            return [Path(part.strip()) for part in value.split(",") if part.strip()]
        return value

    @model_validator(mode="before")
    @classmethod
    def _secret_files(cls, data: object) -> object:
        """Fill secrets from WARDEN_*_FILE and systemd credentials when not given inline."""
        if not isinstance(data, dict):
            return data
        for name in SECRET_SETTINGS:
            if data.get(name) is None:
                value = read_secret_file(name, os.environ)
                if value is not None:
                    data[name] = value
        return data

    @property
    def effective_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite+aiosqlite:///{self.state_dir / 'warden.sqlite'}"

    def secret_values(self) -> list[str]:
        """Every secret this process holds, for the log redactor."""
        values = [getattr(self, name) for name in SECRET_SETTINGS]
        return [v.get_secret_value() for v in values if v is not None]


def read_secret_file(name: str, env: Mapping[str, str]) -> str | None:
    """A secret from WARDEN_<NAME>_FILE, else from $CREDENTIALS_DIRECTORY/warden_<name>."""
    path = env.get(f"WARDEN_{name.upper()}_FILE")
    if path is None and "CREDENTIALS_DIRECTORY" in env:
        candidate = Path(env["CREDENTIALS_DIRECTORY"]) / f"warden_{name}"
        path = str(candidate) if candidate.exists() else None
    if path is None:
        return None
    return Path(path).read_text(encoding="utf-8").strip()


def policy_environment(env: Mapping[str, str]) -> dict[str, str]:
    """The variables ${VAR} in policy files may use: the environment plus credentials.

    Under systemd, LoadCredential=CODER_TOKEN:/etc/warden/coder-token makes
    ${CODER_TOKEN} available without putting the token in the environment.
    """
    merged = dict(env)
    directory = env.get("CREDENTIALS_DIRECTORY")
    if directory and Path(directory).is_dir():
        for item in Path(directory).iterdir():
            if item.is_file() and item.name not in merged:
                merged[item.name] = item.read_text(encoding="utf-8").strip()
    for key, value in list(env.items()):
        if key.endswith("_FILE") and key.removesuffix("_FILE") not in merged:
            file = Path(value)
            if file.is_file():
                merged[key.removesuffix("_FILE")] = file.read_text(encoding="utf-8").strip()
    return merged
