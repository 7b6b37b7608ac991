"""course_lib.training: the loop learns, checkpoints round-trip through safetensors."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import IGNORE_INDEX, check_shapes, right_pad, setup
from course_lib.data.synthetic import associative_recall, induction_heads, selective_copying
from course_lib.training import (
    accuracy,
    checkpoint_meta,
    load_checkpoint,
    load_model,
    lr_schedule,
    save_checkpoint,
    train,
)


def test_setup_is_reproducible():
    setup(seed=3, verbose=False)
    a = torch.randn(4)
    setup(seed=3, verbose=False)
    torch.testing.assert_close(torch.randn(4), a)
    assert torch.get_num_threads() == 1


def test_train_learns_a_linear_map():
    setup(seed=0, verbose=False)
    w_true = torch.randn(4, 2)
    model = nn.Linear(4, 2, bias=False)
    g = torch.Generator().manual_seed(0)

    def batch(step):
        x = torch.randn(32, 4, generator=g)
        return x, x @ w_true

    result = train(
        model,
        batch,
        lambda m, x, y: F.mse_loss(m(x), y),
        steps=300,
        lr=0.05,
        warmup=10,
        progress=False,
        eval_fn=lambda: 1.0,
        eval_every=100,
    )
    assert result.final_loss < 1e-3
    assert [s for s, _ in result.evals] == [100, 200, 300]
    torch.testing.assert_close(model.weight.T, w_true, atol=0.02, rtol=0.02)


def test_lr_schedule_warmup_then_cosine():
    assert lr_schedule(0, 100, warmup=10) == pytest.approx(0.1)
    assert lr_schedule(9, 100, warmup=10) == pytest.approx(1.0)
    assert lr_schedule(100, 100, warmup=10) == pytest.approx(0.1)


def test_checkpoint_roundtrip_and_mismatch(tmp_path):
    model = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    path = save_checkpoint(model, tmp_path / "m.safetensors", {"d": 4}, {"acc": 0.9})
    other = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    meta = load_checkpoint(other, path)
    assert meta == {"config": {"d": 4}, "metrics": {"acc": 0.9}}
    for a, b in zip(model.parameters(), other.parameters()):
        torch.testing.assert_close(a, b)
    with open(path, "rb") as f:
        assert not f.read(2).startswith(b"\x80")  # not a pickle
    with pytest.raises(ValueError, match=r"0.bias expected shape \(5,\), received \(4,\)"):
        load_checkpoint(nn.Sequential(nn.Linear(3, 5), nn.ReLU(), nn.Linear(5, 2)), path)
    with pytest.raises(ValueError, match="missing"):
        load_checkpoint(nn.Sequential(nn.Linear(3, 4)), path)
    with pytest.raises(ValueError, match="not found"):
        load_checkpoint(model, tmp_path / "nope.safetensors")


def test_accuracy():
    logits = torch.tensor([[[0.0, 1.0], [1.0, 0.0], [0.0, 1.0]]])
    targets = torch.tensor([[1, 1, -100]])
    assert accuracy(logits, targets) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="same leading shape"):
        accuracy(logits, targets[:, :2])


def test_load_model_builds_from_the_stored_config(tmp_path):
    torch.manual_seed(0)
    model = nn.Linear(3, 5)
    path = save_checkpoint(
        model, tmp_path / "m.safetensors", {"model": {"d_in": 3, "d_out": 5}}, {"acc": 0.9}
    )
    assert checkpoint_meta(path) == {"config": {"model": {"d_in": 3, "d_out": 5}}, "metrics": {"acc": 0.9}}
    loaded, meta = load_model(path, lambda c: nn.Linear(c["model"]["d_in"], c["model"]["d_out"]))
    assert not loaded.training and meta["metrics"] == {"acc": 0.9}
    torch.testing.assert_close(loaded.weight, model.weight, rtol=0, atol=0)
    with pytest.raises(
        ValueError,
        match=r"checkpoint not found: .*nope.safetensors \(rebuild it: "
        r"python tools/x.py\)",
    ):
        load_model(tmp_path / "nope.safetensors", nn.Linear, rebuild="python tools/x.py")
    with pytest.raises(ValueError, match=r"bias expected shape \(4,\), received \(5,\)"):
        load_model(path, lambda c: nn.Linear(3, 4))


def test_synthetic_tasks_are_well_formed():
    x, y = associative_recall(50, 4, 8, 8, seed=0)
    keys, values = x[:, 0:8:2], x[:, 1:8:2]
    for i in range(50):
        pos = (keys[i] == x[i, -1]).nonzero()
        assert len(pos) == 1 and values[i, pos[0, 0]] == y[i, -1]
    x, y = selective_copying(20, 16, 4, seed=0)
    body = x[:, :16]
    for i in range(20):
        torch.testing.assert_close(body[i][body[i] < 8], y[i, -4:])
    x, y = induction_heads(20, 12, seed=0)
    for i in range(20):
        pos = (x[i, :-1] == 16).nonzero()[0, 0]
        assert x[i, pos + 1] == y[i, -1]
    assert torch.equal(associative_recall(4, 3, seed=7)[0], associative_recall(4, 3, seed=7)[0])


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: associative_recall(4, 10, n_keys=8), r"n_pairs \(10\) must be <= n_keys \(8\)"),
        (lambda: selective_copying(4, 5, 6), r"n_data \(6\) must be <= length \(5\)"),
        (lambda: induction_heads(4, 2), r"length must be >= 4"),
        (lambda: induction_heads(0, 8), r"batch must be a positive int"),
        (lambda: check_shapes([(torch.zeros(2, 3), ("b", 4), "x")]), r"x: expected shape \(b, 4\)"),
        (lambda: train(nn.Linear(1, 1), None, None, steps=0), r"steps must be >= 1"),
        (lambda: setup(threads=0, verbose=False), r"threads must be >= 1"),
    ],
)
def test_bad_input(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_checkpoint_with_tied_weights(tmp_path):
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.embed = nn.Embedding(5, 3)
            self.out = nn.Linear(3, 5, bias=False)
            self.out.weight = self.embed.weight

    a, b = Tied(), Tied()
    load_checkpoint(b, save_checkpoint(a, tmp_path / "tied.safetensors"))
    torch.testing.assert_close(b.out.weight, a.embed.weight)
    assert b.out.weight.data_ptr() == b.embed.weight.data_ptr()


def test_right_pad_pads_every_row_to_the_longest():
    out = right_pad([[1, 2, 3], [4]], IGNORE_INDEX)
    assert out.dtype == torch.long
    assert out.tolist() == [[1, 2, 3], [4, -100, -100]]
    assert right_pad([[5]], 0, length=3).tolist() == [[5, 0, 0]]


def test_best_on_validation_takes_the_best_mean_and_refuses_unequal_seed_counts():
    from course_lib.training import best_on_validation

    scores = {1e-3: [0.70, 0.70], 3e-3: [0.60, 0.90], 1e-2: [0.80, 0.80]}
    assert best_on_validation(scores) == 1e-3  # mean 0.70, though 3e-3 holds the best single run
    assert best_on_validation(scores, lower_is_better=False) == 1e-2
    assert best_on_validation({2e-3: [0.5], 1e-3: [0.5]}) == 1e-3  # a tie: the smaller setting
    with pytest.raises(ValueError, match="same"):
        best_on_validation({1e-3: [0.7, 0.7], 3e-3: [0.6]})
    with pytest.raises(ValueError, match="at least one setting"):
        best_on_validation({})


def test_paired_times_alternate_the_two_functions_and_median_takes_the_middle():
    from course_lib.timing import median, paired_times

    calls = []
    a_times, b_times = paired_times(lambda: calls.append("a"), lambda: calls.append("b"), 3, warmup=1)
    assert calls == ["a", "b"] * 4 and len(a_times) == len(b_times) == 3
    assert all(t >= 0 for t in a_times + b_times)
    assert median([3.0, 1.0, 2.0]) == 2.0 and median([4.0, 1.0]) == 4.0
    with pytest.raises(ValueError, match="median of no values"):
        median([])
    with pytest.raises(ValueError, match="repeats >= 0"):
        paired_times(lambda: None, lambda: None, -1)
