"""Checkers for the exercises of notebook 07 (Mamba: selective SSMs)."""
from __future__ import annotations

import torch

from course_lib.checks import CheckResult, run_check
from course_lib.mamba import causal_depthwise_conv
from course_lib.scan import scan_sequential, selective_step
from course_lib.ssm import discretize_zoh_diag

__all__ = ["check_discretize_zoh_diag", "check_selective_step", "check_causal_depthwise_conv",
           "check_scan"]


def check_discretize_zoh_diag(fn) -> CheckResult:
    """fn(A (..., n), B (..., n), delta (...)) -> (A_bar, B_bar): exp(ΔA), (exp(ΔA) - 1)/A · B."""
    g = torch.Generator().manual_seed(7)
    cases = [(-torch.rand(4, generator=g) - 0.5, torch.randn(4, generator=g), torch.tensor(0.1)),
             (-torch.rand(3, 5, generator=g) - 0.1, torch.randn(3, 5, generator=g),
              torch.rand(3, generator=g) + 0.01),
             (-torch.arange(1.0, 9.0).repeat(2, 1), torch.randn(6, 1, 8, generator=g),
              torch.rand(6, 2, generator=g) * 0.1 + 0.001)]
    return run_check("discretize_zoh_diag", fn, discretize_zoh_diag, cases, atol=1e-5, rtol=1e-4)


def _step_cases():
    g = torch.Generator().manual_seed(8)
    cases = []
    for b, d, n in ((1, 3, 2), (2, 5, 4)):
        cases.append((torch.randn(b, d, n, generator=g), torch.randn(b, d, generator=g),
                      torch.rand(b, d, generator=g) * 0.5 + 0.01, -torch.rand(d, n, generator=g) - 0.1,
                      torch.randn(b, n, generator=g), torch.randn(b, n, generator=g),
                      torch.randn(d, generator=g)))
    return cases


def check_selective_step(fn) -> CheckResult:
    """fn(h, x_t, delta_t, A, B_t, C_t, D) -> (y_t, h_t) with Ā = exp(ΔA), B̄ = ΔB (Mamba's Euler
    B̄, the discretization of every model the course trains)."""
    return run_check("selective_step", fn, selective_step, _step_cases())


def check_causal_depthwise_conv(fn) -> CheckResult:
    """fn(x (b, l, d), weight (d, K), bias (d,)) -> y (b, l, d), y_t = Σ_k w_k x_{t-K+1+k} + bias."""
    g = torch.Generator().manual_seed(9)
    cases = [(torch.randn(1, 6, 2, generator=g), torch.randn(2, 3, generator=g), torch.zeros(2)),
             (torch.randn(2, 9, 4, generator=g), torch.randn(4, 4, generator=g),
              torch.randn(4, generator=g)),
             (torch.randn(1, 2, 3, generator=g), torch.randn(3, 4, generator=g),
              torch.randn(3, generator=g))]
    return run_check("causal_depthwise_conv", fn, causal_depthwise_conv, cases)


def check_scan(fn) -> CheckResult:
    """fn(a, bx) -> h with h_t = a_t h_{t-1} + bx_t over axis 1 (h_{-1} = 0); any method."""
    g = torch.Generator().manual_seed(10)
    cases = [(torch.rand(1, 5, 2, generator=g), torch.randn(1, 5, 2, generator=g)),
             (torch.rand(2, 17, 3, 4, generator=g), torch.randn(2, 17, 3, 4, generator=g))]
    return run_check("scan", fn, scan_sequential, cases)
