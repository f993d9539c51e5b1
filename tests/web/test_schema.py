"""schemathesis over /openapi.json: no server error, every response as the schema says.

Every response must match the schema and none may be a server error. Whether schema-valid input
is accepted is not checked: a policy name can match the pattern and import nothing, an id can be
well formed and unknown (test_api.py covers those answers). Schema-invalid ones must not
break the server or the response schema; whether each is refused is not checked, because the
API, like most, ignores unknown query parameters, and because the test always sends the token
(test_api.py covers every refusal). The app runs in-process against the real Redis (no balancer, so jobs stay
queued). The event streams are left out: ``/api/events`` is endless by design, and so is a
queued job's ``logs?follow=true`` here, where no cluster runs it; test_live.py reads both.
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import (
    ignored_auth,
    missing_required_header,
    negative_data_rejection,
    positive_data_acceptance,
)

from jobbalancer.web import create_app, jobs
from tests.web.conftest import AUTH, TOKEN

EXAMPLES_PER_OPERATION = 20  # per operation and mode; the suite runs in CI under 10 minutes
EXCLUDED = {
    # Input valid by the schema can still be refused for what a schema cannot say: a policy name
    # that matches the pattern but imports nothing, a job id that does not exist. Those answer 4xx.
    schemathesis.GenerationMode.POSITIVE: [positive_data_acceptance],
    schemathesis.GenerationMode.NEGATIVE: [negative_data_rejection, missing_required_header, ignored_auth],
}


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
def test_every_operation_matches_its_schema(
    redis_url: str, prefix: str, mode: schemathesis.GenerationMode, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(jobs, "REALTIME_VERDICT_S", 0.05)  # no balancer runs here to judge realtime jobs
    app = create_app(url=redis_url, prefix=prefix, token=TOKEN, hosts={"testserver"})
    schema = schemathesis.openapi.from_asgi("/openapi.json", app).exclude(path="/api/events")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy(mode))
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, suppress_health_check=list(HealthCheck))
        def check(case: schemathesis.Case) -> None:
            if isinstance(case.query, dict) and "follow" in case.query:
                case.query["follow"] = "false"
            case.call_and_validate(headers=AUTH, excluded_checks=EXCLUDED[mode])

        check()
        checked.append(operation.label)
    app.state.client.close()
    assert len(checked) >= 15, checked
