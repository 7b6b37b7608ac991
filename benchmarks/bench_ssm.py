"""Benchmark of the three ways to run an LTI SSM (notebook 06) against the sequence length L.

    python benchmarks/bench_ssm.py            # L = 256 ... 16384 (about a minute on one thread)
    python benchmarks/bench_ssm.py --quick    # L <= 4096

One SISO SSM (state n = 16, ZOH, Δ = 0.01) on one signal of length L, one torch thread:
- convolution: ``fft_conv`` (ours, O(L log L)) against the direct O(L²) ``causal_conv``
  (one shifted multiply-add per kernel tap) and against PyTorch's direct ``F.conv1d`` (a peer);
- whole SSM: kernel (``ssm_kernel``, log2 L doublings) + ``fft_conv`` (ours) against the
  L-step ``ssm_recurrence``.
Outputs are asserted equal before timing. The targets of the course (issue 5): at L = 16384,
FFT >= 100x faster than the direct convolution and kernel + FFT >= 20x faster than the recurrence.
"""

from __future__ import annotations

import argparse

import torch
import torch.nn.functional as F

from course_lib.ssm import causal_conv, discretize_zoh, fft_conv, ssm_kernel, ssm_recurrence
from course_lib.timing import median_time

N_STATE, DELTA = 16, 0.01
LENGTHS = (256, 1024, 4096, 16384)


def make_ssm(length: int, seed: int = 0):
    """A stable random SISO SSM, discretized, and an input signal: -> (A_bar, B_bar, C, x)."""
    g = torch.Generator().manual_seed(seed)
    A = -torch.eye(N_STATE) + 0.2 * torch.randn(N_STATE, N_STATE, generator=g)
    B, C = torch.randn(N_STATE, 1, generator=g), torch.randn(1, N_STATE, generator=g)
    A_bar, B_bar = discretize_zoh(A, B, DELTA)
    return A_bar, B_bar, C, torch.randn(length, generator=g)


def conv1d_direct(x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """PyTorch's direct convolution, made causal: left-pad by L-1, flip K (conv1d correlates)."""
    l = x.shape[-1]
    return F.conv1d(F.pad(x[None, None], (l - 1, 0)), K.flip(-1)[None, None])[0, 0]


def bench_length(length: int) -> list[dict]:
    A_bar, B_bar, C, x = make_ssm(length)
    K = ssm_kernel(A_bar, B_bar, C, length)
    y = ssm_recurrence(A_bar, B_bar, C, x)
    for other in (causal_conv(x, K), conv1d_direct(x, K), fft_conv(x, K)):
        torch.testing.assert_close(other, y, atol=1e-3, rtol=1e-3)
    slow = 1 if length >= 16384 else 3  # the O(L²) and L-step runs
    fft_s = median_time(lambda: fft_conv(x, K), 21)
    rows = [
        {
            "name": f"conv L={length}",
            "ours": "fft_conv",
            "ours_s": fft_s,
            "reference": "causal_conv (direct)",
            "reference_s": median_time(lambda: causal_conv(x, K), slow),
        },
        {
            "name": f"conv L={length}",
            "ours": "fft_conv",
            "ours_s": fft_s,
            "reference": "F.conv1d (direct)",
            "reference_s": median_time(lambda: conv1d_direct(x, K), slow),
        },
        {
            "name": f"ssm L={length}",
            "ours": "ssm_kernel + fft_conv",
            "ours_s": median_time(lambda: fft_conv(x, ssm_kernel(A_bar, B_bar, C, length)), 21),
            "reference": "ssm_recurrence",
            "reference_s": median_time(lambda: ssm_recurrence(A_bar, B_bar, C, x), slow),
        },
    ]
    return rows


def run(quick: bool = False) -> list[dict]:
    """Rows {name, ours, ours_s, reference, reference_s} for every L, measured in this run."""
    torch.set_num_threads(1)
    rows = []
    for length in LENGTHS[:3] if quick else LENGTHS:
        rows += bench_length(length)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description="SSM: recurrence vs direct vs FFT convolution")
    parser.add_argument("--quick", action="store_true", help="L <= 4096 only")
    args = parser.parse_args()
    rows = run(quick=args.quick)
    print(f"{'case':<12} {'ours':<22} {'ours ms':>9}  {'reference':<22} {'ref ms':>10} {'ratio':>8}")
    for r in rows:
        print(
            f"{r['name']:<12} {r['ours']:<22} {1e3 * r['ours_s']:9.3f}  {r['reference']:<22} "
            f"{1e3 * r['reference_s']:10.2f} {r['reference_s'] / r['ours_s']:7.0f}x"
        )
    longest = max(int(r["name"].split("=")[1]) for r in rows)
    last = {r["reference"]: r["reference_s"] / r["ours_s"] for r in rows if r["name"].endswith(f"={longest}")}
    print(
        f"\nat L = {longest}: FFT is {last['causal_conv (direct)']:.0f}x faster than the direct "
        f"convolution (target >= 100x), {last['F.conv1d (direct)']:.0f}x faster than F.conv1d; "
        f"kernel + FFT is {last['ssm_recurrence']:.0f}x faster than the recurrence (target >= 20x)"
    )


if __name__ == "__main__":
    main()
