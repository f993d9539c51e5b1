"""The cluster: workers (and draining them), live settings, the event stream, an overview, metrics."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Header, Query
from fastapi.responses import JSONResponse, Response, StreamingResponse

from jobbalancer.balancer.policies import BUILTIN_POLICIES, check_policy
from jobbalancer.errors import InvalidSetting
from jobbalancer.web import metrics, sse
from jobbalancer.web.jobs import ClientDep
from jobbalancer.web.models import DrainOut, Overview, Problem, SettingsOut, SettingsPatch, WorkerOut

router = APIRouter()
STREAM_ID = r"^\d{1,20}(-\d{1,20})?$"
NO_WORKER: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No such registered worker."}}


@router.get("/api/workers", response_model=list[WorkerOut], tags=["workers"])
def workers(client: ClientDep) -> Any:
    """Every registered worker: state, slots, running, load, heartbeat age."""
    return client.workers()


def _tell(client: ClientDep, name: str, drain: bool) -> Any:
    if not client.drain(name, drain):
        return JSONResponse({"detail": f"no registered worker named {name!r}", "field": None}, status_code=404)
    return {"name": name, "state": "draining" if drain else "running"}


@router.post(
    "/api/workers/{name}/drain", status_code=202, response_model=DrainOut, responses=NO_WORKER, tags=["workers"]
)
def drain(name: str, client: ClientDep) -> Any:
    """Tell a worker to take no new jobs; it finishes what it holds. Its state turns ``draining`` within a beat."""
    return _tell(client, name, True)


@router.post(
    "/api/workers/{name}/resume", status_code=202, response_model=DrainOut, responses=NO_WORKER, tags=["workers"]
)
def resume(name: str, client: ClientDep) -> Any:
    """Let a drained worker take new jobs again."""
    return _tell(client, name, False)


@router.get("/api/config", response_model=SettingsOut, tags=["config"])
def get_config(client: ClientDep) -> Any:
    """The live cluster settings."""
    return asdict(client.settings())


@router.get("/api/policies", response_model=list[str], tags=["config"])
def policies() -> Any:
    """The built-in placement policies (``package.module:Class`` names work too)."""
    return sorted(BUILTIN_POLICIES)


@router.patch(
    "/api/config",
    response_model=SettingsOut,
    responses={422: {"model": Problem, "description": "Unknown setting or a bad value; names the field."}},
    tags=["config"],
)
def patch_config(changes: SettingsPatch, client: ClientDep) -> Any:
    """Change settings; the balancer and the workers apply them within a second. All or nothing."""
    wanted = changes.model_dump(exclude_none=True)
    settings = client.settings()
    try:  # check every change first, so a bad one changes nothing
        for name, value in wanted.items():
            settings = settings.with_value(name, str(value))
        settings.validate(check_policy if "policy" in wanted else None)
    except InvalidSetting as exc:
        named = str(exc).split(" ", 1)[0]
        return JSONResponse({"detail": str(exc), "field": named if named in wanted else None}, status_code=422)
    for name in wanted:
        client.set_setting(name, str(getattr(settings, name)), policy_check=check_policy)
    return asdict(client.settings())


@router.get("/api/overview", response_model=Overview, tags=["cluster"])
def overview(client: ClientDep) -> Any:
    """Workers, jobs waiting per queue, and job counts per status, for the dashboard's first screen."""
    by_status: dict[str, int] = {}
    for (status, _queue), count in client.job_counts().items():
        by_status[status] = by_status.get(status, 0) + count
    return {"workers": client.workers(), "waiting": client.waiting(), "jobs": by_status}


@router.get(
    "/api/events",
    responses={200: {"content": {"text/event-stream": {}}, "description": "`job` and `worker` events."}},
    response_class=StreamingResponse,
    tags=["cluster"],
)
def events(
    client: ClientDep,
    since: Annotated[str | None, Query(pattern=STREAM_ID, description="Resume after this event id.")] = None,
    last_event_id: Annotated[str | None, Header(pattern=STREAM_ID, include_in_schema=False)] = None,
) -> StreamingResponse:
    """Server-sent events: ``job`` (a job changed status) and ``worker`` (a worker changed state)."""
    stream = sse.cluster(client, since or last_event_id)
    return StreamingResponse(stream, media_type="text/event-stream", headers=sse.HEADERS)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {"text/plain": {}}, "description": "Prometheus text format."}},
    tags=["cluster"],
)
def prometheus(client: ClientDep) -> Response:
    """Prometheus metrics: jobs by status and queue, waiting depth, per-worker running, slots, CPU, memory;
    counters of finished jobs, reclaims and watchdog kills, and a run time histogram (kept in Redis)."""
    body, content_type = metrics.render(client)
    return Response(body, media_type=content_type)
