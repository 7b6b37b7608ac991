"""Contextual vs static word vectors of a BERT (notebook 04): measure and draw.

A static embedding gives a word one vector, E_token[w], wherever it occurs. BERT's hidden
state h_i^(ℓ) after layer ℓ depends on the whole sentence, so "bank" by the river and "bank"
with the money get different vectors. We compare occurrences by cosine similarity

    cos(u, v) = u · v / (‖u‖ ‖v‖)

and summarise a (n, n) similarity matrix by its mean within-sense and across-sense entries.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from course_lib.bert import Bert, pad_batch, pair_input
from course_lib.bert_training import story_ids
from course_lib.viz import Explorer, to_numpy

__all__ = ["contextual_vectors", "cosine_matrix", "sense_summary", "plot_sense_similarity",
           "contextual_similarity_explorer"]


def contextual_vectors(bert: Bert, stories, tokenizer, word: str, max_items: int = 40):
    """Hidden vectors of every occurrence of ``word`` (listed in Story.senses), layer by layer.

    Returns (vectors (n_layers + 1, n, d), senses [n], contexts [n]): layer 0 is the embedding
    output (token + segment + position), layer ℓ the output of encoder layer ℓ.
    """
    items = [(s, i, j, sense) for s in stories for i, j, w, sense in s.senses if w == word]
    items = sorted(items[:max_items], key=lambda item: item[3])           # group by sense
    if not items:
        raise ValueError(f"no occurrence of {word!r} with a sense in these stories "
                         f"(ambiguous words are listed in Story.senses)")
    seqs, positions = [], []
    for story, i, j, _ in items:
        seqs.append(pair_input(story_ids(tokenizer, story.sentences), None, tokenizer.cls_id,
                               tokenizer.sep_id, bert.config.max_len)[0])
        positions.append(1 + sum(len(s.split()) for s in story.sentences[:i]) + j)  # +1: [CLS]
    ids = pad_batch(seqs, tokenizer.pad_id)                               # (n, t)
    bert.eval()
    states = torch.stack(bert.hidden_states(ids))                         # (layers+1, n, t, d)
    pos = torch.tensor(positions)
    if not bool((ids[torch.arange(len(pos)), pos] == tokenizer.token_to_id[word]).all()):
        raise ValueError(f"positions of {word!r} do not match the token ids")  # a corpus bug
    vectors = states[:, torch.arange(len(pos)), pos]                      # (layers+1, n, d)
    contexts = [story.sentences[i] for story, i, _, _ in items]
    return vectors, [item[3] for item in items], contexts


def cosine_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """cos(v_i, v_j) for vectors (n, d) -> (n, n)."""
    unit = F.normalize(vectors, dim=-1)                                   # (n, d)
    return unit @ unit.T                                                  # (n, n)


def sense_summary(sim: torch.Tensor, senses: list[str]) -> dict:
    """Mean cosine similarity within the same sense and across senses (diagonal excluded)."""
    same = torch.tensor([[a == b for b in senses] for a in senses])       # (n, n)
    off = ~torch.eye(len(senses), dtype=torch.bool)
    return {"within": sim[same & off].mean().item(), "across": sim[~same].mean().item()}


def plot_sense_similarity(sim, senses: list[str], ax=None, title: str | None = None):
    """Heatmap of a cosine-similarity matrix (n, n) with the sense of each occurrence as ticks."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(4.5, 4))
    im = ax.imshow(to_numpy(sim), cmap="magma", vmin=-1, vmax=1)
    change = [k for k in range(1, len(senses)) if senses[k] != senses[k - 1]]
    for k in change:
        ax.axhline(k - 0.5, color="white", lw=1)
        ax.axvline(k - 0.5, color="white", lw=1)
    starts = [0] + change
    ends = change + [len(senses)]
    ticks = [(a + b - 1) / 2 for a, b in zip(starts, ends)]
    ax.set_xticks(ticks, [senses[a] for a in starts])
    ax.set_yticks(ticks, [senses[a] for a in starts])
    if title:
        ax.set_title(title, fontsize=10)
    return im


def contextual_similarity_explorer(bert: Bert, stories, tokenizer, words=("bank", "bat", "bark")):
    """Explorer: pick an ambiguous word and a layer; see the occurrences' cosine similarities."""
    import ipywidgets as widgets

    cache = {w: contextual_vectors(bert, stories, tokenizer, w) for w in words}
    controls = {"word": widgets.Dropdown(options=list(words), description="word"),
                "layer": widgets.IntSlider(bert.config.n_layers, 0, bert.config.n_layers,
                                           description="layer")}

    def compute(word, layer):
        vectors, senses, _ = cache[word]
        return {"similarity": cosine_matrix(vectors[layer])}

    def draw(fig, data, word, layer):
        senses = cache[word][1]
        s = sense_summary(torch.as_tensor(data["similarity"]), senses)
        plot_sense_similarity(data["similarity"], senses, ax=fig.add_subplot(1, 1, 1),
                              title=f"'{word}' after layer {layer}: within {s['within']:.2f}, "
                                    f"across {s['across']:.2f}")
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(5, 4.5))
