"""Settings: defaults for the embedded configuration, and no default secret outside development."""

from __future__ import annotations

from pathlib import Path

import pytest
from cryptography.fernet import Fernet
from pydantic import ValidationError

from services.config import Settings

KEY = Fernet.generate_key().decode()  # production needs a WEBHOOK_SECRET_KEY


def test_embedded_defaults(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path, database_url="", broker_url="")
    assert settings.sqlalchemy_url == f"sqlite:///{tmp_path.resolve() / 'vein2vein.db'}"
    assert settings.broker_url == "filesystem://"
    assert settings.signing_key_path == tmp_path.resolve() / "keys" / "checkpoint-ed25519.pem"


def test_an_empty_signing_key_path_as_in_env_example_is_the_default(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, var_dir=tmp_path, signing_key_path="")
    assert settings.signing_key_path == tmp_path.resolve() / "keys" / "checkpoint-ed25519.pem"


def test_postgres_urls_use_psycopg_3() -> None:
    settings = Settings(_env_file=None, database_url="postgresql://u@h/db")
    assert settings.sqlalchemy_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize("env", ["production", "test"])
def test_default_secret_is_refused_outside_development(env: str) -> None:
    redis = {"broker_url": "redis://redis:6379/0", "webhook_secret_key": KEY}
    with pytest.raises(ValidationError, match="SECRET_KEY"):
        Settings(_env_file=None, app_env=env, **redis)  # type: ignore[arg-type]
    Settings(_env_file=None, app_env=env, secret_key="a-real-secret", **redis)  # type: ignore[arg-type]


def test_rate_limits_count_in_redis_in_production() -> None:
    settings = Settings(
        _env_file=None,
        app_env="production",
        secret_key="a-real-secret",
        broker_url="redis://redis:6379/0",
        webhook_secret_key=KEY,
    )
    assert settings.ratelimit_storage_url == "redis://redis:6379/0"
    with pytest.raises(ValidationError, match="RATELIMIT_STORAGE_URL"):
        Settings(
            _env_file=None, app_env="production", secret_key="a-real-secret", webhook_secret_key=KEY
        )
    assert Settings(_env_file=None, broker_url="").ratelimit_storage_url == "memory://"


@pytest.mark.parametrize("url", ["memcached://127.0.0.1:11211", "redis:/nowhere", "localhost"])
def test_a_counter_store_the_limits_cannot_use_stops_start_up(url: str) -> None:
    with pytest.raises(ValidationError, match="RATELIMIT_STORAGE_URL must start with"):
        Settings(_env_file=None, ratelimit_storage_url=url)


@pytest.mark.parametrize(
    "values",
    [
        {"session_idle_minutes": 0},
        {"session_idle_minutes": 24 * 60 + 1},
        {"session_hours": 0},
        {"login_max_failures": 0},
        {"login_lockout_seconds": 0},
    ],
)
def test_sign_in_settings_that_would_switch_a_guard_off_are_refused(
    values: dict[str, float],
) -> None:
    with pytest.raises(ValidationError):
        Settings(_env_file=None, **values)  # type: ignore[arg-type]
