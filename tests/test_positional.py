"""course_lib.positional: sinusoidal table and its properties, RoPE, bad input; notebook 02's
experiment (course_lib.experiments.positional)."""

import math
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from course_lib.attention import KVCache, MultiHeadAttention
from course_lib.checks.positional import (
    check_diagonal_spread,
    check_rope_angles,
    check_rotate_pairs,
    check_shift_matrix,
    check_sinusoidal_table,
    diagonal_spread,
)
from course_lib import IGNORE_INDEX
from course_lib.data.synthetic import tokens_back
from course_lib.experiments.positional import PositionTaskModel, load_position_models, tokens_back_accuracy
from course_lib.positional import (
    LearnedPositional,
    RotaryEmbedding,
    SinusoidalPositional,
    rope_angles,
    rope_half_permutation,
    rotate_half,
    rotate_pairs,
    sinusoidal_shift_matrix,
    sinusoidal_table,
)
from course_lib.training import data_dir, train
from course_lib.viz.positional import rope_explorer, rope_scores, sinusoidal_explorer


def test_sinusoidal_table_equals_the_formula_written_as_loops():
    pe = sinusoidal_table(12, 6)
    for pos in range(12):
        for i in range(3):
            angle = pos / 10000 ** (2 * i / 6)
            assert pe[pos, 2 * i].item() == pytest.approx(math.sin(angle), abs=1e-6)
            assert pe[pos, 2 * i + 1].item() == pytest.approx(math.cos(angle), abs=1e-6)


def test_shift_is_a_rotation_independent_of_pos():
    pe = sinusoidal_table(200, 32)
    for k in (1, 2, 7, 50, 150):
        m = sinusoidal_shift_matrix(k, 32)
        torch.testing.assert_close(pe[k:], pe[:-k] @ m.T, atol=2e-5, rtol=0)
        torch.testing.assert_close(m @ m.T, torch.eye(32), atol=1e-6, rtol=0)  # orthogonal
    torch.testing.assert_close(
        sinusoidal_shift_matrix(3, 8) @ sinusoidal_shift_matrix(4, 8),
        sinusoidal_shift_matrix(7, 8),
        atol=1e-6,
        rtol=0,
    )
    off_block = sinusoidal_shift_matrix(5, 8).clone()
    for i in range(0, 8, 2):
        off_block[i : i + 2, i : i + 2] = 0
    assert off_block.abs().max() == 0  # block-diagonal


def test_bounded_smooth_and_distance_only_similarity():
    pe = sinusoidal_table(100, 16).double()
    assert pe.abs().max() <= 1
    torch.testing.assert_close(pe.norm(dim=1), torch.full((100,), math.sqrt(8), dtype=torch.float64))
    steps = (pe[1:] - pe[:-1]).norm(dim=1)  # same for every pos
    torch.testing.assert_close(steps, steps[0].expand_as(steps), atol=1e-6, rtol=0)
    assert diagonal_spread(pe @ pe.T) < 1e-5  # depends on |p - q|


def test_rotate_pairs_equals_complex_multiplication():
    g = torch.Generator().manual_seed(0)
    x, angles = torch.randn(2, 5, 8, generator=g), torch.randn(5, 4, generator=g)
    z = torch.view_as_complex(x.reshape(2, 5, 4, 2).contiguous())  # x_2i + i x_2i+1
    want = torch.view_as_real(z * torch.polar(torch.ones(5, 4), angles)).reshape(2, 5, 8)
    torch.testing.assert_close(rotate_pairs(x, angles), want)
    torch.testing.assert_close(rotate_pairs(x, angles).norm(dim=-1), x.norm(dim=-1))


def test_rotate_half_is_rotate_pairs_on_permuted_features():
    g = torch.Generator().manual_seed(1)
    q, k = torch.randn(2, 3, 7, 8, generator=g), torch.randn(2, 3, 7, 8, generator=g)
    angles = rope_angles(torch.arange(7), 8).float()
    perm = rope_half_permutation(8)
    assert perm.tolist() == [0, 2, 4, 6, 1, 3, 5, 7]
    torch.testing.assert_close(rotate_half(q[..., perm], angles), rotate_pairs(q, angles)[..., perm])
    # written out for one pair: feature 1 rotates with feature 1 + 4 by the angle of pair 1
    a = angles[5, 1]
    want = torch.stack(
        [q[0, 0, 5, 1] * a.cos() - q[0, 0, 5, 5] * a.sin(), q[0, 0, 5, 1] * a.sin() + q[0, 0, 5, 5] * a.cos()]
    )
    torch.testing.assert_close(rotate_half(q, angles)[0, 0, 5, [1, 5]], want)
    # the same permutation on q and k leaves every score unchanged
    scores = rotate_pairs(q, angles) @ rotate_pairs(k, angles).transpose(-1, -2)
    torch.testing.assert_close(
        rotate_half(q[..., perm], angles) @ rotate_half(k[..., perm], angles).transpose(-1, -2), scores
    )
    assert not torch.allclose(rotate_half(q, angles), rotate_pairs(q, angles))  # not the same pairing
    with pytest.raises(ValueError, match="rotate_half: expected x"):
        rotate_half(torch.zeros(3, 6), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="even"):
        rope_half_permutation(5)


def test_rope_scores_depend_only_on_offset():
    g = torch.Generator().manual_seed(1)
    s = rope_scores(torch.randn(16, generator=g), torch.randn(16, generator=g), 40)
    assert diagonal_spread(s) < 1e-4
    assert (s - s.T).abs().max() > 0.1  # but not symmetric


def test_rope_in_attention_with_kv_cache_equals_full_pass():
    torch.manual_seed(0)
    mha, rope = MultiHeadAttention(32, 4).eval(), RotaryEmbedding(8, max_len=16)
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        full, _ = mha(x, is_causal=True, rotate=rope)
        cache = KVCache()
        steps = [mha(x[:, i : i + 1], is_causal=True, cache=cache, rotate=rope)[0] for i in range(6)]
    torch.testing.assert_close(torch.cat(steps, 1), full, atol=1e-5, rtol=1e-4)


def test_attention_without_positions_is_permutation_equivariant():
    torch.manual_seed(0)
    mha = MultiHeadAttention(16, 2).eval()
    x, perm = torch.randn(1, 7, 16), torch.randperm(7)
    with torch.no_grad():
        torch.testing.assert_close(mha(x[:, perm])[0], mha(x)[0][:, perm])
        pos = SinusoidalPositional(16, 7)
        assert (mha(pos(x[:, perm]))[0] - mha(pos(x))[0][:, perm]).abs().max() > 1e-2
        model = PositionTaskModel("none", vocab_size=8, d_model=16, n_heads=2).eval()
        tokens = torch.randint(0, 8, (1, 7))
        torch.testing.assert_close(model(tokens[:, perm])[0], model(tokens)[0][:, perm])


def test_modules_add_the_table_at_an_offset():
    x = torch.zeros(2, 3, 8)
    torch.testing.assert_close(SinusoidalPositional(8, 10)(x, offset=4)[0], sinusoidal_table(10, 8)[4:7])
    learned = LearnedPositional(8, 10)
    torch.testing.assert_close(learned(x, offset=2)[1], learned.table.weight[2:5])


def test_tokens_back_targets():
    x, y = tokens_back(4, 10, k=3, n_tokens=5, generator=torch.Generator().manual_seed(0))
    assert x.shape == y.shape == (4, 10) and x.max() < 5
    assert (y[:, :3] == IGNORE_INDEX).all() and torch.equal(y[:, 3:], x[:, :-3])


def test_rope_model_learns_tokens_back():
    torch.manual_seed(0)
    model = PositionTaskModel("rope", vocab_size=8, d_model=32, n_heads=2, max_len=16)
    g = torch.Generator().manual_seed(0)

    def loss_fn(m, x, y):
        return F.cross_entropy(m(x)[0].flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)

    train(model, lambda step: tokens_back(32, 8, 2, 8, g), loss_fn, steps=80, lr=1e-2, warmup=10)
    acc = tokens_back_accuracy(model, [8], k=2, n_tokens=8, n_seqs=200)
    assert acc["8"] > 0.9


def test_shipped_checkpoint_reproduces_its_metrics():
    if not (data_dir() / "positional_models.safetensors").exists():
        pytest.skip("data/positional_models.safetensors not built yet")
    models, meta = load_position_models()
    config, runs = meta["config"], meta["metrics"]["runs"]
    task = config["task"]
    for encoding in ("none", "rope"):
        got = tokens_back_accuracy(
            models[encoding],
            task["test_lens"][:2],
            task["k"],
            config["model"]["vocab_size"],
            train_len=task["train_len"],
        )
        for key, value in got.items():
            assert value == pytest.approx(runs[encoding][0][key], abs=2e-3)
    assert set(meta["metrics"]) == {"runs", "train_cpu_s", "train_wall_s"}
    assert config["train"]["command"] == "python tools/train_positional.py"
    with pytest.raises(ValueError, match="train_positional.py"):
        load_position_models(data_dir() / "missing.safetensors")


def test_positional_experiment_does_not_import_notebook_03():
    code = (
        "import sys, course_lib.experiments.positional; "
        "assert 'course_lib.transformer' not in sys.modules, 'imports 03'"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


@pytest.mark.parametrize(
    "make",
    [
        lambda: sinusoidal_table(10, 7),
        lambda: SinusoidalPositional(5),
        lambda: RotaryEmbedding(9),
        lambda: rope_angles(torch.arange(4), 3),
        lambda: sinusoidal_shift_matrix(2, 5),
    ],
)
def test_odd_widths_raise(make):
    with pytest.raises(ValueError, match="even"):
        make()


def test_too_long_and_bad_shapes_raise():
    with pytest.raises(ValueError, match="exceed the positional table of max_len=8"):
        SinusoidalPositional(4, 8)(torch.zeros(1, 9, 4))
    with pytest.raises(ValueError, match="exceed the positional table of max_len=8"):
        LearnedPositional(4, 8)(torch.zeros(1, 5, 4), offset=4)
    with pytest.raises(ValueError, match="exceed RoPE's max_len=8"):
        RotaryEmbedding(4, 8)(torch.zeros(1, 1, 9, 4), torch.zeros(1, 1, 9, 4))
    with pytest.raises(ValueError, match="exceed"):
        PositionTaskModel("learned", max_len=16)(torch.zeros(1, 17, dtype=torch.long))
    with pytest.raises(ValueError, match=r"d_model=4"):
        SinusoidalPositional(4, 8)(torch.zeros(1, 3, 6))
    with pytest.raises(ValueError, match="dh=8"):
        rotate_pairs(torch.zeros(3, 6), torch.zeros(3, 4))
    with pytest.raises(ValueError, match="positions of shape"):
        rope_angles(torch.zeros(2, 3), 4)
    with pytest.raises(ValueError, match="max_len"):
        LearnedPositional(4, 0)
    with pytest.raises(ValueError, match="encoding must be one of"):
        PositionTaskModel("alibi")
    with pytest.raises(ValueError, match="smaller than length"):
        tokens_back(2, 3, k=3)


@pytest.mark.parametrize(
    "make", [lambda: sinusoidal_explorer(max_len=30), lambda: rope_explorer(d_head=8, max_len=12)]
)
def test_explorers_at_extreme_values(make):
    explorer = make()
    for name, value in explorer.extreme_values():
        explorer.controls[name].value = value
        assert all(torch.isfinite(torch.as_tensor(a)).all() for a in explorer.data.values())
    if "by_offset" in explorer.data:
        assert len(explorer.data["by_offset"]) == 2 * 12 - 1


def test_sinusoidal_explorer_follows_d_model():
    explorer = sinusoidal_explorer(max_len=20)
    explorer.controls["component"].value = 63
    explorer.controls["d_model"].value = 8
    assert explorer.controls["component"].value == 7 and explorer.data["table"].shape == (20, 8)
    assert explorer.data["column"][0] == pytest.approx(1.0)  # cos(0) for 2i+1


def test_checkers_pass_reference_and_explain_wrong_answers():
    assert check_sinusoidal_table(sinusoidal_table).passed
    assert check_shift_matrix(sinusoidal_shift_matrix).passed
    assert check_rope_angles(rope_angles).passed
    assert check_rotate_pairs(rotate_pairs).passed
    assert check_diagonal_spread(diagonal_spread).passed
    swapped = check_sinusoidal_table(lambda n, d: sinusoidal_table(n, d).roll(1, -1))
    assert swapped.status == "failed" and "max abs diff" in swapped.message
    assert check_shift_matrix(lambda k, d: sinusoidal_shift_matrix(k, d).T).status == "failed"
    assert check_rotate_pairs(lambda x, a: rotate_pairs(x, -a)).status == "failed"

    def todo(*_):
        raise NotImplementedError

    assert check_rope_angles(todo).status == "not implemented yet"
