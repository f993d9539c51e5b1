"""The balancer trusts heartbeat ages only while it has been seeing Redis steadily."""

from __future__ import annotations

from jobbalancer.balancer.reclaim import Liveness

TIMEOUT_S = 2.0
TICK_MS = 500  # the balancer looks at Redis's clock about every half second


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def looks(liveness: Liveness, clock: Clock, start_ms: int, end_ms: int) -> list[bool]:
    seen = []
    for now_ms in range(start_ms, end_ms, TICK_MS):
        clock.now = 100.0 + now_ms / 1000
        seen.append(liveness.trusted(now_ms, TIMEOUT_S))
    return seen


def test_steady_looks_trust_heartbeat_ages() -> None:
    clock = Clock()
    assert all(looks(Liveness(clock), clock, 0, 10_000))


def test_after_an_outage_no_worker_is_judged_for_one_timeout() -> None:
    clock = Clock()
    liveness = Liveness(clock)
    assert all(looks(liveness, clock, 0, 1_000))
    liveness.outage()
    # Redis answers again at 9 s: every last beat looks 8 s old until workers have had time to beat.
    assert looks(liveness, clock, 9_000, 9_500) == [False]  # the first pass, before answered()
    liveness.answered()
    assert looks(liveness, clock, 9_500, 12_000) == [False, False, False, True, True]  # from 9 s + 2 s


def test_a_standby_that_saw_the_outage_long_ago_trusts_at_once_when_it_leads() -> None:
    clock = Clock()
    liveness = Liveness(clock)
    liveness.outage()
    liveness.answered()  # as a standby: it took no look at heartbeats
    clock.now += 30
    assert liveness.trusted(30_000, TIMEOUT_S)


def test_a_jump_of_redis_clock_between_looks_is_an_outage() -> None:
    clock = Clock()
    liveness = Liveness(clock)
    assert all(looks(liveness, clock, 0, 1_000))
    # Redis (or this balancer) was frozen from 0.5 s to 4.5 s: no error, only a jump of the clock.
    assert looks(liveness, clock, 4_500, 7_000) == [False, False, False, False, True]
    assert liveness.trusted(7_400, TIMEOUT_S)  # a slow pass (0.9 s) is not a gap
