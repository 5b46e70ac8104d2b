"""The admin API keeps its OpenAPI contract: schemathesis finds no failure in it.

Every operation of /openapi.json is called with generated data (examples, coverage
and fuzzing phases: valid and invalid parameters and bodies, unsupported methods,
missing and wrong tokens) against a real daemon, and every answer is checked against
the document: status, content type, body schema, no server error.

schemathesis' client blocks, so the daemon, the Coder simulator and the API run on an
event loop in a thread of their own (an anyio blocking portal).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime
from pathlib import Path

import pytest
import schemathesis
from anyio.from_thread import start_blocking_portal
from hypothesis import HealthCheck, settings

from tests.admin_rig import ADMIN_TOKEN, admin_rig
from warden.clock import ManualClock

START = datetime(2026, 11, 24, 10, 0, tzinfo=UTC)


@asynccontextmanager
async def served(directory: Path) -> AsyncIterator[str]:
    async with admin_rig(directory, ManualClock(START)) as rig:
        await rig.daemon.run_cycle()  # ready: /readyz answers 200, not a 5xx
        yield str(rig.url).rstrip("/")


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with (
        start_blocking_portal() as portal,
        portal.wrap_async_context_manager(served(tmp_path_factory.mktemp("api"))) as url,
    ):
        yield url


@pytest.fixture(scope="module")
def api_schema(api_url: str) -> schemathesis.schemas.BaseSchema:
    schema = schemathesis.openapi.from_url(f"{api_url}/openapi.json")
    schema.config.update(base_url=api_url, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    return schema


contract = schemathesis.pytest.from_fixture("api_schema")


@contract.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    derandomize=True,  # the same cases on every run: a failure here is never flaky
    suppress_health_check=list(HealthCheck),
)
def test_the_admin_api_keeps_its_contract(case: schemathesis.Case) -> None:
    case.call_and_validate()
