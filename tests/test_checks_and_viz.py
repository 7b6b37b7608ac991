"""Exercise checkers never raise and say what differs; explorers redraw with finite data."""

import numpy as np
import pytest
import torch

from course_lib.attention import attention_naive, causal_mask, padding_mask
from course_lib.checks import describe_difference, run_check
from course_lib.checks.attention import (
    check_causal_mask,
    check_padding_mask,
    check_single_head_attention,
    check_split_heads,
)
from course_lib.viz import plot_attention, plot_heads
from course_lib.viz.attention import (
    attention_scores_explorer,
    attention_weights_explorer,
    softmax_with_temperature,
)
from course_lib.viz.bertviz import prepare_attention


def test_checkers_pass_the_reference_solutions():
    assert check_causal_mask(lambda t: torch.ones(t, t, dtype=torch.bool).tril()).passed
    assert check_single_head_attention(lambda q, k, v: attention_naive(q, k, v)[0]).passed
    assert check_split_heads(lambda x, h: x.view(x.shape[0], x.shape[1], h, -1).transpose(1, 2)).passed
    assert check_padding_mask(padding_mask).passed


def test_checkers_report_what_differs_without_raising():
    r = check_causal_mask(lambda t: torch.ones(t, t, dtype=torch.bool).triu())
    assert r.status == "failed" and "entries differ" in r.message and "index (0, 1)" in r.message
    r = check_single_head_attention(lambda q, k, v: (q @ k.transpose(-2, -1)).softmax(-1) @ v)
    assert r.status == "failed" and "max abs diff" in r.message
    r = check_split_heads(lambda x, h: x.view(x.shape[0], h, x.shape[1], -1))
    assert r.status == "failed"
    r = check_causal_mask(lambda t: 1 / 0)
    assert r.status == "failed" and "ZeroDivisionError" in r.message


def test_checker_not_implemented_and_none():
    def todo(t):
        raise NotImplementedError

    assert check_causal_mask(todo).status == "not implemented yet"
    assert check_causal_mask(lambda t: None).status == "not implemented yet"
    assert "⏳" in repr(check_causal_mask(todo))
    assert run_check("x", 5, abs, [(1,)]).status == "failed"


def test_describe_difference():
    assert describe_difference(torch.ones(2), torch.ones(2)) is None
    assert "shape (3,)" in describe_difference(torch.ones(3), torch.ones(2))
    assert "NaN" in describe_difference(torch.tensor([float("nan")]), torch.ones(1))
    assert "expected 3" in describe_difference(4, 3)


def test_attention_scores_explorer_extremes_are_finite():
    g = torch.Generator().manual_seed(0)
    examples = {
        "a": {
            "q": torch.randn(2, 5, 8, generator=g) * 10,
            "k": torch.randn(2, 5, 8, generator=g) * 10,
            "mask": causal_mask(5),
        },
        "b": {
            "q": torch.randn(2, 3, 8, generator=g),
            "k": torch.randn(2, 4, 8, generator=g),
            "x_labels": list("wxyz"),
            "y_labels": list("abc"),
        },
    }
    ex = attention_scores_explorer(examples)
    draws = ex.draws
    for name, value in ex.extreme_values():
        ex.controls[name].value = value
        assert np.isfinite(ex.data["weights"]).all()
        np.testing.assert_allclose(ex.data["weights"].sum(-1), 1.0, rtol=1e-5)
    assert ex.draws > draws
    ex.controls["example"].value = "a"
    assert ex.data["weights"].shape == (5, 5) and np.triu(ex.data["weights"], 1).max() == 0


def test_attention_weights_explorer_and_errors():
    w = torch.rand(2, 3, 4, 4).softmax(-1)
    ex = attention_weights_explorer({"s": {"weights": w}})
    ex.controls["layer"].value, ex.controls["head"].value = 1, 2
    np.testing.assert_allclose(ex.data["weights"], w[1, 2].numpy())
    with pytest.raises(ValueError, match="layers, nh, t, s"):
        attention_weights_explorer({"s": {"weights": w[0]}})
    with pytest.raises(ValueError, match="at least one example"):
        attention_scores_explorer({})
    with pytest.raises(ValueError, match="temperature must be > 0"):
        softmax_with_temperature(torch.randn(2, 4), torch.randn(2, 4), temperature=0)


def test_plots_and_bertviz_preparation():
    import matplotlib.pyplot as plt

    fig = plot_heads(torch.rand(3, 4, 5), list("abcde"), list("wxyz"))
    assert len(fig.axes) >= 3
    plt.close("all")
    with pytest.raises(ValueError, match=r"expected 5 labels, received 2"):
        plot_attention(torch.rand(4, 5), ["a", "b"])
    with pytest.raises(ValueError, match=r"\(h, t, s\)"):
        plot_heads(torch.rand(4, 5))
    prepared = prepare_attention(torch.rand(2, 3, 4, 4), list("abcd"))
    assert len(prepared) == 2 and prepared[0].shape == (1, 3, 4, 4)
    assert prepared[0].dtype == torch.float64
    assert all(len(repr(x)) <= 6 for x in prepared[0].flatten().tolist())
    with pytest.raises(ValueError, match="4 positions but 3 tokens"):
        prepare_attention(torch.rand(1, 2, 4, 4), list("abc"))


def test_describe_difference_sees_infinities():
    want = torch.tensor([1.0, float("-inf")])
    assert "index (1,)" in describe_difference(torch.tensor([1.0, 0.0]), want)
    assert describe_difference(want.clone(), want) is None
