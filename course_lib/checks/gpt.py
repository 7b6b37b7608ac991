"""Checkers for the exercises of notebook 05 (GPT)."""
from __future__ import annotations

import torch

from course_lib.attention import causal_mask
from course_lib.checks import CheckResult, run_check
from course_lib.gpt import GPT2_FAMILY, next_token_loss, param_count, top_k_filter, top_p_filter

__all__ = ["check_cached_causal_mask", "check_next_token_loss", "check_top_k_filter",
           "check_top_p_filter", "check_param_count"]


def _logits(seed: int, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed)) * 2


def _kept(fn):
    """Compare filters as (which tokens are kept, their logits): -inf cannot be diffed."""
    def wrapped(logits, arg):
        out = fn(logits.clone(), arg)
        if not isinstance(out, torch.Tensor):
            return out
        keep = out > float("-inf")
        return keep, torch.where(keep, out, torch.zeros_like(out))
    return wrapped


def check_cached_causal_mask(fn) -> CheckResult:
    """fn(t, s) -> bool (t, s): the t new queries are the LAST t of s positions (KV cache)."""
    return run_check("cached_causal_mask", fn, causal_mask,
                     [(1, 1), (4, 4), (1, 6), (3, 7)])


def check_next_token_loss(fn) -> CheckResult:
    """fn(logits (b, t, vocab), ids (b, t), pad_id) -> mean cross-entropy of ids[:, 1:] given
    logits[:, :-1]."""
    g = torch.Generator().manual_seed(3)
    ids = torch.randint(1, 9, (3, 6), generator=g)
    ids[1, 4:] = 0                                           # padding, not scored
    cases = [(_logits(0, 1, 5, 7), torch.randint(0, 7, (1, 5), generator=g), None),
             (_logits(1, 3, 6, 9), ids, 0)]
    return run_check("next_token_loss", fn, next_token_loss, cases)


def check_top_k_filter(fn) -> CheckResult:
    """fn(logits (..., vocab), k) -> logits with everything but the k largest set to -inf."""
    cases = [(_logits(4, 10), 3), (_logits(5, 2, 8), 1), (_logits(6, 6), 6)]
    return run_check("top_k_filter (kept tokens, their logits)", _kept(fn), _kept(top_k_filter),
                     cases)


def check_top_p_filter(fn) -> CheckResult:
    """fn(logits (..., vocab), p) -> logits outside the smallest set with mass >= p set to -inf."""
    cases = [(_logits(7, 10), 0.5), (_logits(8, 3, 12), 0.9), (_logits(9, 6), 1.0),
             (_logits(10, 6), 0.01)]
    return run_check("top_p_filter (kept tokens, their logits)", _kept(fn), _kept(top_p_filter),
                     cases)


def check_param_count(fn) -> CheckResult:
    """fn(d_model, n_layers, vocab_size, max_len) -> parameters of a GPT-2-shaped model."""
    cases = [(64, 2, 183, 256)] + [(d, n, 50257, 1024) for d, n, _ in GPT2_FAMILY.values()]
    return run_check("param_count", fn, param_count, cases)
