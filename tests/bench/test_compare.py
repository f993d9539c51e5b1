"""make bench's side-by-side tables: medians, ratios and target verdicts (pure)."""

from __future__ import annotations

from jobbalancer.bench.compare import Comparison, SystemResult, ratio_text


def comparison() -> Comparison:
    return Comparison(
        {
            "jobbalancer": SystemResult(
                "jobbalancer",
                "jobbalancer",
                [
                    {"noop_rate": 9000, "true_rate": 1700, "start_p50": 0.9, "start_p99": 4.0, "result_p50": 1.5},
                    {"noop_rate": 10000, "true_rate": 1800, "start_p50": 0.8, "start_p99": 3.5, "result_p50": 1.8},
                    {"noop_rate": 11000, "true_rate": 1900, "start_p50": 1.2, "start_p99": 2.5, "result_p50": 2.5},
                ],
                {"noop_rate": 20000, "true_rate": 2000},
            ),
            "limits": SystemResult("limits", "machine", [{"xadd_rate": 500_000, "spawn_rate": 2000}]),
            "huey": SystemResult("huey", "Huey", [{"noop_rate": 3000, "true_rate": 900}]),
            "dramatiq": SystemResult("dramatiq", "Dramatiq", [{"noop_rate": 2500, "true_rate": 1000}]),
            "rq-fork": SystemResult("rq-fork", "rq fork", [{"noop_rate": 100, "true_rate": 80}]),
            "celery": SystemResult("celery", "Celery", error="drive.py exited with 1"),
        }
    )


def test_rates_table_shows_medians_and_the_limits() -> None:
    lines = comparison().rates_table()
    assert lines[0] == "| median jobs/s | jobbalancer | Huey | Dramatiq | Celery | rq fork | machine limit |"
    assert lines[2] == "| no-op call jobs/s | 10,000 | 3,000 | 2,500 | failed | 100 | 500,000 (pipelined XADDs/s) |"
    assert lines[3] == "| `true` command jobs/s | 1,800 | 900 | 1,000 | failed | 80 | 2,000 (thread pool `true`/s) |"


def test_ratios_are_jobbalancer_over_each_peer_and_the_limit() -> None:
    lines = comparison().ratios_table()
    assert lines[2] == "| no-op call jobs/s | 3.3× | 4.0× | – | 100× | 0.02× |"
    assert lines[3] == "| `true` command jobs/s | 2.0× | 1.8× | – | 22× | 0.90× |"


def test_targets_are_judged_on_medians() -> None:
    targets = comparison().targets()
    assert targets == [
        "- met: no-op calls ≥ 3× the best of Huey and Dramatiq (measured 3.33×)",
        "- MISSED: no-op calls ≥ 5× the best of Huey and Dramatiq (the aim) (measured 3.33×)",
        "- met: no-op calls ≥ 30× rq's default (forking) worker (measured 100.00×)",
        "- met: `true` commands ≥ 80% of a bare thread pool (measured 90%)",
        "- met: submit→start p50 ≤ 1 ms (measured 0.90 ms)",
        "- MISSED: submit→start p99 ≤ 3 ms (measured 3.50 ms)",
        "- met: submit→result p50 (no-op call) ≤ 2 ms (measured 1.80 ms)",
    ]


def test_without_peers_the_peer_targets_are_not_measured() -> None:
    only_jb = Comparison({"jobbalancer": comparison().systems["jobbalancer"]})
    assert only_jb.targets()[0] == "- no-op calls ≥ 3× the best of Huey and Dramatiq: not measured in this run"
    assert only_jb.ratios_table()[0] == "| jobbalancer ÷ | machine limit |"


def test_rounds_table_lists_every_round_and_failures() -> None:
    lines = comparison().rounds_table()
    assert "| jobbalancer | noop_rate | 20,000 | 9,000, 10,000, 11,000 | 10,000 |" in lines
    assert "| jobbalancer | start_p50 |  | 0.90, 0.80, 1.20 | 0.90 |" in lines
    assert "| Celery | failed: drive.py exited with 1 | | | |" in lines


def test_ratio_text_keeps_small_ratios_readable() -> None:
    assert [ratio_text(v) for v in (None, 123.4, 3.33, 0.5, 0.0024)] == ["–", "123×", "3.3×", "0.50×", "0.0024×"]
