"""The stack we ship runs with least privilege: checked in the files a user deploys."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
import yaml
from cryptography.fernet import Fernet

from services.config import Settings

ROOT = Path(__file__).resolve().parents[2]


def _compose() -> dict[str, dict[str, object]]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]  # type: ignore[no-any-return]


def _user(url: str) -> str | None:
    return sa.make_url(url.replace("${", "").replace("}", "")).username


def test_the_application_connects_as_its_own_role_and_migrations_as_the_owner() -> None:
    services = _compose()
    owner = services["db"]["environment"]["POSTGRES_USER"]  # type: ignore[index]
    for name in ("web", "worker", "beat"):
        url = services[name]["environment"]["DATABASE_URL"]  # type: ignore[index]
        assert _user(url) == "vein2vein_app", name
        assert services[name]["environment"]["APP_ENV"] == "production"  # type: ignore[index]
        # production refuses to start without the key that seals webhook secrets
        assert "WEBHOOK_SECRET_KEY:?" in services[name]["environment"]["WEBHOOK_SECRET_KEY"]  # type: ignore[index]
    migrate = services["migrate"]
    assert _user(migrate["environment"]["DATABASE_URL"]) == owner  # type: ignore[index]
    command = " ".join(migrate["command"])  # type: ignore[arg-type]
    assert "vein2vein db upgrade" in command
    assert "vein2vein db app-role vein2vein_app --password-stdin" in command


def test_the_image_defaults_to_production_where_the_ssrf_guard_is_on() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "APP_ENV=production" in dockerfile
    settings = Settings(
        _env_file=None,
        app_env="production",
        secret_key="x" * 40,
        ratelimit_storage_url="redis://127.0.0.1:6379/0",
        webhook_secret_key=Fernet.generate_key().decode(),
    )
    assert settings.webhook_allow_private_targets is False
