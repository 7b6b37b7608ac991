"""Positional encodings (lecture 02): sinusoidal, learned absolute, and rotary (RoPE).

Sinusoidal (Vaswani et al. 2017), position ``pos`` (row) and component ``i`` (column pair):

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

RoPE (Su et al. 2021) rotates each pair (x_2i, x_2i+1) of a query/key at position m by the
angle m·θ_i, θ_i = base^(-2i/dh), so that q_m · k_n depends only on the offset m − n.
Modules add to (b, t, d) inputs; ``RotaryEmbedding`` plugs into
``MultiHeadAttention.forward(..., rotate=rope)``.
"""
from __future__ import annotations

import torch
from torch import nn

from course_lib import ShapeError

__all__ = ["sinusoidal_table", "SinusoidalPositional", "LearnedPositional", "RotaryEmbedding",
           "rotate_pairs", "rope_angles"]


def _check_even(d: int, name: str) -> None:
    if not isinstance(d, int) or d < 2 or d % 2:
        raise ValueError(f"{name} must be a positive even int (pairs of sin/cos), got {d!r}")


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The (max_len, d_model) table PE[pos, 2i] = sin(pos/base^(2i/d)), PE[pos, 2i+1] = cos(...)."""
    _check_even(d_model, "d_model")
    if max_len < 1:
        raise ValueError(f"max_len must be >= 1, got {max_len}")
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]          # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)[None, :]  # (1, d/2)
    angle = pos / base ** (two_i / d_model)                            # (max_len, d/2)
    pe = torch.empty(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angle.sin(), angle.cos()
    return pe.float()


def _check_length(x: torch.Tensor, offset: int, max_len: int, d_model: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ShapeError(f"expected x of shape (b, t, d_model={d_model}), received {tuple(x.shape)}")
    if offset < 0 or offset + x.shape[1] > max_len:
        raise ValueError(f"positions {offset}..{offset + x.shape[1] - 1} exceed the positional "
                         f"table of max_len={max_len} (sequence length {x.shape[1]}, offset {offset})")


class SinusoidalPositional(nn.Module):
    """x + PE[offset : offset + t]: fixed, no parameters."""

    def __init__(self, d_model: int, max_len: int = 4096):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_length(x, offset, self.max_len, self.d_model)
        return x + self.pe[offset:offset + x.shape[1]]                  # (b, t, d)


class LearnedPositional(nn.Module):
    """x + P[offset : offset + t] with a trained table P (BERT, GPT-2)."""

    def __init__(self, d_model: int, max_len: int = 512, init_std: float = 0.02):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_length(x, offset, self.max_len, self.d_model)
        pos = torch.arange(offset, offset + x.shape[1], device=x.device)
        return x + self.table(pos)                                       # (b, t, d)


def rope_angles(positions: torch.Tensor, d_head: int, base: float = 10000.0) -> torch.Tensor:
    """Angles m·θ_i for positions (t,) -> (t, dh/2), θ_i = base^(-2i/dh)."""
    _check_even(d_head, "d_head")
    theta = base ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)  # (dh/2,)
    return positions.double()[:, None] * theta[None, :]


def rotate_pairs(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each pair (x_2i, x_2i+1) of x (..., t, dh) by angles (t, dh/2)."""
    if x.shape[-1] != 2 * angles.shape[-1] or x.shape[-2] != angles.shape[0]:
        raise ShapeError(f"rotate_pairs: expected x (..., t={angles.shape[0]}, "
                         f"dh={2 * angles.shape[-1]}), received {tuple(x.shape)}")
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)     # (t, dh/2)
    x1, x2 = x[..., 0::2], x[..., 1::2]                                # (..., t, dh/2)
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out


class RotaryEmbedding(nn.Module):
    """RoPE: ``rope(q, k, offset)`` rotates per-head q, k (b, h, t, dh) by their positions."""

    def __init__(self, d_head: int, max_len: int = 4096, base: float = 10000.0):
        super().__init__()
        _check_even(d_head, "d_head")
        self.d_head, self.max_len = d_head, max_len
        self.register_buffer("angles", rope_angles(torch.arange(max_len), d_head, base).float(),
                             persistent=False)                           # (max_len, dh/2)

    def forward(self, q: torch.Tensor, k: torch.Tensor, offset: int = 0):
        t_q, t_k = q.shape[-2], k.shape[-2]
        if q.shape[-1] != self.d_head or k.shape[-1] != self.d_head:
            raise ShapeError(f"RoPE: expected q, k with dh={self.d_head}, received "
                             f"{tuple(q.shape)} and {tuple(k.shape)}")
        if offset < 0 or offset + max(t_q, t_k) > self.max_len:
            raise ValueError(f"positions up to {offset + max(t_q, t_k) - 1} exceed RoPE's "
                             f"max_len={self.max_len}")
        q = rotate_pairs(q, self.angles[offset:offset + t_q])
        k = rotate_pairs(k, self.angles[offset:offset + t_k])
        return q, k
