"""The side-by-side table of ``make bench``: medians, ratios and the performance targets (pure).

Every system's rounds are kept as measured; the tables show medians across rounds. Ratios are
jobbalancer's median over the other system's median, so "3.0×" means jobbalancer did three
times the jobs per second.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable
from dataclasses import dataclass, field

JB = "jobbalancer"
LIMITS = "limits"
# Peers in the order the tables show them; the keys benchmarks/peers/drive.py knows.
PEERS = ("huey", "dramatiq", "celery", "rq-simple", "rq-fork")

# (key, label) of the measures a round may hold.
RATES = (("noop_rate", "no-op call jobs/s"), ("true_rate", "`true` command jobs/s"))
LATENCIES = (
    ("start_p50", "submit→start p50, ms"),
    ("start_p99", "submit→start p99, ms"),
    ("result_p50", "submit→result p50 (no-op call), ms"),
    ("result_p99", "submit→result p99 (no-op call), ms"),
)
# Which machine limit each rate is held against.
LIMIT_OF = {"noop_rate": ("xadd_rate", "pipelined XADDs/s"), "true_rate": ("spawn_rate", "thread pool `true`/s")}


@dataclass
class SystemResult:
    """One system's rounds.

    Attributes:
        key: ``jobbalancer``, ``limits`` or one of ``PEERS``.
        label: how the table names it, e.g. "Huey 2.5 (2 processes)".
        rounds: per round, measure key -> value (rates in jobs/s, latencies in ms).
        jobs: per rate measure, the jobs each round ran.
        error: why the system could not be measured, if it could not.
        setup: how it ran (processes, threads, options), for the report.
    """

    key: str
    label: str
    rounds: list[dict[str, float]] = field(default_factory=list)
    jobs: dict[str, int] = field(default_factory=dict)
    error: str | None = None
    setup: str = ""

    def median(self, measure: str) -> float | None:
        values = [r[measure] for r in self.rounds if measure in r]
        return statistics.median(values) if values else None


def rate_text(value: float | None) -> str:
    return "–" if value is None else f"{value:,.0f}"


def ratio_text(value: float | None) -> str:
    if value is None:
        return "–"
    if value >= 10:
        return f"{value:,.0f}×"
    if value >= 1:
        return f"{value:.1f}×"
    digits = 2 if value >= 0.01 else 4
    return f"{value:.{digits}f}×"


def ratio(top: float | None, bottom: float | None) -> float | None:
    return top / bottom if top is not None and bottom else None


@dataclass
class Comparison:
    """All systems of one run, by key."""

    systems: dict[str, SystemResult]

    def get(self, key: str) -> SystemResult | None:
        return self.systems.get(key)

    def median(self, key: str, measure: str) -> float | None:
        system = self.systems.get(key)
        return system.median(measure) if system is not None else None

    def peers(self) -> list[SystemResult]:
        return [self.systems[key] for key in PEERS if key in self.systems]

    def setups(self) -> list[str]:
        """One bullet per system: its label and how it ran."""
        return [f"- {s.label}: {s.setup or 'as configured'}" for s in self.systems.values()]

    def rates_table(self) -> list[str]:
        """Medians of jobs/s per system, with the machine's limits in the last column."""
        shown = [s for s in (self.get(JB), *self.peers()) if s is not None]
        header = "| median jobs/s | " + " | ".join([*(s.label for s in shown), "machine limit"]) + " |"
        lines = [header, "|---|" + "---:|" * (len(shown) + 1)]
        for measure, label in RATES:
            cells = [rate_text(s.median(measure)) if s.error is None else "failed" for s in shown]
            limit_key, limit_label = LIMIT_OF[measure]
            limit = self.median(LIMITS, limit_key)
            cells.append("–" if limit is None else f"{rate_text(limit)} ({limit_label})")
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return lines

    def ratios_table(self) -> list[str]:
        """jobbalancer's median over each peer's and over the machine's limit."""
        peers = self.peers()
        header = "| jobbalancer ÷ | " + " | ".join([*(p.label for p in peers), "machine limit"]) + " |"
        lines = [header, "|---|" + "---:|" * (len(peers) + 1)]
        for measure, label in RATES:
            ours = self.median(JB, measure)
            cells = [ratio_text(ratio(ours, p.median(measure))) for p in peers]
            cells.append(ratio_text(ratio(ours, self.median(LIMITS, LIMIT_OF[measure][0]))))
            lines.append(f"| {label} | " + " | ".join(cells) + " |")
        return lines

    def latency_table(self) -> list[str]:
        jb = self.get(JB)
        if jb is None or not any(jb.median(key) is not None for key, _ in LATENCIES):
            return []
        lines = ["| jobbalancer, idle cluster | median |", "|---|---:|"]
        for key, label in LATENCIES:
            value = jb.median(key)
            lines.append(f"| {label} | {'–' if value is None else f'{value:.2f}'} |")
        return lines

    def rounds_table(self) -> list[str]:
        """Every measured value of every round, with the jobs each round ran."""
        lines = ["| system | measure | jobs | rounds | median |", "|---|---|---:|---|---:|"]
        for system in self.systems.values():
            if system.error is not None:
                lines.append(f"| {system.label} | failed: {system.error} | | | |")
                continue
            measures = sorted({m for r in system.rounds for m in r}, key=_measure_order)
            for measure in measures:
                values = [r[measure] for r in system.rounds if measure in r]
                shown = ", ".join(_value_text(measure, v) for v in values)
                jobs = system.jobs.get(measure)
                median = _value_text(measure, statistics.median(values))
                jobs_text = "" if jobs is None else f"{jobs:,}"
                lines.append(f"| {system.label} | {measure} | {jobs_text} | {shown} | {median} |")
        return lines

    def targets(self) -> list[str]:
        """The issue's targets this benchmark measures, each marked met, missed or not measured."""
        noop, true = self.median(JB, "noop_rate"), self.median(JB, "true_rate")
        best = max((v for v in (self.median(k, "noop_rate") for k in ("huey", "dramatiq")) if v), default=None)
        checks: list[tuple[str, float | None, Callable[[float], bool], str]] = [
            ("no-op calls ≥ 3× the best of Huey and Dramatiq", ratio(noop, best), lambda r: r >= 3, "×"),
            ("no-op calls ≥ 5× the best of Huey and Dramatiq (the aim)", ratio(noop, best), lambda r: r >= 5, "×"),
            ("no-op calls ≥ 30× rq's default (forking) worker", ratio(noop, self.median("rq-fork", "noop_rate")),
             lambda r: r >= 30, "×"),
            ("`true` commands ≥ 80% of a bare thread pool", ratio(true, self.median(LIMITS, "spawn_rate")),
             lambda r: r >= 0.8, "%"),
            ("submit→start p50 ≤ 1 ms", self.median(JB, "start_p50"), lambda v: v <= 1, "ms"),
            ("submit→start p99 ≤ 3 ms", self.median(JB, "start_p99"), lambda v: v <= 3, "ms"),
            ("submit→result p50 (no-op call) ≤ 2 ms", self.median(JB, "result_p50"), lambda v: v <= 2, "ms"),
        ]  # fmt: skip
        return [_verdict(text, value, test, unit) for text, value, test, unit in checks]

    def markdown(self) -> list[str]:
        """The tables ``make bench`` prints: rates, ratios, latency, targets."""
        out = [*self.rates_table(), "", *self.ratios_table(), ""]
        latency = self.latency_table()
        if latency:
            out += [*latency, ""]
        out += ["Targets (issue 4), as measured in this run:", "", *self.targets()]
        return out


def _verdict(text: str, value: float | None, test: Callable[[float], bool], unit: str) -> str:
    if value is None:
        return f"- {text}: not measured in this run"
    shown = {"×": f"{value:.2f}×", "%": f"{value:.0%}", "ms": f"{value:.2f} ms"}[unit]
    return f"- {'met' if test(value) else 'MISSED'}: {text} (measured {shown})"


def _measure_order(measure: str) -> tuple[int, str]:
    order = [key for key, _ in (*RATES, *LATENCIES)] + ["xadd_rate", "spawn_rate"]
    return (order.index(measure) if measure in order else len(order), measure)


def _value_text(measure: str, value: float) -> str:
    return f"{value:.2f}" if measure.startswith(("start_", "result_")) else f"{value:,.0f}"
