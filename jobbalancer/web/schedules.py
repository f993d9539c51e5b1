"""``/api/schedules``: the jobs rq-scheduler holds for this cluster (``jb schedule list|cancel``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, Field

from jobbalancer import schedule
from jobbalancer.web.jobs import ClientDep
from jobbalancer.web.models import Problem

router = APIRouter(prefix="/api/schedules", tags=["schedules"])


class ScheduleOut(BaseModel):
    """One scheduled job, as ``jb schedule list --json`` shows it."""

    id: str = Field(description="The job's id (a cron job's runs are `<id>@<epoch s>`).")
    due_at: float = Field(description="Its next run, epoch seconds.")
    schedule: str = Field(description="`once`, `cron <expression>`, or `every <n>s`, with repeats left.")
    queue: str
    what: str = Field(description="The command, or the call written out.")


class UnscheduleOut(BaseModel):
    """``cancelled`` (the job's record says so) or ``removed`` (an entry filed by an rq-scheduler user)."""

    id: str
    outcome: str


@router.get("", response_model=list[ScheduleOut])
def list_schedules(client: ClientDep) -> Any:
    """Scheduled jobs, soonest first."""
    return [entry.to_dict() for entry in schedule.entries(client.redis, client.prefix)]


@router.delete(
    "/{job_id}",
    response_model=UnscheduleOut,
    responses={
        404: {"model": Problem, "description": "No scheduled job or schedule entry with that id."},
        409: {"model": Problem, "description": "The job is not scheduled (any more)."},
    },
)
def unschedule(job_id: str, client: ClientDep) -> Any:
    """Take a job off the schedule: a scheduled job ends ``cancelled``."""
    return {"id": job_id, "outcome": schedule.cancel(client.redis, client.scripts, client.prefix, job_id)}
