"""Schemathesis over the OpenAPI schema: generated requests never get a 5xx."""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from jubako.client.push import push
from jubako.store import Store

from .conftest import ADMIN
from .factories import make_bento, make_model


# PostgreSQL as well: it refuses input SQLite takes (NUL bytes, over-long text), which
# must come back as 4xx there too.
@pytest.fixture(params=["sqlite-local", pytest.param("postgres-local", marks=pytest.mark.slow)])
def backend(request: pytest.FixtureRequest) -> str:
    return request.param


@pytest.fixture
def api_schema(registry, tmp_path):  # type: ignore[no-untyped-def]
    # Some data so generated requests can hit existing names as well as missing ones.
    src = Store(tmp_path / "src")
    model = make_model(src, "x", "v1")
    make_bento(src, "x", "v1", [model])
    with registry.client() as c:
        push(c, "x:v1", store=src)
    return schemathesis.openapi.from_url(f"{registry.url}/openapi.json")


def test_no_server_errors(api_schema) -> None:  # type: ignore[no-untyped-def]
    # Driven by hand (not schemathesis' pytest plugin, which trails pytest 9).
    operations = [r.ok() for r in api_schema.get_all_operations()]
    assert len(operations) >= 30
    headers = {"Authorization": f"Bearer {ADMIN}"}
    calls = []
    for op in operations:

        @given(case=op.as_strategy())
        @settings(
            max_examples=20,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            derandomize=True,
            database=None,
        )
        def run(case) -> None:  # type: ignore[no-untyped-def]
            response = case.call_and_validate(headers=headers, checks=[not_a_server_error])
            calls.append(response.status_code)

        run()
    assert len(calls) > 10 * len(operations)
    assert any(200 <= c < 300 for c in calls) and any(400 <= c < 500 for c in calls)
