"""Checkers for the exercises of notebook 01 (attention)."""
from __future__ import annotations

import torch

from course_lib.attention import attention_naive, causal_mask, padding_mask, split_heads
from course_lib.checks import CheckResult, run_check

__all__ = ["check_causal_mask", "check_single_head_attention", "check_split_heads",
           "check_padding_mask"]


def _cases_qkv():
    g = torch.Generator().manual_seed(1)
    return [(torch.randn(5, 4, generator=g), torch.randn(5, 4, generator=g),
             torch.randn(5, 3, generator=g)),
            (torch.randn(2, 7, 8, generator=g), torch.randn(2, 6, 8, generator=g),
             torch.randn(2, 6, 8, generator=g))]


def check_causal_mask(fn) -> CheckResult:
    """fn(t) -> bool (t, t) mask, True where query i may attend to key j (j <= i)."""
    return run_check("causal_mask", fn, lambda t: causal_mask(t), [(1,), (4,), (9,)])


def check_single_head_attention(fn) -> CheckResult:
    """fn(q, k, v) -> softmax(q kᵀ / √dh) v for q (..., t, dh), k (..., s, dh), v (..., s, dv)."""
    return run_check("single_head_attention", fn, lambda q, k, v: attention_naive(q, k, v)[0],
                     _cases_qkv())


def check_split_heads(fn) -> CheckResult:
    """fn(x, n_heads) -> (b, nh, t, dh) from x (b, t, d), head i taking features i*dh:(i+1)*dh."""
    g = torch.Generator().manual_seed(2)
    cases = [(torch.randn(1, 3, 8, generator=g), 2), (torch.randn(2, 5, 12, generator=g), 3),
             (torch.randn(2, 4, 6, generator=g), 1)]
    return run_check("split_heads", fn, split_heads, cases)


def check_padding_mask(fn) -> CheckResult:
    """fn(lengths, s) -> bool (b, 1, 1, s), True on the first lengths[i] keys of sequence i."""
    cases = [(torch.tensor([3, 1]), 4), (torch.tensor([5]), 5), (torch.tensor([2, 4, 1]), 6)]
    return run_check("padding_mask", fn, padding_mask, cases)
