"""Benchmark tooling: workload traces (``jb bench trace``), replaying them on a cluster with a
per-worker report (``jb bench replay``), and the measurements ``make bench`` takes of a cluster
and of the machine's limits.

The plotting module (``jobbalancer.bench.plot``) needs the optional extra ``bench`` (matplotlib).
"""
