"""RWKV's WKV (notebook 09): the recurrent, parallel and scan forms agree with the paper's sums."""

from __future__ import annotations

import pytest
import torch

from course_lib.checks.rwkv import check_jamba_pattern, check_wkv_naive, check_wkv_step, jamba_pattern
from course_lib.rwkv import RWKVTimeMix, wkv_parallel, wkv_recurrent, wkv_scan, wkv_step


def inputs(b, t, d, dtype=torch.float64, scale=1.0, seed=0):
    g = torch.Generator().manual_seed(seed)
    return (
        torch.rand(d, generator=g, dtype=dtype) + 0.05,
        torch.randn(d, generator=g, dtype=dtype),
        scale * torch.randn(b, t, d, generator=g, dtype=dtype),
        torch.randn(b, t, d, generator=g, dtype=dtype),
    )


def wkv_by_the_paper(w, u, k, v):
    """Eq. (14) of Peng et al. (2023) written as two explicit sums, one position at a time."""
    out = torch.empty_like(v)
    for t in range(k.shape[1]):
        num, den = torch.exp(u + k[:, t]) * v[:, t], torch.exp(u + k[:, t])
        for i in range(t):
            weight = torch.exp(-(t - 1 - i) * w + k[:, i])
            num, den = num + weight * v[:, i], den + weight
        out[:, t] = num / den
    return out


@pytest.mark.parametrize("shape", [(1, 1, 1), (2, 7, 3), (3, 33, 5)])
def test_all_forms_equal_the_papers_sums_float64(shape):
    args = inputs(*shape)
    want = wkv_by_the_paper(*args)
    for fn in (wkv_parallel, wkv_recurrent, wkv_scan):
        torch.testing.assert_close(fn(*args), want, rtol=1e-12, atol=1e-12)


def test_forms_agree_in_float32():
    args = inputs(2, 64, 8, dtype=torch.float32, seed=1)
    want = wkv_parallel(*args)
    torch.testing.assert_close(wkv_recurrent(*args), want, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(wkv_scan(*args), want, rtol=1e-5, atol=1e-5)


def test_running_max_keeps_large_keys_finite_where_the_plain_scan_overflows():
    args = inputs(2, 40, 4, dtype=torch.float32, scale=60.0, seed=2)  # e^k beyond float32
    rec, par = wkv_recurrent(*args), wkv_parallel(*args)
    assert torch.isfinite(rec).all()
    torch.testing.assert_close(rec, par, rtol=1e-4, atol=1e-4)
    assert not torch.isfinite(wkv_scan(*args)).all()
    torch.testing.assert_close(
        rec.double(), wkv_by_the_paper(*(a.double() for a in args)), rtol=1e-4, atol=1e-4
    )


def test_wkv_is_a_convex_combination_of_the_values():
    w, u, k, v = inputs(2, 20, 3, seed=3)
    out = wkv_parallel(w, u, k, v)
    running_max = torch.cummax(v, 1).values
    running_min = torch.cummin(v, 1).values
    assert (out <= running_max + 1e-12).all() and (out >= running_min - 1e-12).all()
    torch.testing.assert_close(out[:, 0], v[:, 0])  # the first token sees only itself


def test_time_mix_parallel_equals_recurrent_step():
    torch.manual_seed(0)
    mix = RWKVTimeMix(16).double()
    x = torch.randn(2, 25, 16, dtype=torch.float64)
    state, outs = mix.init_state(2), []
    state = tuple(s.double() for s in state)
    for t in range(x.shape[1]):
        out, state = mix.step(x[:, t], state)
        outs.append(out)
    torch.testing.assert_close(torch.stack(outs, 1), mix(x))
    mix(x.float().double()).sum().backward()
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in mix.parameters())


def test_time_mix_is_causal():
    torch.manual_seed(1)
    mix = RWKVTimeMix(8)
    x = torch.randn(1, 10, 8)
    y = x.clone()
    y[:, 6:] = torch.randn(1, 4, 8)
    torch.testing.assert_close(mix(x)[:, :6], mix(y)[:, :6])
    assert not torch.allclose(mix(x)[:, 6:], mix(y)[:, 6:])


@pytest.mark.parametrize(
    "call, match",
    [
        (
            lambda: wkv_parallel(-torch.ones(3), torch.ones(3), torch.zeros(1, 4, 3), torch.zeros(1, 4, 3)),
            r"decay w must be > 0",
        ),
        (
            lambda: wkv_recurrent(torch.ones(3), torch.ones(3), torch.zeros(1, 4, 3), torch.zeros(1, 5, 3)),
            r"v: expected shape \(b, t, d\).*received \(1, 5, 3\)",
        ),
        (
            lambda: wkv_scan(torch.ones(2), torch.ones(3), torch.zeros(1, 4, 3), torch.zeros(1, 4, 3)),
            r"w: expected shape \(d\).*received \(2,\)",
        ),
        (
            lambda: wkv_parallel(
                torch.ones(3, dtype=torch.float64), torch.ones(3), torch.zeros(1, 4, 3), torch.zeros(1, 4, 3)
            ),
            r"one dtype",
        ),
        (lambda: RWKVTimeMix(8)(torch.zeros(1, 4, 6)), r"x: expected shape \(b, t, 8\).*\(1, 4, 6\)"),
        (lambda: RWKVTimeMix(0), r"positive int, got 0"),
    ],
)
def test_bad_inputs(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_checkers_pass_the_reference_and_report_mistakes():
    assert check_wkv_naive(wkv_by_the_paper).passed
    assert check_wkv_step(wkv_step).passed
    assert check_jamba_pattern(jamba_pattern).passed

    def todo(*args):
        raise NotImplementedError

    for check in (check_wkv_naive, check_wkv_step, check_jamba_pattern):
        assert check(todo).status == "not implemented yet"
    no_bonus = lambda w, u, k, v: wkv_by_the_paper(w, torch.zeros_like(u), k, v)  # noqa: E731
    assert check_wkv_naive(no_bonus).status == "failed"

    def unstable_step(state, w, u, k_t, v_t):  # the plain sums, no running max
        num, den, p = state
        num, den = num * torch.exp(p), den * torch.exp(p)
        num, den = torch.nan_to_num(num), torch.nan_to_num(den)
        y = (num + torch.exp(u + k_t) * v_t) / (den + torch.exp(u + k_t))
        num, den = torch.exp(-w) * num + torch.exp(k_t) * v_t, torch.exp(-w) * den + torch.exp(k_t)
        return y, (num, den, torch.zeros_like(p))

    result = check_wkv_step(unstable_step)
    assert result.status == "failed" and (
        "inf" in result.message
        or "NaN" in result.message
        or "differ" in result.message
        or "diff" in result.message
    )
    assert check_jamba_pattern(lambda n, period, offset: "m" * n).status == "failed"
    assert jamba_pattern(8, 8, 4) == "mmmmammm"
