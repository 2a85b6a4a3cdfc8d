"""The JSON API, /api/v1 (CONTRACT.md)."""

from services.web.api import (  # noqa: F401 - routes
    batches,
    condition,
    epcis,
    evidence,
    hospital,
    identifiers,
    labels,
    notifications,
    orders,
    plans,
    scans,
    shipments,
    status_links,
    tokens,
    turnaround,
)
from services.web.api.blueprint import api

__all__ = ["api"]
