"""The trace generator: distributions, determinism, queues, the CSV format and bad input (pure)."""

from __future__ import annotations

import io
import math
import statistics
from pathlib import Path

import pytest
from click.testing import CliRunner

from jobbalancer.bench.trace import (
    Distribution,
    JobKind,
    Shape,
    TraceError,
    TraceJob,
    generate,
    parse_queues,
    read_csv,
    write_csv,
)
from jobbalancer.cli import main

N = 20_000


def gaps(trace: list[TraceJob]) -> list[float]:
    return [b.arrival_s - a.arrival_s for a, b in zip(trace, trace[1:], strict=False)]


@pytest.mark.parametrize(
    ("dist", "stdev_expected"),
    [
        (Distribution(Shape.EXPONENTIAL, 0.05), 0.05),
        (Distribution(Shape.CONSTANT, 0.05), 0.0),
        (Distribution(Shape.UNIFORM, 0.05), 0.05 / math.sqrt(3)),
        (Distribution(Shape.UNIFORM, 0.05, 0.01), 0.01),
        (Distribution(Shape.NORMAL, 0.05, 0.01), 0.01),
    ],
    ids=["exponential", "constant", "uniform", "uniform-stdev", "normal"],
)
def test_arrival_and_service_draws_have_the_asked_mean_and_spread(dist: Distribution, stdev_expected: float) -> None:
    trace = generate(N, dist, dist, JobKind.SLEEP, seed=7)
    for values in (gaps(trace), [job.service_s for job in trace]):
        assert statistics.fmean(values) == pytest.approx(0.05, rel=0.03)
        assert statistics.pstdev(values) == pytest.approx(stdev_expected, rel=0.05, abs=1e-9)
        assert min(values) >= 0


def test_first_job_arrives_at_zero_and_arrivals_never_go_back() -> None:
    trace = generate(100, Distribution(Shape.EXPONENTIAL, 0.1), Distribution(Shape.CONSTANT, 1), JobKind.CPU, seed=1)
    assert trace[0].arrival_s == 0
    assert all(g >= 0 for g in gaps(trace))
    assert {job.kind for job in trace} == {JobKind.CPU}
    assert {job.service_s for job in trace} == {1}


def test_a_seed_gives_the_same_trace_and_another_seed_a_different_one() -> None:
    def make(seed: int, service: Distribution) -> list[TraceJob]:
        queues = parse_queues("a:0.7,b:0.3")
        return generate(500, Distribution(Shape.EXPONENTIAL, 0.1), service, JobKind.SLEEP, queues, seed)

    exp = Distribution(Shape.EXPONENTIAL, 0.2)
    assert make(42, exp) == make(42, exp)
    assert make(42, exp) != make(43, exp)
    # Arrivals and queues have their own random streams: changing the service keeps them.
    other = make(42, Distribution(Shape.NORMAL, 0.2, 0.05))
    assert [(j.arrival_s, j.queue) for j in other] == [(j.arrival_s, j.queue) for j in make(42, exp)]


def test_queues_are_drawn_by_weight() -> None:
    queues = parse_queues("a:0.7,b:0.3")
    trace = generate(
        N, Distribution(Shape.CONSTANT, 0.01), Distribution(Shape.CONSTANT, 0.01), JobKind.SLEEP, queues, 3
    )
    share_a = sum(job.queue == "a" for job in trace) / N
    assert share_a == pytest.approx(0.7, abs=0.02)
    assert parse_queues("x:2,y:1") == [("x", 2.0), ("y", 1.0)]
    assert parse_queues(None) == [("default", 1.0)]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a", "must be NAME:WEIGHT"),
        ("a:0.5,a:0.5", "listed twice"),
        ("a:zero", "not a number"),
        ("a:0", "weight > 0"),
        ("a:-1", "weight > 0"),
        ("bad name:1", "not a valid name"),
    ],
)
def test_bad_queue_specs_are_refused(text: str, message: str) -> None:
    with pytest.raises(TraceError, match=message):
        parse_queues(text)


def test_csv_round_trip_keeps_every_job() -> None:
    trace = generate(50, Distribution(Shape.UNIFORM, 0.1), Distribution(Shape.NORMAL, 0.5, 0.1), JobKind.SLEEP, seed=9)
    out = io.StringIO()
    assert write_csv(trace, out) == 50
    assert out.getvalue().splitlines()[0] == "arrival_s,service_s,kind,queue"
    back = read_csv(io.StringIO(out.getvalue()))
    assert len(back) == 50
    for original, read in zip(trace, back, strict=True):
        assert read.arrival_s == pytest.approx(original.arrival_s, abs=1e-6)
        assert read.service_s == pytest.approx(original.service_s, abs=1e-6)
        assert (read.kind, read.queue) == (original.kind, original.queue)


def test_read_csv_sorts_by_arrival_and_names_the_bad_line(tmp_path: Path) -> None:
    good = "arrival_s,service_s,kind,queue\n1.0,0.1,cpu,a\n0.5,0.2,sleep,b\n"
    assert [job.arrival_s for job in read_csv(io.StringIO(good))] == [0.5, 1.0]
    bad = {
        "arrival_s,service_s,kind\n": "starts with the header",
        "arrival_s,service_s,kind,queue\n": "no jobs",
        "arrival_s,service_s,kind,queue\n0,0.1,gpu,a\n": "line 2: kind must be sleep or cpu",
        "arrival_s,service_s,kind,queue\n0,0.1,cpu,a\nsoon,0.1,cpu,a\n": "line 3: arrival_s 'soon' is not a number",
        "arrival_s,service_s,kind,queue\n0,-1,cpu,a\n": "line 2: service_s must be >= 0",
        "arrival_s,service_s,kind,queue\n0,1,cpu\n": "line 2: expected 4 fields",
    }
    for text, message in bad.items():
        with pytest.raises(TraceError, match=message):
            read_csv(io.StringIO(text))
    with pytest.raises(TraceError, match="cannot read"):
        read_csv(tmp_path / "missing.csv")


def test_jb_bench_trace_writes_the_csv_and_describes_it(tmp_path: Path) -> None:
    out = tmp_path / "trace.csv"
    args = ["--jobs", "200", "--arrival", "constant", "--mean", "0.5", "--service", "constant",
            "--service-mean", "1", "--kind", "sleep", "--queues", "a:1", "--seed", "5", "--out", str(out)]  # fmt: skip
    outcome = CliRunner().invoke(main, ["bench", "trace", *args])
    assert outcome.exit_code == 0, outcome.output
    trace = read_csv(out)
    assert len(trace) == 200 and trace[-1].arrival_s == pytest.approx(99.5)
    assert "200 jobs arriving over 99.50 s" in outcome.stderr
    assert "offered load 2.01 busy slots" in outcome.stderr
    again = CliRunner().invoke(main, ["bench", "trace", *args[:-1], "-"])
    assert again.stdout == out.read_text()


BASE = ["--jobs", "10", "--arrival", "exponential", "--mean", "0.1", "--service", "constant", "--service-mean", "0.1",
        "--kind", "sleep", "--out", "-"]  # fmt: skip


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"--jobs": "0"}, "jobs must be from 1"),
        ({"--mean": "-1"}, "arrival mean must be a number of seconds >= 0"),
        ({"--mean": "nan"}, "arrival mean must be a number of seconds >= 0"),
        ({"--mean": "0"}, "arrival mean must be > 0 for an exponential"),
        ({"--stdev": "0.1"}, "arrival stdev does not apply to the exponential distribution"),
        ({"--service": "normal"}, "service stdev is required for a normal distribution"),
        ({"--service": "uniform", "--service-stdev": "1"}, "service stdev 1.0 is too large for a uniform mean"),
        ({"--service-stdev": "-1", "--service": "normal"}, "service stdev must be a number of seconds >= 0"),
        ({"--queues": "a:0.5,a:0.5"}, "queue 'a' is listed twice"),
        ({"--arrival": "poisson"}, "'poisson' is not one of"),
        ({"--kind": "gpu"}, "'gpu' is not one of"),
    ],
)
def test_jb_bench_trace_refuses_bad_input_with_exit_2(change: dict[str, str], message: str) -> None:
    args = list(BASE)
    for flag, value in change.items():
        if flag in args:
            args[args.index(flag) + 1] = value
        else:
            args += [flag, value]
    outcome = CliRunner().invoke(main, ["bench", "trace", *args])
    assert outcome.exit_code == 2
    assert outcome.stderr.startswith("jb: error: ") and outcome.stderr.count("\n") == 1
    assert message in outcome.stderr
    assert outcome.stdout == ""
