"""What a process may remember between transactions: the sites' ids, codes and kinds.

A site is never deleted, and its code and kind never change once made (the database's triggers
refuse it), so a process can keep them and read them again only when it meets a code or an id
it does not know yet (a site added since). The cache belongs to one Database (one engine), so a
test's fresh database, or another installation in the same process, never sees another's.
Everything else a site has (its name, its FIN, its signing rules) is read from the database.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from sqlmodel import Session, select

from services.db.models import Site
from services.domain.custody import SiteKind

SITE_CACHE = "site_cache"  # session.info key, set by the session factory


@dataclass(frozen=True, slots=True)
class KnownSite:
    id: int
    code: str
    kind: SiteKind


class SiteCache:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_code: dict[str, KnownSite] = {}
        self._by_id: dict[int, KnownSite] = {}

    def _load(self, session: Session) -> None:
        rows = session.exec(select(Site.id, Site.code, Site.kind)).all()
        known = [KnownSite(int(i or 0), code, SiteKind(kind)) for i, code, kind in rows]
        with self._lock:
            self._by_code = {site.code: site for site in known}
            self._by_id = {site.id: site for site in known}

    def by_code(self, session: Session, code: str) -> KnownSite | None:
        found = self._by_code.get(code)
        if found is None:
            self._load(session)
            found = self._by_code.get(code)
        return found

    def by_id(self, session: Session, site_id: int) -> KnownSite:
        found = self._by_id.get(site_id)
        if found is None:
            self._load(session)
            found = self._by_id[site_id]
        return found

    def codes(self, session: Session) -> dict[int, str]:
        if not self._by_id:
            self._load(session)
        return {site_id: site.code for site_id, site in self._by_id.items()}


def site_cache(session: Session) -> SiteCache:
    """The session's database's cache (a session made without one gets a cache of its own)."""
    cache = session.info.get(SITE_CACHE)
    if cache is None:
        cache = session.info[SITE_CACHE] = SiteCache()
    return cache


def site_code(session: Session, site_id: int) -> str:
    return site_cache(session).by_id(session, site_id).code
