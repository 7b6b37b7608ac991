"""Recurrent networks before attention (notebook 00): the GRU cell, an RNN encoder-decoder, and
the attention that removed its bottleneck.

* ``gru_cell``: one GRU step written out (Cho et al., 2014, eqs. 5-8, in PyTorch's gate order),
  equal to ``nn.GRUCell``.
* ``RNNSeq2Seq``: a GRU encoder reads the source; a GRU decoder writes the target. Without
  attention every decoder step sees the same context, the encoder's last state (Cho et al.,
  2014): the whole sentence must fit in one d-vector. With attention (Bahdanau, Cho & Bengio,
  2015, eqs. 5-6 and appendix A) step i computes its own context c_i = Σ_j α_ij h_j with
  α_i = softmax_j(score(s_{i-1}, h_j)). Both variants get a context of the same width at every
  step and the same read-out, so they differ only in where the context comes from.
* Score functions score(q, k) beyond the dot product: additive (Bahdanau), bilinear ("general",
  Luong et al., 2015, eq. 8), cosine (times a learned scale, as the key strength of Graves et
  al., 2014). All take q (b, d), keys (b, s, d) and return scores (b, s).

Official implementation of the attention decoder: Bahdanau's GroundHog (github.com/lisa-groundhog/
GroundHog). Glossary: b batch, s source length, t target length, d hidden width (``d_model``),
vocab the vocabulary axis; h_j encoder states (``keys``), s_i decoder state (``state``).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.common import check_shapes, check_token_ids

__all__ = ["gru_cell", "DotScore", "AdditiveScore", "BilinearScore", "CosineScore", "SCORES",
           "make_score", "attend", "RNNSeq2SeqConfig", "RNNSeq2Seq", "greedy_decode"]


def gru_cell(x: torch.Tensor, h: torch.Tensor, weight_ih: torch.Tensor, weight_hh: torch.Tensor,
             bias_ih: torch.Tensor, bias_hh: torch.Tensor) -> torch.Tensor:
    """One GRU step, x (b, d_in), h (b, d) -> h' (b, d); weights stacked [reset, update, new]
    as in ``nn.GRUCell``: weight_ih (3d, d_in), weight_hh (3d, d), biases (3d,).

        r = σ(W_ir x + b_ir + W_hr h + b_hr)          reset gate
        z = σ(W_iz x + b_iz + W_hz h + b_hz)          update gate
        n = tanh(W_in x + b_in + r ⊙ (W_hn h + b_hn))  candidate state
        h' = (1 - z) ⊙ n + z ⊙ h
    """
    dims = check_shapes([(x, ("b", "d_in"), "x"), (h, ("b", "d"), "h")])
    d3 = 3 * dims["d"]
    check_shapes([(weight_ih, (d3, dims["d_in"]), "weight_ih"), (weight_hh, (d3, dims["d"]), "weight_hh"),
                  (bias_ih, (d3,), "bias_ih"), (bias_hh, (d3,), "bias_hh")])
    x_r, x_z, x_n = (x @ weight_ih.T + bias_ih).chunk(3, dim=-1)              # 3 x (b, d)
    h_r, h_z, h_n = (h @ weight_hh.T + bias_hh).chunk(3, dim=-1)              # 3 x (b, d)
    r = torch.sigmoid(x_r + h_r)
    z = torch.sigmoid(x_z + h_z)
    n = torch.tanh(x_n + r * h_n)
    return (1 - z) * n + z * h                                                # (b, d)


class DotScore(nn.Module):
    """score(q, k) = q·k (Luong et al., 2015, "dot"); no parameters."""

    def forward(self, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return (keys @ q.unsqueeze(-1)).squeeze(-1)                           # (b, s)


class AdditiveScore(nn.Module):
    """score(q, k) = wᵀ tanh(W_q q + W_k k) (Bahdanau et al., 2015, appendix A: v_aᵀ tanh(W_a s + U_a h))."""

    def __init__(self, d_model: int, d_attn: int | None = None):
        super().__init__()
        d_attn = d_attn or d_model
        self.q_proj = nn.Linear(d_model, d_attn, bias=False)                  # W_q
        self.k_proj = nn.Linear(d_model, d_attn, bias=False)                  # W_k
        self.w = nn.Linear(d_attn, 1, bias=False)                             # wᵀ

    def forward(self, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        hidden = torch.tanh(self.q_proj(q).unsqueeze(1) + self.k_proj(keys))  # (b, s, d_attn)
        return self.w(hidden).squeeze(-1)                                     # (b, s)


class BilinearScore(nn.Module):
    """score(q, k) = qᵀ W k (Luong et al., 2015, "general")."""

    def __init__(self, d_model: int):
        super().__init__()
        self.W = nn.Linear(d_model, d_model, bias=False)

    def forward(self, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        return (self.W(keys) @ q.unsqueeze(-1)).squeeze(-1)                   # (b, s): qᵀ W k_j


class CosineScore(nn.Module):
    """score(q, k) = β cos(q, k) with a learned scale β = exp(log_scale) (cosine alone lies in
    [-1, 1], too flat for a softmax to focus; Graves et al., 2014, call β the key strength)."""

    def __init__(self, init_scale: float = 5.0):
        super().__init__()
        self.log_scale = nn.Parameter(torch.tensor(float(init_scale)).log())

    def forward(self, q: torch.Tensor, keys: torch.Tensor) -> torch.Tensor:
        cos = F.cosine_similarity(keys, q.unsqueeze(1), dim=-1, eps=1e-8)     # (b, s)
        return self.log_scale.exp() * cos


SCORES = ("dot", "additive", "bilinear", "cosine")


def make_score(kind: str, d_model: int) -> nn.Module:
    """The score module named ``kind`` (one of ``SCORES``) for vectors of width d_model."""
    if kind not in SCORES:
        raise ValueError(f"score: expected one of {SCORES}, received {kind!r}")
    if kind == "dot":
        return DotScore()
    if kind == "cosine":
        return CosineScore()
    return AdditiveScore(d_model) if kind == "additive" else BilinearScore(d_model)


def attend(score: nn.Module, q: torch.Tensor, keys: torch.Tensor, values: torch.Tensor,
           mask: torch.Tensor | None = None) -> tuple[torch.Tensor, torch.Tensor]:
    """α = softmax_j(score(q, k_j)) over the unmasked keys, context = Σ_j α_j v_j.

    q (b, d), keys (b, s, d), values (b, s, dv), mask bool (b, s) True = may attend.
    Returns context (b, dv) and weights α (b, s).
    """
    dims = check_shapes([(q, ("b", "d"), "q"), (keys, ("b", "s", "d"), "keys"),
                         (values, ("b", "s", "dv"), "values")])
    scores = score(q, keys)                                                   # (b, s)
    if mask is not None:
        if mask.dtype != torch.bool:
            raise ValueError(f"mask: expected a bool tensor (b, s), received {mask.dtype}")
        check_shapes([(mask, (dims["b"], dims["s"]), "mask")])
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)                                          # (b, s)
    return (weights.unsqueeze(1) @ values).squeeze(1), weights                # (b, dv), (b, s)


@dataclass
class RNNSeq2SeqConfig:
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 64
    attention: str = "additive"        # "none": the encoder's last state is every step's context
    pad_id: int = 0
    bos_id: int = 5
    eos_id: int = 6
    max_len: int = 16                  # longest target a greedy decode writes

    def __post_init__(self):
        if self.attention not in ("none",) + SCORES:
            raise ValueError(f"attention: expected 'none' or one of {SCORES}, received "
                             f"{self.attention!r}")

    def to_dict(self) -> dict:
        return asdict(self)


class RNNSeq2Seq(nn.Module):
    """GRU encoder-decoder; decoder step i: c_i = context, s_i = GRU([y_{i-1}; c_i], s_{i-1}),
    logits_i = out_proj([s_i; c_i]). The context is the encoder's last state ("none") or
    attention over all encoder states with the previous decoder state as the query."""

    def __init__(self, config: RNNSeq2SeqConfig):
        super().__init__()
        self.config = c = config
        self.src_emb = nn.Embedding(c.src_vocab_size, c.d_model)
        self.tgt_emb = nn.Embedding(c.tgt_vocab_size, c.d_model)
        self.encoder = nn.GRU(c.d_model, c.d_model, batch_first=True)
        self.decoder = nn.GRUCell(2 * c.d_model, c.d_model)
        self.score = None if c.attention == "none" else make_score(c.attention, c.d_model)
        self.out_proj = nn.Linear(2 * c.d_model, c.tgt_vocab_size)

    def encode(self, src: torch.Tensor):
        """src (b, s) -> keys h_1..h_s (b, s, d), last state (b, d), mask (b, s).

        A sentence's last state is its state at its last real token (padding comes after)."""
        check_token_ids(src, self.config.src_vocab_size, "src", axes=("b", "s"))
        mask = src != self.config.pad_id                                      # (b, s)
        lengths = mask.sum(-1)
        if (lengths == 0).any():
            raise ValueError("src: expected at least one non-padding token per row, received "
                             f"an empty row at index {int((lengths == 0).nonzero()[0])}")
        keys, _ = self.encoder(self.src_emb(src))                             # (b, s, d)
        last = keys[torch.arange(len(src)), lengths - 1]                      # (b, d)
        return keys, last, mask

    def step(self, y_prev: torch.Tensor, state: torch.Tensor, keys: torch.Tensor,
             last: torch.Tensor, mask: torch.Tensor):
        """One decoder step: y_prev (b,) ids, state s_{i-1} (b, d) -> logits (b, vocab), s_i,
        weights α_i (b, s) (all on the last source token without attention)."""
        if self.score is None:
            context = last                                                    # (b, d), fixed
            weights = F.one_hot(mask.sum(-1) - 1, mask.shape[1]).float()      # (b, s)
        else:
            context, weights = attend(self.score, state, keys, keys, mask)    # (b, d), (b, s)
        state = self.decoder(torch.cat([self.tgt_emb(y_prev), context], -1), state)  # (b, d)
        logits = self.out_proj(torch.cat([state, context], -1))              # (b, vocab)
        return logits, state, weights

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor):
        """Teacher forcing: src (b, s), tgt_in (b, t) = [BOS] y_1 .. -> logits (b, t, vocab),
        weights (b, t, s)."""
        keys, last, mask = self.encode(src)
        check_token_ids(tgt_in, self.config.tgt_vocab_size, "tgt_in", axes=(len(src), "t"))
        state, logits, weights = last, [], []
        for i in range(tgt_in.shape[1]):
            out, state, w = self.step(tgt_in[:, i], state, keys, last, mask)
            logits.append(out)
            weights.append(w)
        return torch.stack(logits, 1), torch.stack(weights, 1)


@torch.no_grad()
def greedy_decode(model: RNNSeq2Seq, src: torch.Tensor, max_len: int | None = None):
    """Argmax decoding from [BOS] until every row wrote [EOS] (or ``max_len`` tokens).

    Returns tokens (b, t) and the attention weights of each written token (b, t, s)."""
    c = model.config
    keys, last, mask = model.encode(src)
    y = torch.full((len(src),), c.bos_id, dtype=torch.long, device=src.device)
    state, tokens, weights = last, [], []
    done = torch.zeros(len(src), dtype=torch.bool, device=src.device)
    for _ in range(max_len or c.max_len):
        logits, state, w = model.step(y, state, keys, last, mask)
        y = logits.argmax(-1).masked_fill(done, c.pad_id)                     # (b,)
        tokens.append(y)
        weights.append(w)
        done |= y == c.eos_id
        if done.all():
            break
    return torch.stack(tokens, 1), torch.stack(weights, 1)
