"""Times on the pages, in one place: the viewer's site's wall clock with its offset, or (on a
timeline) the clock of the site where something happened, saying so. Each is a ``<time>``
element whose ``datetime`` is the moment in UTC, for machines and assistive technology.

Templates write ``{{ moment | local }}`` (the viewer's site), ``{{ moment | local(seconds=True)
}}``, ``{{ moment | local_at('APH-1') }}`` (the zone of the site named) and ``{{ moment | day
}}`` (the date alone, at the viewer's site)."""

from __future__ import annotations

import datetime as dt

from flask import Flask, g, request
from flask_login import current_user
from markupsafe import Markup

from services.domain.local_time import UTC_ZONE, localize, wall_clock
from services.operations import sites
from services.web.state import unit_of_work

_ZONES = "site_zones_by_code"


def _zones() -> dict[str, str]:
    """Every site's zone by code, read once per request."""
    found = g.get(_ZONES)
    if found is None:
        with unit_of_work() as uow:
            found = sites.zones_by_code(uow.session)
        setattr(g, _ZONES, found)
    return found


def viewer_zone() -> str:
    """The time zone of the signed-in user's site (UTC before sign-in)."""
    if not current_user.is_authenticated:
        return UTC_ZONE
    return zone_of(current_user.actor.site.code)


def zone_of(site_code: str | None) -> str:
    if not site_code:
        return UTC_ZONE
    return _zones().get(site_code, UTC_ZONE)


def _element(moment: dt.datetime, text: str, title: str | None = None) -> Markup:
    utc = moment.astimezone(dt.UTC).isoformat(timespec="seconds")
    if title:
        return Markup('<time datetime="{}" title="{}">{}</time>').format(utc, title, text)
    return Markup('<time datetime="{}">{}</time>').format(utc, text)


def local(
    moment: dt.datetime | None, *, seconds: bool = False, date: bool = True, zone: str | None = None
) -> Markup:
    """``moment`` on the viewer's site's clock (or ``zone``'s), with the offset."""
    if moment is None:
        return Markup("")
    name = zone or viewer_zone()
    return _element(moment, wall_clock(moment, name, seconds=seconds, date=date), name)


def local_at(moment: dt.datetime | None, site_code: str | None, *, seconds: bool = False) -> Markup:
    """``moment`` on the clock of the site where it happened, naming that clock."""
    if moment is None:
        return Markup("")
    name = zone_of(site_code)
    shown = wall_clock(moment, name, seconds=seconds)
    where = f"{site_code} time, {name}" if site_code else name
    return _element(moment, shown, where) + Markup(' <span class="zone">({})</span>').format(where)


def plain(moment: dt.datetime) -> str:
    """``moment`` on the viewer's site's clock as plain text (for sentences built outside a
    template: what an alert asks to be done by when)."""
    return wall_clock(moment, viewer_zone())


def day(moment: dt.datetime | None, zone: str | None = None) -> str:
    """The calendar date at the viewer's site (or ``zone``)."""
    if moment is None:
        return ""
    return localize(moment, zone or viewer_zone()).strftime("%Y-%m-%d")


def _read_zones_first() -> None:
    """Read the zones before the page opens its own transaction: a transaction of SQLite
    (BEGIN IMMEDIATE) would wait on a second one opened inside it."""
    if request.endpoint and request.endpoint.startswith("pages.") and current_user.is_authenticated:
        _zones()


def install(app: Flask) -> None:
    app.before_request(_read_zones_first)
    app.add_template_filter(local, "local")
    app.add_template_filter(local_at, "local_at")
    app.add_template_filter(day, "day")
    app.add_template_global(viewer_zone, "viewer_zone")
    app.add_template_global(zone_of, "zone_of")
