"""Placement policies, without Redis: each one's choice, tie rotation, and loading by name."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Mapping, Sequence
from importlib.metadata import EntryPoint, EntryPoints

import pytest

from jobbalancer.balancer import BUILTIN_POLICIES, load_policy, policies
from jobbalancer.balancer.plan import parse_head, plan_pass
from jobbalancer.balancer.policies import (
    JobView,
    LeastLoaded,
    LowestCpu,
    Policy,
    PowerOfTwo,
    Random,
    RoundRobin,
    WorkerView,
    check_policy,
)
from jobbalancer.config import Settings
from jobbalancer.errors import InvalidSetting

JOB = JobView("j1", "default", 0)
Entry = tuple[str, Mapping[str, str] | None]


def w(name: str, slots: int = 4, outstanding: int = 0, cpu: float = 0.0) -> WorkerView:
    return WorkerView(name=name, slots=slots, outstanding=outstanding, cpu=cpu)


class Last:
    """A user policy for the ``module:Class`` form: always the last candidate."""

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        return candidates[-1]


class NeedsArgs:
    def __init__(self, weight: int) -> None:
        self.weight = weight

    def choose(self, job: JobView, candidates: Sequence[WorkerView]) -> WorkerView:
        return candidates[0]


class NoChoose:
    pass


def test_worker_view_free_counts_prefetch_but_free_now_does_not() -> None:
    view = WorkerView(name="a", slots=2, outstanding=2, prefetch=1)
    assert (view.free, view.free_now) == (1, 0)
    assert WorkerView(name="b", slots=0).load == float("inf")


def test_least_loaded_prefers_lowest_outstanding_per_slot() -> None:
    # b has more jobs but far more slots: 2/8 beats 1/2.
    assert LeastLoaded().choose(JOB, [w("a", 2, 1), w("b", 8, 2)]).name == "b"


def test_least_loaded_breaks_equal_ratio_by_fewest_outstanding() -> None:
    assert LeastLoaded().choose(JOB, [w("a", 4, 2), w("b", 2, 1)]).name == "b"


def test_least_loaded_rotates_equal_workers() -> None:
    policy = LeastLoaded()
    workers = [w("b"), w("a"), w("c")]
    assert [policy.choose(JOB, workers).name for _ in range(6)] == ["a", "b", "c", "a", "b", "c"]


def test_least_loaded_rotation_survives_workers_coming_and_going() -> None:
    policy = LeastLoaded()
    assert policy.choose(JOB, [w("a"), w("b")]).name == "a"
    # "a" left and "c" joined: the turn moves on by name from the last pick.
    assert policy.choose(JOB, [w("b"), w("c")]).name == "b"
    assert policy.choose(JOB, [w("a"), w("b"), w("c")]).name == "c"


def test_round_robin_cycles_by_name_whatever_the_load() -> None:
    policy = RoundRobin()
    workers = [w("a", outstanding=3), w("b"), w("c")]
    assert [policy.choose(JOB, workers).name for _ in range(4)] == ["a", "b", "c", "a"]


def test_cpu_prefers_lowest_cpu_then_least_loaded() -> None:
    policy = LowestCpu()
    assert policy.choose(JOB, [w("a", cpu=80), w("b", cpu=10, outstanding=3), w("c", cpu=40)]).name == "b"
    assert policy.choose(JOB, [w("a", cpu=10, outstanding=2), w("b", cpu=10, outstanding=1)]).name == "b"


def test_cpu_rotates_exact_ties() -> None:
    policy = LowestCpu()
    workers = [w("a", cpu=5), w("b", cpu=5)]
    assert [policy.choose(JOB, workers).name for _ in range(4)] == ["a", "b", "a", "b"]


def test_random_only_returns_candidates_and_reaches_each() -> None:
    policy = Random(random.Random(7))
    workers = [w("a"), w("b"), w("c")]
    picks = Counter(policy.choose(JOB, workers).name for _ in range(300))
    assert set(picks) == {"a", "b", "c"}


def test_p2c_never_picks_the_most_loaded_of_three() -> None:
    policy = PowerOfTwo(random.Random(3))
    workers = [w("a", outstanding=0), w("b", outstanding=1), w("c", outstanding=3)]
    picks = Counter(policy.choose(JOB, workers).name for _ in range(300))
    # any pair drawn contains a less loaded worker than c
    assert picks["c"] == 0
    assert picks["a"] > picks["b"] > 0


def test_p2c_with_one_candidate_returns_it() -> None:
    only = w("solo")
    assert PowerOfTwo().choose(JOB, [only]) is only


@pytest.mark.parametrize("name", sorted(BUILTIN_POLICIES))
def test_every_builtin_loads_fresh_and_satisfies_the_protocol(name: str) -> None:
    first, second = load_policy(name), load_policy(name)
    assert isinstance(first, Policy)
    assert first is not second  # each balancer term gets its own rotation state
    assert first.choose(JOB, [w("a")]).name == "a"


def test_load_policy_by_import_path_instantiates_the_class() -> None:
    policy = load_policy(f"{__name__}:Last")
    assert isinstance(policy, Last)
    assert policy.choose(JOB, [w("a"), w("b")]).name == "b"


@pytest.mark.parametrize(
    ("name", "detail"),
    [
        ("fastest", "is unknown"),
        ("", "is empty"),
        ("no_such_module_xyz:Thing", "cannot be imported"),
        (f"{__name__}:Missing", "cannot be imported"),
        (f"{__name__}:NeedsArgs", "no arguments"),
        (f"{__name__}:NoChoose", "no choose"),
    ],
)
def test_load_policy_errors_name_the_builtins(name: str, detail: str) -> None:
    with pytest.raises(InvalidSetting) as err:
        load_policy(name)
    message = str(err.value)
    assert detail in message
    for builtin in BUILTIN_POLICIES:
        assert builtin in message


def test_check_policy_plugs_into_settings_validate() -> None:
    assert Settings(policy="p2c").validate(policy_check=check_policy).policy == "p2c"
    with pytest.raises(InvalidSetting, match="least-loaded"):
        Settings(policy="bogus").validate(policy_check=check_policy)


def test_load_policy_finds_an_entry_point(monkeypatch: pytest.MonkeyPatch) -> None:
    plugin = EntryPoint(name="last", value=f"{__name__}:Last", group="jobbalancer.policies")

    def fake_entry_points(*, group: str, name: str) -> EntryPoints:
        assert group == "jobbalancer.policies"
        return EntryPoints([plugin] if name == "last" else [])

    monkeypatch.setattr(policies, "entry_points", fake_entry_points)
    assert isinstance(load_policy("last"), Last)
    with pytest.raises(InvalidSetting, match="is unknown"):
        load_policy("first")


# The pass planner the policies plug into: pure as well, so its ordering rules are checked here.


def entry(n: int, job_id: str, queue: str = "default", priority: int = 0, realtime: bool = False) -> Entry:
    fields = {"id": job_id, "queue": queue, "priority": str(priority), "realtime": "1" if realtime else "0"}
    return (f"{n}-0", fields)


def test_plan_merges_waiting_heads_and_new_entries_by_priority_then_waiting_first() -> None:
    heads = {"default": [parse_head("default", "0000000000000001:old-p1", -1.0)]}
    entries = [entry(1, "new-p1", priority=1), entry(2, "new-p5", priority=5), entry(3, "new-p0")]
    ops = plan_pass(entries, [w("a", slots=2)], heads, LeastLoaded().choose)
    assert [(op["o"], op["id"]) for op in ops] == [("a", "new-p5"), ("a", "old-p1"), ("w", "new-p1"), ("w", "new-p0")]
    assert ops[1]["m"] == "0000000000000001:old-p1" and ops[0]["e"] == "2-0"


def test_plan_rejects_realtime_without_a_free_slot_and_dead_letters_garbage() -> None:
    busy = w("a", slots=1, outstanding=1)
    ops = plan_pass(
        [("1-0", {"tick": "1"}), ("2-0", {"queue": "default"}), entry(3, "rt", realtime=True)],
        [busy],
        {},
        LeastLoaded().choose,
    )
    assert [op["o"] for op in ops] == ["x", "d", "r"]
    assert ops[1]["why"] == "inbox entry has no job id" and json.loads(ops[1]["raw"]) == {"queue": "default"}


def test_plan_rotates_the_queue_served_first() -> None:
    shared = WorkerView(name="a", slots=1, queues=frozenset({"q1", "q2"}))
    entries = [entry(1, "one", queue="q1"), entry(2, "two", queue="q2")]
    firsts = [plan_pass(entries, [shared], {}, LeastLoaded().choose, turn)[0]["id"] for turn in range(2)]
    assert firsts == ["one", "two"]
