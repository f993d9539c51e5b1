"""Every Redis key jobbalancer uses, built from one prefix (default ``jb``).

=============================  ======  ==========================================================
key                            type    holds
=============================  ======  ==========================================================
``<p>:inbox``                  stream  submitted jobs not yet placed; consumer group ``balancers``
``<p>:job:<id>``               hash    the job record (spec, status, worker, attempts, times, ...)
``<p>:job:<id>:out``           stream  live output chunks (``fd``, ``data``) and an ``end`` marker
``<p>:job:<id>:deps``          set     dependencies a waiting job still waits for (gone once met)
``<p>:job:<id>:dependents``    set     jobs waiting for this one (settled when it finishes)
``<p>:jobs``                   zset    job id -> created_at, the index ``jb jobs`` reads
``<p>:waiting:<queue>``        zset    jobs waiting for a slot; score -priority, member seq:id (FIFO)
``<p>:waitq``                  set     queues whose waiting zset is not empty
``<p>:tick``                   string  set while a wake-up tick for the balancer is in the inbox
``<p>:seq``                    string  counter giving waiting members their FIFO order
``<p>:w:<name>``               hash    worker facts and load: host, pid, queues, slots, cpu, ...
``<p>:w:<name>:jobs``          stream  jobs assigned to that worker; consumer group ``worker``
``<p>:w:<name>:ctl``           stream  control messages to that worker (cancel, drain, resume)
``<p>:workers``                zset    worker name -> last heartbeat (Redis clock, ms)
``<p>:freed``                  hash    worker name -> entries its stream lost since the balancer looked
``<p>:leader``                 string  the active balancer's lease token ``<epoch>:<owner>``, PX
``<p>:leader:epoch``           string  fencing epoch, incremented on every lease acquisition
``<p>:deadlines``              zset    running job id -> watchdog deadline (Redis clock, ms)
``<p>:events``                 stream  job state transitions (capped)
``<p>:dead``                   stream  jobs that ran out of attempts or could not be parsed
``<p>:delayed``                zset    job id -> when (Redis ms) its retry re-enters the waiting set
``<p>:queue:<name>``           hash    a queue's retry defaults: retries, backoff, backoff_max
``<p>:config``                 hash    live settings: policy, max_jobs_per_worker, ...
``<p>:stats``                  hash    counters since the start: finished jobs by queue, status and
                                       run time bucket; reclaims; watchdog kills (``stats.py``)
``<p>:stats:history``          stream  the active balancer's samples every 5 s: jobs finished so
                                       far, waiting depth (capped: 12 h)
``<p>:scripts``                hash    named scripts: name -> JSON {language, body, params, updated}
=============================  ======  ==========================================================

The Lua scripts build the same names from the prefix (see ``lua/_lib.lua``); keep both in step.
"""

from __future__ import annotations

from dataclasses import dataclass

INBOX_GROUP = "balancers"
WORKER_GROUP = "worker"


@dataclass(frozen=True)
class Keys:
    """Key names under one prefix."""

    prefix: str = "jb"

    @property
    def inbox(self) -> str:
        return f"{self.prefix}:inbox"

    @property
    def jobs(self) -> str:
        return f"{self.prefix}:jobs"

    @property
    def waitq(self) -> str:
        return f"{self.prefix}:waitq"

    @property
    def tick(self) -> str:
        return f"{self.prefix}:tick"

    @property
    def seq(self) -> str:
        return f"{self.prefix}:seq"

    @property
    def workers(self) -> str:
        return f"{self.prefix}:workers"

    @property
    def freed(self) -> str:
        return f"{self.prefix}:freed"

    @property
    def leader(self) -> str:
        return f"{self.prefix}:leader"

    @property
    def deadlines(self) -> str:
        return f"{self.prefix}:deadlines"

    @property
    def events(self) -> str:
        return f"{self.prefix}:events"

    @property
    def dead(self) -> str:
        return f"{self.prefix}:dead"

    @property
    def config(self) -> str:
        return f"{self.prefix}:config"

    @property
    def scripts(self) -> str:
        return f"{self.prefix}:scripts"

    @property
    def stats(self) -> str:
        return f"{self.prefix}:stats"

    @property
    def history(self) -> str:
        return f"{self.prefix}:stats:history"

    @property
    def delayed(self) -> str:
        return f"{self.prefix}:delayed"

    def queue(self, name: str) -> str:
        return f"{self.prefix}:queue:{name}"

    def job(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}"

    def output(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:out"

    def deps(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:deps"

    def dependents(self, job_id: str) -> str:
        return f"{self.prefix}:job:{job_id}:dependents"

    def waiting(self, queue: str) -> str:
        return f"{self.prefix}:waiting:{queue}"

    def worker(self, name: str) -> str:
        return f"{self.prefix}:w:{name}"

    def worker_jobs(self, name: str) -> str:
        return f"{self.prefix}:w:{name}:jobs"

    def worker_ctl(self, name: str) -> str:
        return f"{self.prefix}:w:{name}:ctl"
