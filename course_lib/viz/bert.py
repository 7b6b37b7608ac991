"""Contextual vs static word vectors of a BERT (notebook 04): measure and draw.

A static embedding gives a word one vector, E_token[w], wherever it occurs. BERT's hidden
state h_i^(ℓ) after layer ℓ depends on the whole sentence, so "bank" by the river and "bank"
with the money get different vectors. We compare occurrences by cosine similarity

    cos(u, v) = u · v / (‖u‖ ‖v‖)

and summarise a (n, n) similarity matrix by its mean within-sense and across-sense entries.

In the story corpus each sense comes in its own sentence ("so tom sat on the bank of the river"
vs "so tom took money from the bank"), so a split by sense may come from the neighbouring words
alone. The control (``setting_swapped_vectors``, ``setting_gap``): keep every word, change only
the story's setting word, and see whether the vector of the ambiguous word follows the setting.
"""
from __future__ import annotations

import dataclasses

import torch
import torch.nn.functional as F

from course_lib.bert import Bert, pair_input
from course_lib.common import check_shapes, right_pad
from course_lib.data.stories import LABELS
from course_lib.viz import Explorer, to_numpy

__all__ = ["contextual_vectors", "cosine_matrix", "sense_summary", "plot_sense_similarity",
           "contextual_similarity_explorer", "setting_swapped_vectors", "setting_gap"]


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
        seqs.append(pair_input(tokenizer.encode(story.text), None, tokenizer.cls_id,
                               tokenizer.sep_id, bert.config.max_len)[0])
        positions.append(1 + sum(len(s.split()) for s in story.sentences[:i]) + j)  # +1: [CLS]
    ids = right_pad(seqs, tokenizer.pad_id)                                 # (n, t)
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


def setting_swapped_vectors(bert: Bert, stories, tokenizer, word: str,
                            settings=("river", "town"), max_items: int = 40):
    """``contextual_vectors`` of ``word`` with the story's setting word set to each of ``settings``.

    Only the setting word of the first sentence ("one day tom and mia went to the *river* .")
    changes; the sentence around ``word`` and every other word stay. Returns
    (vectors (n_layers + 1, n, s, d), senses [n]) for n occurrences and s = len(settings).
    """
    unknown = sorted(set(settings) - set(LABELS))
    if len(settings) < 2 or unknown:
        raise ValueError(f"settings: expected at least two of {LABELS}, received {tuple(settings)}")
    per_setting = []
    for setting in settings:
        edited = [dataclasses.replace(story, sentences=[
            " ".join(setting if w in LABELS else w for w in story.sentences[0].split()),
            *story.sentences[1:]]) for story in stories]
        vectors, senses, _ = contextual_vectors(bert, edited, tokenizer, word, max_items)
        per_setting.append(vectors)                                       # (layers+1, n, d)
    return torch.stack(per_setting, 2), senses                            # (layers+1, n, s, d)


def setting_gap(vectors: torch.Tensor, senses: list[str]) -> dict:
    """Does a word's vector follow the setting when its sentence stays the same? vectors (n, s, d).

    Over pairs of different occurrences with the same sense (so the same kind of sentence):
    "same setting" = mean cosine when both were given the same setting word, "other setting" =
    when they were given different ones; "gap" = their difference (0: the setting is ignored).
    "shift" = mean ‖v(setting a) − v(setting b)‖ / ‖v(setting a)‖ of one occurrence.
    """
    check_shapes([(vectors, (len(senses), "s", "d"), "vectors")])         # n = len(senses)
    n, s, d = vectors.shape
    if s < 2:
        raise ValueError(f"vectors: expected shape (n, s, d) with s >= 2 settings, received "
                         f"{tuple(vectors.shape)}")
    sim = cosine_matrix(vectors.reshape(n * s, d)).reshape(n, s, n, s)   # (n, s, n, s)
    same_sense = torch.tensor([[a == b for b in senses] for a in senses]) & ~torch.eye(n, dtype=torch.bool)
    same_setting = torch.eye(s, dtype=torch.bool)                         # (s, s)
    pairs = same_sense[:, None, :, None]                                  # (n, 1, n, 1)
    within = sim[pairs & same_setting[None, :, None, :]].mean().item()
    across = sim[pairs & ~same_setting[None, :, None, :]].mean().item()
    a, b = torch.triu_indices(s, s, 1)                                    # setting pairs
    shift = ((vectors[:, a] - vectors[:, b]).norm(dim=-1) / vectors[:, a].norm(dim=-1)).mean()
    return {"same setting": within, "other setting": across, "gap": within - across,
            "shift": shift.item()}


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
