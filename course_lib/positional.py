"""Positional encodings (lecture 02): sinusoidal, learned absolute, and rotary (RoPE).

Sinusoidal (Vaswani et al. 2017), position ``pos`` (row) and component ``i`` (column pair):

    PE(pos, 2i)   = sin(pos / 10000^(2i / d_model))
    PE(pos, 2i+1) = cos(pos / 10000^(2i / d_model))

Each pair (2i, 2i+1) is a point on the unit circle turning at the frequency ω_i = base^(-2i/d),
so a shift by k positions is a fixed rotation of every pair, independent of pos:

    PE(pos + k) = M_k PE(pos),   M_k = blockdiag( [[cos kω_i, sin kω_i], [-sin kω_i, cos kω_i]] )

RoPE (Su et al. 2021) rotates each pair (x_2i, x_2i+1) of a query/key at position m by the
angle m·θ_i, θ_i = base^(-2i/dh), so that q_m · k_n depends only on the offset m − n:

    (R(mθ) q) · (R(nθ) k) = q · R((n − m)θ) k

Pairing convention: ``rotate_pairs`` rotates *interleaved* pairs (x_2i, x_2i+1), as in the
RoFormer paper. LLaMA-style checkpoints (e.g. Hugging Face's ``rotate_half``) pair feature i
with feature i + dh/2 instead (``rotate_half``). The two are the same rotation up to one fixed
permutation of the q/k features (``rope_half_permutation``), so loading such weights into
interleaved code means permuting the rows of W_Q and W_K, not changing the maths.

Shapes: ``b`` batch, ``nh`` attention heads (the paper's h), ``t`` length, ``d`` d_model,
``dh`` width of one head.

Modules add to (b, t, d) inputs; ``RotaryEmbedding`` plugs into
``MultiHeadAttention.forward(..., rotate=rope)``. Notebook 02's experiment (the "token k places
back" task and its one-layer encoder) is in ``course_lib.experiments.positional``.

Official implementations: the sinusoidal table of tensor2tensor
(``tensor2tensor/layers/common_attention.py``, ``get_timing_signal_1d``, which concatenates
the sines and cosines instead of interleaving them); RoPE of RoFormer
(``ZhuiyiTechnology/roformer``) and, with the rotate-half pairing, Hugging Face's
``transformers/models/llama/modeling_llama.py`` (``rotate_half``, ``apply_rotary_pos_emb``).
"""
from __future__ import annotations

import torch
from torch import nn

from course_lib import ShapeError

__all__ = ["sinusoidal_table", "sinusoidal_shift_matrix", "SinusoidalPositional",
           "LearnedPositional", "RotaryEmbedding", "rotate_pairs", "rotate_half",
           "rope_half_permutation", "rope_angles", "local_mask"]


def _check_even(d: int, name: str) -> None:
    if not isinstance(d, int) or d < 2 or d % 2:
        raise ValueError(f"{name} must be a positive even int (pairs of sin/cos), got {d!r}")


def _check_max_len(max_len: int) -> None:
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The (max_len, d_model) table PE[pos, 2i] = sin(pos/base^(2i/d)), PE[pos, 2i+1] = cos(...).

    Row = position ``pos`` (0 .. max_len-1), column = component (2i: sine, 2i+1: cosine of pair i).
    Vaswani et al. (2017) §3.5.
    """
    _check_even(d_model, "d_model")
    _check_max_len(max_len)
    pos = torch.arange(max_len, dtype=torch.float64)[:, None]          # (max_len, 1)
    two_i = torch.arange(0, d_model, 2, dtype=torch.float64)[None, :]  # (1, d/2)
    angle = pos / base ** (two_i / d_model)                            # (max_len, d/2)
    pe = torch.empty(max_len, d_model, dtype=torch.float64)
    pe[:, 0::2], pe[:, 1::2] = angle.sin(), angle.cos()
    return pe.float()


def sinusoidal_shift_matrix(k: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The (d, d) matrix M_k with PE(pos + k) = M_k PE(pos) for every pos (block-diagonal rotation).

    Block i is [[cos kω_i, sin kω_i], [-sin kω_i, cos kω_i]], ω_i = base^(-2i/d): from
    sin(a + b) = sin a cos b + cos a sin b and cos(a + b) = cos a cos b − sin a sin b.
    """
    _check_even(d_model, "d_model")
    omega = base ** (-torch.arange(0, d_model, 2, dtype=torch.float64) / d_model)  # (d/2,)
    c, s = (k * omega).cos(), (k * omega).sin()                                    # (d/2,)
    m = torch.zeros(d_model, d_model, dtype=torch.float64)
    idx = torch.arange(0, d_model, 2)
    m[idx, idx], m[idx, idx + 1] = c, s            # new sin = cos·sin + sin·cos
    m[idx + 1, idx], m[idx + 1, idx + 1] = -s, c   # new cos = −sin·sin + cos·cos
    return m.float()


def _check_length(x: torch.Tensor, offset: int, max_len: int, d_model: int) -> None:
    if x.dim() != 3 or x.shape[-1] != d_model:
        raise ShapeError(f"expected x of shape (b, t, d_model={d_model}), received {tuple(x.shape)}")
    if offset < 0 or offset + x.shape[1] > max_len:
        raise ValueError(f"positions {offset}..{offset + x.shape[1] - 1} exceed the positional "
                         f"table of max_len={max_len} (sequence length {x.shape[1]}, offset {offset})")


class SinusoidalPositional(nn.Module):
    """x + PE[offset : offset + t]: fixed, no parameters (Vaswani et al. 2017, §3.5)."""

    def __init__(self, d_model: int, max_len: int = 4096):
        super().__init__()
        self.d_model, self.max_len = d_model, max_len
        self.register_buffer("pe", sinusoidal_table(max_len, d_model), persistent=False)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_length(x, offset, self.max_len, self.d_model)
        return x + self.pe[offset:offset + x.shape[1]]                  # (b, t, d)


class LearnedPositional(nn.Module):
    """x + P[offset : offset + t] with a trained table P (Gehring et al. 2017; BERT, GPT-2:
    ``wpe`` in openai/gpt-2 ``src/model.py``)."""

    def __init__(self, d_model: int, max_len: int = 512, init_std: float = 0.02):
        super().__init__()
        _check_max_len(max_len)
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"d_model must be a positive int, got {d_model!r}")
        self.d_model, self.max_len, self.init_std = d_model, max_len, init_std
        self.table = nn.Embedding(max_len, d_model)
        nn.init.normal_(self.table.weight, std=init_std)

    def forward(self, x: torch.Tensor, offset: int = 0) -> torch.Tensor:
        _check_length(x, offset, self.max_len, self.d_model)
        pos = torch.arange(offset, offset + x.shape[1], device=x.device)
        return x + self.table(pos)                                       # (b, t, d)


def rope_angles(positions: torch.Tensor, d_head: int, base: float = 10000.0) -> torch.Tensor:
    """Angles m·θ_i for positions (t,) -> (t, dh/2), θ_i = base^(-2i/dh): the Θ below Eq. 15
    of Su et al. (2021), whose i counts from 1 (here from 0)."""
    _check_even(d_head, "d_head")
    if not isinstance(positions, torch.Tensor) or positions.dim() != 1:
        got = tuple(positions.shape) if isinstance(positions, torch.Tensor) else type(positions).__name__
        raise ShapeError(f"rope_angles: expected positions of shape (t,), received {got}")
    theta = base ** (-torch.arange(0, d_head, 2, dtype=torch.float64) / d_head)  # (dh/2,)
    return positions.double()[:, None] * theta[None, :]


def _check_rotation(name: str, x: torch.Tensor, angles: torch.Tensor) -> None:
    if angles.dim() != 2 or x.dim() < 2:
        raise ShapeError(f"{name}: expected x (..., t, dh) and angles (t, dh/2), received "
                         f"{tuple(x.shape)} and {tuple(angles.shape)}")
    if x.shape[-1] != 2 * angles.shape[-1] or x.shape[-2] != angles.shape[0]:
        raise ShapeError(f"{name}: expected x (..., t={angles.shape[0]}, "
                         f"dh={2 * angles.shape[-1]}), received {tuple(x.shape)}")


def rotate_pairs(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """Rotate each interleaved pair (x_2i, x_2i+1) of x (..., t, dh) by angles (t, dh/2).

        [x'_2i, x'_2i+1] = [x_2i cos a − x_2i+1 sin a,  x_2i sin a + x_2i+1 cos a]

    The computationally efficient form of RoPE, Su et al. (2021) §3.4.2, Eq. 34.
    """
    _check_rotation("rotate_pairs", x, angles)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)     # (t, dh/2)
    x1, x2 = x[..., 0::2], x[..., 1::2]                                # (..., t, dh/2)
    out = torch.empty_like(x)
    out[..., 0::2] = x1 * cos - x2 * sin
    out[..., 1::2] = x1 * sin + x2 * cos
    return out


def rotate_half(x: torch.Tensor, angles: torch.Tensor) -> torch.Tensor:
    """RoPE with the "rotate-half" pairing of LLaMA-style checkpoints: x_i pairs with x_i+dh/2.

        [x'_i, x'_i+dh/2] = [x_i cos a − x_i+dh/2 sin a,  x_i sin a + x_i+dh/2 cos a]

    The same rotation as ``rotate_pairs`` on permuted features: with
    p = rope_half_permutation(dh), rotate_half(x[..., p], a) == rotate_pairs(x, a)[..., p].
    """
    _check_rotation("rotate_half", x, angles)
    cos, sin = angles.cos().to(x.dtype), angles.sin().to(x.dtype)     # (t, dh/2)
    x1, x2 = x.chunk(2, dim=-1)                                        # (..., t, dh/2) each
    return torch.cat([x1 * cos - x2 * sin, x1 * sin + x2 * cos], dim=-1)  # (..., t, dh)


def rope_half_permutation(d_head: int) -> torch.Tensor:
    """The (dh,) feature order (0, 2, 4, …, 1, 3, 5, …) that turns interleaved pairs
    (2i, 2i+1) into rotate-half pairs (i, i + dh/2)."""
    _check_even(d_head, "d_head")
    return torch.cat([torch.arange(0, d_head, 2), torch.arange(1, d_head, 2)])


class RotaryEmbedding(nn.Module):
    """RoPE: ``rope(q, k, offset)`` rotates per-head q, k (b, nh, t, dh) by their positions
    (interleaved pairs, ``rotate_pairs``)."""

    def __init__(self, d_head: int, max_len: int = 4096, base: float = 10000.0):
        super().__init__()
        _check_even(d_head, "d_head")
        _check_max_len(max_len)
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


def local_mask(t: int, window: int, device=None) -> torch.Tensor:
    """Boolean (t, t) mask, True where |m − n| < window: each query sees only nearby keys."""
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    pos = torch.arange(t, device=device)
    return (pos[:, None] - pos[None, :]).abs() < window                     # (t, t)
