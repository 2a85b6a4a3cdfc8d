"""A scan against the floor: vein2vein's POST /api/v1/scans beside a bare Flask + one INSERT
endpoint (bench/floor_app.py), under the same gunicorn and PostgreSQL, in one run.

    .venv/bin/python bench/scan_floor.py [--rounds 3] [--seconds 8] [--connections 16]
                                         [--workers 4] [--bags 16000] [--warmup 2]
                                         [--api-limit on|off]

Needs `wrk` (Debian: apt-get install wrk). Creates a database of its own on PostgreSQL
(BENCH_DATABASE_URL, default the local server), seeds --bags orders with one collected bag
each, then for each round runs wrk -t2 -c16 for --seconds against the floor and against
vein2vein (APP_ENV=production, rate limits counted in Redis as in production, each worker
leasing a share of the token's window at once; --api-limit off: API_RATE_LIMIT=off, as where
the reverse proxy limits the API), each scan a
plain verify_label of a bag of its own, after --warmup seconds of each (uncounted: a worker's
first requests fill its caches and prepare its statements). Prints requests/s and
p50/p95/p99 per round, each round's ratio of vein2vein to the floor and their median, and the
SQL statements one plain scan executes (counted in-process on the same database).
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import httpx
import sqlalchemy as sa
from cryptography.fernet import Fernet

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.floor_app import FLOOR_SCANS, METADATA
from bench.scan_throughput import (
    DEFAULT_SERVER,
    drop_database,
    fresh_database,
    seed,
    server_env,
)
from services.config import Settings
from services.db import migrate

WARM_BAGS = 1000  # enough for --warmup seconds of scans
LUA = r"""
local round, path, action, site, token = %(round)d, %(path)s, %(action)s, %(site)s, %(token)s
local threads = {}
function setup(thread)
  thread:set("tid", #threads)
  table.insert(threads, thread)
end
function init(args)
  bags = {}
  local n = 0
  for line in io.lines(%(bags)s) do
    if n %% 2 == tid then table.insert(bags, line) end
    n = n + 1
  end
  counter = 0
  wrk.headers["Content-Type"] = "application/json"
  if token ~= "" then wrk.headers["Authorization"] = "Bearer " .. token end
end
function request()
  counter = counter + 1
  local barcode = bags[counter] or bags[1]
  local event = string.format("%%08x-0000-4000-8000-%%04x%%08x", round, tid, counter)
  local body = string.format(
    '{"barcode":"%%s","action":"%%s","site":"%%s","event_id":"%%s"}',
    barcode, action, site, event)
  return wrk.format("POST", path, nil, body)
end
function done(summary, latency, requests)
  io.write(string.format(
    'RESULT {"requests":%%d,"seconds":%%f,"non2xx":%%d,"errors":%%d,' ..
    '"p50":%%f,"p95":%%f,"p99":%%f}\n',
    summary.requests, summary.duration / 1e6, summary.errors.status,
    summary.errors.connect + summary.errors.read + summary.errors.write + summary.errors.timeout,
    latency:percentile(50) / 1000, latency:percentile(95) / 1000,
    latency:percentile(99) / 1000))
end
"""


def gunicorn(app: str, port: int, workers: int, env: dict[str, str]) -> subprocess.Popen[bytes]:
    binary = str(Path(sys.executable).with_name("gunicorn"))
    return subprocess.Popen(
        [binary, "--bind", f"127.0.0.1:{port}", "--workers", str(workers),
         "--log-level", "warning", app],
        env=env,
        cwd=Path(__file__).resolve().parent.parent,
    )  # fmt: skip


def wait_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit(f"gunicorn exited during start-up ({url})")
        try:
            httpx.get(url, timeout=1)
            return
        except httpx.HTTPError:
            time.sleep(0.2)
    raise SystemExit(f"gunicorn did not start ({url})")


def run_wrk(
    base: str, *, round_: int, path: str, token: str, bags: Path, seconds: int, connections: int
) -> dict[str, Any]:
    script = Path(tempfile.mkstemp(suffix=".lua")[1])
    script.write_text(
        LUA
        % {
            "round": round_,
            "path": json.dumps(path),
            "action": json.dumps("verify_label"),
            "site": json.dumps("APH"),
            "token": json.dumps(token),
            "bags": json.dumps(str(bags)),
        }
    )
    ran = subprocess.run(
        ["wrk", "-t2", f"-c{connections}", f"-d{seconds}s", "--timeout", "10s", "-s",
         str(script), base],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    script.unlink()
    line = next(x for x in ran.stdout.splitlines() if x.startswith("RESULT "))
    result: dict[str, Any] = json.loads(line.removeprefix("RESULT "))
    result["rate"] = result["requests"] / result["seconds"]
    return result


def statements_per_scan(url: str, warm_up: str, barcode: str) -> tuple[int, list[str]]:
    """One plain scan in-process, every SQL statement it sends counted."""
    from services.web import create_app

    settings = Settings(
        _env_file=None,
        app_env="production",
        database_url=url,
        secret_key=secrets.token_urlsafe(32),
        webhook_secret_key=Fernet.generate_key().decode(),
        var_dir=Path(tempfile.mkdtemp()),
        ratelimit_storage_url=os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/14"),
        api_rate_limit="100000 per second",
    )
    app = create_app(settings)
    state = app.extensions["vein2vein"]
    token = os.environ["V2V_BENCH_TOKEN"]
    client = app.test_client()
    body = {"barcode": barcode, "action": "verify_label", "site": "APH"}
    seen: list[str] = []

    def count(*args: Any) -> None:
        seen.append(" ".join(str(args[2]).split())[:90])

    def scan(barcode: str) -> Any:
        return client.post(
            "/api/v1/scans",
            json={**body, "barcode": barcode, "event_id": str(uuid.uuid4())},
            headers={"Authorization": f"Bearer {token}"},
            environ_base={"REMOTE_ADDR": "127.0.0.1"},
        )

    scan(warm_up)  # a worker's first scan also reads the sites into its cache
    sa.event.listen(state.db.engine, "before_cursor_execute", count)
    response = scan(barcode)
    sa.event.remove(state.db.engine, "before_cursor_execute", count)
    if response.status_code != 201:
        raise SystemExit(f"the counted scan answered {response.status_code}: {response.json}")
    state.db.engine.dispose()
    return len(seen), seen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=int, default=8)
    parser.add_argument("--connections", type=int, default=16)
    parser.add_argument("--workers", type=int, default=4)
    parser.add_argument("--bags", type=int, default=16000)
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of each app, before the rounds, uncounted"
    )
    parser.add_argument("--show-statements", action="store_true")
    parser.add_argument(
        "--api-limit",
        choices=["on", "off"],
        default="on",
        help="on: scans counted against their token in Redis (leased shares of the window), as "
        "production does by default; "
        "off: API_RATE_LIMIT=off, for a deployment whose reverse proxy limits the API",
    )
    args = parser.parse_args()
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is not installed (apt-get install wrk)")

    server = os.environ.get("BENCH_DATABASE_URL", DEFAULT_SERVER)
    url = fresh_database(server)
    processes: list[subprocess.Popen[bytes]] = []
    try:
        migrate.upgrade(url)
        METADATA.create_all(sa.create_engine(url))
        started = time.perf_counter()
        token, barcodes = seed(url, args.bags + 2)
        print(f"seeded {len(barcodes)} collected bags in {time.perf_counter() - started:.1f} s")
        os.environ["V2V_BENCH_TOKEN"] = token
        counted, statements = statements_per_scan(url, barcodes.pop(), barcodes.pop())
        warm_bags = barcodes[-WARM_BAGS:] if args.warmup else []
        barcodes = barcodes[: len(barcodes) - len(warm_bags)]
        per_round = len(barcodes) // args.rounds
        env = {**server_env(url), "FLOOR_DATABASE_URL": url}
        if args.api_limit == "off":
            env["API_RATE_LIMIT"] = "off"
        floor_port, v2v_port = 18500 + os.getpid() % 500, 19000 + os.getpid() % 500
        floor = gunicorn("bench.floor_app:create_app()", floor_port, args.workers, env)
        v2v = gunicorn("services.web:create_app()", v2v_port, args.workers, env)
        processes += [floor, v2v]
        wait_ready(f"http://127.0.0.1:{floor_port}/", floor)
        wait_ready(f"http://127.0.0.1:{v2v_port}/api/v1/openapi.json", v2v)
        if warm_bags:  # each worker's first requests fill its caches and prepare statements
            bag_file = Path(tempfile.mkstemp(suffix=".txt")[1])
            bag_file.write_text("\n".join(warm_bags) + "\n")
            common = {"bags": bag_file, "seconds": args.warmup, "connections": args.connections}
            run_wrk(f"http://127.0.0.1:{floor_port}", round_=99, path="/floor", token="", **common)
            run_wrk(
                f"http://127.0.0.1:{v2v_port}",
                round_=99,
                path="/api/v1/scans",
                token=token,
                **common,
            )
            bag_file.unlink()
        rows: list[tuple[int, dict[str, Any], dict[str, Any]]] = []
        for number in range(args.rounds):
            bag_file = Path(tempfile.mkstemp(suffix=".txt")[1])
            window = barcodes[number * per_round : (number + 1) * per_round]
            bag_file.write_text("\n".join(window) + "\n")
            common = {"bags": bag_file, "seconds": args.seconds, "connections": args.connections}
            low = run_wrk(
                f"http://127.0.0.1:{floor_port}", round_=number, path="/floor", token="", **common
            )
            ours = run_wrk(
                f"http://127.0.0.1:{v2v_port}",
                round_=number,
                path="/api/v1/scans",
                token=token,
                **common,
            )
            bag_file.unlink()
            if ours["requests"] > len(window):
                print(f"  round {number + 1}: ran out of bags, raise --bags")
            rows.append((number + 1, low, ours))
        with sa.create_engine(url).connect() as connection:
            floor_rows = connection.execute(sa.select(sa.func.count()).select_from(FLOOR_SCANS))
            floor_count = floor_rows.scalar_one()
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(timeout=30)
        drop_database(url)

    print(
        f"\nscan vs floor: gunicorn {args.workers} workers, PostgreSQL, wrk -t2 "
        f"-c{args.connections} for {args.seconds} s per run, {args.rounds} rounds, "
        f"API limit {args.api_limit}"
    )
    header = ("round", "", "req/s", "p50 ms", "p95 ms", "p99 ms", "non-2xx")
    print("{:>5} {:>10} {:>9} {:>8} {:>8} {:>8} {:>8}".format(*header))
    for number, low, ours in rows:
        for name, r in (("floor", low), ("vein2vein", ours)):
            print(
                f"{number:>5} {name:>10} {r['rate']:9.1f} {r['p50']:8.1f} {r['p95']:8.1f} "
                f"{r['p99']:8.1f} {r['non2xx'] + r['errors']:8d}"
            )
    ratios = [ours["rate"] / low["rate"] for _n, low, ours in rows]
    short = [ours["requests"] > per_round for _n, _low, ours in rows]
    print(
        "ratio vein2vein / floor: "
        f"{' '.join(f'{r:.3f}' + ('*' if s else '') for r, s in zip(ratios, short, strict=True))} "
        f"(median {statistics.median(ratios):.3f})"
    )
    if any(short):
        print("  * ran out of bags: reused bags answered 409, the round overstates; raise --bags")
    print(f"floor rows written: {floor_count}")
    print(f"SQL statements in one plain scan (verify_label, in-process): {counted}")
    if args.show_statements:
        for statement in statements:
            print(f"  {statement}")


if __name__ == "__main__":
    main()
