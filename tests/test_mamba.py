"""Tests for notebook 07: scans, the selective scan (S6), the Mamba block and model, checkers,
the selection explorer and the shipped checkpoints."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.checks.mamba import (
    check_causal_depthwise_conv,
    check_discretize_zoh_diag,
    check_scan,
    check_selective_step,
)
from course_lib.data.synthetic import induction_heads
from course_lib.experiments.mamba import (
    AttentionLM,
    AttentionLMConfig,
    last_token_accuracy,
    load_model,
    scan_inputs,
    state_write,
)
from course_lib.mamba import MambaConfig, MambaLM, RMSNorm, causal_depthwise_conv
from course_lib.scan import (
    default_chunk,
    discretize_selective,
    scan_chunked,
    scan_sequential,
    scan_sequential_indexed,
    selective_scan,
    selective_scan_sequential,
    selective_step,
    trace_scan,
)
from course_lib.ssm import discretize_zoh_diag
from course_lib.training import checkpoint_meta, data_dir, load_checkpoint
from course_lib.viz.mamba import selection_explorer, selection_summary


def scan_pair(shape, seed=0):
    g = torch.Generator().manual_seed(seed)
    a = torch.rand(shape, generator=g, dtype=torch.float64).requires_grad_()
    x = torch.randn(shape, generator=g, dtype=torch.float64).requires_grad_()
    return a, x


def selective_inputs(b=2, l=19, d=5, n=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    kw = dict(generator=g, dtype=torch.float64)
    u, delta = torch.randn(b, l, d, **kw), torch.rand(b, l, d, **kw) * 0.5 + 0.01
    A = -torch.rand(d, n, **kw) * 3 - 0.1
    B, C, D = torch.randn(b, l, n, **kw), torch.randn(b, l, n, **kw), torch.randn(d, **kw)
    return [t.requires_grad_() for t in (u, delta, A, B, C, D)]


@pytest.mark.parametrize(
    "shape,chunk",
    [
        ((2, 37, 3, 4), 8),
        ((1, 64, 5), None),
        ((2, 10, 2), 1),
        ((2, 16, 3), 16),
        ((1, 5, 2), 64),
        ((3, 1, 2), None),
    ],
)
def test_chunked_scan_equals_sequential_outputs_and_gradients(shape, chunk):
    a, x = scan_pair(shape)
    h_ref, h = scan_sequential(a, x), scan_chunked(a, x, chunk)
    torch.testing.assert_close(h, h_ref)
    g = torch.randn_like(h)
    for want, got in zip(torch.autograd.grad(h_ref, (a, x), g), torch.autograd.grad(h, (a, x), g)):
        torch.testing.assert_close(got, want)


def test_indexed_scan_is_correct_only_slow():
    a, x = scan_pair((2, 9, 3))
    torch.testing.assert_close(scan_sequential_indexed(a, x), scan_sequential(a, x))


@pytest.mark.parametrize("method", ["euler", "zoh"])
def test_selective_scan_equals_sequential_reference(method):
    inputs = selective_inputs()
    y_ref = selective_scan_sequential(*inputs, method=method)
    y = selective_scan(*inputs, method=method)
    torch.testing.assert_close(y, y_ref)
    for want, got in zip(
        torch.autograd.grad(y_ref.square().sum(), inputs), torch.autograd.grad(y.square().sum(), inputs)
    ):
        torch.testing.assert_close(got, want)


def test_discretization_zoh_and_euler():
    u, delta, A, B, C, D = selective_inputs()
    A_bar, B_zoh = discretize_selective(delta, A, B, "zoh")
    ref_A, ref_B = discretize_zoh_diag(A, B[:, :, None, :], delta)
    torch.testing.assert_close(A_bar, ref_A)
    torch.testing.assert_close(B_zoh, ref_B)
    _, B_euler = discretize_selective(delta, A, B, "euler")
    torch.testing.assert_close(B_euler, delta[..., None] * B[:, :, None, :])
    small = delta * 1e-4  # Euler B -> ZOH B as Δ -> 0
    rel = (
        discretize_selective(small, A, B, "zoh")[1] - discretize_selective(small, A, B, "euler")[1]
    ).abs().max() / discretize_selective(small, A, B, "euler")[1].abs().max()
    assert rel < 1e-3


def test_lti_selective_scan_equals_ssm_convolution():
    """With Δ, B, C constant over time the selective scan is the LTI SSM of notebook 06."""
    from course_lib.ssm import ssm_recurrence  # noqa: F401  (06's module is importable)

    u, delta, A, B, C, D = selective_inputs(b=1, l=12, d=1, n=3)
    delta_c, B_c, C_c = delta[:, :1].expand_as(delta), B[:, :1].expand_as(B), C[:, :1].expand_as(C)
    y = selective_scan(u, delta_c, A, B_c, C_c, method="zoh")[0, :, 0]
    A_bar, B_bar = discretize_zoh_diag(A[0], B[0, 0], delta[0, 0, 0])  # (n,) each
    kernel = torch.stack([(C[0, 0] * A_bar**k * B_bar).sum() for k in range(12)])
    y_conv = torch.stack([(kernel[: t + 1].flip(0) * u[0, : t + 1, 0]).sum() for t in range(12)])
    torch.testing.assert_close(y, y_conv)


def test_bad_inputs_raise_value_error():
    u, delta, A, B, C, D = selective_inputs()
    with pytest.raises(ValueError, match="delta must be > 0"):
        selective_scan(u, torch.zeros_like(delta), A, B, C, D)
    with pytest.raises(ValueError, match="delta must be > 0"):
        selective_scan_sequential(u, -delta, A, B, C, D)
    with pytest.raises(ValueError, match="delta must be > 0"):
        discretize_selective(-delta, A, B)
    with pytest.raises(ValueError, match="B: expected shape"):  # state sizes n differ
        selective_scan(u, delta, A, B[..., :3], C, D)
    with pytest.raises(ValueError, match="x: expected shape"):
        selective_scan(u[0], delta, A, B, C, D)
    with pytest.raises(ValueError, match="method"):
        selective_scan(u, delta, A, B, C, D, method="rk4")
    with pytest.raises(ValueError, match="same shape"):
        scan_chunked(torch.rand(2, 5, 3), torch.rand(2, 5, 4))
    with pytest.raises(ValueError, match="chunk"):
        scan_chunked(torch.rand(2, 5, 3), torch.rand(2, 5, 3), chunk=0)
    with pytest.raises(ValueError, match="at least 2 dims"):
        scan_sequential(torch.rand(5), torch.rand(5))
    with pytest.raises(ValueError, match="weight"):
        causal_depthwise_conv(torch.rand(1, 4, 3), torch.rand(2, 4))
    with pytest.raises(ValueError, match="d_state"):
        MambaConfig(vocab_size=5, d_state=0)
    with pytest.raises(ValueError, match="dt_min"):
        MambaConfig(vocab_size=5, dt_min=-1.0)
    model = MambaLM(MambaConfig(vocab_size=5, d_model=8, n_layers=1, d_state=2))
    with pytest.raises(ValueError, match=r"\(b, l\)"):
        model(torch.zeros(3, dtype=torch.long))
    with pytest.raises(ValueError, match="token ids"):
        model(torch.full((1, 3), 5))


def test_causal_depthwise_conv_equals_conv1d_and_is_causal():
    g = torch.Generator().manual_seed(3)
    x, w, bias = torch.randn(2, 11, 6, generator=g), torch.randn(6, 4, generator=g), torch.randn(6)
    conv = torch.nn.Conv1d(6, 6, 4, groups=6, padding=3)
    with torch.no_grad():
        conv.weight.copy_(w[:, None, :])
        conv.bias.copy_(bias)
        want = conv(x.transpose(1, 2))[..., :11].transpose(1, 2)
    y = causal_depthwise_conv(x, w, bias)
    torch.testing.assert_close(y, want)
    x2 = x.clone()
    x2[:, 7:] += 1.0  # change the future only
    torch.testing.assert_close(causal_depthwise_conv(x2, w, bias)[:, :7], y[:, :7])


def test_rmsnorm_equals_torch():
    x = torch.randn(3, 4, 8)
    ours, ref = RMSNorm(8), torch.nn.RMSNorm(8, eps=1e-5)
    with torch.no_grad():
        ours.weight.uniform_()
        ref.weight.copy_(ours.weight)
    torch.testing.assert_close(ours(x), ref(x))


@pytest.mark.parametrize("selective,gate", [(True, True), (False, True), (False, False)])
def test_recurrent_step_mode_equals_parallel_mode(selective, gate):
    torch.manual_seed(0)
    model = (
        MambaLM(MambaConfig(vocab_size=7, d_model=16, n_layers=2, d_state=4, selective=selective, gate=gate))
        .double()
        .eval()
    )
    tokens = torch.randint(0, 7, (2, 13))
    with torch.no_grad():
        full, states, steps = model(tokens), model.init_state(2), []
        for t in range(13):
            logits, states = model.step(tokens[:, t], states)
            steps.append(logits)
        prefilled, pre_states = model.prefill(tokens)  # one scan, same state
    torch.testing.assert_close(torch.stack(steps, 1), full)
    torch.testing.assert_close(prefilled, full)
    for (conv_a, h_a), (conv_b, h_b) in zip(pre_states, states):
        torch.testing.assert_close(conv_a, conv_b)
        torch.testing.assert_close(h_a, h_b)


def test_fused_scan_memory_and_step_counts():
    """Two (b, l, d, n) buffers after forward, three at the backward peak; 2T + l/T - 1 steps."""
    b, l, d, n = 2, 128, 32, 16  # (b, l, d): 1/16 of a buffer
    inputs = [t.float() for t in selective_inputs(b=b, l=l, d=d, n=n)]
    inputs = [t.detach().requires_grad_() for t in inputs[:5]]
    unit = b * l * d * n * 4  # bytes of one float32 buffer
    backward = lambda y: y.square().sum().backward()  # noqa: E731
    fused = trace_scan(lambda: selective_scan(*inputs), backward)
    plain = trace_scan(lambda: selective_scan(*inputs, scan=scan_chunked), backward)
    assert 2 <= fused["kept"] / unit < 2.5 and 3 <= fused["peak"] / unit < 3.7
    assert plain["peak"] > fused["peak"] + unit  # plain autograd keeps more
    T = default_chunk(l)
    assert fused["forward_ops"]["addcmul"] == 2 * T + l // T - 1 == fused["backward_ops"]["addcmul"]
    a = torch.rand(1, 4096, 1)
    steps = trace_scan(lambda: scan_chunked(a, a))["forward_ops"]["addcmul"]
    assert steps == 191 == 2 * default_chunk(4096) + 4096 // default_chunk(4096) - 1


def test_no_gate_block_has_no_z_branch():
    cfg = MambaConfig(vocab_size=5, d_model=8, n_layers=1, d_state=2, gate=False)
    block = MambaLM(cfg).layers[0]
    assert block.in_proj.out_features == cfg.d_inner
    x = torch.randn(2, 6, 8)
    xs = F.silu(causal_depthwise_conv(block.in_proj(x), block.conv_weight, block.conv_bias))
    torch.testing.assert_close(block(x), block.out_proj(block.ssm(xs)))


def test_ssm_inputs_match_the_forward_pass():
    torch.manual_seed(1)
    model = MambaLM(MambaConfig(vocab_size=6, d_model=8, n_layers=2, d_state=3)).eval()
    tokens = torch.randint(0, 6, (2, 9))
    with torch.no_grad():
        _, deltas = model(tokens, need_deltas=True)
        seen = model.ssm_inputs(tokens)
    for delta, s in zip(deltas, seen):
        torch.testing.assert_close(s["delta"], delta)
        assert s["B"].shape == (2, 9, 3) and s["x"].shape == (2, 9, 16) and (s["A"] < 0).all()


def test_selection_off_means_time_invariant_parameters():
    torch.manual_seed(0)
    block = MambaLM(MambaConfig(vocab_size=5, d_model=8, n_layers=1, selective=False)).layers[0]
    d1, B1, C1 = block.ssm_params(torch.randn(1, 4, 16))
    d2, B2, C2 = block.ssm_params(torch.randn(1, 4, 16))
    torch.testing.assert_close(d1, d2)
    assert B1 is B2 and C1 is C2 and tuple(B1.shape) == (16, 16)
    sel = MambaLM(MambaConfig(vocab_size=5, d_model=8, n_layers=1)).layers[0]
    d1, B1, _ = sel.ssm_params(torch.randn(1, 4, 16))
    assert tuple(d1.shape) == (1, 4, 16) and tuple(B1.shape) == (1, 4, 16) and (d1 > 0).all()


def test_tiny_mamba_learns_to_recall_the_previous_token():
    torch.manual_seed(0)
    model = MambaLM(MambaConfig(vocab_size=8, d_model=16, n_layers=1, d_state=4))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(120):
        x = torch.randint(0, 8, (16, 12), generator=g)
        loss = F.cross_entropy(model(x)[:, 1:].flatten(0, 1), x[:, :-1].flatten())
        opt.zero_grad()
        loss.backward()
        opt.step()
    x = torch.randint(0, 8, (64, 12), generator=g)
    with torch.no_grad():
        acc = (model(x)[:, 1:].argmax(-1) == x[:, :-1]).float().mean().item()
    assert acc > 0.95


def test_attention_baseline_shapes():
    model = AttentionLM(AttentionLMConfig(9, d_model=16, n_heads=2, n_layers=1, max_len=64))
    assert model(torch.randint(0, 9, (2, 10))).shape == (2, 10, 9)
    with pytest.raises(ValueError):
        model(torch.randint(0, 9, (1, 65)))  # past the positional table


def test_checkers_pass_reference_and_fail_wrong():
    from course_lib.ssm import discretize_zoh_diag as zoh

    assert check_discretize_zoh_diag(zoh).passed

    def euler(A, B, delta):
        d = delta[..., None] if delta.dim() else delta
        return torch.exp(d * A), d * B

    bad = check_discretize_zoh_diag(euler)
    assert not bad.passed and "differ" in bad.message or "diff" in bad.message
    assert check_selective_step(selective_step).passed
    wrong_step = lambda h, u, dt, A, B, C, D: selective_step(h, u, dt, A, B, C, None)  # noqa: E731
    assert "max abs diff" in check_selective_step(wrong_step).message
    assert check_causal_depthwise_conv(causal_depthwise_conv).passed

    def same_pad(x, w, b):
        padded = F.pad(x.transpose(1, 2), (1, w.shape[1] - 2))
        return F.conv1d(padded, w[:, None], b, groups=w.shape[0]).transpose(1, 2)

    assert not check_causal_depthwise_conv(same_pad).passed
    assert check_scan(scan_sequential).passed and check_scan(scan_chunked).passed
    assert check_scan(lambda a, x: x).status == "failed"

    def todo(*args):
        raise NotImplementedError

    assert check_scan(todo).status == "not implemented yet"


def test_selection_explorer_extremes_are_finite():
    deltas = torch.rand(2, 10, 6) + 0.01
    ex = selection_explorer(
        {
            "one": {"tokens": list("abcdefghij"), "deltas": deltas},
            "two": {
                "tokens": list("klmnopqrst"),
                "deltas": deltas * 2,
                "highlight": [True] * 3 + [False] * 7,
            },
        }
    )
    for name, value in ex.extreme_values():
        ex.controls[name].value = value
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in ex.data.values())
    with pytest.raises(ValueError):
        selection_summary(deltas[0], channel=6)
    with pytest.raises(ValueError, match="quantity"):
        selection_summary(deltas[0], quantity="gate")
    a = torch.rand(6) + 0.5  # Euler is above the convex gate
    keep, write, gate = (selection_summary(deltas[0], q, 2, a) for q in ("keep", "write", "zoh gate"))
    torch.testing.assert_close(keep + gate, torch.ones(10))
    assert (keep + write > 1).all() and (write > gate).all()
    with_A = selection_explorer(
        {"one": {"tokens": list("abcdefghij"), "deltas": deltas, "A": -torch.rand(2, 6, 3) - 0.1}}
    )
    with_A.controls["quantity"].value = "keep"
    assert ((with_A.data["values"] > 0) & (with_A.data["values"] < 1)).all()
    with pytest.raises(ValueError):
        selection_explorer({})


@pytest.mark.parametrize(
    "name,kind", [("selcopy_s6", "s6"), ("selcopy_lti", "lti"), ("selcopy_lti_nogate", "lti_nogate")]
)
def test_shipped_selective_copying_checkpoints(name, kind):
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parent.parent / "tools" / "train_mamba.py"
    spec = importlib.util.spec_from_file_location("train_mamba", path)
    tm = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tm)
    model = tm.selcopy_model(kind)
    meta = load_checkpoint(model, data_dir() / f"mamba_{name}.safetensors")
    acc = tm.selcopy_eval(model.eval(), batch=300)
    by_seed = meta["metrics"]["accuracy_by_seed"]
    assert list(by_seed) == ["0", "1", "2"] and by_seed["0"] == meta["metrics"]["accuracy"]
    if kind == "s6":
        assert acc >= 0.95 and min(by_seed.values()) >= 0.9
    else:  # no selection: fails on every seed
        assert acc <= 0.6 and max(by_seed.values()) <= 0.6


def test_shipped_induction_checkpoints_extrapolate():
    mamba, meta = load_model(data_dir() / "mamba_induction_mamba.safetensors")
    attention, meta_attn = load_model(data_dir() / "mamba_induction_attention.safetensors")
    accs, task = meta["metrics"]["accuracy_by_factor"], meta["config"]["task"]
    assert accs["1"] >= 0.95 and accs["8"] >= 0.95 and accs["16"] >= 0.9
    assert meta_attn["metrics"]["accuracy_by_factor"]["1"] >= 0.75
    assert meta_attn["metrics"]["accuracy_by_factor"]["16"] < accs["16"] - 0.3
    validation = meta["metrics"]["validation_accuracy_16x_by_length"]  # chosen on validation
    assert task["length"] == max(map(int, validation), key=lambda n: validation[str(n)])
    assert meta_attn["config"]["task"] == task  # attention at the same length
    assert meta["metrics"]["validation"].split("seed ")[1] != meta["metrics"]["test"].split("seed ")[1]
    assert list(meta["metrics"]["test_accuracy_16x_by_seed"]) == ["0", "1", "2"]
    x, y = induction_heads(16, task["length"] * 16, task["n_tokens"], seed=7)
    assert last_token_accuracy(mamba, x, y, tokens_per_batch=4000) >= 0.6


@pytest.mark.parametrize(
    "name", ["selcopy_s6", "selcopy_lti", "selcopy_lti_nogate", "induction_mamba", "induction_attention"]
)
def test_shipped_checkpoints_share_one_metadata_schema(name):
    meta = checkpoint_meta(data_dir() / f"mamba_{name}.safetensors")
    config, metrics = meta["config"], meta["metrics"]
    assert set(config) == {"arch", "model", "task", "train"}
    assert config["train"]["command"] == f"python tools/train_mamba.py {name.split('_')[0]}"
    assert config["train"]["seed"] == 0 and "vocab_size" in config["model"]
    assert {"train_cpu_s", "train_wall_s"} <= set(metrics)
    model, _ = load_model(data_dir() / f"mamba_{name}.safetensors")
    assert model.config.vocab_size == config["model"]["vocab_size"]


def test_greedy_generate_equals_argmax_of_the_parallel_forward():
    torch.manual_seed(3)
    model = MambaLM(MambaConfig(vocab_size=11, d_model=16, n_layers=2, d_state=4)).double().eval()
    prompt = torch.randint(0, 11, (2, 5))
    out = model.generate(prompt, 6)
    assert out.shape == (2, 11) and torch.equal(out[:, :5], prompt)
    with torch.no_grad():
        for t in range(5, 11):  # each new token: argmax of forward
            assert torch.equal(out[:, t], model(out[:, :t])[:, -1].argmax(-1))
    same, states = model.generate(prompt, 6, return_state=True)  # state before the last token
    logits, _ = model.step(out[:, -1], states)
    with torch.no_grad():
        torch.testing.assert_close(logits, model(out)[:, -1])
    assert torch.equal(same, out)
    with pytest.raises(ValueError, match="n_new"):
        model.generate(prompt, -1)


def test_optional_conv_bias_and_projection_biases():
    torch.manual_seed(0)
    cfg = MambaConfig(vocab_size=7, d_model=8, n_layers=1, d_state=3, conv_bias=False, bias=True)
    model = MambaLM(cfg).double().eval()
    keys = set(model.state_dict())
    assert "layers.0.conv_bias" not in keys and {"layers.0.in_proj.bias", "layers.0.out_proj.bias"} <= keys
    tokens = torch.randint(0, 7, (1, 6))
    with torch.no_grad():
        states, steps = model.init_state(1), []
        for t in range(6):
            logits, states = model.step(tokens[:, t], states)
            steps.append(logits)
        torch.testing.assert_close(torch.stack(steps, 1), model(tokens))


def test_scan_inputs_and_state_write():
    x, delta, A, B, C, D = scan_inputs(12, batch=3, d=4, n=5)
    assert x.shape == delta.shape == (3, 12, 4) and A.shape == (4, 5) and B.shape == (3, 12, 5)
    assert (delta > 0).all() and all(t.requires_grad for t in (x, delta, A, B, C, D))
    torch.testing.assert_close(scan_inputs(12, batch=3, d=4, n=5)[3], B)  # seeded
    write = state_write({"delta": delta, "x": x, "B": B})
    B_bar_x = (delta * x)[..., None] * B[:, :, None, :]  # (b, l, d, n) Euler B̄ x
    torch.testing.assert_close(write, B_bar_x.norm(dim=-1))
