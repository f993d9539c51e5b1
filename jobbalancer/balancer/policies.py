"""Placement policies: pick one worker for one job out of a snapshot of workers.

Pure: a policy sees frozen views and returns one of the candidates it was given; the balancer loop
does the I/O around it. A policy may keep state between calls (the rotation that breaks ties), so
the loop keeps one instance per configured name.

Built in:

* ``least-loaded`` (the default): lowest outstanding/slots, then fewest outstanding; equal workers
  take turns.
* ``round-robin``: each worker in turn, by name.
* ``cpu``: lowest CPU use from the heartbeats, then least-loaded.
* ``random``: any candidate.
* ``p2c``: power of two choices; two random candidates, the less loaded one.

Anything else is an entry point in group ``jobbalancer.policies`` or a ``package.module:Class``
import path; the class is instantiated with no arguments.
"""

from __future__ import annotations

import importlib
import logging
import math
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Protocol, runtime_checkable

from jobbalancer.errors import InvalidSetting

log = logging.getLogger("jobbalancer.balancer")

ENTRY_POINT_GROUP = "jobbalancer.policies"
IMPORT_PATH = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_][\w.]*$")


@dataclass(frozen=True)
class JobView:
    """What a policy knows of the job being placed."""

    id: str
    queue: str = "default"
    priority: int = 0


@dataclass(frozen=True)
class WorkerView:
    """One live worker as the balancer saw it in this pass.

    Attributes:
        name: the worker's name.
        slots: effective slots (after the ``max_jobs_per_worker`` cap).
        outstanding: jobs in its stream (assigned or running), including those placed this pass.
        cpu: CPU use in percent, from its last heartbeat.
        mem: memory use in percent, from its last heartbeat.
        load1: one-minute load average, from its last heartbeat.
        queues: the queues it serves.
        prefetch: jobs it may be given beyond its slots (the ``prefetch`` setting).
    """

    name: str
    slots: int
    outstanding: int = 0
    cpu: float = 0.0
    mem: float = 0.0
    load1: float = 0.0
    queues: frozenset[str] = frozenset({"default"})
    prefetch: int = 0

    def with_outstanding(self, outstanding: int) -> WorkerView:
        """A copy with another outstanding count; what ``dataclasses.replace`` does, several times
        faster (the balancer makes one per job it places)."""
        copy = object.__new__(WorkerView)
        copy.__dict__.update(self.__dict__, outstanding=outstanding)
        return copy

    @property
    def free(self) -> int:
        """Jobs the balancer may still assign to it: slots plus prefetch minus outstanding."""
        return self.slots + self.prefetch - self.outstanding

    @property
    def free_now(self) -> int:
        """Slots that would start a job at once (prefetch not counted): what a realtime job needs."""
        return self.slots - self.outstanding

    @property
    def load(self) -> float:
        """Outstanding jobs per slot; a worker without slots counts as full."""
        return self.outstanding / self.slots if self.slots > 0 else math.inf


@runtime_checkable
class Policy(Protocol):
    """Chooses a worker for a job.

    ``candidates`` is never empty; every candidate serves the job's queue and has a free slot.
    The return value must be one of the candidates.
    """

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView: ...


def _least_loaded_key(worker: WorkerView) -> tuple[float, int]:
    return worker.load, worker.outstanding


class Rotation:
    """Takes turns by name: picks the first worker named after the last one picked, wrapping round.

    Keyed by name rather than by position so that workers joining or leaving do not reset the turn.
    """

    def __init__(self) -> None:
        self._last: str | None = None

    @property
    def last(self) -> str | None:
        """The name picked last."""
        return self._last

    def moved_to(self, name: str) -> None:
        """Note a pick made elsewhere (the balancer's heap, ``pool.py``): the turn goes on from it."""
        self._last = name

    def pick(self, workers: Sequence[WorkerView]) -> WorkerView:
        ordered = sorted(workers, key=lambda w: w.name)
        last = self._last
        chosen = next((w for w in ordered if last is not None and w.name > last), ordered[0])
        self._last = chosen.name
        return chosen


def _pick_min(rotation: Rotation, candidates: Sequence[WorkerView], key: Callable[[WorkerView], Any]) -> WorkerView:
    best = min(key(w) for w in candidates)
    return rotation.pick([w for w in candidates if key(w) == best])


class RoundRobin:
    """Every candidate in turn, in name order."""

    def rank(self, worker: WorkerView) -> tuple[float, ...]:
        return ()

    def __init__(self) -> None:
        self.rotation = Rotation()

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        return self.rotation.pick(candidates)


class LeastLoaded:
    """Lowest outstanding/slots, then fewest outstanding; ties take turns."""

    def rank(self, worker: WorkerView) -> tuple[float, ...]:
        return _least_loaded_key(worker)

    def __init__(self) -> None:
        self.rotation = Rotation()

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        return _pick_min(self.rotation, candidates, _least_loaded_key)


class LowestCpu:
    """Lowest CPU use from the heartbeats, then least-loaded; ties take turns."""

    def rank(self, worker: WorkerView) -> tuple[float, ...]:
        return (worker.cpu, *_least_loaded_key(worker))

    def __init__(self) -> None:
        self.rotation = Rotation()

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        return _pick_min(self.rotation, candidates, lambda w: (w.cpu, *_least_loaded_key(w)))


class Random:
    """Any candidate, uniformly."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        return self._rng.choice(list(candidates))


class PowerOfTwo:
    """Two candidates at random, the less loaded of them (the first drawn on a tie)."""

    def __init__(self, rng: random.Random | None = None) -> None:
        self._rng = rng or random.Random()

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        if len(candidates) == 1:
            return candidates[0]
        first, second = self._rng.sample(list(candidates), 2)
        return second if _least_loaded_key(second) < _least_loaded_key(first) else first


class Ranked(Protocol):
    """A policy that picks the candidate of lowest ``rank``, taking turns by name among equals.

    The balancer keeps such a policy's candidates in a heap (``pool.py``) instead of asking
    ``choose`` with every candidate for every job; ``rotation`` carries the turn between passes.
    """

    rotation: Rotation

    def rank(self, worker: WorkerView) -> tuple[float, ...]: ...


def ranking(policy: Policy) -> Ranked | None:
    """The policy as a ``Ranked`` one if it is a built-in that ranks (not a subclass: it may override)."""
    if type(policy) in (LeastLoaded, LowestCpu, RoundRobin):
        return policy  # type: ignore[return-value]  # the three classes implement Ranked
    return None


BUILTIN_POLICIES: dict[str, type[Policy]] = {
    "least-loaded": LeastLoaded,
    "round-robin": RoundRobin,
    "cpu": LowestCpu,
    "random": Random,
    "p2c": PowerOfTwo,
}
DEFAULT_POLICY = "least-loaded"


def _unknown(name: str, why: str) -> InvalidSetting:
    return InvalidSetting(
        f"policy {name!r} {why}; use one of {', '.join(BUILTIN_POLICIES)}, an entry point in group "
        f"{ENTRY_POINT_GROUP!r}, or 'package.module:Class'"
    )


def _from_entry_point(name: str) -> object | None:
    found = entry_points(group=ENTRY_POINT_GROUP, name=name)
    if not found:
        return None
    try:
        target: object = next(iter(found)).load()
    except Exception as exc:  # a plugin can fail to import in any way; report it as a bad setting
        raise _unknown(name, f"is an entry point that failed to load ({exc})") from exc
    return target


def _from_import_path(name: str) -> object:
    module_name, _, qualname = name.partition(":")
    try:
        target: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            target = getattr(target, part)
    except Exception as exc:  # user code: ImportError, AttributeError, or whatever the module raises
        raise _unknown(name, f"cannot be imported ({exc})") from exc
    return target


def _instantiate(name: str, target: object) -> Policy:
    try:
        policy = target() if isinstance(target, type) else target
    except Exception as exc:  # a user's constructor may raise anything
        raise _unknown(name, f"could not be created with no arguments ({exc})") from exc
    if not callable(getattr(policy, "choose", None)):
        raise _unknown(name, "has no choose(job, candidates) method")
    return policy  # type: ignore[return-value]  # checked structurally just above


def load_policy(name: str) -> Policy:
    """A fresh policy for a configured name.

    Args:
        name: a built-in name, an entry point in group ``jobbalancer.policies``, or
            ``package.module:Class`` (instantiated with no arguments).

    Raises:
        InvalidSetting: naming the built-ins, when the name resolves to nothing usable.
    """
    if not isinstance(name, str) or not name:
        raise _unknown(str(name), "is empty")
    builtin = BUILTIN_POLICIES.get(name)
    if builtin is not None:
        return builtin()
    target = _from_entry_point(name)
    if target is None:
        if not IMPORT_PATH.match(name):
            raise _unknown(name, "is unknown")
        target = _from_import_path(name)
    return _instantiate(name, target)


def check_policy(name: str) -> None:
    """Raise InvalidSetting unless ``name`` loads; for ``Settings.validate(policy_check=...)``."""
    load_policy(name)


_FALLBACK = LeastLoaded()


def choose_or_fall_back(policy: Policy, name: str, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
    """``policy``'s choice (named ``name`` in logs); one that fails or answers off the list falls
    back to least-loaded: a user's policy may raise anything, and placement must go on."""
    try:
        chosen = policy.choose(job, candidates)
    except Exception:
        log.exception("policy %r failed for job %s; using least-loaded", name, job.id)
        return _FALLBACK.choose(job, candidates)
    if chosen not in candidates:
        log.error("policy %r chose %r, not a candidate; using least-loaded", name, chosen)
        return _FALLBACK.choose(job, candidates)
    return chosen
