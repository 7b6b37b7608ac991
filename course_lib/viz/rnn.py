"""Figures and the explorer of notebook 00's RNN encoder-decoders."""
from __future__ import annotations

import torch

from course_lib.rnn import greedy_decode
from course_lib.viz import Explorer, plot_attention

__all__ = ["plot_accuracy_by_length", "plot_alignment", "alignment_explorer", "alignment_examples"]


def plot_accuracy_by_length(curves: dict[str, dict[int, list[float]]], ax=None):
    """Exact match against source length: curves[name][length] = one accuracy per seed
    (the line is the mean, the dots each seed)."""
    import matplotlib.pyplot as plt

    if not curves:
        raise ValueError("plot_accuracy_by_length: expected at least one curve, received none")
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3.2))
    for (name, by_length), marker in zip(curves.items(), "osd^v"):
        lengths = sorted(by_length)
        means = [sum(by_length[n]) / len(by_length[n]) for n in lengths]
        line, = ax.plot(lengths, means, marker + "-", label=name)
        for n in lengths:
            ax.plot([n] * len(by_length[n]), by_length[n], ".", color=line.get_color(), alpha=0.5)
    ax.set_xlabel("source sentence length (words)")
    ax.set_ylabel("exact match")
    ax.set_ylim(-0.03, 1.03)
    ax.legend(fontsize=8)
    return ax


def plot_alignment(example: dict, ax=None, gold: bool = True):
    """One decoder's attention map (t written words, s source words) with the gold alignment
    as red crosses; the title counts the rows whose largest weight is on the gold word."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5.5, 4.5))
    w, target = example["weights"], example["gold"]
    hits = int((w.argmax(-1) == target).sum())
    plot_attention(w, example["x_labels"], example["y_labels"], ax=ax,
                   title=f"largest weight on the gold word: {hits} of {int((target >= 0).sum())} rows")
    if gold:
        rows = [i for i, j in enumerate(target.tolist()) if j >= 0]
        ax.plot([int(target[i]) for i in rows], rows, "rx", markersize=8)
    ax.set_xlabel("source word (English)")
    ax.set_ylabel("written word (Kalo)")
    return ax


def alignment_explorer(examples: dict[str, dict]) -> Explorer:
    """Pick a sentence: the decoder's attention over the source words (one row per written
    word), optionally with the gold alignment marked. examples[name] = {"weights": (t, s),
    "x_labels": s source words, "y_labels": t written words, "gold": (t,) source index or -1}."""
    import ipywidgets as widgets

    if not examples or any(ex["weights"].dim() != 2 for ex in examples.values()):
        raise ValueError("alignment_explorer: expected examples with weights of shape (t, s), "
                         f"received {[tuple(ex['weights'].shape) for ex in examples.values()]}")
    controls = {"sentence": widgets.Dropdown(options=list(examples), description="sentence"),
                "gold": widgets.Checkbox(True, description="mark the gold alignment")}

    def compute(sentence, gold):
        ex = examples[sentence]
        w = ex["weights"]
        hits = (w.argmax(-1) == ex["gold"]).float()                          # (t,)
        return {"weights": w, "hits": hits}

    def draw(fig, data, sentence, gold):
        plot_alignment(examples[sentence], ax=fig.add_subplot(1, 1, 1), gold=gold)
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(5.5, 4.5))


def alignment_examples(model, data, pairs) -> dict[str, dict]:
    """Greedy translations of ``pairs`` with the attention of each written word, for the explorer."""
    src = data.encode_source([p.source for p in pairs])
    tokens, weights = greedy_decode(model, src)
    examples = {}
    for b, pair in enumerate(pairs):
        words = pair.source.split()
        written = data.target.tokens([i for i in tokens[b].tolist() if i != data.pad_id])
        gold = list(pair.alignment) + [-1] * max(0, len(written) - len(pair.alignment))
        t = len(written)
        examples[pair.source] = {"weights": weights[b, :t, :len(words)], "x_labels": words,
                                 "y_labels": written, "gold": torch.tensor(gold[:t])}
    return examples
