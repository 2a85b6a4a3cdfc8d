"""What rows refer to by id, for read models and responses: site codes, e-mails, COIs, DINs.

Read through the session's identity map (the rows a request has loaded already cost no query),
so that the web layer builds its answers from operations and runs no query of its own.
"""

from __future__ import annotations

from sqlmodel import Session, col, select

from services.db.models import Order, Site, Unit, User


class Directory:
    def __init__(self, session: Session) -> None:
        self.session = session

    def site(self, site_id: int) -> Site:
        site = self.session.get(Site, site_id)
        assert site is not None
        return site

    def site_code(self, site_id: int | None) -> str | None:
        return self.site(site_id).code if site_id is not None else None

    def code(self, site_id: int) -> str:
        return self.site(site_id).code

    def email(self, user_id: int) -> str:
        user = self.session.get(User, user_id)
        return user.email if user else ""

    def order(self, order_id: int) -> Order:
        order = self.session.get(Order, order_id)
        assert order is not None
        return order

    def unit(self, unit_id: int) -> Unit:
        unit = self.session.get(Unit, unit_id)
        assert unit is not None
        return unit

    def sites(self) -> list[Site]:
        """Every site, by code (the scan station's choice of where a courier scans)."""
        return list(self.session.exec(select(Site).order_by(col(Site.code))).all())
