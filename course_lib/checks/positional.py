"""Checkers for the exercises of notebook 02 (positional encodings)."""
from __future__ import annotations

import torch

from course_lib.checks import CheckResult, run_check
from course_lib.positional import (rope_angles, rotate_pairs, sinusoidal_shift_matrix,
                                   sinusoidal_table)
from course_lib.viz.positional import rope_scores

__all__ = ["check_sinusoidal_table", "check_shift_matrix", "check_rope_angles",
           "check_rotate_pairs", "check_diagonal_spread", "diagonal_spread"]


def check_sinusoidal_table(fn) -> CheckResult:
    """fn(max_len, d_model) -> (max_len, d_model), PE[pos, 2i] = sin(pos/10000^(2i/d)), 2i+1: cos."""
    return run_check("sinusoidal_table", fn, sinusoidal_table, [(1, 2), (7, 4), (50, 16), (20, 64)],
                     atol=1e-5, rtol=1e-4)


def check_shift_matrix(fn) -> CheckResult:
    """fn(k, d_model) -> (d, d) matrix M_k with PE[pos + k] = M_k @ PE[pos] for every pos."""
    def extra(student_fn):
        pe = sinusoidal_table(40, 8)
        m = student_fn(5, 8).float()
        err = (pe[5:] - pe[:-5] @ m.T).abs().max().item()
        return None if err < 1e-4 else f"PE[pos + 5] != M_5 @ PE[pos] (max abs diff {err:.3g})"
    return run_check("shift_matrix", fn, sinusoidal_shift_matrix,
                     [(0, 4), (1, 2), (3, 8), (-2, 8), (10, 16)], atol=1e-5, rtol=1e-4, extra=extra)


def check_rope_angles(fn) -> CheckResult:
    """fn(positions (t,), d_head) -> (t, d_head/2) angles m·θ_i, θ_i = 10000^(-2i/d_head)."""
    cases = [(torch.arange(4), 2), (torch.arange(6), 8), (torch.tensor([0, 5, 100]), 16)]
    return run_check("rope_angles", fn, lambda p, d: rope_angles(p, d).float(), cases,
                     atol=1e-4, rtol=1e-4)


def check_rotate_pairs(fn) -> CheckResult:
    """fn(x (..., t, dh), angles (t, dh/2)) -> x with pair (x_2i, x_2i+1) rotated by angles[:, i]."""
    g = torch.Generator().manual_seed(3)
    cases = [(torch.tensor([[1.0, 0.0]]), torch.tensor([[torch.pi / 2]])),
             (torch.randn(5, 4, generator=g), torch.randn(5, 2, generator=g)),
             (torch.randn(2, 3, 6, 8, generator=g), torch.randn(6, 4, generator=g))]
    return run_check("rotate_pairs", fn, rotate_pairs, cases)


def diagonal_spread(scores: torch.Tensor) -> torch.Tensor:
    """Reference: max over offsets m − n of (max − min) along that diagonal of scores (t, s).

    0 exactly when every diagonal is constant, i.e. the scores depend only on m − n (Toeplitz).
    """
    t, s = scores.shape
    spreads = [torch.diagonal(scores, -offset) for offset in range(-(s - 1), t)]
    return torch.stack([d.max() - d.min() for d in spreads]).max()


def check_diagonal_spread(fn) -> CheckResult:
    """fn(scores (t, s)) -> scalar tensor: the largest (max − min) along any diagonal m − n = c."""
    g = torch.Generator().manual_seed(4)
    toeplitz = torch.arange(6)[:, None] - torch.arange(6)[None, :]        # depends on m − n only
    cases = [(torch.randn(5, 5, generator=g),), (toeplitz.float() ** 2,),
             (torch.randn(3, 7, generator=g),), (rope_scores(torch.randn(8, generator=g),
                                                             torch.randn(8, generator=g), 12),)]
    return run_check("diagonal_spread", lambda s: torch.as_tensor(fn(s)).float(), diagonal_spread,
                     cases, atol=1e-4, rtol=1e-4)
