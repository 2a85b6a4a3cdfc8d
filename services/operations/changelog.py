"""The admin log: every change of configuration, kept with who, when, what, before and after.

One function writes it, and every path that changes configuration calls it: the pages, the
API and the command line alike (sites, users, passwords, tokens, signing rules, turnaround
policies, alarm rules, shippers, keys), and the sign-in guard when it blocks a client. Who:
the signed-in user; at the command line the operating-system user, "(command line)"; a change
no person made names the part of vein2vein that made it.

Never a secret: a password, a token, a hash or a private key in ``before`` or ``after`` is a
programming error, refused before anything is written. The table is append-only (triggers,
and no UPDATE or DELETE for the application's role).
"""

from __future__ import annotations

import datetime as dt
import getpass
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from sqlmodel import Session

from services.db.models import AdminChange
from services.domain.custody import Actor

COMMAND_LINE = "command line"
# names that hold secrets, wherever they appear in before/after
SECRET_NAMES = frozenset(
    {
        "password",
        "new_password",
        "temporary_password",
        "password_hash",
        "token",
        "token_hash",
        "secret",
        "private_key",
    }
)
# values that are secrets whatever they are called: an argon2 hash, a whole API token (the
# 12-character prefix shown in lists is not one), a PEM private key
SECRET_VALUES = re.compile(r"^\$argon2|^v2v_[A-Za-z0-9_-]{20,}|-----BEGIN [A-Z ]*PRIVATE KEY")


@dataclass(frozen=True)
class System:
    """A change no person made, named by what made it (the sign-in guard blocking a client)."""

    name: str


Changer = Actor | System | None
"""Who changes: a signed-in user, a part of vein2vein, or None: the operator at the command line."""


def operator() -> str:
    """The operating-system user running the command line, as the log names them."""
    try:
        name = getpass.getuser()
    except (OSError, KeyError):  # a container's uid with no passwd entry
        name = f"uid {os.getuid()}"
    return f"{name} ({COMMAND_LINE})"


def record_change(
    session: Session,
    *,
    actor: Changer,
    action: str,
    subject: str,
    now: dt.datetime,
    before: Mapping[str, Any] | None = None,
    after: Mapping[str, Any] | None = None,
    site_id: int | None = None,
    every_site: bool = False,
) -> AdminChange:
    """Keep one change. ``every_site``: it binds all sites (a product's policy), so every
    site's admins read it; otherwise it is ``site_id``'s (by default the acting user's)."""
    for name, values in (("subject", subject), ("before", before), ("after", after)):
        found = _secret_in(values)
        if found:
            raise ValueError(f"{action}: {name} holds a secret ({found}); it is never logged")
    if isinstance(actor, Actor):
        who, actor_id = actor.email, actor.user_id
        if site_id is None:
            site_id = actor.site_id
    elif isinstance(actor, System):
        who, actor_id = actor.name, None
    else:
        who, actor_id = operator(), None
    row = AdminChange(
        actor_id=actor_id,
        actor=who[:254],
        site_id=None if every_site else site_id,
        action=action,
        subject=subject[:254],
        before=dict(before) if before is not None else None,
        after=dict(after) if after is not None else None,
        changed_at=now,
    )
    session.add(row)
    session.flush()
    return row


def _secret_in(value: Any, path: str = "") -> str | None:
    """Where a secret sits in ``value`` (a dotted path), or None."""
    if isinstance(value, Mapping):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if str(key).lower() in SECRET_NAMES:
                return where
            found = _secret_in(item, where)
            if found:
                return found
    elif isinstance(value, list | tuple):
        for index, item in enumerate(value):
            found = _secret_in(item, f"{path}[{index}]")
            if found:
                return found
    elif isinstance(value, str) and SECRET_VALUES.search(value):
        return path or "a value"
    return None
