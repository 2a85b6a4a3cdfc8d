"""The JSON API, /api/v1 (CONTRACT.md)."""

from services.web.api import identifiers, labels, orders, scans, shipments  # noqa: F401 - routes
from services.web.api.blueprint import api

__all__ = ["api"]
