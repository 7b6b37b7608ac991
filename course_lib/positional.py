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
``MultiHeadAttention.forward(..., rotate=rope)``. The end of the module holds notebook 02's
experiment: the "token k places back" task and a one-layer encoder with a switchable encoding.
"""
from __future__ import annotations

import os

import torch
from torch import nn

from course_lib import ShapeError

__all__ = ["sinusoidal_table", "sinusoidal_shift_matrix", "SinusoidalPositional",
           "LearnedPositional", "RotaryEmbedding", "rotate_pairs", "rotate_half",
           "rope_half_permutation", "rope_angles", "tokens_back",
           "local_mask", "tokens_back_accuracy", "PositionTaskModel", "ENCODINGS",
           "load_position_models"]


def _check_even(d: int, name: str) -> None:
    if not isinstance(d, int) or d < 2 or d % 2:
        raise ValueError(f"{name} must be a positive even int (pairs of sin/cos), got {d!r}")


def _check_max_len(max_len: int) -> None:
    if not isinstance(max_len, int) or max_len < 1:
        raise ValueError(f"max_len must be a positive int, got {max_len!r}")


def sinusoidal_table(max_len: int, d_model: int, base: float = 10000.0) -> torch.Tensor:
    """The (max_len, d_model) table PE[pos, 2i] = sin(pos/base^(2i/d)), PE[pos, 2i+1] = cos(...).

    Row = position ``pos`` (0 .. max_len-1), column = component (2i: sine, 2i+1: cosine of pair i).
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
    """Angles m·θ_i for positions (t,) -> (t, dh/2), θ_i = base^(-2i/dh)."""
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


# ----------------------------------------------------------------- notebook 02's experiment
IGNORE = -100
ENCODINGS = ("none", "sinusoidal", "learned", "rope")


def tokens_back(batch: int, length: int, k: int = 3, n_tokens: int = 16,
                generator: torch.Generator | None = None):
    """The task "output the token k places back": targets[:, i] = inputs[:, i - k].

    inputs (b, t) uniform over 0..n_tokens-1; targets (b, t) with the first k positions = -100
    (not scored). Content alone cannot solve it: every answer is a matter of *position*.
    """
    for name, value in (("batch", batch), ("length", length), ("k", k), ("n_tokens", n_tokens)):
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    if k >= length:
        raise ValueError(f"k={k} must be smaller than length={length} (nothing would be scored)")
    inputs = torch.randint(0, n_tokens, (batch, length), generator=generator)   # (b, t)
    targets = torch.full_like(inputs, IGNORE)
    targets[:, k:] = inputs[:, :-k]
    return inputs, targets


def local_mask(t: int, window: int, device=None) -> torch.Tensor:
    """Boolean (t, t) mask, True where |m − n| < window: each query sees only nearby keys."""
    if not isinstance(window, int) or window < 1:
        raise ValueError(f"window must be a positive int, got {window!r}")
    pos = torch.arange(t, device=device)
    return (pos[:, None] - pos[None, :]).abs() < window                     # (t, t)


class PositionTaskModel(nn.Module):
    """Token embedding + one positional encoding + n bidirectional pre-norm encoder layers.

    encoding: "none" (attention alone: permutation-equivariant), "sinusoidal" or "learned"
    (added to the embeddings), "rope" (rotates q, k in every layer). tokens (b, t) -> logits (b, t, v).
    """

    def __init__(self, encoding: str, vocab_size: int = 16, d_model: int = 64, n_heads: int = 4,
                 n_layers: int = 1, d_ff: int = 128, max_len: int = 64):
        super().__init__()
        from course_lib.transformer import EncoderLayer  # transformer imports this module

        if encoding not in ENCODINGS:
            raise ValueError(f"encoding must be one of {ENCODINGS}, got {encoding!r}")
        self.encoding, self.max_len = encoding, max_len
        self.embed = nn.Embedding(vocab_size, d_model)
        self.pos = None                                   # added to the token embeddings
        if encoding == "sinusoidal":
            self.pos = SinusoidalPositional(d_model, max_len)
        elif encoding == "learned":
            self.pos = LearnedPositional(d_model, max_len)
        self.rope = RotaryEmbedding(d_model // n_heads, max_len) if encoding == "rope" else None
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, norm_first=True)
                                    for _ in range(n_layers))
        self.norm, self.head = nn.LayerNorm(d_model), nn.Linear(d_model, vocab_size)

    def forward(self, tokens: torch.Tensor, need_weights: bool = False, window: int | None = None):
        """Returns ``(logits (b, t, v), [weights (b, nh, t, t) or None per layer])``.

        window: if given, query m only sees keys n with |m − n| < window (a local mask).
        """
        if tokens.dim() != 2:
            raise ShapeError(f"tokens: expected shape (b, t), received {tuple(tokens.shape)}")
        x = self.embed(tokens)                                               # (b, t, d)
        if self.pos is not None:
            x = self.pos(x)                                                  # x + P[:t]
        mask = None if window is None else local_mask(tokens.shape[1], window, tokens.device)
        maps = []
        for layer in self.layers:
            x, w = layer(x, mask=mask, need_weights=need_weights, rotate=self.rope)  # (b, t, d)
            maps.append(w)
        return self.head(self.norm(x)), maps                                 # (b, t, v)


@torch.no_grad()
def tokens_back_accuracy(model: nn.Module, lengths, k: int = 3, n_tokens: int = 16,
                         n_seqs: int = 500, seed: int = 1234, train_len: int | None = None,
                         window: int | None = None) -> dict:
    """Held-out accuracy of ``model`` on ``tokens_back`` at each length (fixed seeded test sets).

    Returns {length: accuracy over scored positions}; with ``train_len`` also
    {f"{length}_new": accuracy on positions >= train_len only} (positions never trained on).
    window: evaluate with ``local_mask`` (keys within |m − n| < window only).
    """
    model.eval()
    device = next(model.parameters()).device
    out = {}
    for length in lengths:
        x, y = tokens_back(n_seqs, length, k, n_tokens, torch.Generator().manual_seed(seed + length))
        x, y = x.to(device), y.to(device)
        correct = model(x, window=window)[0].argmax(-1) == y                              # (b, t)
        scored = y != IGNORE
        out[str(length)] = correct[scored].float().mean().item()
        if train_len is not None and length > train_len:
            out[f"{length}_new"] = correct[:, train_len:].float().mean().item()
    return out


def load_position_models(path=None) -> tuple[nn.ModuleDict, dict, dict]:
    """The shipped experiment (tools/train_positional.py): ({encoding: model}, config, metrics)."""
    import json

    from safetensors import safe_open

    from course_lib.training import data_dir, load_checkpoint

    path = data_dir() / "positional_models.safetensors" if path is None else path
    if not os.path.exists(path):
        raise ValueError(f"{path} not found: run `python tools/train_positional.py` to build it")
    with safe_open(str(path), framework="pt") as f:
        config = json.loads((f.metadata() or {}).get("config", "{}"))
    models = nn.ModuleDict({e: PositionTaskModel(e, **config["model"]) for e in ENCODINGS})
    metrics = load_checkpoint(models, path)["metrics"]
    return models.eval(), config, metrics
