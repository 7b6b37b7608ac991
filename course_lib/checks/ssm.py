"""Checkers for the exercises of notebook 06 (state-space models)."""
from __future__ import annotations

import torch

from course_lib.checks import CheckResult, describe_difference, run_check
from course_lib.ssm import causal_conv, discretize_euler, discretize_zoh, fft_conv, ssm_kernel_powers

__all__ = ["check_discretize_zoh", "check_fft_conv", "check_kernel_powers"]


def _stable_ssm(n: int, g: torch.Generator):
    A = -torch.eye(n, dtype=torch.float64) + 0.3 * torch.randn(n, n, generator=g, dtype=torch.float64)
    B = torch.randn(n, 1, generator=g, dtype=torch.float64)
    C = torch.randn(1, n, generator=g, dtype=torch.float64)
    return A, B, C


def check_discretize_zoh(fn) -> CheckResult:
    """fn(A (n, n), B (n, 1), delta) -> (A_bar, B_bar) by zero-order hold."""
    g = torch.Generator().manual_seed(6)
    cases = []
    for n, delta in ((1, 0.5), (3, 0.1), (5, 0.01)):
        A, B, _ = _stable_ssm(n, g)
        cases.append((A, B, delta))

    result = run_check("discretize_zoh", fn, lambda A, B, d: discretize_zoh(A, B, d), cases,
                       atol=1e-6, rtol=1e-5)
    if result.status == "failed":
        try:
            A, B, delta = cases[1]
            if describe_difference(fn(A, B, delta), discretize_euler(A, B, delta), 1e-8, 1e-6) is None:
                result.message += (" -- this is the Euler step (I + ΔA, ΔB); ZOH uses "
                                   "exp(ΔA) (torch.linalg.matrix_exp) and A^{-1}(exp(ΔA) - I) B")
        except Exception:  # the student's code already failed above; keep that message
            pass
    return result


def check_fft_conv(fn) -> CheckResult:
    """fn(x (..., l), K (..., l)) -> the causal convolution y_k = Σ_{j<=k} K_j x_{k-j} via FFT."""
    g = torch.Generator().manual_seed(7)
    cases = [(torch.randn(16, generator=g), torch.randn(16, generator=g)),
             (torch.randn(3, 50, generator=g), torch.randn(50, generator=g)),
             (torch.randn(2, 33, generator=g), torch.randn(2, 33, generator=g))]
    result = run_check("fft_conv", fn, causal_conv, cases, atol=1e-4, rtol=1e-4)
    if not result.passed and result.status == "failed":
        try:
            x, K = cases[0]
            if describe_difference(fn(x, K), fft_conv(x, K, pad=False), 1e-4, 1e-4) is None:
                result.message += (" -- this is the *circular* convolution: zero-pad x and K to "
                                   "length 2l before the FFT (n=2*l) and keep the first l outputs")
        except Exception:  # the student's code already failed above; keep that message
            pass
    return result


def check_kernel_powers(fn) -> CheckResult:
    """fn(A_bar (n, n), B_bar (n, 1), C (1, n), length) -> K_bar (length,), K_k = C A_bar^k B_bar."""
    g = torch.Generator().manual_seed(8)
    cases = []
    for n, length in ((1, 5), (4, 20), (8, 64)):
        A, B, C = _stable_ssm(n, g)
        A_bar, B_bar = discretize_zoh(A, B, 0.1)
        cases.append((A_bar, B_bar, C, length))
    return run_check("kernel_powers", fn, ssm_kernel_powers, cases, atol=1e-6, rtol=1e-5)
