"""Figures and the explorer of notebook 00's word vectors."""
from __future__ import annotations

from collections.abc import Sequence

import torch

from course_lib.viz import Explorer, to_numpy
from course_lib.word_vectors import cosine_similarity_matrix, nearest_neighbours

__all__ = ["plot_similarity", "neighbours_explorer"]


def plot_similarity(vectors: torch.Tensor, labels: Sequence[str], ax=None, title: str | None = None):
    """Heatmap of the cosine similarity of every pair of rows of ``vectors`` (n, d)."""
    import matplotlib.pyplot as plt

    if len(labels) != len(vectors):
        raise ValueError(f"plot_similarity: expected {len(vectors)} labels, received {len(labels)}")
    sims = to_numpy(cosine_similarity_matrix(vectors))
    if ax is None:
        _, ax = plt.subplots(figsize=(0.3 * len(labels) + 2, 0.3 * len(labels) + 1.5))
    im = ax.imshow(sims, cmap="RdBu_r", vmin=-1, vmax=1)
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, rotation=90, fontsize=7)
    ax.set_yticks(range(len(labels)))
    ax.set_yticklabels(labels, fontsize=7)
    if title:
        ax.set_title(title, fontsize=10)
    return im


def neighbours_explorer(vectors: torch.Tensor, id_to_token: Sequence[str], words: Sequence[str],
                        allowed: torch.Tensor | None = None) -> Explorer:
    """Pick a word and k: bars of its k nearest neighbours by cosine similarity."""
    import ipywidgets as widgets

    index = {w: i for i, w in enumerate(id_to_token)}
    missing = [w for w in words if w not in index]
    if not words or missing:
        raise ValueError(f"neighbours_explorer: expected words of the vocabulary, received "
                         f"{list(words)[:5] if not missing else missing}")
    controls = {"word": widgets.Dropdown(options=list(words), description="word"),
                "k": widgets.IntSlider(8, 3, 15, description="neighbours")}

    def compute(word, k):
        top = nearest_neighbours(vectors, index[word], k, allowed)
        return {"ids": torch.tensor([i for i, _ in top]), "cosine": torch.tensor([s for _, s in top])}

    def draw(fig, data, word, k):
        ax = fig.add_subplot(1, 1, 1)
        names = [id_to_token[int(i)] for i in data["ids"]]
        ax.barh(range(len(names))[::-1], data["cosine"], color="tab:blue")
        ax.set_yticks(range(len(names))[::-1])
        ax.set_yticklabels(names)
        ax.set_xlim(-1, 1)
        ax.set_xlabel("cosine similarity")
        ax.set_title(f"nearest neighbours of {word!r}")
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(5, 3.5))
