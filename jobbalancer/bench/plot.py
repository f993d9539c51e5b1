"""Draw a replay's report: running jobs per worker over time, and the distribution of waits.

Needs matplotlib, the optional extra ``bench`` (``pip install 'jobbalancer[bench]'``); nothing
else in jobbalancer imports this module, so the command line starts without it.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

# The Figure API, not pyplot: no global state, no backend to pick, no window, no display needed.
from matplotlib.figure import Figure

from jobbalancer.bench.report import Report, percentile, running_series, waits
from jobbalancer.job import Record

WAIT_BINS = 50


def draw(report: Report, records: Sequence[Record], out: Path, title: str = "jb bench replay") -> None:
    """Write a PNG with two panels: running jobs per worker (steps) and a histogram of waits."""
    fig = Figure(figsize=(10, 8), layout="constrained")
    running_ax, wait_ax = fig.subplots(2, 1)
    fig.suptitle(title)
    series = running_series(records, report.start_at)
    for worker, points in series.items():
        times, counts = zip(*points, strict=True)
        running_ax.step(times, counts, where="post", label=worker)
    running_ax.set_xlabel("seconds since the first submit")
    running_ax.set_ylabel("running jobs")
    running_ax.set_title("running jobs per worker")
    if series:
        running_ax.legend(loc="upper right", fontsize="small")
    running_ax.grid(alpha=0.3)

    waits_ms = [w * 1000 for w in waits(records)]
    if waits_ms:
        wait_ax.hist(waits_ms, bins=WAIT_BINS, color="tab:blue", alpha=0.8)
        for pct, style in ((50, "--"), (95, ":")):
            value = percentile(waits_ms, pct)
            wait_ax.axvline(value, color="black", linestyle=style, label=f"p{pct} {value:.1f} ms")
        wait_ax.legend(loc="upper right", fontsize="small")
    wait_ax.set_xlabel("submit→start wait, ms")
    wait_ax.set_ylabel("jobs")
    wait_ax.set_title("distribution of waits")
    wait_ax.grid(alpha=0.3)
    fig.savefig(out, dpi=100)
