"""The worker: runs the jobs a balancer assigns to it (see :mod:`jobbalancer.worker.loop`)."""

from jobbalancer.worker.loop import Worker, WorkerError

__all__ = ["Worker", "WorkerError"]
