"""schemathesis over /openapi.json: no server error, every response as the schema says.

The app runs in-process against the real Redis (no balancer, so jobs stay queued). The event
streams are left out: ``/api/events`` is endless by design, and so is a queued job's
``logs?follow=true`` here, where no cluster runs it; test_live.py reads both against a cluster.
"""

from __future__ import annotations

import schemathesis
from hypothesis import HealthCheck, given, settings

from jobbalancer.web import create_app
from tests.web.conftest import AUTH, TOKEN

EXAMPLES_PER_OPERATION = 40


def test_every_operation_matches_its_schema(redis_url: str, prefix: str) -> None:
    app = create_app(url=redis_url, prefix=prefix, token=TOKEN, hosts={"testserver"})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/events")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            if case.query and "follow" in case.query:
                case.query["follow"] = "false"
            case.call_and_validate(headers=AUTH)

        check()
        checked.append(operation.label)
    app.state.client.close()
    assert len(checked) >= 15, checked
