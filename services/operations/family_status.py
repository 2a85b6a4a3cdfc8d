"""The family's status page: share links made by the care team, the page's read model, and
news marked discussed (the family's e-mails: services.operations.family_emails).

Who: share links are made and revoked, and news is marked discussed, by the care team of the
order's treatment site only (others who see the order are refused; those who do not see it
get the same 404 as for an order that does not exist). The family is whoever holds the link:
the token is the only key, and the page built here names no identifier, site code or person.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

import sqlalchemy as sa
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlmodel import Session, col, select

from services.db.models import (
    CustodyEvent,
    Order,
    Plan,
    Site,
    StatusDisclosure,
    StatusLink,
    StatusLinkView,
    Subscription,
    Unit,
)
from services.domain import family_status as family
from services.domain.custody import Actor, Role, UnitKind
from services.domain.errors import Forbidden, InvalidRequest, NotFound
from services.domain.family_status import DayRange, Stage, Step
from services.domain.local_time import (
    UTC_ZONE,
    abbreviation,
    local_day,
    localize,
    offset_text,
    zone,
)
from services.domain.sla import Leg
from services.operations import access, turnaround
from services.operations.changelog import System, record_change
from services.operations.deadlines import current_policy

FAMILY_PAGE = System("family status page")


def _care_order(session: Session, actor: Actor, coi: str) -> Order:
    """The order, for its treatment site's care team only."""
    order = access.order_by_coi(session, actor, coi)
    if actor.role is not Role.CARE_TEAM or actor.site_id != order.treatment_site_id:
        raise Forbidden("only the care team of the order's treatment site shares its status")
    return order


# share links


def make_link(
    session: Session, *, actor: Actor, coi: str, days: int | None, now: dt.datetime
) -> tuple[StatusLink, str]:
    """A new share link; the token is returned once and only its hash is kept."""
    order = _care_order(session, actor, coi)
    token = family.new_token()
    assert order.id is not None
    link = StatusLink(
        order_id=order.id,
        token_hash=family.token_hash(token),
        created_by_id=actor.user_id,
        created_at=now,
        expires_at=family.link_expiry(now, days),
    )
    session.add(link)
    session.flush()
    record_change(
        session,
        actor=actor,
        action="status link made",
        subject=f"{order.coi} status link {link.id}",
        after={"expires_at": link.expires_at.isoformat()},
        now=now,
        site_id=order.treatment_site_id,
    )
    return link, token


def revoke_link(
    session: Session, *, actor: Actor, coi: str, link_id: int, now: dt.datetime
) -> StatusLink:
    order = _care_order(session, actor, coi)
    link = session.get(StatusLink, link_id, with_for_update=True)
    if link is None or link.order_id != order.id:
        raise NotFound(f"no status link {link_id} of order {order.coi}")
    if link.revoked_at is None:
        link.revoked_at = now
        link.revoked_by_id = actor.user_id
        session.add(link)
        stop_emails(session, link, "the care team revoked the status link", now)
        record_change(
            session,
            actor=actor,
            action="status link revoked",
            subject=f"{order.coi} status link {link.id}",
            before={"revoked_at": None},
            after={"revoked_at": now.isoformat()},
            now=now,
            site_id=order.treatment_site_id,
        )
    return link


@dataclass(frozen=True)
class LinkSummary:
    id: int
    created_at: dt.datetime
    expires_at: dt.datetime
    revoked_at: dt.datetime | None
    first_viewed_at: dt.datetime | None
    views: int
    views_today: int
    emails: bool
    live: bool


def links_of(session: Session, *, actor: Actor, coi: str, now: dt.datetime) -> list[LinkSummary]:
    order = _care_order(session, actor, coi)
    links = session.exec(
        select(StatusLink).where(StatusLink.order_id == order.id).order_by(col(StatusLink.id))
    ).all()
    counts: dict[int, list[tuple[dt.date, int]]] = {}
    ids = [link.id for link in links]
    if ids:
        for link_id, day, views in session.exec(
            select(  # type: ignore[call-overload]
                StatusLinkView.link_id, StatusLinkView.day, StatusLinkView.views
            ).where(col(StatusLinkView.link_id).in_(ids))
        ):
            counts.setdefault(link_id, []).append((day, views))
    today = now.date()
    return [
        LinkSummary(
            id=link.id or 0,
            created_at=link.created_at,
            expires_at=link.expires_at,
            revoked_at=link.revoked_at,
            first_viewed_at=link.first_viewed_at,
            views=sum(v for _d, v in counts.get(link.id or 0, [])),
            views_today=sum(v for d, v in counts.get(link.id or 0, []) if d == today),
            emails=link.subscription_id is not None and subscribed(session, link),
            live=_live(link, now),
        )
        for link in links
    ]


def _live(link: StatusLink, now: dt.datetime) -> bool:
    return link.revoked_at is None and link.expires_at > now


def open_link(session: Session, *, token: str, now: dt.datetime, count: bool = True) -> StatusLink:
    """The live link of ``token``, its view counted (the first view, and one more today).
    Unknown, revoked and expired links are all the same NotFound."""
    link = None
    if family.plausible_token(token):
        link = session.exec(
            select(StatusLink).where(StatusLink.token_hash == family.token_hash(token))
        ).first()
    if link is None or not _live(link, now):
        raise NotFound("no such status page")
    if count:
        assert link.id is not None
        if link.first_viewed_at is None:
            session.execute(
                sa.update(StatusLink)
                .where(col(StatusLink.id) == link.id, col(StatusLink.first_viewed_at).is_(None))
                .values(first_viewed_at=now)
            )
        insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
        statement = insert(StatusLinkView).values(link_id=link.id, day=now.date(), views=1)
        session.execute(
            statement.on_conflict_do_update(
                index_elements=["link_id", "day"],
                set_={"views": StatusLinkView.views + 1},
            )
        )
    return link


# what the family reads


@dataclass(frozen=True)
class StageLine:
    title: str
    words: str
    state: str  # done | current | upcoming


@dataclass(frozen=True)
class NewsLine:
    words: str
    discussed_on: str


@dataclass(frozen=True)
class Expected:
    """When the treatment is expected back at the hospital and given: the only source of the
    family's dates. Today it is the order's projected vein-to-vein time (the legs still to go
    at their typical durations); the plan's dates (issue 30) replace this one function."""

    back_at: dt.datetime | None
    given_at: dt.datetime | None


def _midday(day: str) -> dt.datetime:
    return dt.datetime.combine(dt.date.fromisoformat(day), dt.time(12), tzinfo=dt.UTC)


def _planned(session: Session, order: Order, now: dt.datetime) -> Expected | None:
    """The plan's expected dates (issue 30), where the order has a plan in force: the
    product's arrival at the hospital and its infusion day (or the window's first day)."""
    if not order.has_plan:
        return None
    plan = session.exec(select(Plan).where(Plan.order_id == order.id)).first()
    if plan is None or plan.state not in ("held", "confirmed"):
        return None
    expected = plan.expected or {}
    back = expected.get("treatment_arrival_on")
    given = expected.get("infusion_on") or (expected.get("infusion_window") or {}).get("from")
    if not back or not given:
        return None
    return Expected(back_at=max(now, _midday(back)), given_at=_midday(given))


def expected_dates(session: Session, order: Order, now: dt.datetime) -> Expected:
    """When the family may expect the treatment back and given: the plan's dates where there
    is a plan in force, else the order's projected vein-to-vein time."""
    if order.infused_at is None and (planned := _planned(session, order, now)) is not None:
        return planned
    projected = turnaround.projection(session, order=order, now=now)
    infusion = projected.projected_infusion_at
    if infusion is None or order.infused_at is not None:
        return Expected(None, None)
    policy = current_policy(session, order.product)
    before_infusion = dt.timedelta(seconds=policy.typical[Leg.RECEIPT_TO_INFUSION])
    return Expected(back_at=max(now, infusion - before_infusion), given_at=infusion)


@dataclass
class FamilyView:
    site_name: str
    site_phone: str | None
    stage: Stage | None
    stages: list[StageLine]
    headline: str
    expected: list[tuple[str, str]] = field(default_factory=list)  # (what, day range)
    given_on: str | None = None
    news: list[NewsLine] = field(default_factory=list)
    contact_you: bool = False  # news waited longer than the hold allows
    updated: str = ""
    emails: bool = False


def _steps(session: Session, order: Order) -> list[tuple[Step, int, dt.datetime]]:
    rows = session.execute(
        sa.select(  # type: ignore[call-overload, misc]
            CustodyEvent.id,
            CustodyEvent.sequence,
            CustodyEvent.action,
            CustodyEvent.unit_id,
            CustodyEvent.to_state,
            CustodyEvent.batch_id,
            CustodyEvent.batch_state,
            CustodyEvent.recorded_at,
            Unit.kind,
        )
        .outerjoin(Unit, col(Unit.id) == col(CustodyEvent.unit_id))
        .where(col(CustodyEvent.order_id) == order.id)
        .order_by(col(CustodyEvent.sequence))
    ).all()
    return [
        (
            Step(
                sequence=sequence,
                action=action,
                kind=UnitKind(kind) if kind else None,
                unit_id=unit_id,
                to_state=to_state,
                batch_id=batch_id,
                batch_state=batch_state,
            ),
            event_id,
            recorded_at,
        )
        for (
            event_id, sequence, action, unit_id, to_state, batch_id, batch_state, recorded_at, kind
        ) in rows
    ]  # fmt: skip


def _disclosures(session: Session, order: Order) -> dict[int, StatusDisclosure]:
    rows = session.exec(select(StatusDisclosure).where(StatusDisclosure.order_id == order.id))
    return {row.event_id: row for row in rows}


def _moment_text(moment: dt.datetime, zone_name: str) -> str:
    """``5 December 2026 at 09:14 GMT``: the hospital's clock, in words a family reads."""
    local = localize(moment, zone_name)
    short = abbreviation(local) or offset_text(local)
    return f"{_day_text(local.date())} at {local:%H:%M} {short}"


def _day_text(day: dt.date) -> str:
    return f"{day.day} {day:%B %Y}"


def _range_text(found: DayRange) -> str:
    if found.first == found.last:
        return f"on {_day_text(found.first)}"
    if (found.first.year, found.first.month) == (found.last.year, found.last.month):
        return f"between {found.first.day} and {_day_text(found.last)}"
    return f"between {found.first.day} {found.first:%B} and {_day_text(found.last)}"


def family_view(session: Session, *, link: StatusLink, now: dt.datetime) -> FamilyView:
    """The family's page: only the stage, plain words, day ranges, news a clinician has
    discussed with them, and the treatment site's name and phone."""
    order = session.get(Order, link.order_id)
    assert order is not None
    site = session.get(Site, order.treatment_site_id)
    assert site is not None
    zone_name = site.time_zone or UTC_ZONE
    steps = _steps(session, order)
    told = _disclosures(session, order)
    shown: list[Step] = []
    news: list[NewsLine] = []
    held = False
    contact_you = False
    for step, event_id, recorded_at in steps:
        kind = family.news_kind(step)
        if kind is not None and event_id not in told:
            # the family reads nothing from here on until a clinician has talked with them
            held = True
            contact_you = now - recorded_at >= family.HOLD_LIMIT
            break
        if kind is not None:
            news.append(
                NewsLine(
                    words=family.NEWS_WORDS[kind],
                    discussed_on=_day_text(local_day(told[event_id].discussed_at, zone_name)),
                )
            )
        shown.append(step)
    stage = family.stage_of(shown)
    index = family.STAGES.index(stage) if stage is not None else -1
    lines = [
        StageLine(
            title=family.TITLES[each],
            words=family.WORDS[each],
            state="done" if i < index else "current" if i == index else "upcoming",
        )
        for i, each in enumerate(family.STAGES)
    ]
    view = FamilyView(
        site_name=site.name,
        site_phone=site.phone,
        stage=stage,
        stages=lines,
        headline=family.WORDS[stage] if stage else "The cells have not been collected yet.",
        news=news,
        contact_you=contact_you,
        updated=_moment_text(now, zone_name),
        emails=subscribed(session, link),
    )
    if stage is Stage.GIVEN and order.infused_at is not None:
        view.given_on = _day_text(local_day(order.infused_at, zone_name))
    elif not held:
        dates = expected_dates(session, order, now)
        tz = zone(zone_name)
        if dates.back_at is not None and index < family.STAGES.index(Stage.ARRIVED):
            found = family.day_range(dates.back_at, now=now, tz=tz)
            view.expected.append(("Back at the hospital", _range_text(found)))
        if dates.given_at is not None:
            found = family.day_range(dates.given_at, now=now, tz=tz)
            view.expected.append(("Treatment day", _range_text(found)))
    return view


# news a clinician tells first


@dataclass(frozen=True)
class PendingNews:
    sequence: int
    words: str
    recorded_at: dt.datetime
    overdue: bool  # past the hold: the family's page says the care team will call


def pending_news(
    session: Session, *, actor: Actor, coi: str, now: dt.datetime
) -> list[PendingNews]:
    order = _care_order(session, actor, coi)
    told = _disclosures(session, order)
    found = []
    for step, event_id, recorded_at in _steps(session, order):
        kind = family.news_kind(step)
        if kind is not None and event_id not in told:
            found.append(
                PendingNews(
                    sequence=step.sequence,
                    words=family.NEWS_WORDS[kind],
                    recorded_at=recorded_at,
                    overdue=now - recorded_at >= family.HOLD_LIMIT,
                )
            )
    return found


def mark_discussed(
    session: Session, *, actor: Actor, coi: str, sequence: int, reason: str, now: dt.datetime
) -> StatusDisclosure:
    """The care team has talked the news over with the family: the page may show it now."""
    order = _care_order(session, actor, coi)
    reason = reason.strip()
    if not reason or len(reason) > 500:
        raise InvalidRequest("say how it was discussed with the family (1 to 500 characters)")
    event = session.exec(
        select(CustodyEvent).where(
            CustodyEvent.order_id == order.id, CustodyEvent.sequence == sequence
        )
    ).first()
    steps = {step.sequence: step for step, _id, _at in _steps(session, order)}
    if event is None or sequence not in steps or family.news_kind(steps[sequence]) is None:
        raise NotFound(f"no news waiting for the family at record {sequence} of {order.coi}")
    assert event.id is not None
    assert order.id is not None
    if session.exec(select(StatusDisclosure).where(StatusDisclosure.event_id == event.id)).first():
        raise InvalidRequest(f"record {sequence} was marked discussed already")
    row = StatusDisclosure(
        order_id=order.id,
        event_id=event.id,
        discussed_by_id=actor.user_id,
        discussed_at=now,
        reason=reason,
    )
    session.add(row)
    session.flush()
    record_change(
        session,
        actor=actor,
        action="status news discussed",
        subject=f"{order.coi} record {sequence}",
        site_id=order.treatment_site_id,
        after={"news": family.news_kind(steps[sequence]), "how": reason},
        now=now,
    )
    return row


# the family's e-mails (services.operations.family_emails sends them)


def subscribed(session: Session, link: StatusLink) -> bool:
    if link.subscription_id is None:
        return False
    subscription = session.get(Subscription, link.subscription_id)
    return subscription is not None and subscription.active


def stop_emails(session: Session, link: StatusLink, why: str, now: dt.datetime) -> None:
    if link.subscription_id is None:
        return
    subscription = session.get(Subscription, link.subscription_id)
    if subscription is not None and subscription.active:
        subscription.active = False
        subscription.disabled_reason = f"{why} ({now.isoformat()})"[:500]
        session.add(subscription)
