"""Benchmark of the selective scan (notebook 07): sequential vs chunked vs mambapy's pscan.

    python benchmarks/bench_mamba.py            # full table (about a minute on one thread)
    python benchmarks/bench_mamba.py --quick    # small sizes only

Rows "scan": the scan primitive h_t = a_t h_{t-1} + x_t on (b, l, d, n) = (2, l, 64, 16) tensors,
``course_lib.scan.scan_chunked`` (ours) against ``mambapy.pscan.pscan`` (the peer, a Blelloch
parallel scan), forward and forward + backward. Rows "selective scan": the full S6 forward +
backward (exp(ΔA), (Δx) B, the scan, the C contraction, D x). Ours is ``selective_scan`` (the
fused path: one autograd Function over the chunked scan that reuses its buffers and reduces
with batched matmuls); the reference is ``selective_scan(..., scan=pscan)``: the same
discretization and the same C contraction in plain autograd, with mambapy's pscan as the scan.
Outputs and all six gradients are asserted equal before timing. The two are timed alternately
(same machine load), median of 7. A second table shows the trap: the
sequential scan that indexes ``a[:, t]`` inside its loop has a quadratic backward, the same loop
with ``unbind`` a linear one. mambapy is a benchmark-only dependency of the course.
"""

from __future__ import annotations

import argparse

import torch

from course_lib.experiments.mamba import scan_inputs
from course_lib.scan import scan_chunked, scan_sequential, scan_sequential_indexed, selective_scan
from course_lib import timing
from course_lib.timing import format_rows, median, median_time

D_INNER, D_STATE, BATCH = 64, 16, 2


def make_inputs(length: int, seed: int = 0):
    """Notebook 07's selective-scan inputs (x, Δ, A, B, C, D) at (BATCH, length, D_INNER, D_STATE)."""
    return scan_inputs(length, batch=BATCH, d=D_INNER, n=D_STATE, seed=seed)


def paired_times(fn_a, fn_b, repeats: int = 7) -> tuple[float, float]:
    """Medians of fn_a and fn_b timed alternately, so both see the same machine load."""
    return tuple(median(side) for side in timing.paired_times(fn_a, fn_b, repeats, warmup=1))


def scan_only(length: int, backward: bool, scan, seed: int = 0):
    """The scan primitive h = scan(a, bx) on (b, l, d, n) inputs, optionally with backward."""
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(BATCH, length, D_INNER, D_STATE, generator=g).mul(0.5).add(0.5).requires_grad_()
    bx = torch.randn(BATCH, length, D_INNER, D_STATE, generator=g).requires_grad_()
    grad = torch.randn(BATCH, length, D_INNER, D_STATE, generator=g)

    def run():
        if backward:
            a.grad = bx.grad = None
            scan(a, bx).backward(grad)
        else:
            with torch.no_grad():
                scan(a, bx)

    return run


def forward_backward(inputs, scan):
    def run():
        for t in inputs:
            t.grad = None
        selective_scan(*inputs, scan=scan).square().mean().backward()

    return run


def forward_only(inputs, scan):
    def run():
        with torch.no_grad():
            selective_scan(*inputs, scan=scan)

    return run


def assert_equal(inputs, scan_a, scan_b, rtol=1e-4, atol=1e-4) -> float:
    """Outputs and all six gradients equal; returns the largest output difference."""
    results = []
    for scan in (scan_a, scan_b):
        y = selective_scan(*inputs, scan=scan)
        grads = torch.autograd.grad(y.square().mean(), inputs)
        results.append((y.detach(), grads))
    (y1, g1), (y2, g2) = results
    torch.testing.assert_close(y1, y2, rtol=rtol, atol=atol)
    for a, b in zip(g1, g2):
        torch.testing.assert_close(a, b, rtol=1e-3, atol=1e-3)
    return (y1 - y2).abs().max().item()


def run(quick: bool = False) -> list[dict]:
    """Rows {name, ours, ours_s, reference, reference_s}; reference_s / ours_s is the speed-up."""
    from mambapy.pscan import pscan

    torch.set_num_threads(1)
    rows = []
    lengths = (256, 1024) if quick else (256, 1024, 4096)
    for length in lengths:
        for mode in ("fwd", "fwd+bwd"):
            ours, ref = paired_times(
                scan_only(length, mode == "fwd+bwd", scan_chunked),
                scan_only(length, mode == "fwd+bwd", pscan),
            )
            rows.append(
                {
                    "name": f"scan {mode} L={length} (b, l, d, n)=({BATCH}, l, {D_INNER}, {D_STATE})",
                    "ours": "scan_chunked",
                    "ours_s": ours,
                    "reference": "mambapy pscan",
                    "reference_s": ref,
                }
            )
        inputs = make_inputs(length)
        assert_equal(inputs, None, pscan)  # None: the fused fast path
        ours, ref = paired_times(forward_backward(inputs, None), forward_backward(inputs, pscan))
        rows.append(
            {
                "name": f"selective scan fwd+bwd L={length} d={D_INNER} n={D_STATE} b={BATCH}",
                "ours": "selective_scan",
                "ours_s": ours,
                "reference": "mambapy pscan",
                "reference_s": ref,
            }
        )
    for length in (64, 128) if quick else (128, 256, 512):
        inputs = make_inputs(length)
        lin = median_time(forward_backward(inputs, scan_sequential), 3)
        quad = median_time(forward_backward(inputs, scan_sequential_indexed), 3)
        rows.append(
            {
                "name": f"trap: sequential fwd+bwd L={length}",
                "ours": "unbind once",
                "ours_s": lin,
                "reference": "a[:, t] in the loop",
                "reference_s": quad,
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(format_rows(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
