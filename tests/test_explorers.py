"""Every explorer widget of the course, driven headlessly through its extreme control values.

Explorers are found, not listed: every function named ``*_explorer`` in a ``course_lib.viz.*``
module. Factories whose arguments all have defaults are built as they are; the others get small
inputs from BUILDERS below (keyed "module.function"). Each explorer is then set to every extreme
value of every control (``Explorer.extreme_values()``: slider ends, every dropdown option, both
checkbox states), then to all minima and all maxima at once. After each change the figure is
drawn off-screen (the observers call ``redraw``), and every array in ``explorer.data`` must be
finite. A new explorer whose factory needs inputs and has no builder is reported as skipped
with the line to add.
"""

from __future__ import annotations

import importlib
import inspect
import pkgutil

import matplotlib
import numpy as np
import pytest
import torch

matplotlib.use("Agg")


def _attention_scores():
    g = torch.Generator().manual_seed(0)
    q, k = torch.randn(2, 5, 8, generator=g), torch.randn(2, 6, 8, generator=g)
    labels = list("abcdef")
    return {
        "plain": {"q": q, "k": k, "x_labels": labels, "y_labels": labels[:5]},
        "masked": {
            "q": q * 10,
            "k": k * 10,
            "x_labels": labels,
            "y_labels": labels[:5],
            "mask": torch.ones(5, 6, dtype=torch.bool).tril(),
        },
    }


def _attention_weights():
    w = torch.rand(2, 3, 4, 4, generator=torch.Generator().manual_seed(0)).softmax(-1)
    return {
        "one": {"weights": w, "x_labels": list("abcd"), "y_labels": list("abcd")},
        "peaked": {"weights": (w * 50).softmax(-1)},
    }


def _bert_args():
    from course_lib.bert import Bert, BertConfig
    from course_lib.data.stories import generate_stories
    from course_lib.data.tokenizer import build_tokenizer

    stories, tok = generate_stories(40, seed=7), build_tokenizer()
    torch.manual_seed(0)
    bert = Bert(
        BertConfig(vocab_size=tok.vocab_size, d_model=16, n_heads=2, n_layers=1, d_ff=32, max_len=96)
    ).eval()
    words = tuple(w for w in ("bank", "bat", "bark") if any(x[2] == w for s in stories for x in s.senses))
    return (bert, stories, tok), {"words": words}


def _gpt_args():
    from course_lib.data.tokenizer import build_tokenizer
    from course_lib.gpt import GPT, GPTConfig

    tok = build_tokenizer()
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, max_len=32, d_model=16, n_layers=1, n_heads=2)).eval()
    return (model, tok, ["one day tom and mia"]), {"n_new": 3}


def _decoding_args():
    from course_lib.data.translation import TranslationData, translate
    from course_lib.transformer import Transformer, TransformerConfig

    data = TranslationData()
    torch.manual_seed(0)
    model = Transformer(
        TransformerConfig(
            data.source.vocab_size, data.target.vocab_size, d_model=16, n_heads=2, d_ff=16, max_len=16
        )
    ).eval()
    sentences = ["the red fox sees a bird"]
    return (model, data, sentences), {"golds": [translate(s).alignment for s in sentences]}


def _selection():
    deltas = torch.rand(2, 6, 4, generator=torch.Generator().manual_seed(0)) + 1e-3
    return {
        "small": {"tokens": list("abcdef"), "deltas": deltas},
        "tiny steps": {"tokens": list("ghijkl"), "deltas": deltas * 1e-6, "highlight": [True, False] * 3},
    }


# "module.function" -> () -> (args, kwargs): small inputs for factories that need them.
def _neighbours_args():
    vectors = torch.randn(6, 4, generator=torch.Generator().manual_seed(0))
    return (vectors, list("abcdef"), ["a", "c", "f"]), {"allowed": torch.tensor([1, 1, 1, 0, 1, 1]).bool()}


def _alignment():
    w = torch.rand(4, 5, generator=torch.Generator().manual_seed(0)).softmax(-1)
    return {
        "one": {
            "weights": w,
            "x_labels": list("abcde"),
            "y_labels": list("wxyz"),
            "gold": torch.tensor([0, 2, 1, -1]),
        },
        "peaked": {
            "weights": (w * 50).softmax(-1),
            "x_labels": list("abcde"),
            "y_labels": list("wxyz"),
            "gold": torch.tensor([4, 3, 2, 1]),
        },
    }


BUILDERS = {
    "attention.attention_scores_explorer": lambda: ((_attention_scores(),), {}),
    "attention.attention_weights_explorer": lambda: ((_attention_weights(),), {}),
    "bert.contextual_similarity_explorer": _bert_args,
    "gpt.sampling_explorer": _gpt_args,
    "transformer.decoding_explorer": _decoding_args,
    "mamba.selection_explorer": lambda: ((_selection(),), {}),
    "word_vectors.neighbours_explorer": _neighbours_args,
    "rnn.alignment_explorer": lambda: ((_alignment(),), {}),
}


def find_factories() -> list[tuple[str, object]]:
    """("module.function", function) for every *_explorer defined in a course_lib.viz module."""
    import course_lib.viz as viz

    found = []
    for info in sorted(pkgutil.iter_modules(viz.__path__), key=lambda i: i.name):
        try:
            module = importlib.import_module(f"course_lib.viz.{info.name}")
        except ImportError as exc:  # an optional dependency missing: say so, test the rest
            found.append((f"{info.name}.<import>", exc))
            continue
        for name, fn in inspect.getmembers(module, inspect.isfunction):
            if name.endswith("_explorer") and fn.__module__ == module.__name__:
                found.append((f"{info.name}.{name}", fn))
    return found


FACTORIES = find_factories()


def build(key: str, factory):
    if key in BUILDERS:
        args, kwargs = BUILDERS[key]()
        return factory(*args, **kwargs)
    needed = [
        p.name
        for p in inspect.signature(factory).parameters.values()
        if p.default is inspect.Parameter.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]
    if needed:
        pytest.skip(f"{key} needs {needed}: add a builder for it to BUILDERS in tests/test_explorers.py")
    return factory()


def assert_finite(explorer, where: str) -> None:
    assert explorer.data, f"{where}: compute() returned no data"
    for name, array in explorer.data.items():
        array = np.asarray(array, dtype=float)
        bad = ~np.isfinite(array)
        assert not bad.any(), (
            f"{where}: data[{name!r}] has {int(bad.sum())} non-finite values "
            f"of {array.size} (shape {array.shape})"
        )


def test_explorers_are_found():
    keys = [k for k, _ in FACTORIES]
    assert "attention.attention_scores_explorer" in keys, keys
    failed = [f"{k}: {f}" for k, f in FACTORIES if k.endswith(".<import>")]
    assert not failed, f"course_lib.viz modules that do not import: {failed}"


@pytest.mark.parametrize(
    "key,factory",
    [f for f in FACTORIES if not f[0].endswith("<import>")],
    ids=[k for k, _ in FACTORIES if not k.endswith("<import>")],
)
def test_explorer_extremes_draw_finite_data(key, factory):
    import matplotlib.pyplot as plt

    from course_lib.viz import Explorer

    plt.close("all")  # figures other tests left open
    explorer = build(key, factory)
    assert isinstance(explorer, Explorer), f"{key} returned {type(explorer).__name__}"
    assert_finite(explorer, f"{key} at its initial values")
    pairs = explorer.extreme_values()
    assert pairs, f"{key}: no control has extreme values to explore"
    draws = explorer.draws
    for name, value in pairs:
        explorer.controls[name].value = value
        assert_finite(explorer, f"{key} with {name}={value!r}")
    for pick in (0, -1):  # every control at its first, then its last extreme, all at once
        for name in explorer.controls:
            values = [v for n, v in pairs if n == name]
            if values:
                explorer.controls[name].value = values[pick]
        assert_finite(explorer, f"{key} with {explorer.values}")
    assert explorer.draws > draws, f"{key}: changing controls did not redraw"
    assert not plt.get_fignums(), f"{key}: figures left open after redraws"
