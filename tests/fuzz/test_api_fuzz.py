"""A real fuzzer against the generated OpenAPI document: schemathesis sends what the document
allows (positive) and what it does not (negative), as three roles and without a token, and
every answer must be no server error and exactly what the document says it is.

`make test` runs a short pass (FUZZ_EXAMPLES per operation and mode, default 10); `make fuzz`
a long one. On PostgreSQL, which refuses more than SQLite does (NUL bytes, integer range,
lengths), so that a value only the database would refuse is found too."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import response_schema_conformance

from services.web import create_app
from tests.conftest import _settings, _truncate_all
from tests.world import World

pytestmark = pytest.mark.postgres

EXAMPLES = int(os.environ.get("FUZZ_EXAMPLES", "10"))
ROLES = ("care", "op", "courier")
SEEN: Counter[str] = Counter()


@pytest.fixture(scope="module")
def fuzz_world(pg_url: str, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    _truncate_all(pg_url)
    var: Path = tmp_path_factory.mktemp("fuzz-var")
    app = create_app(_settings(pg_url, var, api_rate_limit="100000 per second"))
    world = World.build(app)
    # something to find: bags at several steps, a shipment, a batch, a subscription
    world.bag_at("collected", "PAT-FUZZ-1")
    packed = world.bag_at("pack", "PAT-FUZZ-2")
    world.ship([packed["din"]])
    received = world.bag_at("receive", "PAT-FUZZ-3")
    world.post("op", "/api/v1/batches", {"coi": received["coi"]})
    world.post(
        "care",
        "/api/v1/subscriptions",
        {"coi": packed["coi"], "channel": "email", "target": "nurse@example.org"},
    )
    yield world
    app.extensions["vein2vein"].db.engine.dispose()


def _fuzz(world: World, mode: GenerationMode) -> tuple[list[str], int]:
    schema = schemathesis.openapi.from_wsgi("/api/v1/openapi.json", world.app)
    failures: list[str] = []
    operations = 0
    for result in schema.get_all_operations():
        operation = result.ok()
        operations += 1

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=os.environ.get("FUZZ_RANDOM") is None,
            database=None,
        )
        def run(case: Any) -> None:
            for who in (*ROLES, None):
                headers = world.headers(who) if who else {}
                response = case.call_and_validate(
                    headers=headers, checks=[not_a_server_error, response_schema_conformance]
                )
                SEEN[f"{mode.value} {response.status_code}"] += 1

        try:
            run()
        except Exception as error:  # every operation is fuzzed; all failures are reported
            failures.append(f"{operation.label}: {error}")
    return failures, operations


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE])
def test_no_server_error_and_every_answer_as_documented(
    fuzz_world: World, mode: GenerationMode
) -> None:
    started = time.monotonic()
    failures, operations = _fuzz(fuzz_world, mode)
    took = time.monotonic() - started
    counts = {k.split()[1]: v for k, v in sorted(SEEN.items()) if k.startswith(mode.value)}
    print(
        f"\nfuzz {mode.value}: {operations} operations x {EXAMPLES} examples x "
        f"{len(ROLES) + 1} callers, {sum(counts.values())} requests in {took:.0f} s; "
        f"answers by status: {counts}; failures: {len(failures)}"
    )
    assert failures == [], "\n\n".join(failures)
