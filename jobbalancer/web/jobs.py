"""``/api/jobs``: submit, list, read, follow, cancel, restart and delete jobs."""

from __future__ import annotations

import time
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse

from jobbalancer.client import Client
from jobbalancer.job import Record, Status
from jobbalancer.web import sse
from jobbalancer.web.later import LATER_OPTIONS
from jobbalancer.web.models import (
    ArgvJob,
    CancelOut,
    CommandJob,
    Event,
    JobIn,
    JobOut,
    JobPage,
    Logs,
    Problem,
    ScriptJob,
)

# A realtime job is accepted or rejected by the balancer, not here: wait this long for its verdict.
REALTIME_VERDICT_S = 3.0
REALTIME_POLL_S = 0.02
# Index entries one list request looks at when filtering; a sparse filter pages on with the cursor.
SCAN_PER_PAGE = 5000
CURSOR = r"^\d{1,20}(\.\d{1,20})?:.+$"  # what jobs_page hands out: <created_at>:<id>

router = APIRouter(prefix="/api/jobs", tags=["jobs"])


def get_client(request: Request) -> Client:
    client: Client = request.app.state.client
    return client


ClientDep = Annotated[Client, Depends(get_client)]
NOT_FOUND: dict[int | str, dict[str, Any]] = {404: {"model": Problem, "description": "No job with that id."}}
INVALID: dict[int | str, dict[str, Any]] = {422: {"model": Problem, "description": "Invalid input; names the field."}}
CONFLICT: dict[int | str, dict[str, Any]] = {409: {"model": Problem, "description": "The job is not finished."}}


def job_out(record: Record, with_output: bool = True) -> dict[str, Any]:
    out = record.to_dict()
    if not with_output:
        del out["stdout"], out["stderr"]
    return out


@router.post(
    "",
    status_code=201,
    response_model=JobOut,
    responses={
        **INVALID,
        409: {"model": JobOut, "description": "A realtime job no worker could take now."},
        404: {"model": Problem, "description": "No script with that name."},
    },
)
def submit(body: JobIn, client: ClientDep) -> Any:
    """Submit a shell command, a program with its arguments, a Python call, or a run of a named script;
    201 with the job record."""
    options = body.model_dump(
        include={"watchdog", "realtime", "queue", "retries", "backoff", "backoff_max", "priority", "id", *LATER_OPTIONS}
    )
    if isinstance(body, CommandJob | ArgvJob):
        program = body.command if isinstance(body, CommandJob) else body.argv
        job = client.submit(program, cwd=body.cwd, env=body.env, **options)
    elif isinstance(body, ScriptJob):
        job = client.submit_script(body.script, body.params, **options)
    else:
        job = client.enqueue_call(body.func, body.args, body.kwargs, **options)
    record = job.record()
    if body.realtime:
        record = _verdict(client, record)
    if record.status is Status.REJECTED:
        return JSONResponse(JobOut.model_validate(job_out(record)).model_dump(mode="json"), status_code=409)
    return job_out(record)


def _verdict(client: Client, record: Record) -> Record:
    """Wait (bounded) until the balancer has placed or rejected a realtime job."""
    deadline = time.monotonic() + REALTIME_VERDICT_S
    while record.status is Status.QUEUED and time.monotonic() < deadline:
        time.sleep(REALTIME_POLL_S)
        record = client.record(record.id)
    return record


@router.get("", response_model=JobPage, response_model_exclude_unset=True, responses=INVALID)
def list_jobs(
    client: ClientDep,
    status: Status | None = None,
    queue: str | None = None,
    worker: str | None = None,
    q: Annotated[str | None, Query(description="Search: part of the id, command or function.")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    cursor: Annotated[str | None, Query(pattern=CURSOR, description="The `next` of the previous page.")] = None,
) -> Any:
    """Jobs, newest first, filtered; page on with ``cursor``."""

    def match(record: Record) -> bool:
        if (status and record.status is not status) or (queue and record.queue != queue):
            return False
        if worker and record.worker != worker:
            return False
        what = record.spec.get("command") or record.spec.get("func") or " ".join(record.spec.get("argv") or [])
        return not q or q in record.id or q in str(what) or q in (record.script or "")

    filtered = bool(status or queue or worker or q)
    records, after = client.jobs_page(limit, cursor, match if filtered else None, SCAN_PER_PAGE if filtered else None)
    return {"jobs": [job_out(record, with_output=False) for record in records], "next": after}


@router.get("/{job_id}", response_model=JobOut, responses=NOT_FOUND)
def get_job(job_id: str, client: ClientDep) -> Any:
    """One job's record, with its captured output."""
    return job_out(client.record(job_id))


@router.get("/{job_id}/events", response_model=list[Event], responses=NOT_FOUND)
def job_events(job_id: str, client: ClientDep) -> Any:
    """The job's state changes (its timeline), oldest first, from the recent events."""
    client.record(job_id)  # 404 for an unknown job
    return [sse.event_out(entry_id, fields) for entry_id, fields in client.recent_events(200, job_id)]


@router.get(
    "/{job_id}/logs",
    response_model=Logs,
    responses={**NOT_FOUND, 200: {"content": {"text/event-stream": {}}, "description": "With follow=true: SSE."}},
)
def logs(
    job_id: str,
    client: ClientDep,
    follow: Annotated[bool, Query(description="Stream output as server-sent events until the job ends.")] = False,
) -> Any:
    """The job's output; with ``follow=true`` a stream of ``stdout``/``stderr`` events, then ``end``."""
    record = client.record(job_id)
    if follow:
        return StreamingResponse(sse.follow(client, job_id), media_type="text/event-stream", headers=sse.HEADERS)
    output = client.output(job_id)
    return {"id": job_id, "status": record.status, "finished": record.finished, **output._asdict()}


@router.post("/{job_id}/cancel", response_model=CancelOut, responses=NOT_FOUND)
def cancel(job_id: str, client: ClientDep) -> Any:
    """Cancel a job; a running one is killed (its whole process tree) by its worker."""
    return {"id": job_id, "outcome": client.cancel(job_id)}


@router.post("/{job_id}/restart", response_model=JobOut, responses={**NOT_FOUND, **CONFLICT})
def restart(job_id: str, client: ClientDep) -> Any:
    """Run a finished job again under the same id."""
    return job_out(client.restart(job_id).record())


@router.delete("/{job_id}", status_code=204, response_class=Response, responses={**NOT_FOUND, **CONFLICT})
def delete(job_id: str, client: ClientDep) -> Response:
    """Delete a finished job's record and output."""
    client.delete(job_id)
    return Response(status_code=204)
