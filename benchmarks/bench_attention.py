"""Benchmark of attention (notebook 01): our MultiHeadAttention vs nn.MultiheadAttention, naive vs fused.

    python benchmarks/bench_attention.py            # full table
    python benchmarks/bench_attention.py --quick    # small sizes only

1. ``course_lib.attention.MultiHeadAttention`` against PyTorch's ``nn.MultiheadAttention``:
   self-attention forward at batch 1, 8 heads, d_model 512, length 2048 (plus the causal case),
   eval mode under ``torch.inference_mode``, the same weights (``load_from_torch``), outputs
   asserted equal before timing. The course's target: ours within 1.2x of PyTorch.
2. ``attention_naive`` (materializes the (t, s) weights: O(t·s) memory) against the fused
   ``attention`` (``F.scaled_dot_product_attention``) at a few lengths, 8 heads of width 64.

Times are medians of repeats with torch using every core (``torch.set_num_threads(os.cpu_count())``).
"""

from __future__ import annotations

import argparse
import os

import torch
from torch import nn

from course_lib.attention import MultiHeadAttention, attention, attention_naive
from course_lib.timing import format_rows, median_time

D_MODEL, N_HEADS = 512, 8


def mha_pair(seed: int = 0):
    """(ours, torch's) multi-head attention with the same weights, in eval mode."""
    torch.manual_seed(seed)
    ref = nn.MultiheadAttention(D_MODEL, N_HEADS, batch_first=True).eval()
    ours = MultiHeadAttention(D_MODEL, N_HEADS).load_from_torch(ref).eval()
    return ours, ref


def mha_rows(length: int, repeats: int) -> list[dict]:
    ours, ref = mha_pair()
    x = torch.randn(1, length, D_MODEL, generator=torch.Generator().manual_seed(1))  # (b, t, d)
    causal = torch.triu(torch.ones(length, length, dtype=torch.bool), 1)  # torch: True = blocked
    rows = []
    with torch.inference_mode():
        for label, kw_ours, kw_ref in (
            ("", {}, {}),
            (" causal", {"is_causal": True}, {"attn_mask": causal, "is_causal": True}),
        ):

            def run_ours(kw=kw_ours):
                return ours(x, **kw)[0]

            def run_ref(kw=kw_ref):
                return ref(x, x, x, need_weights=False, **kw)[0]

            torch.testing.assert_close(run_ours(), run_ref(), rtol=1e-4, atol=1e-5)
            rows.append(
                {
                    "name": f"MHA fwd{label} b=1 nh={N_HEADS} d={D_MODEL} t={length}",
                    "ours": "MultiHeadAttention",
                    "ours_s": median_time(run_ours, repeats),
                    "reference": "nn.MultiheadAttention",
                    "reference_s": median_time(run_ref, repeats),
                }
            )
    return rows


def naive_vs_fused_rows(lengths, repeats: int) -> list[dict]:
    rows = []
    g = torch.Generator().manual_seed(2)
    for t in lengths:
        q, k, v = (torch.randn(1, N_HEADS, t, D_MODEL // N_HEADS, generator=g) for _ in range(3))
        with torch.inference_mode():
            torch.testing.assert_close(attention(q, k, v), attention_naive(q, k, v)[0], rtol=1e-4, atol=1e-5)
            fused = median_time(lambda q=q, k=k, v=v: attention(q, k, v), repeats)
            naive = median_time(lambda q=q, k=k, v=v: attention_naive(q, k, v), repeats)
        rows.append(
            {
                "name": f"attention fwd nh={N_HEADS} dh={D_MODEL // N_HEADS} t={t}",
                "ours": "attention (fused)",
                "ours_s": fused,
                "reference": "attention_naive",
                "reference_s": naive,
            }
        )
    return rows


def run(quick: bool = False) -> list[dict]:
    """Rows {name, ours, ours_s, reference, reference_s}; reference_s / ours_s > 1: ours faster."""
    threads = torch.get_num_threads()
    torch.set_num_threads(os.cpu_count() or 1)
    try:
        repeats = 3 if quick else 7
        rows = mha_rows(512 if quick else 2048, repeats)
        rows += naive_vs_fused_rows((128, 512) if quick else (256, 1024, 2048), repeats)
    finally:
        torch.set_num_threads(threads)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(format_rows(run(parser.parse_args().quick)))


if __name__ == "__main__":
    main()
