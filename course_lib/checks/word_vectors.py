"""Checkers for the word-vector exercises of notebook 00."""
from __future__ import annotations

import torch

from course_lib.checks import CheckResult, run_check
from course_lib.word_vectors import cosine_similarity_matrix, negative_sampling_objective

__all__ = ["check_cosine_similarity", "check_negative_sampling"]


def check_cosine_similarity(fn) -> CheckResult:
    """fn(vectors (n, d)) -> (n, n) with cos(x_i, x_j) = x_i·x_j / (|x_i| |x_j|)."""
    g = torch.Generator().manual_seed(3)
    cases = [(torch.eye(4),), (torch.randn(5, 3, generator=g),),
             (torch.randn(7, 16, generator=g) * 10,)]
    return run_check("cosine_similarity", fn, cosine_similarity_matrix, cases)


def check_negative_sampling(fn) -> CheckResult:
    """fn(v_c (b, d), u_o (b, d), u_n (b, k, d)) -> mean of -[log σ(u_o·v_c) + Σ_i log σ(-u_i·v_c)]."""
    g = torch.Generator().manual_seed(4)
    cases = [(torch.randn(1, 2, generator=g), torch.randn(1, 2, generator=g),
              torch.randn(1, 1, 2, generator=g)),
             (torch.randn(6, 8, generator=g), torch.randn(6, 8, generator=g),
              torch.randn(6, 5, 8, generator=g))]
    return run_check("negative_sampling", fn, negative_sampling_objective, cases)
