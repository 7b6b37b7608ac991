"""Tests of course_lib.ssm, course_lib.s4 and course_lib.experiments.ssm (notebook 06):
discretization (and its convergence to the ODE), the three ways to run an SSM, HiPPO memory, the
S4D kernel, the SSM layer and classifier, the shipped checkpoints, checkers, explorer, bad input."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from course_lib.data.synthetic import long_range_batch
from course_lib.experiments.ssm import (
    DenseSSM,
    SSMClassifier,
    SSMConfig,
    discretization_errors,
    fit_kernel,
    load_dense_sweep,
    load_ssm_classifier,
    rk4_states,
)
from course_lib.s4 import (
    SSMLayer,
    hippo_legs,
    init_ssm,
    legs_memory,
    legs_reconstruct,
    s4d_kernel,
    s4d_lin_init,
)
from course_lib.ssm import (
    causal_conv,
    discretize_bilinear,
    discretize_euler,
    discretize_zoh,
    discretize_zoh_diag,
    fft_conv,
    ssm_kernel,
    ssm_kernel_powers,
    ssm_recurrence,
)

F64 = torch.float64


def stable_ssm(n=4, seed=0, dtype=F64):
    g = torch.Generator().manual_seed(seed)
    A = -torch.eye(n, dtype=dtype) + 0.3 * torch.randn(n, n, generator=g, dtype=dtype)
    B = torch.randn(n, 1, generator=g, dtype=dtype)
    C = torch.randn(1, n, generator=g, dtype=dtype)
    return A, B, C


# ---- discretization ---------------------------------------------------------------------------


def test_zoh_matches_closed_form_and_small_steps():
    A, B, _ = stable_ssm(5)
    A_bar, B_bar = discretize_zoh(A, B, 0.1)
    eye = torch.eye(5, dtype=F64)
    torch.testing.assert_close(A_bar, torch.linalg.matrix_exp(0.1 * A))
    torch.testing.assert_close(B_bar, torch.linalg.solve(A, (A_bar - eye) @ B))
    # exact for piecewise-constant input: 10 steps of Δ/10 compose to one step of Δ
    A_s, B_s = discretize_zoh(A, B, 0.01)
    h = torch.zeros(5, 1, dtype=F64)  # the hidden state
    for _ in range(10):
        h = A_s @ h + B_s
    torch.testing.assert_close(h, B_bar)


def test_zoh_singular_A_and_vector_B():
    A_bar, B_bar = discretize_zoh(torch.zeros(3, 3, dtype=F64), torch.ones(3, dtype=F64), 0.5)
    torch.testing.assert_close(A_bar, torch.eye(3, dtype=F64))
    torch.testing.assert_close(B_bar, torch.full((3,), 0.5, dtype=F64))


def test_zoh_gradient_flows_to_delta():
    delta = torch.tensor(0.2, dtype=F64, requires_grad=True)
    A, B, _ = stable_ssm(3)
    assert torch.autograd.gradcheck(lambda d: discretize_zoh(A, B, d)[1], (delta,))


def test_bilinear_close_to_zoh_for_small_delta_and_maps_to_unit_disk():
    A, B, _ = stable_ssm(4)
    Az, Bz = discretize_zoh(A, B, 1e-3)
    Ab, Bb = discretize_bilinear(A, B, 1e-3)
    torch.testing.assert_close(Ab, Az, atol=1e-8, rtol=0)
    torch.testing.assert_close(Bb, Bz, atol=1e-8, rtol=0)
    A_h, B_h = hippo_legs(16)
    A_bar, _ = discretize_bilinear(A_h, B_h, 10.0)
    assert torch.linalg.eigvals(A_bar).abs().max() < 1


def test_zoh_diag_matches_dense_and_broadcasts():
    g = torch.Generator().manual_seed(1)
    A = torch.complex(-torch.rand(6, 4, generator=g, dtype=F64), torch.randn(6, 4, generator=g, dtype=F64))
    B = torch.randn(6, 4, generator=g, dtype=F64).to(A.dtype)
    delta = torch.rand(6, generator=g, dtype=F64) + 0.05
    A_bar, B_bar = discretize_zoh_diag(A, B, delta)
    for c in range(6):
        Ad, Bd = discretize_zoh(torch.diag(A[c]), B[c], delta[c])
        torch.testing.assert_close(A_bar[c], torch.diagonal(Ad))
        torch.testing.assert_close(B_bar[c], Bd)
    # Mamba's shapes: A (d, n), B (b, l, 1, n), delta (b, l, d) -> (b, l, d, n)
    Ab, Bb = discretize_zoh_diag(
        A.real, torch.randn(2, 3, 1, 4, dtype=F64), torch.rand(2, 3, 6, dtype=F64) + 0.1
    )
    assert Ab.shape == Bb.shape == (2, 3, 6, 4)


def test_zoh_diag_limit_A_to_zero():
    A = torch.tensor([0.0, 1e-9, -1e-6, -1.0], dtype=F64)
    _, B_bar = discretize_zoh_diag(A, torch.ones(4, dtype=F64), 0.5)
    expected = torch.tensor([0.5] + [math.expm1(0.5 * a) / a for a in (1e-9, -1e-6, -1.0)], dtype=F64)
    torch.testing.assert_close(B_bar, expected, atol=1e-12, rtol=1e-10)
    a = torch.zeros(3, requires_grad=True)
    discretize_zoh_diag(a, torch.ones(3), 0.1)[1].sum().backward()
    assert torch.isfinite(a.grad).all()


# ---- recurrence == convolution == FFT -------------------------------------------------------------


@pytest.mark.parametrize("length", [1, 7, 64, 100])
def test_three_ways_agree(length):
    A, B, C = stable_ssm(6)
    A_bar, B_bar = discretize_zoh(A, B, 0.05)
    x = torch.randn(3, length, dtype=F64)
    y = ssm_recurrence(A_bar, B_bar, C, x)
    K = ssm_kernel(A_bar, B_bar, C, length)
    torch.testing.assert_close(K, ssm_kernel_powers(A_bar, B_bar, C, length))
    torch.testing.assert_close(causal_conv(x, K), y)
    torch.testing.assert_close(fft_conv(x, K), y)


def test_fft_without_padding_wraps_around():
    x, K = torch.randn(32, dtype=F64), torch.randn(32, dtype=F64)
    circular = fft_conv(x, K, pad=False)
    wrapped = torch.stack([sum(K[j] * x[(k - j) % 32] for j in range(32)) for k in range(32)])
    torch.testing.assert_close(circular, wrapped)
    assert (circular - causal_conv(x, K)).abs().max() > 1e-3


def test_recurrence_states_and_skip():
    A, B, C = stable_ssm(3)
    A_bar, B_bar = discretize_zoh(A, B, 0.1)
    x = torch.randn(20, dtype=F64)
    y, hs = ssm_recurrence(A_bar, B_bar, C, x, D=0.5, return_states=True)
    assert hs.shape == (20, 3)
    torch.testing.assert_close(y, hs @ C[0] + 0.5 * x)


# ---- HiPPO and S4D ----------------------------------------------------------------------------------


def test_hippo_legs_matrix():
    A, B = hippo_legs(3)
    s3, s5 = math.sqrt(3), math.sqrt(5)
    expected = -torch.tensor([[1, 0, 0], [s3, 2, 0], [s5, s3 * s5, 3]], dtype=F64)
    torch.testing.assert_close(A, expected)
    torch.testing.assert_close(B[:, 0], torch.tensor([1, s3, s5], dtype=F64))


def test_legs_state_remembers_history():
    t = torch.linspace(0, 1, 400, dtype=F64)
    x = torch.sin(8 * t) + 0.5 * t
    h = legs_memory(x, 24)
    assert h.shape == (400, 24)
    for k in (199, 399):  # the whole history up to step k, from h_k alone
        err = (legs_reconstruct(h[k], k + 1) - x[: k + 1]).abs().max()
        assert err < 0.02, err


def test_s4d_kernel_equals_dense_kernel():
    d, n, length = 3, 8, 40
    A = s4d_lin_init(d, n).to(torch.complex128)
    g = torch.Generator().manual_seed(2)
    C = torch.randn(d, n, generator=g, dtype=F64).to(torch.complex128)
    B = torch.ones(d, n, dtype=torch.complex128)
    delta = torch.tensor([0.01, 0.1, 0.5], dtype=F64)
    K = s4d_kernel(A, B, C, delta, length)
    for c in range(d):
        A_bar, B_bar = discretize_zoh(torch.diag(A[c]), B[c], delta[c])
        torch.testing.assert_close(K[c], ssm_kernel(A_bar, B_bar, C[c], length).real)


def test_init_ssm_kinds():
    for kind in ("hippo", "diagonal", "random"):
        A, B, C = init_ssm(kind, 8)
        assert A.shape == (8, 8) and B.shape == (8, 1) and C.shape == (1, 8)
    eig_random = torch.linalg.eigvals(init_ssm("random", 32)[0]).real
    assert (eig_random > 0).any()  # the naive A is unstable
    assert (torch.linalg.eigvals(init_ssm("hippo", 32)[0]).real < 0).all()


def test_ssm_layer_is_mix_then_gelu_with_feedthrough():
    torch.manual_seed(0)
    layer = SSMLayer(4, 3)
    x = torch.randn(2, 20, 4)
    with torch.no_grad():
        z = fft_conv(x.transpose(1, 2), layer.kernel(20)) + layer.D[:, None] * x.transpose(1, 2)
        expected = torch.nn.functional.gelu(layer.out_proj(z.transpose(1, 2)))  # linear, then GELU
        torch.testing.assert_close(layer(x), expected)


# ---- a dense A trained directly ---------------------------------------------------------------------


def test_dense_ssm_kernel_forward_and_radius():
    A, B, C = stable_ssm(4)
    model = DenseSSM(A, B, C, delta=0.1)
    A_bar, B_bar = discretize_zoh(A, B, 0.1)
    with torch.no_grad():
        torch.testing.assert_close(model.kernel(30), ssm_kernel(A_bar, B_bar, C, 30))
        x = torch.randn(2, 30, dtype=F64)
        torch.testing.assert_close(model(x), ssm_recurrence(A_bar, B_bar, C, x))
    assert model.spectral_radius() == pytest.approx(torch.linalg.eigvals(A_bar).abs().max().item())
    assert {n for n, _ in model.named_parameters()} == {"A", "B", "C", "log_delta"}


def test_fit_kernel_learns_a_representable_kernel(one_thread):
    target = 0.5 * 0.9 ** torch.arange(64, dtype=F64)  # the kernel of a 1-state SSM
    A, B, C = stable_ssm(3, seed=1)
    model = DenseSSM(A, B, C, delta=0.1)
    history = fit_kernel(model, target, steps=200, lr=2e-2, record_every=50)
    assert [s for s, _, _ in history] == [0, 50, 100, 150, 200]
    assert history[0][1] > 0.1 and history[-1][1] < 1e-3, history
    with torch.no_grad():
        loss = ((model.kernel(64) - target) ** 2).sum() / (target**2).sum()
    assert loss.item() == pytest.approx(history[-1][1])


def test_fit_kernel_stops_when_the_kernel_overflows():
    A = 5.0 * torch.eye(2, dtype=F64)  # |λ̄| = e^5: explodes
    model = DenseSSM(A, torch.ones(2, 1, dtype=F64), torch.ones(1, 2, dtype=F64), delta=1.0)
    history = fit_kernel(model, torch.ones(1024, dtype=F64), steps=50)
    assert len(history) == 1 and not math.isfinite(history[-1][1])
    assert history[-1][2] > 100


def test_dense_ssm_and_fit_kernel_bad_input():
    A, B, C = stable_ssm(3)
    with pytest.raises(
        ValueError,
        match=r"DenseSSM: B: expected shape \(n, 1\) = \(n=3, 1\), "
        r"received \(4, 1\)",
    ):
        DenseSSM(A, torch.ones(4, 1, dtype=F64), C)
    with pytest.raises(ValueError, match="delta must be > 0"):
        DenseSSM(A, B, C, delta=0.0)
    model = DenseSSM(A, B, C)
    with pytest.raises(ValueError, match="steps must be a positive int, received 0"):
        fit_kernel(model, torch.ones(8, dtype=F64), steps=0)
    with pytest.raises(ValueError, match="lr must be > 0"):
        fit_kernel(model, torch.ones(8, dtype=F64), lr=-1.0)
    with pytest.raises(ValueError, match=r"kernel \(8,\) does not match the target \(2, 8\)"):
        fit_kernel(model, torch.ones(2, 8, dtype=F64), steps=1)


# ---- the layer and the model ------------------------------------------------------------------------


def test_ssm_layer_shapes_causality_and_window():
    torch.manual_seed(0)
    layer = SSMLayer(8, 4)
    x = torch.randn(2, 50, 8)
    y = layer(x)
    assert y.shape == (2, 50, 8)
    x2 = x.clone()
    x2[:, 30:] += 1.0  # the future must not change the past
    torch.testing.assert_close(layer(x2)[:, :30], y[:, :30])
    local = SSMLayer(8, 4, window=5)
    assert (local.kernel(50)[:, 5:] == 0).all()


def test_ssm_classifier_learns_short_long_range_task(one_thread):
    torch.manual_seed(0)
    model = SSMClassifier(SSMConfig(vocab_size=8, n_classes=4, d_model=16, d_state=8, n_layers=1))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(80):  # ~1 s; reaches ~99%
        tokens, labels = long_range_batch(32, 64, 4, 4, span=8, generator=g)
        loss = torch.nn.functional.cross_entropy(model(tokens), labels)
        opt.zero_grad()
        loss.backward()
        opt.step()
    tokens, labels = long_range_batch(256, 64, 4, 4, span=8, generator=torch.Generator().manual_seed(9))
    with torch.no_grad():
        acc = (model(tokens).argmax(-1) == labels).float().mean().item()
    assert acc > 0.9, acc


def test_classifier_rejects_bad_tokens():
    model = SSMClassifier(SSMConfig(vocab_size=8, n_classes=4, d_model=8, d_state=4, n_layers=1))
    with pytest.raises(ValueError, match=r"tokens: expected token ids in \[0, 8\), received min 0, max 9"):
        model(torch.tensor([[0, 9]]))
    with pytest.raises(ValueError, match=r"tokens: expected integer token ids"):
        model(torch.zeros(1, 4))
    assert [n for n, _ in model.named_children()] == ["token_emb", "layers", "norm_f", "head"]


@pytest.mark.parametrize("name,accuracy", [("ssm_long", 1.0), ("ssm_local", 0.0938)])
def test_shipped_classifiers_load_with_the_one_schema(name, accuracy):
    model, meta = load_ssm_classifier(name)
    assert set(meta["config"]) == {"model", "task", "train"}
    assert meta["config"]["train"]["command"] == "python tools/train_ssm.py"
    assert meta["metrics"]["test_accuracy"] == accuracy
    assert {"train_cpu_s", "train_wall_s"} <= set(meta["metrics"])
    assert model.config.window == (None if name == "ssm_long" else 64)
    task = meta["config"]["task"]
    tokens, labels = long_range_batch(
        32,
        task["length"],
        task["n_classes"],
        task["n_noise"],
        task["span"],
        generator=torch.Generator().manual_seed(3),
    )
    with torch.no_grad():
        acc = (model(tokens).argmax(-1) == labels).float().mean().item()
    assert (acc == 1.0) if name == "ssm_long" else (acc < 0.4), acc


def test_shipped_dense_sweep_loads():
    sweep, meta = load_dense_sweep()
    assert len(sweep) == 27 and set(meta["metrics"]["runs"]) == set(sweep)
    assert meta["config"]["train"]["command"] == "python tools/train_ssm.py --dense-a"
    last = meta["metrics"]["runs"]["hippo_seed0_lr1"]["history"][-1]  # (step, loss, max |λ̄|)
    assert sweep["hippo_seed0_lr1"].spectral_radius() == pytest.approx(last[2], rel=1e-9)


def test_long_range_batch():
    tokens, labels = long_range_batch(16, 100, 8, 8, span=10, generator=torch.Generator().manual_seed(0))
    assert tokens.shape == (16, 100) and labels.shape == (16,)
    signal = tokens < 8
    assert (signal[:, 10:] == 0).all() and (signal[:, :10].sum(1) >= 1).all()
    assert (torch.where(signal, tokens, labels[:, None]) == labels[:, None]).all()
    with pytest.raises(ValueError, match="span"):
        long_range_batch(2, 10, span=11)


# ---- convergence to the continuous-time SSM ----------------------------------------------------------


def test_rk4_reference_matches_the_exact_solution():
    A, B, _ = stable_ssm(3)
    h = rk4_states(A, B, torch.ones(64, dtype=F64), 1 / 64)  # x = 1 up to t = 1
    exact = torch.linalg.solve(A, (torch.linalg.matrix_exp(A) - torch.eye(3, dtype=F64)) @ B)[:, 0]
    torch.testing.assert_close(h[-1], exact, atol=1e-9, rtol=1e-9)


def test_discretization_orders():
    A, B, _ = stable_ssm(3)
    values = torch.tensor([1.0, -0.5, 2.0], dtype=F64)  # piecewise constant on unit steps
    deltas = [1 / 8, 1 / 16, 1 / 32]
    errors = discretization_errors(A, B, values, deltas, reference_step=1 / 256)
    assert max(errors["ZOH"]) < 1e-9  # exact for a held input
    for rule, order in (("bilinear", 2), ("Euler", 1)):
        observed = [math.log2(a / b) for a, b in zip(errors[rule], errors[rule][1:])]
        assert all(abs(o - order) < 0.25 for o in observed), (rule, observed)
    torch.testing.assert_close(discretize_euler(A, B, 0.1)[0], torch.eye(3, dtype=F64) + 0.1 * A)
    with pytest.raises(ValueError, match="divide 1"):
        discretization_errors(A, B, values, [0.3], reference_step=1 / 256)


# ---- bad input ------------------------------------------------------------------------------------------


@pytest.mark.parametrize("delta", [0.0, -0.1, torch.tensor(-1.0), torch.tensor([0.1, 0.0])])
def test_bad_delta(delta):
    A, B, _ = stable_ssm(2)
    for fn in (discretize_zoh, discretize_bilinear):
        with pytest.raises(ValueError, match="delta"):
            fn(A, B, delta if not isinstance(delta, torch.Tensor) or delta.dim() == 0 else delta[1])
    with pytest.raises(ValueError, match="delta must be > 0"):
        discretize_zoh_diag(torch.ones(2, 3), torch.ones(2, 3), delta)


def test_mismatched_state_sizes():
    with pytest.raises(ValueError, match=r"B: expected shape \(n, m\) = \(n=3, m\), received \(4, 1\)"):
        discretize_zoh(torch.eye(3), torch.ones(4, 1), 0.1)
    with pytest.raises(ValueError, match=r"A: expected shape \(n, n\) = \(n=3, n=3\), received \(3, 2\)"):
        discretize_bilinear(torch.ones(3, 2), torch.ones(3, 1), 0.1)
    with pytest.raises(ValueError, match=r"state size n.*A \(2, 3\) and B \(2, 4\)"):
        discretize_zoh_diag(torch.ones(2, 3), torch.ones(2, 4), 0.1)
    with pytest.raises(ValueError, match="do not broadcast"):
        discretize_zoh_diag(torch.ones(2, 3), torch.ones(5, 3), 0.1)
    A_bar, B_bar = discretize_zoh(-torch.eye(3), torch.ones(3, 1), 0.1)
    with pytest.raises(ValueError, match=r"C: expected shape \(1, n\) = \(1, n=3\), received \(1, 4\)"):
        ssm_recurrence(A_bar, B_bar, torch.ones(1, 4), torch.randn(5))
    with pytest.raises(ValueError, match="state size"):
        s4d_kernel(torch.ones(2, 3), torch.ones(2, 3), torch.ones(2, 4), 0.1, 10)


def test_kernel_too_long():
    with pytest.raises(ValueError, match="longer than the input"):
        fft_conv(torch.randn(10), torch.randn(11))
    with pytest.raises(ValueError, match="longer than the input"):
        causal_conv(torch.randn(3, 10), torch.randn(12))
    A_bar, B_bar = discretize_zoh(-torch.eye(2), torch.ones(2, 1), 0.1)
    with pytest.raises(ValueError, match="longer than max_len 32"):
        SSMLayer(4, 2, max_len=32)(torch.randn(1, 33, 4))
    with pytest.raises(ValueError, match=r"SSMLayer: x: expected shape \(b, l, 4\)"):
        SSMLayer(4, 2)(torch.randn(1, 33, 5))
    with pytest.raises(ValueError, match="positive int"):
        ssm_kernel_powers(A_bar, B_bar, torch.ones(1, 2), 0)


# ---- checkers and the explorer -------------------------------------------------------------------


def test_checkers_pass_reference_and_fail_wrong():
    from course_lib.checks.ssm import check_discretize_zoh, check_fft_conv, check_kernel_powers

    assert check_discretize_zoh(discretize_zoh).passed
    assert check_fft_conv(fft_conv).passed
    assert check_kernel_powers(ssm_kernel_powers).passed
    euler = check_discretize_zoh(lambda A, B, d: (torch.eye(A.shape[0], dtype=A.dtype) + d * A, d * B))
    assert euler.status == "failed" and "Euler" in euler.message
    circular = check_fft_conv(lambda x, K: fft_conv(x, K, pad=False))
    assert circular.status == "failed" and "circular" in circular.message
    shifted = check_kernel_powers(lambda A, B, C, n: ssm_kernel_powers(A, B, C, n + 1)[1:])
    assert shifted.status == "failed" and "max abs diff" in shifted.message

    def todo(*args):
        raise NotImplementedError

    assert check_fft_conv(todo).status == "not implemented yet"


def test_kernel_explorer_extremes_are_finite():
    from course_lib.viz.ssm import ssm_kernel_explorer

    explorer = ssm_kernel_explorer(length=64)
    settings = explorer.extreme_values() + [("delta", 0.001), ("delta", 1.0), ("n", 64)]
    for name, value in settings:  # ends on init="hippo" ... n=64, delta=1.0
        explorer.controls[name].value = value
        for key, array in explorer.data.items():
            assert np.isfinite(array).all(), (name, value, key)
    explorer.controls["init"].value = "random"  # the naive random A explodes
    assert np.isfinite(explorer.data["log10_abs"]).all() and explorer.data["log10_abs"][-1] > 5
    assert np.abs(explorer.data["kernel"]).max() == 1.0
