"""The family's status page: what a view costs, and one pass of the family e-mails.

    .venv/bin/python bench/family_status.py [--orders 10] [--links 20] [--views 200]

On SQLite in a folder of its own: --orders orders, each taken to the pickup of its bag, with
--links links each whose families opted in to e-mails. Prints p50/p95 of GET /status/<token>
(in-process, Flask's test client: the view, its count and the page) and the time of one
notify_families pass that writes an e-mail for every link (each order's step moved).
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from services.config import Settings
from services.db import UnitOfWork, migrate
from services.operations import family_emails
from tests.world import World


def percentiles(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[max(0, int(len(ordered) * 0.95) - 1)]
    return f"p50 {statistics.median(ordered) * 1000:7.1f} ms   p95 {p95 * 1000:7.1f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--orders", type=int, default=10)
    parser.add_argument("--links", type=int, default=20, help="links per order")
    parser.add_argument("--views", type=int, default=200)
    args = parser.parse_args()

    from services.web import create_app

    folder = Path(tempfile.mkdtemp(prefix="v2v-family-"))
    url = f"sqlite:///{folder / 'bench.db'}"
    migrate.upgrade(url)
    settings = Settings(
        _env_file=None,
        app_env="development",
        database_url=url,
        secret_key="bench-" + "x" * 32,
        var_dir=folder / "var",
        api_rate_limit="100000 per second",
    )
    app: Any = create_app(settings)
    world = World.build(app)
    client = app.test_client()
    tokens: list[str] = []
    bags = []
    for n in range(args.orders):
        bag = world.bag_at("pack", f"PAT-BENCH-{n}")
        bags.append(bag)
        for _ in range(args.links):
            made = world.post("care", f"/api/v1/orders/{bag['coi']}/status-links", {})
            token = made.json["url"].rsplit("/", 1)[1]
            client.post(
                f"/status/{token}/emails", data={"emails": "on", "email": "kin@example.net"}
            )
            tokens.append(token)
    for bag in bags:  # every order moves on a step: each link has news to send
        world.ship([bag["din"]])
        world.scan("courier", bag["barcode"], "pickup", "APH-1")

    samples = []
    for i in range(args.views):
        started = time.perf_counter()
        response = client.get(f"/status/{tokens[i % len(tokens)]}")
        samples.append(time.perf_counter() - started)
        assert response.status_code == 200
    print(f"GET /status/<token> ({args.views} views):  {percentiles(samples)}")

    # at 10:00 in the treatment site's zone (UTC): not quiet hours
    now = dt.datetime.now(dt.UTC).replace(hour=10, minute=0)
    started = time.perf_counter()
    with UnitOfWork(app.extensions["vein2vein"].db.session_factory) as uow:
        written = family_emails.notify_families(
            uow.session, now=now, public_url="https://v2v.example", secret_key="k" * 32
        )
        uow.commit()
    took = time.perf_counter() - started
    print(
        f"notify_families: {len(written)} e-mails for {len(tokens)} links in {took:.2f} s "
        f"({took / max(1, len(tokens)) * 1000:.1f} ms a link)"
    )


if __name__ == "__main__":
    main()
