"""``/api/scripts`` and ``POST /api/jobs`` with ``script``, in-process against the real Redis.

No worker runs here, so a submitted run stays ``queued``; test_browser.py runs one to the end.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from jobbalancer import Client

GREET = {
    "language": "sh",
    "body": 'echo "hello $1"',
    "params": [{"name": "who", "required": True, "description": "whom"}, {"name": "times", "default": "1"}],
}


def put(api: TestClient, name: str, **body: Any) -> dict[str, Any]:
    response = api.put(f"/api/scripts/{name}", json={**GREET, **body})
    assert response.status_code == 200, response.text
    return response.json()


def test_every_scripts_route_needs_the_token(api: TestClient) -> None:
    put(api, "greet")
    for method, path in [
        ("GET", "/api/scripts"),
        ("GET", "/api/scripts/greet"),
        ("PUT", "/api/scripts/greet"),
        ("DELETE", "/api/scripts/greet"),
    ]:
        response = api.request(method, path, json=GREET, headers={"Authorization": "Bearer wrong"})
        assert response.status_code == 401, (method, path)
    assert api.get("/api/scripts/greet").json()["body"] == GREET["body"]


def test_cross_origin_script_writes_are_refused(api: TestClient, jb: Client) -> None:
    response = api.put("/api/scripts/greet", json=GREET, headers={"Origin": "http://evil.example"})
    assert response.status_code == 403
    assert jb.named_scripts.all() == []


def test_put_get_list_and_delete(api: TestClient, jb: Client) -> None:
    saved = put(api, "greet")
    assert saved["name"] == "greet" and saved["language"] == "sh" and saved["updated"] > 1_600_000_000
    assert saved["params"] == [
        {"name": "who", "default": None, "required": True, "description": "whom"},
        {"name": "times", "default": "1", "required": False, "description": ""},
    ]
    put(api, "another.one", language="python", body="print(1)", params=[])
    assert [s["name"] for s in api.get("/api/scripts").json()] == ["another.one", "greet"]
    assert api.get("/api/scripts/greet").json() == saved
    replaced = put(api, "greet", language="bash", body="echo again", params=[])
    assert (replaced["language"], replaced["body"], replaced["params"]) == ("bash", "echo again", [])
    assert jb.named_scripts.get("greet").body == "echo again"
    deleted = api.delete("/api/scripts/greet")
    assert deleted.status_code == 204 and deleted.content == b""
    assert [s["name"] for s in api.get("/api/scripts").json()] == ["another.one"]


def test_unknown_scripts_get_404(api: TestClient) -> None:
    for method, path in [("GET", "/api/scripts/nope"), ("DELETE", "/api/scripts/nope")]:
        response = api.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["detail"] == "no script named 'nope'"
    run = api.post("/api/jobs", json={"script": "nope"})
    assert (run.status_code, run.json()["detail"]) == (404, "no script named 'nope'")


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"language": "ruby"}, "language", "language: String should match pattern"),
        ({"body": "  "}, "body", "body: String should match pattern"),
        ({"body": 5}, "body", "body: Input should be a valid string"),
        ({"params": [{"name": "1x"}]}, "params", "params.0.name"),
        ({"params": [{"name": "x", "colour": "red"}]}, "params", "params.0.colour"),
        ({"params": [{"name": "x"}, {"name": "X"}]}, "params", "'X' clashes with 'x': both are JB_PARAM_X"),
        ({"params": [{"name": "x", "default": "1", "required": True}]}, "params", "cannot be required"),
        ({"params": "who"}, "params", "params: Input should be a valid list"),
        ({"extra": 1}, "extra", "extra: Extra inputs are not permitted"),
    ],
)
def test_invalid_scripts_get_422_naming_the_field(
    api: TestClient, jb: Client, body: dict[str, Any], field: str, message: str
) -> None:
    response = api.put("/api/scripts/greet", json={**GREET, **body})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert message in response.json()["detail"]
    assert jb.named_scripts.all() == []


def test_bad_names_and_oversized_bodies_get_422(api: TestClient, jb: Client) -> None:
    bad = api.put("/api/scripts/has space", json=GREET)
    assert (bad.status_code, bad.json()["field"]) == (422, "name")
    assert api.get("/api/scripts/" + "x" * 65).status_code == 422
    jb.redis.hset(jb.keys.config, "spec_limit", "64")
    big = api.put("/api/scripts/big", json={**GREET, "body": "x" * 65})
    assert big.status_code == 422 and big.json()["field"] == "body"
    assert "over the limit of 64 bytes" in big.json()["detail"]
    assert jb.named_scripts.all() == []


def test_a_run_is_a_job_resolved_at_submit(api: TestClient, jb: Client) -> None:
    put(api, "greet")
    response = api.post("/api/jobs", json={"script": "greet", "params": {"who": "ada"}, "queue": "q1", "priority": 3})
    assert response.status_code == 201, response.text
    job = response.json()
    assert (job["kind"], job["status"], job["queue"], job["priority"]) == ("command", "queued", "q1", 3)
    assert (job["script"], job["params"]) == ("greet", {"who": "ada", "times": "1"})
    assert job["argv"] == ["sh", "-c", 'echo "hello $1"', "greet", "ada", "1"]
    assert job["env"] == {"JB_PARAM_WHO": "ada", "JB_PARAM_TIMES": "1"}
    put(api, "greet", body="echo changed")  # the queued job keeps what it was given
    assert api.get(f"/api/jobs/{job['id']}").json()["argv"][2] == 'echo "hello $1"'
    listed = api.get("/api/jobs", params={"q": "greet"}).json()["jobs"]
    assert [(j["id"], j["script"]) for j in listed] == [(job["id"], "greet")]


@pytest.mark.parametrize(
    ("body", "field", "message"),
    [
        ({"params": {}}, "params", "script 'greet' needs the parameter 'who'"),
        ({"params": {"who": "x", "whom": "y"}}, "params", "has no parameter 'whom' (it takes who, times)"),
        ({"params": {"who": 1}}, "params", "params.who: Input should be a valid string"),
        ({"params": {"who": "\u0000"}}, "params", "params.who"),
        ({"params": {"1bad": "x"}}, "params", "params"),
        ({"params": ["who"]}, "params", "params: Input should be a valid dictionary"),
        ({"script": "bad name"}, "script", "script: String should match pattern"),
        ({"command": "echo"}, "command", "command: Extra inputs are not permitted"),
        ({"retries": -1}, "retries", "retries"),
    ],
)
def test_invalid_runs_get_422_naming_the_field(
    api: TestClient, jb: Client, body: dict[str, Any], field: str, message: str
) -> None:
    put(api, "greet")
    response = api.post("/api/jobs", json={"script": "greet", **body})
    assert response.status_code == 422, response.text
    assert response.json()["field"] == field
    assert message in response.json()["detail"]
    assert jb.jobs() == []


def test_the_schema_documents_the_scripts_routes(api: TestClient) -> None:
    schema = api.get("/openapi.json").json()
    assert set(schema["paths"]["/api/scripts/{name}"]) == {"get", "put", "delete"}
    assert "get" in schema["paths"]["/api/scripts"]
    submit = schema["paths"]["/api/jobs"]["post"]
    assert "404" in submit["responses"]
    assert "ScriptJob" in str(submit["requestBody"])
