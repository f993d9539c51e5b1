"""Work stealing: prefetched jobs go back from a busy worker when another has an empty slot.

Prefetch (the ``prefetch`` setting) lets the balancer put a few jobs in a worker's stream beyond
its free slots, so a slot that frees finds its next job without waiting for the balancer. The
price in other job queues is unfair prefetch: a job stuck behind a long one while another worker
idles. Here, whenever a live worker has an empty slot (fewer outstanding jobs than slots) and
another holds more jobs than slots, ``steal.lua`` takes the unread ones of the idle worker's
queues back to waiting, and the next pass places them.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

from jobbalancer.balancer.policies import WorkerView
from jobbalancer.keys import Keys
from jobbalancer.scripts import Scripts

log = logging.getLogger("jobbalancer.balancer")


def steal_for_idle(scripts: Scripts, keys: Keys, token: str, workers: Sequence[WorkerView]) -> int:
    """Move unread prefetched jobs from overfull workers towards idle slots; return how many moved."""
    idle = [w for w in workers if w.outstanding < w.slots]
    capacity = sum(w.slots - w.outstanding for w in idle)
    queues = frozenset().union(*(w.queues for w in idle)) if idle else frozenset()
    moved = 0
    for donor in sorted(workers, key=lambda w: w.slots - w.outstanding):
        if capacity - moved <= 0:
            break
        surplus = donor.outstanding - donor.slots
        common = donor.queues & queues
        if surplus <= 0 or not common:
            continue
        taken = int(scripts.steal(keys.prefix, token, donor.name, min(surplus, capacity - moved), *sorted(common)))
        if taken:
            log.info("took %d prefetched job(s) back from worker %s for idle slots", taken, donor.name)
        moved += taken
    return moved
