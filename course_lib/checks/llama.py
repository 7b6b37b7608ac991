"""Checkers for the exercises of notebook 08 (from GPT-2 to today's decoders)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.checks import CheckResult, run_check
from course_lib.llama import document_mask, kv_bytes_per_token, repeat_kv, residual_distribution

__all__ = ["check_rms_norm", "check_repeat_kv", "check_document_mask",
           "check_residual_distribution", "check_kv_bytes_per_token"]


def _randn(seed: int, *shape) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _probs(seed: int, n: int) -> torch.Tensor:
    return (_randn(seed, n) * 2).softmax(-1).double()


def check_rms_norm(fn) -> CheckResult:
    """fn(x (..., d), weight (d,), eps) -> x / sqrt(mean(x²) + eps) · weight."""
    def reference(x, weight, eps):
        return F.rms_norm(x, (x.shape[-1],), weight, eps)
    cases = [(_randn(0, 3, 8), torch.ones(8), 1e-5), (_randn(1, 2, 4, 6) * 5, _randn(2, 6), 1e-6),
             (torch.zeros(2, 4), torch.ones(4), 1e-5)]
    return run_check("rms_norm", fn, reference, cases)


def check_repeat_kv(fn) -> CheckResult:
    """fn(x (b, nkv, s, dh), n_rep) -> (b, nkv·n_rep, s, dh), query head j reads head j // n_rep."""
    cases = [(_randn(3, 1, 2, 3, 4), 2), (_randn(4, 2, 3, 5, 2), 1), (_randn(5, 1, 1, 4, 3), 4)]
    return run_check("repeat_kv", fn, repeat_kv, cases)


def check_document_mask(fn) -> CheckResult:
    """fn(doc_ids (b, t)) -> bool (b, 1, t, t): causal and inside one document."""
    cases = [(torch.tensor([[0, 0, 1, 1, 1]]),), (torch.tensor([[0, 1, 2], [0, 0, 0]]),),
             (torch.tensor([[3, 3, 3, 5, 5, 7]]),)]
    return run_check("document_mask", fn, document_mask, cases)


def check_residual_distribution(fn) -> CheckResult:
    """fn(p (vocab,), q (vocab,)) -> norm(max(0, p - q)); p itself when p == q."""
    p = _probs(6, 5)
    cases = [(p, _probs(7, 5)), (_probs(8, 7), _probs(9, 7)), (p, p.clone())]
    return run_check("residual_distribution", fn, residual_distribution, cases, atol=1e-9)


def check_kv_bytes_per_token(fn) -> CheckResult:
    """fn(n_layers, n_kv_heads, d_head, bytes_per_number) -> KV-cache bytes of one token."""
    cases = [(32, 8, 128, 2), (2, 4, 16, 4), (80, 8, 128, 2), (1, 1, 64, 1)]
    return run_check("kv_bytes_per_token", fn, kv_bytes_per_token, cases)
