"""Notebook 02's experiment: "output the token k places back" with four position encodings.

The task (``course_lib.data.synthetic.tokens_back``) can only be solved from *position*. The
model is a one-layer bidirectional pre-norm encoder built from lecture 01's attention and
lecture 02's encodings only (this experiment comes before notebook 03's Transformer):

    x = E[tokens] (+ P[:t]),   x = x + MHA(LN₁(x)),   x = x + W₂ ReLU(W₁ LN₂(x)),   logits = W LN_f(x)

RoPE instead rotates q and k inside the attention. ``tools/train_positional.py`` trains one
model per encoding (several seeds) and ships ``data/positional_models.safetensors``;
``load_position_models`` reads it back and ``tokens_back_accuracy`` re-measures it.
"""
from __future__ import annotations

import torch
from torch import nn

from course_lib import IGNORE_INDEX, check_token_ids
from course_lib.attention import MultiHeadAttention
from course_lib.data.synthetic import tokens_back
from course_lib.positional import LearnedPositional, RotaryEmbedding, SinusoidalPositional, local_mask
from course_lib.training import data_dir, load_model

__all__ = ["ENCODINGS", "PositionEncoderLayer", "PositionTaskModel", "tokens_back_accuracy",
           "load_position_models"]

ENCODINGS = ("none", "sinusoidal", "learned", "rope")
REBUILD = "python tools/train_positional.py"


class PositionEncoderLayer(nn.Module):
    """Pre-norm bidirectional encoder layer: x + MHA(LN₁ x), then x + FFN(LN₂ x) (ReLU MLP)."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d_model), nn.LayerNorm(d_model)
        self.self_attn = MultiHeadAttention(d_model, n_heads)
        self.ffn = nn.Sequential(nn.Linear(d_model, d_ff), nn.ReLU(), nn.Linear(d_ff, d_model))

    def forward(self, x: torch.Tensor, mask=None, need_weights: bool = False, rotate=None):
        a, weights = self.self_attn(self.norm1(x), mask=mask, need_weights=need_weights,
                                    rotate=rotate)                        # (b, t, d), (b, nh, t, t)
        x = x + a                                                         # (b, t, d)
        return x + self.ffn(self.norm2(x)), weights                      # (b, t, d)


class PositionTaskModel(nn.Module):
    """Token embedding + one positional encoding + n pre-norm encoder layers + a read-out.

    encoding: "none" (attention alone: permutation-equivariant), "sinusoidal" or "learned"
    (added to the embeddings), "rope" (rotates q, k in every layer).
    tokens (b, t) -> logits (b, t, vocab).
    """

    def __init__(self, encoding: str, vocab_size: int = 16, d_model: int = 64, n_heads: int = 4,
                 n_layers: int = 1, d_ff: int = 128, max_len: int = 64):
        super().__init__()
        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.encoding, self.vocab_size, self.max_len = encoding, vocab_size, max_len
        self.token_emb = nn.Embedding(vocab_size, d_model)
        self.pos_emb = None                                   # added to the token embeddings
        if encoding == "sinusoidal":
            self.pos_emb = SinusoidalPositional(d_model, max_len)
        elif encoding == "learned":
            self.pos_emb = LearnedPositional(d_model, max_len)
        self.rope = RotaryEmbedding(d_model // n_heads, max_len) if encoding == "rope" else None
        self.layers = nn.ModuleList(PositionEncoderLayer(d_model, n_heads, d_ff)
                                    for _ in range(n_layers))
        self.norm_f, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor, need_weights: bool = False, window: int | None = None):
        """Returns ``(logits (b, t, vocab), [weights (b, nh, t, t) or None per layer])``.

        window: if given, query m only sees keys n with |m − n| < window (a local mask).
        """
        check_token_ids(tokens, self.vocab_size, "tokens")
        x = self.token_emb(tokens)                                           # (b, t, d)
        if self.pos_emb is not None:
            x = self.pos_emb(x)                                              # x + P[:t]
        mask = None if window is None else local_mask(tokens.shape[1], window, tokens.device)
        maps = []
        for layer in self.layers:
            x, w = layer(x, mask=mask, need_weights=need_weights, rotate=self.rope)  # (b, t, d)
            maps.append(w)
        return self.head(self.norm_f(x)), maps                               # (b, t, vocab)


@torch.no_grad()
def tokens_back_accuracy(model: nn.Module, lengths, k: int = 3, n_tokens: int = 16,
                         n_seqs: int = 500, seed: int = 1234, train_len: int | None = None,
                         window: int | None = None) -> dict:
    """Held-out accuracy of ``model`` on ``tokens_back`` at each length (fixed seeded test sets).

    Returns {"length": accuracy over scored positions}; with ``train_len`` also
    {"length_new": accuracy on positions >= train_len only} (positions never trained on).
    window: evaluate with ``local_mask`` (keys within |m − n| < window only).
    """
    model.eval()
    device = next(model.parameters()).device
    out = {}
    for length in lengths:
        x, y = tokens_back(n_seqs, length, k, n_tokens, torch.Generator().manual_seed(seed + length))
        x, y = x.to(device), y.to(device)                                    # (b, t)
        correct = model(x, window=window)[0].argmax(-1) == y                 # (b, t)
        out[str(length)] = correct[y != IGNORE_INDEX].float().mean().item()
        if train_len is not None and length > train_len:
            out[f"{length}_new"] = correct[:, train_len:].float().mean().item()
    return out


def load_position_models(path=None) -> tuple[nn.ModuleDict, dict]:
    """The shipped experiment (tools/train_positional.py): ({encoding: model}, {"config", "metrics"}).

    metrics["runs"][encoding] lists the per-seed accuracies; the models are those of seed 0.
    """
    path = data_dir() / "positional_models.safetensors" if path is None else path
    return load_model(path, lambda config: nn.ModuleDict(
        {e: PositionTaskModel(e, **config["model"]) for e in ENCODINGS}), rebuild=REBUILD)
