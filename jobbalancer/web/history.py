"""``/api/stats/history``: what the overview's charts draw, kept by the cluster (``jobbalancer.stats``).

The active balancer samples the finished-jobs total and the waiting depth every 5 s into a capped
stream, so a reload, another browser or another dashboard process sees the same history.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Query
from pydantic import BaseModel, Field

from jobbalancer.stats import HISTORY_MINUTES, SAMPLE_MS, history
from jobbalancer.web.jobs import INVALID, ClientDep

router = APIRouter(prefix="/api/stats", tags=["cluster"])


class PointOut(BaseModel):
    """One sample."""

    at: float = Field(description="When it was taken, epoch seconds (Redis's clock).")
    finished: int | None = Field(description="Jobs finished since the sample before; null for the first one kept.")
    waiting: int = Field(description="Jobs waiting for a free slot then, over all queues.")


class HistoryOut(BaseModel):
    """Samples of the last ``minutes``, oldest first; none while no balancer leads."""

    interval_s: float = Field(description="Seconds between samples while a balancer leads.")
    now: float = Field(description="Redis's clock now, epoch seconds.")
    points: list[PointOut]


@router.get("/history", response_model=HistoryOut, responses=INVALID)
def stats_history(
    client: ClientDep,
    minutes: Annotated[float, Query(gt=0, le=HISTORY_MINUTES, description="How far back.")] = 15,
) -> Any:
    """Jobs finished and waiting depth over time, sampled every 5 s by the active balancer (kept 12 h)."""
    now, points = history(client.redis, client.keys, minutes)
    return {"interval_s": SAMPLE_MS / 1000, "now": now, "points": [asdict(point) for point in points]}
