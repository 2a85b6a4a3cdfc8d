"""Typed settings, read once by the factories (create_app, the Celery app, the CLI)."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

DEVELOPMENT_SECRET = "dev-only-not-secret"  # noqa: S105 - the default refused outside development


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_file=".env", env_file_encoding="utf-8", extra="ignore")

    app_env: Literal["development", "production", "test"] = "development"
    var_dir: Path = Path("var")
    database_url: str = ""
    broker_url: str = ""
    smtp_url: str = ""
    secret_key: str = DEVELOPMENT_SECRET
    sqlite_busy_timeout_ms: int = 30_000
    # how far a scanner's clock may run ahead of ours before its occurred_at is refused
    max_clock_skew_seconds: int = 300

    @model_validator(mode="after")
    def _defaults_and_secrets(self) -> Settings:
        if not self.database_url:
            self.database_url = f"sqlite:///{(self.var_dir / 'vein2vein.db').resolve()}"
        if not self.broker_url:
            self.broker_url = "filesystem://"
        if self.app_env != "development" and self.secret_key == DEVELOPMENT_SECRET:
            raise ValueError(f"SECRET_KEY must be set to a real secret when APP_ENV={self.app_env}")
        return self

    @property
    def sqlalchemy_url(self) -> str:
        """The URL with the driver we ship: psycopg 3 for PostgreSQL."""
        url = self.database_url
        for prefix in ("postgresql://", "postgres://"):
            if url.startswith(prefix):
                return "postgresql+psycopg://" + url[len(prefix) :]
        return url

    @property
    def broker_folder(self) -> Path:
        return (self.var_dir / "broker").resolve()

    @property
    def mail_folder(self) -> Path:
        return (self.var_dir / "mail").resolve()
