"""A webhook's signing secret at rest: sealed, opened, rotated; production needs the key."""

from __future__ import annotations

import pytest
from cryptography.fernet import Fernet

from services.config import Settings
from services.domain.webhook_secrets import (
    SecretUnreadable,
    derived_key,
    is_sealed,
    new_secret,
    reseal,
    reveal,
    seal,
)


def test_a_sealed_secret_opens_only_under_its_key() -> None:
    secret = new_secret()
    key, other = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    stored = seal(secret, [key])
    assert is_sealed(stored)
    assert secret not in stored
    assert reveal(stored, [key]) == secret
    with pytest.raises(SecretUnreadable):
        reveal(stored, [other])
    tampered = stored[:-6] + ("A" if stored[-6] != "A" else "B") + stored[-5:]
    with pytest.raises(SecretUnreadable):
        reveal(tampered, [key])


def test_a_secret_kept_in_clear_before_sealing_still_signs_and_is_sealed_on_request() -> None:
    clear = new_secret()
    key = Fernet.generate_key().decode()
    assert not is_sealed(clear)
    assert reveal(clear, [key]) == clear
    sealed = reseal(clear, [key])
    assert sealed is not None
    assert reveal(sealed, [key]) == clear
    assert reseal(sealed, [key]) is None  # sealed under the first key already


def test_a_key_is_rotated_by_putting_the_new_one_first() -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    secret = new_secret()
    stored = seal(secret, [old])
    assert reveal(stored, [new, old]) == secret  # both open
    resealed = reseal(stored, [new, old])
    assert resealed is not None
    assert reveal(resealed, [new]) == secret  # the old key may go now
    with pytest.raises(SecretUnreadable):
        reveal(resealed, [old])


def test_production_needs_a_key_and_a_key_must_be_a_fernet_key() -> None:
    values = {"secret_key": "s" * 40, "ratelimit_storage_url": "redis://127.0.0.1:6379/0"}
    with pytest.raises(ValueError, match="WEBHOOK_SECRET_KEY must be set"):
        Settings(_env_file=None, app_env="production", **values)  # type: ignore[call-arg]
    key = Fernet.generate_key().decode()
    settings = Settings(
        _env_file=None,  # type: ignore[call-arg]
        app_env="production",
        webhook_secret_key=f"{key}, {derived_key('x')}",
        **values,
    )
    assert settings.webhook_secret_keys == [key, derived_key("x")]
    with pytest.raises(ValueError, match="not a Fernet key"):
        Settings(_env_file=None, app_env="test", webhook_secret_key="hunter2", **values)  # type: ignore[call-arg]
    # outside production, empty derives a key from SECRET_KEY, the same in every process
    test = Settings(_env_file=None, app_env="test", **values)  # type: ignore[call-arg]
    assert test.webhook_secret_keys == [derived_key("s" * 40)]
    assert derived_key("s" * 40) != derived_key("t" * 40)
