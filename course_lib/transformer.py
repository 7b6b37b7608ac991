"""The encoder-decoder Transformer (lecture 03): layers built from course_lib.attention.

Encoder layer (post-norm, as in the paper; ``norm_first=True`` gives the pre-norm of GPT-2):

    x = LayerNorm(x + SelfAttention(x))
    x = LayerNorm(x + FFN(x)),        FFN(x) = W_2 ReLU(W_1 x + b_1) + b_2

Decoder layer: masked self-attention (no peeking at future positions), cross-attention with
K, V from the encoder output ("memory"), then the FFN; each with residual + LayerNorm.
Layer names and parameter layout match ``nn.TransformerEncoderLayer``/``DecoderLayer`` so
``load_from_torch`` copies weights one to one (and the tests assert equal outputs).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import KVCache, MultiHeadAttention

__all__ = ["FeedForward", "EncoderLayer", "DecoderLayer"]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class FeedForward(nn.Module):
    """Position-wise FFN: the same two-layer MLP applied to every position, (b, t, d) -> (b, t, d)."""

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.linear1, self.linear2 = nn.Linear(d_model, d_ff), nn.Linear(d_ff, d_model)
        self.act, self.dropout = _ACTIVATIONS[activation], nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.linear2(self.dropout(self.act(self.linear1(x))))


class EncoderLayer(nn.Module):
    """Self-attention + FFN, each wrapped in residual + LayerNorm.

    Also the block of decoder-only models (GPT): pass ``is_causal=True`` (and a ``cache`` for
    incremental decoding) with ``norm_first=True``.
    """

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 activation: str = "relu", norm_first: bool = False, eps: float = 1e-5):
        super().__init__()
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1, self.norm2 = nn.LayerNorm(d_model, eps=eps), nn.LayerNorm(d_model, eps=eps)
        self.dropout1, self.dropout2 = nn.Dropout(dropout), nn.Dropout(dropout)
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, is_causal: bool = False,
                need_weights: bool = False, cache: KVCache | None = None, rotate=None):
        """x: (b, t, d); mask broadcastable to (b, h, t, s), True = may attend.

        Returns ``(x, weights)``; weights (b, h, t, s) when need_weights else None.
        """
        def attend(z):
            out, w = self.self_attn(z, mask=mask, is_causal=is_causal, need_weights=need_weights,
                                    cache=cache, rotate=rotate)
            return self.dropout1(out), w

        if self.norm_first:
            a, weights = attend(self.norm1(x))
            x = x + a
            x = x + self.dropout2(self.ffn(self.norm2(x)))
        else:
            a, weights = attend(x)
            x = self.norm1(x + a)
            x = self.norm2(x + self.dropout2(self.ffn(x)))
        return x, weights

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> "EncoderLayer":
        """Copy the weights of a ``nn.TransformerEncoderLayer(..., batch_first=True)``."""
        self.self_attn.load_from_torch(layer.self_attn)
        _copy_ffn_norms(self, layer, ("norm1", "norm2"))
        return self


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder memory, FFN; residual + LayerNorm."""

    def __init__(self, d_model: int, n_heads: int, d_ff: int | None = None, dropout: float = 0.0,
                 activation: str = "relu", norm_first: bool = False, eps: float = 1e-5):
        super().__init__()
        d_ff = 4 * d_model if d_ff is None else d_ff
        self.self_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.cross_attn = MultiHeadAttention(d_model, n_heads, dropout=dropout)
        self.ffn = FeedForward(d_model, d_ff, dropout, activation)
        self.norm1, self.norm2, self.norm3 = (nn.LayerNorm(d_model, eps=eps) for _ in range(3))
        self.dropout1, self.dropout2, self.dropout3 = (nn.Dropout(dropout) for _ in range(3))
        self.norm_first = norm_first

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None,
                self_mask: torch.Tensor | None = None, is_causal: bool = True,
                need_weights: bool = False, cache: KVCache | None = None):
        """x: (b, t, d) target so far; memory: (b, s, d) encoder output.

        memory_mask (e.g. source padding) broadcastable to (b, h, t, s). Returns
        ``(x, (self_weights, cross_weights))``, weights None unless need_weights.
        """
        if memory.dim() != 3 or memory.shape[-1] != x.shape[-1] or memory.shape[0] != x.shape[0]:
            raise ValueError(f"memory: expected shape (b={x.shape[0]}, s, d={x.shape[-1]}) to match "
                             f"the decoder input {tuple(x.shape)}, received {tuple(memory.shape)}")

        def self_block(z):
            out, w = self.self_attn(z, mask=self_mask, is_causal=is_causal,
                                    need_weights=need_weights, cache=cache)
            return self.dropout1(out), w

        def cross_block(z):
            out, w = self.cross_attn(z, memory, mask=memory_mask, need_weights=need_weights)
            return self.dropout2(out), w

        if self.norm_first:
            a, w_self = self_block(self.norm1(x))
            x = x + a
            c, w_cross = cross_block(self.norm2(x))
            x = x + c
            x = x + self.dropout3(self.ffn(self.norm3(x)))
        else:
            a, w_self = self_block(x)
            x = self.norm1(x + a)
            c, w_cross = cross_block(x)
            x = self.norm2(x + c)
            x = self.norm3(x + self.dropout3(self.ffn(x)))
        return x, (w_self, w_cross)

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerDecoderLayer) -> "DecoderLayer":
        """Copy the weights of a ``nn.TransformerDecoderLayer(..., batch_first=True)``."""
        self.self_attn.load_from_torch(layer.self_attn)
        self.cross_attn.load_from_torch(layer.multihead_attn)
        _copy_ffn_norms(self, layer, ("norm1", "norm2", "norm3"))
        return self


def _copy_ffn_norms(ours: nn.Module, theirs: nn.Module, norms: tuple[str, ...]) -> None:
    ours.ffn.linear1.load_state_dict(theirs.linear1.state_dict())
    ours.ffn.linear2.load_state_dict(theirs.linear2.state_dict())
    for name in norms:
        getattr(ours, name).load_state_dict(getattr(theirs, name).state_dict())
