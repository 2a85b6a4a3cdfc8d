"""Per-app state: settings and database, made once by the factory."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from flask import current_app, g, request

from services.config import Settings
from services.db import Database, UnitOfWork
from services.domain.custody import Actor
from services.operations.passwords import LoginPolicy


@dataclass
class AppState:
    settings: Settings
    db: Database


def state() -> AppState:
    return current_app.extensions["vein2vein"]


def unit_of_work() -> UnitOfWork:
    return UnitOfWork(state().db.session_factory)


def current_actor() -> Actor:
    return g.actor


def utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def max_clock_skew() -> dt.timedelta:
    return dt.timedelta(seconds=state().settings.max_clock_skew_seconds)


def login_policy() -> LoginPolicy:
    """How many wrong passwords block the client they come from, for how long, and who that
    client is (this request's address): for sign-in and signing."""
    settings = state().settings
    return LoginPolicy(
        max_failures=settings.login_max_failures,
        lockout=dt.timedelta(seconds=settings.login_lockout_seconds),
        max_lockout=dt.timedelta(seconds=settings.login_lockout_max_seconds),
        client=request.remote_addr or "unknown",
    )
