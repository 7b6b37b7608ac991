"""Checkers for the exercises of notebook 01 (attention)."""
from __future__ import annotations

import torch

from course_lib.attention import attention_naive, causal_mask, padding_mask, split_heads
from course_lib.checks import CheckResult, run_check

__all__ = ["check_causal_mask", "check_single_head_attention", "check_split_heads",
           "check_padding_mask", "check_merge_softmax_stats", "reference_merge_softmax_stats"]


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


def reference_merge_softmax_stats(m1, l1, m2, l2):
    """Online softmax: the (max, normaliser) of two score blocks from each block's own.

    m = max(m1, m2),  ℓ = ℓ1·e^(m1 − m) + ℓ2·e^(m2 − m)   (ℓ = Σ e^(score − m) over the block)
    """
    m = torch.maximum(m1, m2)
    return m, l1 * torch.exp(m1 - m) + l2 * torch.exp(m2 - m)


def check_merge_softmax_stats(fn) -> CheckResult:
    """fn(m1, l1, m2, l2) -> (m, l): the statistics of two blocks of scores seen as one."""
    g = torch.Generator().manual_seed(5)
    cases = []
    for rows, n1, n2 in ((1, 3, 4), (5, 2, 7), (4, 6, 1)):
        a, b = torch.randn(rows, n1, generator=g) * 4, torch.randn(rows, n2, generator=g) * 4
        m1, m2 = a.amax(-1), b.amax(-1)
        cases.append((m1, torch.exp(a - m1[:, None]).sum(-1), m2, torch.exp(b - m2[:, None]).sum(-1)))
    empty = torch.tensor([float("-inf"), 0.5]), torch.tensor([0.0, 1.0])   # no key seen yet
    cases.append((*empty, torch.tensor([1.0, -2.0]), torch.tensor([2.0, 3.0])))
    return run_check("merge_softmax_stats", fn, reference_merge_softmax_stats, cases)
