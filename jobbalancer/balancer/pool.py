"""The workers of one queue that may take a job, best first: a heap, so a choice costs O(log n).

Used by ``plan.py`` for the built-in ranking policies (least-loaded, cpu, round-robin), which
pick the candidate with the lowest ``rank`` and take turns among equals. Here a worker's heap key
is its rank, then how often this pass already picked it, then its place in the turn (names after
the policy's last pick come first, wrapping round), then its name. The result is the policy's
``choose`` over all candidates, without looking at all of them for every job.

Entries are never removed from the middle: a worker whose view changed is pushed again and its
old entry is skipped when it surfaces (its key is no longer the current one).
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from jobbalancer.balancer.policies import WorkerView

Key = tuple[Any, ...]


class Pool:
    """Candidates of one queue (workers serving it with ``free > 0``), keyed for the policy.

    Args:
        workers: the candidates now.
        rank: the policy's rank of a worker (lower is better).
        picks: how many times each worker was picked this pass (shared by every pool of a plan).
        after: the policy's last pick before this pass: the turn starts with the next name.
    """

    def __init__(
        self,
        workers: Iterable[WorkerView],
        rank: Callable[[WorkerView], Key],
        picks: Mapping[str, int],
        after: str | None,
    ) -> None:
        self._rank, self._picks, self._after = rank, picks, after
        self._keys: dict[str, Key] = {}
        self._views: dict[str, WorkerView] = {}
        self.free = 0
        """Jobs this queue's candidates can still take."""
        for worker in workers:
            self._add(worker)
        self._heap = [(key, name) for name, key in self._keys.items()]
        heapq.heapify(self._heap)

    def _key(self, worker: WorkerView) -> Key:
        later = self._after is not None and worker.name <= self._after  # the turn wraps round past the last pick
        return (*self._rank(worker), self._picks.get(worker.name, 0), later, worker.name)

    def _add(self, worker: WorkerView) -> Key | None:
        self._views[worker.name] = worker
        if worker.free <= 0:
            return None
        self.free += worker.free
        key = self._key(worker)
        self._keys[worker.name] = key
        return key

    def best(self) -> WorkerView | None:
        """The policy's choice among the candidates, or None when none has a free slot."""
        heap, keys = self._heap, self._keys
        while heap:
            key, name = heap[0]
            if keys.get(name) is key:
                return self._views[name]
            heapq.heappop(heap)
        return None

    def update(self, worker: WorkerView) -> None:
        """A member's view changed (a job placed on it, from this queue or another)."""
        old = self._views.pop(worker.name, None)
        if old is None:
            return
        self.free -= max(0, old.free)
        self._keys.pop(worker.name, None)
        key = self._add(worker)
        heap = self._heap
        if heap and heap[0][1] == worker.name:  # usually: the worker just picked; one sift, not two
            if key is None:
                heapq.heappop(heap)
            else:
                heapq.heapreplace(heap, (key, worker.name))
        elif key is not None:
            heapq.heappush(heap, (key, worker.name))
