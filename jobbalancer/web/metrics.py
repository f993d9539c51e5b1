"""``/metrics``: the cluster's state in Prometheus text format, read afresh at every scrape.

Nothing is counted in this process (a second dashboard would count differently): every value is
a gauge of what Redis holds now, collected through the client.
"""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from jobbalancer.client import Client


class ClusterCollector(Collector):
    """Gauges of jobs, waiting depth and workers, from one client."""

    def __init__(self, client: Client) -> None:
        self.client = client

    def collect(self) -> Iterator[GaugeMetricFamily]:
        jobs = GaugeMetricFamily("jobbalancer_jobs", "Job records by status and queue.", labels=["status", "queue"])
        for (status, queue), count in sorted(self.client.job_counts().items()):
            jobs.add_metric([status, queue], count)
        yield jobs
        waiting = GaugeMetricFamily("jobbalancer_waiting_jobs", "Jobs waiting for a free slot.", labels=["queue"])
        for queue, depth in sorted(self.client.waiting().items()):
            waiting.add_metric([queue], depth)
        yield waiting
        yield from self._workers()

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


def render(client: Client) -> tuple[bytes, str]:
    """The metrics text and its content type."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(ClusterCollector(client))
    return generate_latest(registry), CONTENT_TYPE_LATEST
