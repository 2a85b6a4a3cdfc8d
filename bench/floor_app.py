"""The floor for bench/scan_floor.py: a bare Flask endpoint that parses a scan's JSON and
commits one INSERT, with the same Flask, SQLAlchemy engine and PostgreSQL as vein2vein.

    gunicorn -w 4 'bench.floor_app:create_app()'   (FLOOR_DATABASE_URL names the database)

Nothing of vein2vein runs here: no access check, no chain, no outbox, no deadlines. It is
what a scan cannot be faster than on this machine.
"""

from __future__ import annotations

import os
import uuid

import sqlalchemy as sa
from flask import Flask, jsonify, request

METADATA = sa.MetaData()
FLOOR_SCANS = sa.Table(
    "floor_scans",
    METADATA,
    sa.Column("id", sa.BigInteger, primary_key=True),
    sa.Column("event_id", sa.String(64), nullable=False, unique=True),
    sa.Column("barcode", sa.String(128), nullable=False),
    sa.Column("action", sa.String(32), nullable=False),
    sa.Column("site", sa.String(32), nullable=False),
)


def create_app() -> Flask:
    engine = sa.create_engine(os.environ["FLOOR_DATABASE_URL"], pool_pre_ping=False)
    app = Flask(__name__)

    @app.post("/floor")
    def floor() -> tuple[object, int]:
        body = request.get_json()
        with engine.begin() as connection:
            new_id = connection.execute(
                FLOOR_SCANS.insert()
                .values(
                    event_id=body.get("event_id") or str(uuid.uuid4()),
                    barcode=body["barcode"],
                    action=body["action"],
                    site=body["site"],
                )
                .returning(FLOOR_SCANS.c.id)
            ).scalar_one()
        return jsonify({"id": new_id}), 201

    return app
