"""``/metrics``: the cluster's state in Prometheus text format, read afresh at every scrape.

Nothing is counted in this process (a second dashboard would count differently): the gauges are
what Redis holds now, collected through the client, and the counters and the run time histogram
are the ones the Lua scripts keep in ``<p>:stats`` as things happen (:mod:`jobbalancer.stats`).
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily, Metric
from prometheus_client.registry import Collector

from jobbalancer.client import Client
from jobbalancer.stats import Stats, read_stats


class ClusterCollector(Collector):
    """Gauges of jobs, waiting depth and workers, from one client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def collect(self) -> Iterator[Metric]:
        jobs = GaugeMetricFamily("jobbalancer_jobs", "Job records by status and queue.", labels=["status", "queue"])
        for (status, queue), count in sorted(self.client.job_counts().items()):
            jobs.add_metric([status, queue], count)
        yield jobs
        waiting = GaugeMetricFamily("jobbalancer_waiting_jobs", "Jobs waiting for a free slot.", labels=["queue"])
        for queue, depth in sorted(self.client.waiting().items()):
            waiting.add_metric([queue], depth)
        yield waiting
        yield from self._workers()
        yield from counters(read_stats(self.client.redis, self.client.keys))

    def _workers(self) -> Iterator[GaugeMetricFamily]:
        gauges = {
            "up": ("jobbalancer_worker_up", "1 while the worker's heartbeat is fresh."),
            "running": ("jobbalancer_worker_running", "Jobs the worker is running."),
            "slots": ("jobbalancer_worker_slots", "Jobs the worker runs at once."),
            "draining": ("jobbalancer_worker_draining", "1 while the worker takes no new jobs."),
            "cpu": ("jobbalancer_worker_cpu_percent", "Host CPU use."),
            "mem": ("jobbalancer_worker_memory_percent", "Host memory use."),
            "done": ("jobbalancer_worker_jobs_done", "Jobs finished since it started."),
        }
        families = {key: GaugeMetricFamily(name, text, labels=["worker"]) for key, (name, text) in gauges.items()}
        for worker in self.client.workers():
            name = [worker["name"]]
            families["up"].add_metric(name, 0 if worker["state"] == "dead" else 1)
            families["draining"].add_metric(name, 1 if worker["state"] == "draining" else 0)
            families["running"].add_metric(name, worker["running"])
            families["done"].add_metric(name, worker["jobs_done"])
            for key, field in (("slots", "concurrency"), ("cpu", "cpu"), ("mem", "mem")):
                if worker[field] is not None:
                    families[key].add_metric(name, worker[field])
        yield from families.values()


def counters(stats: Stats) -> Iterator[Metric]:
    """The counters and the run time histogram kept in ``<p>:stats``."""
    finished = CounterMetricFamily(
        "jobbalancer_jobs_finished", "Jobs that ended, by queue and status (run or not).", labels=["queue", "status"]
    )
    for (queue, status), count in sorted(stats.finished.items()):
        finished.add_metric([queue, status], count)
    yield finished
    durations = HistogramMetricFamily(
        "jobbalancer_job_duration_seconds",
        "Run time of finished jobs (start to finish of the last attempt), by queue and status.",
        labels=["queue", "status"],
    )
    for (queue, status), runs in sorted(stats.durations.items()):
        buckets = [("+Inf" if math.isinf(bound) else repr(bound), count) for bound, count in runs.cumulative()]
        durations.add_metric([queue, status], buckets, runs.sum_s)
    yield durations
    yield _counter(
        "jobbalancer_reclaimed_jobs",
        "Jobs taken back from a lost worker, by what became of them (requeued, failed, timed_out, cancelled).",
        "outcome",
        stats.reclaimed,
    )
    yield _counter(
        "jobbalancer_watchdog_kills",
        "Jobs their watchdog killed, by who did: their worker, or the balancer's overdue backstop.",
        "by",
        stats.watchdog,
    )


def _counter(name: str, documentation: str, label: str, counts: Mapping[str, int]) -> CounterMetricFamily:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family


def render(client: Client) -> tuple[bytes, str]:
    """The metrics text and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(client))
    return generate_latest(registry), CONTENT_TYPE_LATEST
