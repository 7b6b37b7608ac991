"""Timing helpers shared by the notebooks' timing cells and benchmarks/ (one definition).

Timings are never asserted in tests and never printed in outputs that nbval compares: notebook
cells that time put ``# NBVAL_IGNORE_OUTPUT`` first. Benchmarks report ratios measured in the
same run, which survive a busy machine better than seconds do.
"""
from __future__ import annotations

import time
from collections.abc import Callable

__all__ = ["median_time", "paired_times", "median", "format_rows"]


def median_time(fn: Callable[[], object], repeats: int = 5, warmup: int = 1) -> float:
    """Median wall time in seconds of ``fn()`` over ``repeats`` calls, after ``warmup`` calls."""
    if repeats < 1 or warmup < 0:
        raise ValueError(f"need repeats >= 1 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return sorted(times)[len(times) // 2]


def paired_times(fn_a: Callable[[], object], fn_b: Callable[[], object], repeats: int = 5,
                 warmup: int = 1) -> tuple[list[float], list[float]]:
    """Wall times in seconds of ``repeats`` calls of fn_a and of fn_b taken in turns (a, b, a,
    b, ...) after ``warmup`` calls of each, so that a change in the machine's load hits both
    alike: (times of a, times of b)."""
    if repeats < 0 or warmup < 0:
        raise ValueError(f"need repeats >= 0 and warmup >= 0, got repeats={repeats}, warmup={warmup}")
    for _ in range(warmup):
        fn_a(), fn_b()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(repeats):
        for fn, out in zip((fn_a, fn_b), times):
            start = time.perf_counter()
            fn()
            out.append(time.perf_counter() - start)
    return times


def median(values) -> float:
    """The middle value (the upper middle one of an even count)."""
    values = sorted(values)
    if not values:
        raise ValueError("median of no values")
    return values[len(values) // 2]


def format_rows(rows: list[dict], topic: bool = False) -> str:
    """Benchmark rows {name, ours, ours_s, reference, reference_s[, topic]} as an aligned table
    with the ratio reference_s / ours_s (> 1: ours is faster)."""
    width = {k: max([len(k)] + [len(str(r[k])) for r in rows]) for k in ("name", "ours", "reference")}
    lead = f"{'topic':10s} " if topic else ""
    head = (f"{lead}{'benchmark':{width['name']}s} {'ours':{width['ours']}s} {'ms':>9s} "
            f"{'reference':{width['reference']}s} {'ms':>9s} {'ratio':>7s}")
    lines = [head, "-" * len(head)]
    for r in rows:
        ratio = r["reference_s"] / r["ours_s"] if r["ours_s"] > 0 else float("inf")
        lead = f"{r['topic']:10s} " if topic else ""
        lines.append(f"{lead}{r['name']:{width['name']}s} {r['ours']:{width['ours']}s} "
                     f"{r['ours_s'] * 1e3:9.2f} {r['reference']:{width['reference']}s} "
                     f"{r['reference_s'] * 1e3:9.2f} {ratio:7.2f}")
    lines.append("ratio = reference time / our time (> 1: ours is faster); results asserted equal first")
    return "\n".join(lines)
