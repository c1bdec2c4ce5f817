"""The OpenAPI contract, exercised by schemathesis against the app in process: no generated input,
valid or not, makes the server answer 5xx, and every response matches the document.

The schema is loaded at import (``schemathesis.pytest.from_fixture`` fails on pytest 9: it reads
``request.node._nodeid``), so the database lives in a temporary folder removed after the module.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from engram.server.rest import create_app
from hypothesis import HealthCheck, settings

_DIR = Path(tempfile.mkdtemp(prefix="engram-rest-schema-"))
APP = create_app(
    {"embedder": "hash", "vector_store": {"provider": "sqlite", "config": {"path": str(_DIR / "engram.db")}}},
)
schema = schemathesis.openapi.from_asgi("/openapi.json", APP)


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    shutil.rmtree(_DIR, ignore_errors=True)


@schema.parametrize()
@settings(max_examples=30, derandomize=True, deadline=None, suppress_health_check=list(HealthCheck))
def test_contract(case: schemathesis.Case) -> None:
    # Every check but "schema-valid request accepted": the document cannot say "at least one of
    # user_id, agent_id, run_id", nor engram's filter syntax, nor which texts parse as times, so a
    # schema-valid request may be refused, with a 4xx and the error shape (which this checks).
    case.call_and_validate(excluded_checks=[schemathesis.checks.positive_data_acceptance])
