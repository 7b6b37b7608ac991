"""Hybrid Mamba/attention models (notebook 09) and the multi-query recall experiment."""

from __future__ import annotations

import pytest
import torch

from course_lib import IGNORE_INDEX
from course_lib.data.synthetic import multi_query_recall
from course_lib.experiments.hybrid import (
    ARCHS,
    accuracy_by_pair,
    build_model,
    load_model,
    param_count,
    recall_accuracy,
    width_for,
)
from course_lib.hybrid import HybridConfig, HybridLM
from course_lib.mamba import MambaConfig, MambaLM
from course_lib.training import data_dir


def test_pure_mamba_pattern_is_07s_mamba_lm():
    torch.manual_seed(0)
    hybrid = HybridLM(HybridConfig(12, "mm", d_model=16, d_state=4))
    mamba = MambaLM(MambaConfig(12, d_model=16, n_layers=2, d_state=4))
    mamba.load_state_dict(hybrid.state_dict())  # the same names, one to one
    tokens = torch.randint(0, 12, (2, 9))
    torch.testing.assert_close(hybrid(tokens), mamba(tokens))


@pytest.mark.parametrize("pattern", ["ma", "aa", "mam", "a"])
def test_hybrid_is_causal_and_returns_attention_maps(pattern):
    torch.manual_seed(1)
    model = HybridLM(HybridConfig(10, pattern, d_model=16, n_heads=2)).eval()
    x = torch.randint(0, 10, (2, 12))
    y = x.clone()
    y[:, 7:] = (y[:, 7:] + 1) % 10
    torch.testing.assert_close(model(x)[:, :7], model(y)[:, :7])
    assert not torch.allclose(model(x)[:, 7:], model(y)[:, 7:])
    logits, weights = model(x, need_weights=True)
    torch.testing.assert_close(logits, model(x))
    assert sorted(weights) == [i for i, kind in enumerate(pattern) if kind == "a"]
    for w in weights.values():
        assert w.shape == (2, 2, 12, 12)
        torch.testing.assert_close(w.sum(-1), torch.ones(2, 2, 12))
        assert (w.triu(1) == 0).all()


def test_tied_read_out_and_layer_params():
    model = HybridLM(HybridConfig(20, "ma", d_model=16, n_heads=2))
    assert not any(name.startswith("head") for name, _ in model.named_parameters())
    kinds = [kind for kind, _ in model.layer_params()]
    assert kinds == ["Mamba", "attention"]
    total = sum(n for _, n in model.layer_params()) + 20 * 16 + 16  # + token_emb + norm_f
    assert total == param_count(model)
    assert model.layer_params()[1][1] == 4 * 16 * 16 + 4 * 16 + 16  # qkv + out (+ biases), norm


@pytest.mark.parametrize("arch", ["attention", "hybrid"])
def test_width_for_matches_the_mamba_budget_within_5_percent(arch):
    budget = param_count(HybridLM(HybridConfig(32, "mm", d_model=26)))
    d = width_for(ARCHS[arch], budget, 32)
    n = param_count(HybridLM(HybridConfig(32, ARCHS[arch], d_model=d)))
    assert abs(n / budget - 1) < 0.05


def test_multi_query_recall_targets_are_the_queried_values():
    x, y = multi_query_recall(50, n_pairs=6, n_queries=4, n_keys=10, n_values=7, seed=3)
    assert x.shape == y.shape == (50, 20)
    for row_x, row_y in zip(x, y):
        pairs = dict(zip(row_x[:12:2].tolist(), row_x[1:12:2].tolist()))
        assert len(pairs) == 6 and all(k < 10 and 10 <= v < 17 for k, v in pairs.items())
        queries = row_x[12::2].tolist()
        assert len(set(queries)) == 4
        assert row_y[12::2].tolist() == [pairs[q] for q in queries]
        assert row_x[13::2].tolist() == [pairs[q] for q in queries]  # answer follows
        assert (row_y[:12] == IGNORE_INDEX).all() and (row_y[13::2] == IGNORE_INDEX).all()


def test_metrics_on_a_perfect_and_a_constant_model():
    x, y = multi_query_recall(40, n_pairs=4, n_queries=3, n_keys=8, n_values=8, seed=4)

    class Oracle(torch.nn.Module):
        def forward(self, tokens):
            logits = torch.zeros(*tokens.shape, 16)
            shifted = torch.cat([tokens[:, 1:], tokens[:, :1]], 1)  # the next token
            return logits.scatter(-1, shifted[..., None], 1.0)

    class Constant(torch.nn.Module):
        def forward(self, tokens):
            return torch.zeros(*tokens.shape, 16).index_fill(-1, torch.tensor([8]), 1.0)

    assert recall_accuracy(Oracle(), x, y) == 1.0
    torch.testing.assert_close(accuracy_by_pair(Oracle(), x, y, 4), torch.ones(4))
    want = ((y == 8).sum() / (y != IGNORE_INDEX).sum()).item()
    assert recall_accuracy(Constant(), x, y) == pytest.approx(want)


def test_a_hybrid_learns_recall_beyond_chance(one_thread):
    torch.manual_seed(0)
    model = HybridLM(HybridConfig(8, "ma", d_model=16, n_heads=2))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-2)
    g = torch.Generator().manual_seed(0)
    for _ in range(100):  # 0.86 after 100 steps
        x, y = multi_query_recall(32, 2, 2, n_keys=4, n_values=4, generator=g)
        loss = torch.nn.functional.cross_entropy(
            model(x).flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX
        )
        opt.zero_grad()
        loss.backward()
        opt.step()
    x, y = multi_query_recall(300, 2, 2, n_keys=4, n_values=4, seed=1)
    assert recall_accuracy(model.eval(), x, y) > 0.6  # chance: 0.25


@pytest.mark.parametrize("arch", list(ARCHS))
def test_shipped_checkpoints_reproduce_their_test_accuracy(arch):
    path = data_dir() / f"hybrid_{arch}.safetensors"
    model, meta = load_model(path)
    task = {k: v for k, v in meta["config"]["task"].items() if k != "name"}
    assert meta["config"]["model"]["pattern"] == ARCHS[arch]
    assert {"train_cpu_s", "train_wall_s"} <= set(meta["metrics"])
    x, y = multi_query_recall(1000, seed=8642, **task)  # the test sequences
    assert recall_accuracy(model, x, y) == pytest.approx(
        meta["metrics"]["test_accuracy_by_seed"]["0"], abs=1e-4
    )
    assert build_model(meta["config"]).config == model.config


@pytest.mark.parametrize("arch", list(ARCHS))
def test_shipped_learning_rate_was_chosen_on_validation(arch):
    from course_lib.training import best_on_validation

    _, meta = load_model(data_dir() / f"hybrid_{arch}.safetensors")
    metrics, lr = meta["metrics"], meta["config"]["train"]["lr"]
    sweep = metrics["lr_sweep"]
    assert [float(r) for r in sweep] == meta["config"]["train"]["lr_grid"]
    scores = {float(r): list(v["validation_by_seed"].values()) for r, v in sweep.items()}
    assert best_on_validation(scores, lower_is_better=False) == lr == metrics["chosen_lr"]
    assert sweep[f"{lr:g}"]["validation_by_seed"] == metrics["validation_by_seed"]
    assert sweep[f"{lr:g}"]["best_step_by_seed"] == metrics["best_step_by_seed"]


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(pattern="mx"), r"string of 'm' \(Mamba\) and 'a' \(attention\), got 'mx'"),
        (dict(pattern=""), r"non-empty string"),
        (dict(pattern="a", d_model=12, n_heads=4), r"heads of even width.*d_model=12, n_heads=4"),
    ],
)
def test_bad_configs(kwargs, match):
    with pytest.raises(ValueError, match=match):
        HybridConfig(10, **kwargs)


def test_bad_inputs_of_the_model_and_helpers():
    model = HybridLM(HybridConfig(10, "ma", d_model=16, n_heads=2, max_len=8))
    with pytest.raises(ValueError, match=r"\[0, 10\).*max 12"):
        model(torch.tensor([[1, 12]]))
    with pytest.raises(ValueError, match=r"9 tokens exceeds max_len=8"):
        model(torch.zeros(1, 9, dtype=torch.long))
    with pytest.raises(ValueError, match=r"no width in .* fits pattern 'a'"):
        width_for("a", 1000, 10, n_heads=3, widths=[4, 5])
    with pytest.raises(ValueError, match=r"n_queries \(5\) <= n_pairs \(4\)"):
        multi_query_recall(2, 4, 5)


def test_train_hybrid_fit_keeps_the_best_weights_and_records_a_divergence(monkeypatch):
    import importlib.util
    from pathlib import Path

    spec = importlib.util.spec_from_file_location(
        "train_hybrid", Path(__file__).resolve().parents[1] / "tools" / "train_hybrid.py"
    )
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    monkeypatch.setitem(tool.TRAIN, "steps", 10)
    monkeypatch.setitem(tool.TRAIN, "eval_every", 5)
    monkeypatch.setitem(tool.TRAIN, "warmup", 0)
    val = multi_query_recall(50, seed=1, **tool.TASK)
    _, info = tool.fit("mamba", 8, 0, val, lr=3e-3)
    assert info["diverged"] is None and info["best_step"] in (5, 10) and info["val"] > 0
    torch.manual_seed(0)
    initial = build_model(tool.model_config("mamba", 8)).state_dict()
    model, info = tool.fit("mamba", 8, 0, val, lr=1.0)  # Δ underflows to 0 within 5 steps
    assert info["diverged"].startswith("after step 0: selective_scan: delta must be > 0")
    assert info["val"] == 0.0 and info["best_step"] == 0 and info["final_loss"] is None
    for name, tensor in model.state_dict().items():  # nothing better was seen: the initial weights
        torch.testing.assert_close(tensor, initial[name])
