"""Word vectors (notebook 00): one-hot codes, the skip-gram model of word2vec, negative sampling.

A one-hot vector gives every word its own axis, so any two different words are orthogonal
(cosine 0): "frog" is as far from "fish" as from "coin". The distributional hypothesis ("you
shall know a word by the company it keeps", Firth 1957) instead learns one dense vector per
word from its neighbours. Skip-gram (Mikolov et al., 2013a) maximises

    Π_t Π_{-a <= j <= a, j != 0} p(w_{t+j} | w_t),   p(o | c) = exp(u_o·v_c) / Σ_w exp(u_w·v_c),

with a centre vector v_w and a context vector u_w per word. Negative sampling (Mikolov et al.,
2013b, eq. 4) replaces the softmax over the vocabulary by k words drawn from a noise
distribution P_n(w) ∝ count(w)^{3/4}:

    log σ(u_o·v_c) + Σ_{i=1..k} log σ(-u_{n_i}·v_c).

Official implementation: word2vec.c (code.google.com/archive/p/word2vec). Glossary: b pairs in
a batch, k negatives per pair, vocab the vocabulary axis (size ``vocab_size``), d the vector
width (``d_model``); c a centre word id, o a context word id.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.common import check_shapes, check_token_ids

__all__ = ["SkipGramConfig", "SkipGram", "skipgram_pairs", "softmax_loss",
           "negative_sampling_objective", "negative_sampling_loss", "noise_distribution",
           "cosine_similarity_matrix", "nearest_neighbours", "analogy"]


@dataclass
class SkipGramConfig:
    vocab_size: int
    d_model: int = 32

    def to_dict(self) -> dict:
        return asdict(self)


class SkipGram(nn.Module):
    """Two tables: ``center_emb`` holds v_w (the word at the centre), ``context_emb`` u_w (the
    word as a neighbour). Initialised as word2vec.c: v uniform in ±0.5/d, u zero."""

    def __init__(self, config: SkipGramConfig):
        super().__init__()
        if config.vocab_size < 2 or config.d_model < 1:
            raise ValueError(f"SkipGramConfig: expected vocab_size >= 2 and d_model >= 1, "
                             f"received vocab_size={config.vocab_size}, d_model={config.d_model}")
        self.config = config
        self.center_emb = nn.Embedding(config.vocab_size, config.d_model)   # v_w
        self.context_emb = nn.Embedding(config.vocab_size, config.d_model)  # u_w
        nn.init.uniform_(self.center_emb.weight, -0.5 / config.d_model, 0.5 / config.d_model)
        nn.init.zeros_(self.context_emb.weight)

    def forward(self, centers: torch.Tensor) -> torch.Tensor:
        """Scores u_w·v_c of every word w as a context of each centre: (b,) -> (b, vocab)."""
        check_token_ids(centers, self.config.vocab_size, "centers", axes=("b",))
        return self.center_emb(centers) @ self.context_emb.weight.T          # (b, vocab)

    @property
    def vectors(self) -> torch.Tensor:
        """The word vectors used downstream: the centre table v, (vocab, d)."""
        return self.center_emb.weight.detach()


def skipgram_pairs(sequences: list[list[int]], window: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Every (centre w_t, context w_{t+j}) with 1 <= |j| <= window inside one sequence.

    Returns centers (b,) and contexts (b,) int64, ordered by sequence, position, then offset j.
    """
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, received {window!r}")
    centers, contexts = [], []
    for seq in sequences:
        for t, c in enumerate(seq):
            for j in range(-window, window + 1):
                if j != 0 and 0 <= t + j < len(seq):
                    centers.append(c)
                    contexts.append(seq[t + j])
    if not centers:
        raise ValueError("skipgram_pairs: expected sequences of at least 2 tokens, received none")
    return torch.tensor(centers), torch.tensor(contexts)


def softmax_loss(model: SkipGram, centers: torch.Tensor, contexts: torch.Tensor) -> torch.Tensor:
    """Mean of -log p(o | c) with the full softmax over the vocabulary (the skip-gram likelihood)."""
    check_token_ids(contexts, model.config.vocab_size, "contexts", axes=(len(centers),))
    return F.cross_entropy(model(centers), contexts)                          # logsumexp - u_o·v_c


def negative_sampling_objective(v_c: torch.Tensor, u_o: torch.Tensor, u_n: torch.Tensor) -> torch.Tensor:
    """Mean over pairs of -[log σ(u_o·v_c) + Σ_i log σ(-u_{n_i}·v_c)] (Mikolov et al., 2013b, eq. 4).

    v_c (b, d) centre vectors, u_o (b, d) their context vectors, u_n (b, k, d) the negatives'.
    """
    check_shapes([(v_c, ("b", "d"), "v_c"), (u_o, ("b", "d"), "u_o"), (u_n, ("b", "k", "d"), "u_n")])
    positive = F.logsigmoid((u_o * v_c).sum(-1))                              # (b,)
    negative = F.logsigmoid(-(u_n @ v_c.unsqueeze(-1)).squeeze(-1)).sum(-1)   # (b,)
    return -(positive + negative).mean()


def negative_sampling_loss(model: SkipGram, centers: torch.Tensor, contexts: torch.Tensor,
                           negatives: torch.Tensor) -> torch.Tensor:
    """The negative-sampling objective of a batch of ids: centers (b,), contexts (b,),
    negatives (b, k) drawn from the noise distribution."""
    vocab_size = model.config.vocab_size
    check_token_ids(centers, vocab_size, "centers", axes=("b",))
    check_token_ids(contexts, vocab_size, "contexts", axes=(len(centers),))
    check_token_ids(negatives, vocab_size, "negatives", axes=(len(centers), "k"))
    return negative_sampling_objective(model.center_emb(centers), model.context_emb(contexts),
                                       model.context_emb(negatives))


def noise_distribution(counts: torch.Tensor, power: float = 0.75) -> torch.Tensor:
    """P_n(w) ∝ count(w)^power over the vocabulary (power 3/4 in word2vec): (vocab,) -> (vocab,)."""
    check_shapes([(counts, ("vocab",), "counts")])
    if (counts < 0).any() or counts.sum() <= 0:
        raise ValueError(f"counts: expected non-negative counts with a positive sum, received "
                         f"min {counts.min().item()}, sum {counts.sum().item()}")
    p = counts.double() ** power
    return (p / p.sum()).float()


def cosine_similarity_matrix(vectors: torch.Tensor) -> torch.Tensor:
    """cos(x_i, x_j) = x_i·x_j / (|x_i| |x_j|) for every pair of rows: (n, d) -> (n, n)."""
    check_shapes([(vectors, ("n", "d"), "vectors")])
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)      # (n, d)
    return unit @ unit.T                                                      # (n, n)


def nearest_neighbours(vectors: torch.Tensor, word_id: int, k: int = 8,
                       allowed: torch.Tensor | None = None) -> list[tuple[int, float]]:
    """The k rows most cosine-similar to row ``word_id`` (itself excluded), as (id, cosine).

    ``allowed`` (bool, (vocab,)) restricts the candidates (e.g. to words seen in training).
    """
    check_shapes([(vectors, ("vocab", "d"), "vectors")])
    n = vectors.shape[0]
    if not 0 <= word_id < n:
        raise ValueError(f"word_id: expected an id in [0, {n}), received {word_id}")
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)      # (vocab, d)
    sims = unit @ unit[word_id]                                               # (vocab,)
    return _top(sims, k, allowed, exclude=[word_id])


def analogy(vectors: torch.Tensor, a: int, b: int, c: int, k: int = 5,
            allowed: torch.Tensor | None = None) -> list[tuple[int, float]]:
    """"a is to b as c is to ?": the k words closest (cosine) to v_b - v_a + v_c, a, b, c excluded
    (the 3CosAdd rule of Mikolov et al., 2013c)."""
    check_shapes([(vectors, ("vocab", "d"), "vectors")])
    n = vectors.shape[0]
    if not all(0 <= i < n for i in (a, b, c)):
        raise ValueError(f"analogy: expected ids in [0, {n}), received {(a, b, c)}")
    unit = vectors / vectors.norm(dim=-1, keepdim=True).clamp_min(1e-12)      # (vocab, d)
    target = unit[b] - unit[a] + unit[c]                                      # (d,)
    sims = unit @ (target / target.norm().clamp_min(1e-12))                   # (vocab,)
    return _top(sims, k, allowed, exclude=[a, b, c])


def _top(sims: torch.Tensor, k: int, allowed: torch.Tensor | None, exclude: list[int]):
    if allowed is not None:
        check_shapes([(allowed, (len(sims),), "allowed")])
        sims = sims.masked_fill(~allowed.bool(), float("-inf"))
    sims = sims.clone()
    sims[exclude] = float("-inf")
    k = min(k, int(torch.isfinite(sims).sum()))
    values, ids = sims.topk(k)
    return [(int(i), round(float(v), 4)) for i, v in zip(ids, values)]
