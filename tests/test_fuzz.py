"""Schema fuzzing: schemathesis generates requests from the gateway's own OpenAPI document (search filters
included) and sends them to the running app; whatever it sends, the answer is never a 5xx."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, given, seed, settings

from services.apps.gateway.app import create_app
from tests.helpers import AUTH, make_settings, served, write_catalogue


@pytest.fixture(scope="module")
def gateway_url(tmp_path_factory: pytest.TempPathFactory, tiny_registry: Path) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("fuzz")
    app_settings = make_settings(folder / "data", tiny_registry)
    app_settings.allowed_image_roots = [write_catalogue(folder / "catalogue")]
    with served(create_app(app_settings)) as url:
        yield url


def test_no_request_generated_from_the_schema_gets_a_5xx(gateway_url: str) -> None:
    """60 generated requests per operation (hypothesis, fixed seed) over real HTTP: bodies, queries and paths of
    every kind the document allows, and some it does not (schemathesis mixes in invalid data)."""
    schema = schemathesis.openapi.from_url(f"{gateway_url}/openapi.json")
    failures: list[str] = []
    statuses: Counter[int] = Counter()
    operations = [result.ok() for result in schema.get_all_operations()]
    assert any(op.path == "/v1/search" for op in operations)

    for operation in operations:

        @given(case=operation.as_strategy())
        @settings(max_examples=60, deadline=None, suppress_health_check=list(HealthCheck), database=None)
        @seed(0)
        def send(case: schemathesis.Case) -> None:
            response = case.call(base_url=gateway_url, headers=AUTH, timeout=60)
            statuses[response.status_code] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}")

        send()
    assert not failures, "\n".join(failures[:20])
    assert sum(statuses.values()) >= 10 * len(operations) and len(statuses) > 3, statuses  # it did explore
