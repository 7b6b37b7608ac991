"""Checkers for the exercises of notebook 09 (RWKV and hybrids)."""
from __future__ import annotations

import torch

from course_lib.checks import CheckResult, run_check
from course_lib.rwkv import wkv_init_state, wkv_parallel, wkv_recurrent

__all__ = ["check_wkv_naive", "check_wkv_step", "check_jamba_pattern", "jamba_pattern"]


def _wkv_cases(scale: float, seed: int):
    g = torch.Generator().manual_seed(seed)
    cases = []
    for b, t, d in ((1, 5, 2), (2, 12, 3)):
        cases.append((torch.rand(d, generator=g) + 0.05, torch.randn(d, generator=g),
                      scale * torch.randn(b, t, d, generator=g), torch.randn(b, t, d, generator=g)))
    return cases


def check_wkv_naive(fn) -> CheckResult:
    """fn(w (d,), u (d,), k, v (b, t, d)) -> wkv (b, t, d) by the paper's sums (moderate k)."""
    return run_check("wkv (the two sums)", fn, wkv_parallel, _wkv_cases(1.0, 11))


def _run_steps(step):
    """A WKV over a whole sequence from the student's one-step function."""
    def wkv(w, u, k, v):
        state, out = wkv_init_state(k.shape[0], k.shape[2], k), []
        for k_t, v_t in zip(k.unbind(1), v.unbind(1)):
            y, state = step(state, w, u, k_t, v_t)
            out.append(y)
        return torch.stack(out, 1)
    return wkv


def _finite_for_large_k(step) -> str | None:
    (w, u, k, v), = _wkv_cases(60.0, 13)[1:]                            # e^k overflows float32
    got = _run_steps(step)(w, u, k, v)
    if not torch.isfinite(got).all():
        return ("keys as large as 60 (e^k overflows float32) give inf/NaN: keep the state "
                "relative to the running maximum p")
    return None


def check_wkv_step(fn) -> CheckResult:
    """fn(state (num, den, p), w, u, k_t, v_t) -> (wkv_t, new state), stable for large k."""
    cases = _wkv_cases(1.0, 12) + _wkv_cases(20.0, 14)
    return run_check("wkv_step (running max)", lambda *a: _run_steps(fn)(*a), wkv_recurrent,
                     cases, atol=1e-4, rtol=1e-3, extra=lambda _: _finite_for_large_k(fn))


def jamba_pattern(n_layers: int, period: int, offset: int) -> str:
    """Jamba's layout as a HybridConfig pattern: layer i is attention when i % period == offset."""
    return "".join("a" if i % period == offset else "m" for i in range(n_layers))


def check_jamba_pattern(fn) -> CheckResult:
    """fn(n_layers, period, offset) -> a string of 'm'/'a' (Jamba: period 8, offset 4)."""
    cases = [(8, 8, 4), (32, 8, 4), (6, 2, 1), (5, 5, 0)]
    return run_check("jamba_pattern", fn, jamba_pattern, cases)
