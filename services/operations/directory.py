"""What rows refer to by id, for read models and responses: site codes, e-mails, COIs, DINs.

Each row is read once per session and kept (the session's identity map holds rows only
weakly, so a row nobody references would be read again at the next lookup): an answer listing
500 deadlines of 250 bags reads each bag once, or never when the caller hands over the rows it
loaded (``remember``). Site codes come from the per-process cache (services.db.cache).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from sqlmodel import Session, col, select

from services.db.cache import site_code
from services.db.models import Order, Site, Unit, User

_ROWS = "directory_rows"  # session.info: (model, id) -> row, for the session's life


class Directory:
    def __init__(self, session: Session) -> None:
        self.session = session
        self._rows: dict[tuple[type, int], Any] = session.info.setdefault(_ROWS, {})

    def _get(self, model: type, row_id: int) -> Any:
        row = self._rows.get((model, row_id))
        if row is None:
            row = self.session.get(model, row_id)
            if row is not None:
                self._rows[(model, row_id)] = row
        return row

    def remember(self, rows: Iterable[Any]) -> None:
        """Rows the caller has loaded already: looked up by id without a query."""
        for row in rows:
            self._rows[(type(row), row.id)] = row

    def site(self, site_id: int) -> Site:
        site: Site | None = self._get(Site, site_id)
        assert site is not None
        return site

    def site_code(self, site_id: int | None) -> str | None:
        return site_code(self.session, site_id) if site_id is not None else None

    def code(self, site_id: int) -> str:
        return site_code(self.session, site_id)

    def email(self, user_id: int) -> str:
        user: User | None = self._get(User, user_id)
        return user.email if user else ""

    def order(self, order_id: int) -> Order:
        order: Order | None = self._get(Order, order_id)
        assert order is not None
        return order

    def unit(self, unit_id: int) -> Unit:
        unit: Unit | None = self._get(Unit, unit_id)
        assert unit is not None
        return unit

    def sites(self) -> list[Site]:
        """Every site, by code (the scan station's choice of where a courier scans)."""
        return list(self.session.exec(select(Site).order_by(col(Site.code))).all())
