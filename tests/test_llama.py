"""course_lib.llama: RMSNorm / SwiGLU / GQA block, packed documents, KV-cache size,
speculative decoding (exact and sampled), the story checkpoints and the exercise checkers."""

import sys

import pytest
import torch
import torch.nn.functional as F

from course_lib.checks.llama import (
    check_document_mask,
    check_kv_bytes_per_token,
    check_repeat_kv,
    check_residual_distribution,
    check_rms_norm,
)
from course_lib.experiments.llama import (
    ARCHS,
    LR_GRID,
    REPORT_SEEDS,
    SELECT_SEEDS,
    checkpoint_path,
    chosen_lr,
    load_story_model,
    load_sweep,
    measure_cache_bytes,
    param_total,
    sweep_path,
)
from course_lib.gpt import GPT, GPTConfig
from course_lib.llama import (
    LLAMA3_8B,
    GroupedQueryAttention,
    Llama,
    LlamaConfig,
    SwiGLU,
    accept_probability,
    document_mask,
    kv_bytes_per_token,
    repeat_kv,
    residual_distribution,
    speculative_distribution,
    speculative_generate,
    target_distribution,
)
from course_lib.mamba import RMSNorm


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return Llama(
        LlamaConfig(
            **{
                "vocab_size": 30,
                "max_len": 40,
                "d_model": 32,
                "n_layers": 2,
                "n_heads": 4,
                "n_kv_heads": 2,
                "d_ff": 48,
                **kw,
            }
        )
    ).eval()


def test_rmsnorm_matches_torch():
    norm = RMSNorm(16, eps=1e-6)
    with torch.no_grad():
        norm.weight.normal_()
    x = torch.randn(3, 5, 16)
    torch.testing.assert_close(norm(x), F.rms_norm(x, (16,), norm.weight, 1e-6))


def test_swiglu_is_its_definition():
    ffn = SwiGLU(8, 12)
    x = torch.randn(2, 3, 8, dtype=torch.float64)
    ffn.double()
    w1, w3, w2 = ffn.gate_proj.weight, ffn.up_proj.weight, ffn.down_proj.weight
    want = ((x @ w1.T) * torch.sigmoid(x @ w1.T) * (x @ w3.T)) @ w2.T
    torch.testing.assert_close(ffn(x), want)


@pytest.mark.parametrize("n_kv", [4, 2, 1])
def test_gqa_matches_sdpa_enable_gqa(n_kv):
    attn = GroupedQueryAttention(32, 4, n_kv, max_len=16).eval()
    x = torch.randn(2, 7, 32)
    q = attn.q_proj(x).view(2, 7, 4, 8).transpose(1, 2)
    k = attn.k_proj(x).view(2, 7, n_kv, 8).transpose(1, 2)
    v = attn.v_proj(x).view(2, 7, n_kv, 8).transpose(1, 2)
    q, k = attn.rope(q, k)
    ref = F.scaled_dot_product_attention(q, k, v, is_causal=True, enable_gqa=True)
    with torch.no_grad():
        torch.testing.assert_close(attn(x), attn.out_proj(ref.transpose(1, 2).reshape(2, 7, 32)))


def test_repeat_kv_groups_consecutive_heads():
    x = torch.arange(2.0).view(1, 2, 1, 1)
    assert repeat_kv(x, 3).flatten().tolist() == [0, 0, 0, 1, 1, 1]


def test_cache_equals_full_forward_and_holds_nkv_heads():
    model = tiny()
    ids = torch.randint(0, 30, (2, 12), generator=torch.Generator().manual_seed(0))
    caches = model.new_caches()
    with torch.no_grad():
        parts = [
            model(ids[:, :5], caches=caches),
            model(ids[:, 5:6], caches=caches),
            model(ids[:, 6:], caches=caches),
        ]
        torch.testing.assert_close(torch.cat(parts, 1), model(ids), atol=1e-5, rtol=1e-4)
    assert caches[0].k.shape == (2, 2, 12, 8)


def test_kv_bytes_measured_equals_formula():
    for n_kv in (4, 2, 1):
        model = tiny(n_kv_heads=n_kv)
        assert measure_cache_bytes(model, 10) == kv_bytes_per_token(2, n_kv, 8, 4)
    assert kv_bytes_per_token(**{k: LLAMA3_8B[k] for k in ("n_layers", "n_kv_heads", "d_head")}) == 131072


def test_packed_documents_equal_one_by_one():
    model = tiny()
    g = torch.Generator().manual_seed(1)
    docs = [torch.randint(0, 30, (1, n), generator=g) for n in (5, 9, 3)]
    doc_ids = torch.cat([torch.full((1, d.shape[1]), i) for i, d in enumerate(docs)], 1)
    with torch.no_grad():
        packed = model(torch.cat(docs, 1), doc_ids=doc_ids)
        alone = torch.cat([model(d) for d in docs], 1)
    torch.testing.assert_close(packed, alone, atol=1e-5, rtol=1e-4)
    with torch.no_grad():  # without the mask the later documents see the earlier ones
        assert (model(torch.cat(docs, 1)) - alone).abs().max() > 1e-3


def test_document_mask_values():
    m = document_mask(torch.tensor([[0, 0, 1]]))[0, 0]
    assert m.tolist() == [[True, False, False], [True, True, False], [False, False, True]]


def test_future_does_not_leak():
    model = tiny()
    a = torch.randint(0, 30, (1, 10), generator=torch.Generator().manual_seed(2))
    b = a.clone()
    b[:, 6:] = (b[:, 6:] + 1) % 30
    with torch.no_grad():
        torch.testing.assert_close(model(a)[:, :6], model(b)[:, :6])


def test_residual_and_accept_make_the_target_distribution():
    p = torch.tensor([0.5, 0.3, 0.2], dtype=torch.float64)
    q = torch.tensor([0.2, 0.2, 0.6], dtype=torch.float64)
    accept = torch.stack([accept_probability(p, q, x) for x in range(3)])
    out = q * accept + (1 - (q * accept).sum()) * residual_distribution(p, q)
    torch.testing.assert_close(out, p)


def _prob_fn(model):
    def fn(prefix):
        return model(torch.tensor([prefix]))[0, -1].double().softmax(-1)

    return fn


def test_speculative_exact_distribution_equals_target():
    torch.manual_seed(0)
    with torch.no_grad():
        target = (
            Llama(
                LlamaConfig(vocab_size=3, max_len=16, d_model=8, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=8)
            )
            .eval()
            .double()
        )
        draft = (
            Llama(
                LlamaConfig(vocab_size=3, max_len=16, d_model=8, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=8)
            )
            .eval()
            .double()
        )
        for m in (target, draft):
            m.token_emb.weight.mul_(100)  # far from uniform, so the two models disagree
        p_fn, q_fn = _prob_fn(target), _prob_fn(draft)
        spec = speculative_distribution(p_fn, q_fn, (0,), k=2, length=3)
        want = target_distribution(p_fn, (0,), 3)
        draft_only = target_distribution(q_fn, (0,), 3)
    assert set(spec) == set(want)
    assert max(abs(spec[s] - want[s]) for s in want) < 1e-12
    assert max(abs(draft_only[s] - want[s]) for s in want) > 1e-2


def test_speculative_generate_is_the_target_when_draft_equals_target():
    model = tiny()
    ids = torch.tensor([[1, 2, 3]])
    out, stats = speculative_generate(model, model, ids, 9, k=3, generator=torch.Generator().manual_seed(0))
    assert out.shape == (1, 12) and torch.equal(out[:, :3], ids)
    assert stats["accepted"] == stats["proposed"]  # p == q: always accepted


def test_speculative_generate_rejects_bad_input():
    model = tiny()
    with pytest.raises(ValueError, match="expected ids"):
        speculative_generate(model, model, torch.zeros(2, 3, dtype=torch.long), 4)
    with pytest.raises(ValueError, match="k=0"):
        speculative_generate(model, model, torch.zeros(1, 3, dtype=torch.long), 4, k=0)


def test_config_rejects_bad_grouping():
    with pytest.raises(ValueError, match="n_kv_heads=3"):
        LlamaConfig(n_heads=4, n_kv_heads=3)


def test_story_models_have_equal_size():
    gpt = GPT(GPTConfig(**ARCHS["gpt"], vocab_size=183))
    llama = Llama(LlamaConfig(**ARCHS["llama"], vocab_size=183))
    assert abs(param_total(gpt) - param_total(llama)) / param_total(gpt) < 0.002


@pytest.mark.skipif(not checkpoint_path("llama", 0).exists(), reason="checkpoint not built")
def test_shipped_llama_checkpoint_loads_and_beats_uniform():
    for seed in (0, 1):  # uniform guessing would be ln(183) / 0.64, about 8 x the floor
        model, info = load_story_model("llama", seed)
        assert isinstance(model, Llama) and info["config"]["arch"] == "llama"
        assert info["metrics"]["ratio"] < 1.3 and "train_cpu_s" in info["metrics"]
        assert info["metrics"]["params"] == param_total(model)


def test_checkers_pass_the_reference_and_catch_a_bug():
    assert check_rms_norm(lambda x, w, eps: F.rms_norm(x, (x.shape[-1],), w, eps)).passed
    assert not check_rms_norm(lambda x, w, eps: F.layer_norm(x, (x.shape[-1],), w, None, eps))
    assert check_repeat_kv(repeat_kv).passed
    assert not check_repeat_kv(lambda x, n: x.repeat(1, n, 1, 1))
    assert check_document_mask(document_mask).passed
    assert not check_document_mask(lambda d: (d[:, :, None] == d[:, None, :])[:, None])
    assert check_residual_distribution(residual_distribution).passed
    assert not check_residual_distribution(lambda p, q: (p - q).clamp_min(0))
    assert check_kv_bytes_per_token(kv_bytes_per_token).passed
    assert not check_kv_bytes_per_token(lambda n, kv, dh, b: n * kv * dh * b)

    def todo(*args):
        raise NotImplementedError

    assert check_rms_norm(todo).status == "not implemented yet"


def test_chosen_lr_takes_the_lowest_mean_validation_loss_and_rejects_unequal_seeds():
    runs = [
        dict(arch="gpt", lr=1e-3, seed=0, val_loss=0.70),
        dict(arch="gpt", lr=1e-3, seed=1, val_loss=0.70),
        dict(arch="gpt", lr=2e-3, seed=0, val_loss=0.60),
        dict(arch="gpt", lr=2e-3, seed=1, val_loss=0.90),
        dict(arch="llama", lr=1e-3, seed=0, val_loss=0.10),
    ]
    assert chosen_lr(runs, "gpt") == 1e-3  # mean 0.70 < 0.75, though one 2e-3 seed is best
    assert chosen_lr(runs, "llama") == 1e-3
    with pytest.raises(ValueError, match="no runs of arch 'draft'"):
        chosen_lr(runs, "draft")
    with pytest.raises(ValueError, match="same seeds"):
        chosen_lr(runs[:-2], "gpt")


@pytest.mark.skipif(not sweep_path().exists(), reason="sweep not built (python tools/train_llama.py)")
def test_shipped_sweep_chose_on_validation_and_the_checkpoints_are_its_runs():
    sweep = load_sweep()
    assert sweep["grid"] == list(LR_GRID) and sweep["select_seeds"] == list(SELECT_SEEDS)
    for arch in ("gpt", "llama"):
        lr = chosen_lr(sweep["runs"], arch)
        assert sweep["chosen"][arch] == lr
        assert {(r["lr"], r["seed"]) for r in sweep["runs"] if r["arch"] == arch} == {
            (g, s) for g in LR_GRID for s in SELECT_SEEDS
        }
        for seed in REPORT_SEEDS:
            _, info = load_story_model(arch, seed)
            assert info["config"]["train"]["lr"] == lr and info["config"]["train"]["seed"] == seed
            assert "test_loss" in info["metrics"]
            if seed in SELECT_SEEDS:  # the shipped model is the sweep's run at the chosen rate
                run = next(r for r in sweep["runs"] if (r["arch"], r["lr"], r["seed"]) == (arch, lr, seed))
                assert run["val_loss"] == info["metrics"]["val_loss"]


def test_train_llama_sweeps_chooses_and_writes_every_file(tmp_path, monkeypatch):
    import importlib.util

    from pathlib import Path

    tool_file = Path(__file__).resolve().parents[1] / "tools" / "train_llama.py"
    spec = importlib.util.spec_from_file_location("train_llama", tool_file)
    tool = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "train_llama", tool)  # the worker processes find _run
    spec.loader.exec_module(tool)
    monkeypatch.setattr(tool, "LR_GRID", (1e-3, 3e-3))
    record = tool.run_all(steps=2, jobs=2, data=tmp_path)
    assert len(record["runs"]) == 2 * 2 * len(SELECT_SEEDS)
    written = sorted(p.name for p in tmp_path.iterdir())
    assert written == sorted(
        [f"llama_stories_{a}_s{s}.safetensors" for a in ("gpt", "llama") for s in REPORT_SEEDS]
        + ["llama_stories_draft_s0.safetensors", "llama_lr_sweep.json"]
    )
    for arch in ("gpt", "llama"):
        _, info = load_story_model(arch, 2, path=tmp_path / f"llama_stories_{arch}_s2.safetensors")
        assert info["config"]["train"]["lr"] == record["chosen"][arch] == chosen_lr(record["runs"], arch)
