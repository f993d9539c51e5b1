"""The balancer trusts heartbeat ages only while it has been seeing Redis steadily."""

from __future__ import annotations

from jobbalancer.balancer.reclaim import Liveness

TIMEOUT_S = 2.0
TICK_MS = 500  # the balancer looks at Redis's clock about every half second


def looks(liveness: Liveness, start_ms: int, end_ms: int) -> list[bool]:
    return [liveness.trusted(now_ms, TIMEOUT_S) for now_ms in range(start_ms, end_ms, TICK_MS)]


def test_steady_looks_trust_heartbeat_ages() -> None:
    assert all(looks(Liveness(), 0, 10_000))


def test_after_an_outage_no_worker_is_judged_for_one_timeout() -> None:
    liveness = Liveness()
    assert all(looks(liveness, 0, 1_000))
    liveness.outage()
    # Redis answers again at 9 s: every last beat looks 8 s old until workers have had time to beat.
    assert looks(liveness, 9_000, 11_500) == [False, False, False, False, True]


def test_a_jump_of_redis_clock_between_looks_is_an_outage() -> None:
    liveness = Liveness()
    assert all(looks(liveness, 0, 1_000))
    # Redis (or this balancer) was frozen from 0.5 s to 4.5 s: no error, only a jump of the clock.
    assert looks(liveness, 4_500, 7_000) == [False, False, False, False, True]
    assert liveness.trusted(7_400, TIMEOUT_S)  # a slow pass (0.9 s) is not a gap
