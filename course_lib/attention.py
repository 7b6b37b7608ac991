"""Attention (lecture 01): scaled dot-product attention, masks and multi-head attention.

    Attention(Q, K, V) = softmax(Q Kᵀ / √d_k) V,   Q = X W_Q,  K = X W_K,  V = X W_V

Vaswani et al. (2017), "Attention Is All You Need": Eq. 1 (§3.2.1) and multi-head attention
(§3.2.2). Official implementation: tensorflow/tensor2tensor,
``tensor2tensor/layers/common_attention.py`` (``dot_product_attention``,
``multihead_attention``); PyTorch's ``F.scaled_dot_product_attention`` and
``nn.MultiheadAttention`` are the references the tests compare against.

Two implementations with the same signature sit side by side: ``attention_naive`` writes the
equation out (and returns the weights, for plots), ``MultiHeadAttention`` uses PyTorch's fused
``F.scaled_dot_product_attention`` unless the weights are asked for.

Masks are boolean and ``True`` means "may attend" (PyTorch's ``nn.MultiheadAttention`` uses the
opposite convention for its boolean ``attn_mask``; ``load_from_torch`` handles the weights only).
Shapes: ``b`` batch, ``nh`` heads (the paper's h; ``h`` is the SSM hidden state in 06-07),
``t`` query length, ``s`` key length, ``d`` d_model, ``dh`` d_head.
"""
from __future__ import annotations

import math
from collections.abc import Callable

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

from course_lib import ShapeError, check_shapes

__all__ = ["attention_naive", "attention", "attention_tiled", "causal_mask", "padding_mask", "split_heads",
           "merge_heads", "MultiHeadAttention", "KVCache", "ConcatKVCache", "check_mask"]


def causal_mask(t: int, s: int | None = None, device=None) -> torch.Tensor:
    """Boolean (t, s) mask, True on and below the diagonal: query i sees keys j <= i (+ s - t);
    the decoder's "masking out (setting to −∞)" of Vaswani et al. (2017), §3.2.3.

    With a cache (s > t) the t new queries are the *last* t positions of the s keys.
    """
    s = t if s is None else s
    if t < 1 or s < t:
        raise ValueError(f"causal_mask needs 1 <= t <= s, got t={t}, s={s}")
    i = torch.arange(t, device=device)[:, None] + (s - t)  # (t, 1) absolute query positions
    j = torch.arange(s, device=device)[None, :]            # (1, s)
    return j <= i                                           # (t, s)


def padding_mask(lengths: torch.Tensor | list[int], s: int | None = None) -> torch.Tensor:
    """Boolean (b, 1, 1, s) mask, True on the first ``lengths[i]`` keys of sequence i."""
    lengths = torch.as_tensor(lengths)
    if lengths.dim() != 1:
        raise ValueError(f"lengths: expected shape (b,), received {tuple(lengths.shape)}")
    s = int(lengths.max()) if s is None else s
    if int(lengths.max()) > s or int(lengths.min()) < 1:
        raise ValueError(f"lengths must lie in [1, s={s}], got {lengths.tolist()}")
    keep = torch.arange(s)[None, :] < lengths[:, None]      # (b, s)
    return keep[:, None, None, :]                           # (b, 1, 1, s)


def check_mask(mask: torch.Tensor | None, target: tuple[int, ...]) -> torch.Tensor | None:
    """Validate a boolean mask that must broadcast to ``target`` = (..., t, s)."""
    if mask is None:
        return None
    if not isinstance(mask, torch.Tensor) or mask.dtype != torch.bool:
        kind = mask.dtype if isinstance(mask, torch.Tensor) else type(mask).__name__
        raise ValueError(f"mask: expected a bool tensor (True = may attend), received {kind}")
    ok = mask.dim() <= len(target) and all(
        m in (1, n) for m, n in zip(reversed(mask.shape), reversed(target)))
    if not ok or mask.shape[-1] != target[-1]:
        raise ShapeError(f"mask: expected a shape broadcastable to {tuple(target)} "
                         f"(..., t, s) with s={target[-1]}, received {tuple(mask.shape)}")
    return mask


def _check_qkv(q, k, v, mask):
    """Shared input validation of the attention functions; returns the (b.., t, s) target."""
    for name, x in (("q", q), ("k", k), ("v", v)):
        if not isinstance(x, torch.Tensor) or x.dim() < 2:
            got = tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__
            raise ShapeError(f"{name}: expected shape (..., length, width), received {got}")
    if q.shape[:-2] != k.shape[:-2] or k.shape[:-1] != v.shape[:-1]:
        raise ShapeError(f"q, k, v: expected q (..., t, dh), k (..., s, dh), v (..., s, dv) with "
                         f"equal leading dims, received q {tuple(q.shape)}, k {tuple(k.shape)}, "
                         f"v {tuple(v.shape)}")
    if q.shape[-1] != k.shape[-1]:
        raise ShapeError(f"q, k: expected the same width dh, received q {tuple(q.shape)} "
                         f"and k {tuple(k.shape)}")
    target = (*q.shape[:-1], k.shape[-2])
    check_mask(mask, target)
    return target


def attention_naive(q, k, v, mask=None, scale: float | None = None, dropout_p: float = 0.0):
    """softmax(q kᵀ · scale) v written out (Vaswani et al. 2017, Eq. 1); returns ``(out, weights)``.

    q: (..., t, dh), k: (..., s, dh), v: (..., s, dv), mask broadcastable to (..., t, s)
    (True = may attend). scale defaults to 1/√dh. out: (..., t, dv), weights: (..., t, s).
    dropout_p > 0 drops attention *weights* (each zeroed with probability p, the others scaled
    by 1/(1-p)) before they multiply v, as ``F.scaled_dot_product_attention(dropout_p=p)``
    does; the weights returned are the ones used (like ``nn.MultiheadAttention``'s).
    """
    _check_qkv(q, k, v, mask)
    if not 0.0 <= dropout_p < 1.0:
        raise ValueError(f"dropout_p must lie in [0, 1), got {dropout_p}")
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    scores = (q @ k.transpose(-2, -1)) * scale                     # (..., t, s)
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    weights = scores.softmax(dim=-1)                               # (..., t, s), rows sum to 1
    if dropout_p > 0:
        weights = F.dropout(weights, dropout_p)                    # rows sum to 1 on average
    return weights @ v, weights                                    # (..., t, dv), (..., t, s)


def attention(q, k, v, mask=None, scale: float | None = None, is_causal: bool = False):
    """Fused attention (``F.scaled_dot_product_attention``), same maths as ``attention_naive``
    (Eq. 1 of Vaswani et al. 2017).

    Never materializes the (t, s) weights on the fused kernels, which is why it is faster and
    uses less memory at long lengths. Returns ``out`` only: (..., t, dv).
    """
    _check_qkv(q, k, v, mask)
    if is_causal and mask is not None:
        raise ValueError("pass either is_causal=True or a mask, not both")
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, is_causal=is_causal,
                                          scale=scale)


def attention_tiled(q, k, v, mask=None, scale: float | None = None, is_causal: bool = False,
                    block_size: int = 128):
    """FlashAttention's idea in plain PyTorch: exact attention, one (B, B) tile of scores at a time.

    Dao et al. (2022), Algorithm 1, in the loop order of Dao (2023) (FlashAttention-2,
    Algorithm 1): for each query block, stream the key/value blocks and keep the online softmax
    (Milakov & Gimelshein 2018) statistics, a running row max m and normaliser ℓ:

        S = q_i k_jᵀ·scale,  m' = max(m, rowmax S),  P = exp(S − m'),
        ℓ' = e^(m − m') ℓ + rowsum P,   o' = e^(m − m') o + P v_j,   out_i = o / ℓ

    Only O(t·B) numbers are alive at once instead of the (t, s) weights: memory O(t), not O(t²).
    Official (CUDA): Dao-AILab/flash-attention, ``csrc/flash_attn``. Same signature and result
    as ``attention``: q (..., t, dh), k (..., s, dh), v (..., s, dv) -> (..., t, dv).
    """
    target = _check_qkv(q, k, v, mask)
    if is_causal and mask is not None:
        raise ValueError("pass either is_causal=True or a mask, not both")
    if not isinstance(block_size, int) or block_size < 1:
        raise ValueError(f"block_size must be a positive int, got {block_size!r}")
    t, s = target[-2], target[-1]
    scale = 1.0 / math.sqrt(q.shape[-1]) if scale is None else scale
    mask = None if mask is None else mask.expand(target)             # a view: no (t, s) copy
    blocks = []
    for i in range(0, t, block_size):
        q_i = q[..., i:i + block_size, :] * scale                     # (..., Bq, dh)
        m = q_i.new_full(q_i.shape[:-1], float("-inf"))               # (..., Bq) running max
        l = q_i.new_zeros(q_i.shape[:-1])                             # (..., Bq) normaliser ℓ
        o = q_i.new_zeros(*q_i.shape[:-1], v.shape[-1])               # (..., Bq, dv)
        for j in range(0, s, block_size):
            scores = q_i @ k[..., j:j + block_size, :].transpose(-2, -1)   # (..., Bq, Bk)
            keep = _tile_mask(mask, is_causal, i, j, scores.shape[-2:], t, s, q.device)
            if keep is not None:
                scores = scores.masked_fill(~keep, float("-inf"))
            m_new = torch.maximum(m, scores.amax(-1))                  # (..., Bq)
            m_safe = m_new.masked_fill(m_new == float("-inf"), 0.0)    # a row with no key yet
            p = torch.exp(scores - m_safe[..., None])                  # (..., Bq, Bk)
            alpha = torch.exp(m - m_safe)                              # (..., Bq) rescales the past
            l = alpha * l + p.sum(-1)                                  # (..., Bq)
            o = alpha[..., None] * o + p @ v[..., j:j + block_size, :]  # (..., Bq, dv)
            m = m_new
        blocks.append(o / l[..., None])                                # (..., Bq, dv)
    return torch.cat(blocks, dim=-2)                                   # (..., t, dv)


def _tile_mask(mask, is_causal: bool, i: int, j: int, size, t: int, s: int, device):
    """The (Bq, Bk) part of the mask for query block i, key block j (None: all visible)."""
    if mask is not None:
        return mask[..., i:i + size[0], j:j + size[1]]
    if not is_causal:
        return None
    rows = torch.arange(i, i + size[0], device=device)[:, None] + (s - t)   # (Bq, 1)
    return torch.arange(j, j + size[1], device=device)[None, :] <= rows      # (Bq, Bk)


def split_heads(x: torch.Tensor, n_heads: int) -> torch.Tensor:
    """(b, t, d) -> (b, nh, t, dh): cut the width into nh heads of dh = d / nh features."""
    if x.dim() != 3 or x.shape[-1] % n_heads:
        raise ShapeError(f"split_heads: expected (b, t, d) with d divisible by nh={n_heads}, "
                         f"received {tuple(x.shape)}")
    return rearrange(x, "b t (nh dh) -> b nh t dh", nh=n_heads)


def merge_heads(x: torch.Tensor) -> torch.Tensor:
    """(b, nh, t, dh) -> (b, t, nh*dh): concatenate the heads again."""
    if x.dim() != 4:
        raise ShapeError(f"merge_heads: expected (b, nh, t, dh), received {tuple(x.shape)}")
    return rearrange(x, "b nh t dh -> b t (nh dh)")


class KVCache:
    """Keys and values of the positions seen so far, for incremental (autoregressive) decoding.

    The buffers are preallocated: the first ``append`` allocates (b, nh, max_len, dh) for k and
    for v, and each step writes only its t new positions in place, so T decoding steps copy
    O(T) numbers in all. (``ConcatKVCache``, which re-concatenates every step, copies the
    whole cache each time: O(T²).) Without ``max_len``, or past it, the capacity doubles, so
    the copying stays O(T) amortized. ``k`` and ``v`` are views of the filled part.
    """

    def __init__(self, max_len: int | None = None):
        if max_len is not None and max_len < 1:
            raise ValueError(f"max_len must be >= 1 (or None), got {max_len}")
        self.max_len = max_len
        self._k = self._v = None    # (b, nh, capacity, dh) buffers
        self._n = 0                 # positions filled

    @property
    def length(self) -> int:
        return self._n

    @property
    def capacity(self) -> int:
        """Positions the buffers hold before they must grow (0 before the first append)."""
        return 0 if self._k is None else self._k.shape[2]

    @property
    def k(self) -> torch.Tensor | None:
        return None if self._k is None else self._k[:, :, :self._n]   # (b, nh, s, dh)

    @property
    def v(self) -> torch.Tensor | None:
        return None if self._v is None else self._v[:, :, :self._n]   # (b, nh, s, dh)

    def append(self, k: torch.Tensor, v: torch.Tensor):
        """Store k, v (b, nh, t, dh) after the cached positions; return all (b, nh, s + t, dh)."""
        if torch.is_grad_enabled() and (k.requires_grad or v.requires_grad):
            # under autograd, writing in place would modify what earlier steps saved for backward
            return ConcatKVCache.append(self, k, v)
        self._check(k, v)
        end = self._n + k.shape[2]
        if end > self.capacity:
            self._grow(k, end)
        self._k[:, :, self._n:end] = k                  # copies only the t new positions
        self._v[:, :, self._n:end] = v
        self._n = end
        return self.k, self.v

    def _grow(self, k: torch.Tensor, needed: int):
        """Allocate max_len on first use (if it fits), else double the capacity; keep the data."""
        first = (self.max_len or 0) if self.capacity == 0 else 0
        size = max(needed, first, 2 * self.capacity)
        old_k, old_v, n = self.k, self.v, self._n
        self._k = k.new_empty(k.shape[0], k.shape[1], size, k.shape[3])   # (b, nh, size, dh)
        self._v = k.new_empty(k.shape[0], k.shape[1], size, k.shape[3])
        if n:
            self._k[:, :, :n], self._v[:, :, :n] = old_k, old_v

    def _check(self, k: torch.Tensor, v: torch.Tensor):
        ref = None if self._k is None else self._k.shape
        fits = k.dim() == 4 and k.shape == v.shape and (
            ref is None or (k.shape[:2] == ref[:2] and k.shape[3] == ref[3]))
        if not fits:
            cached = None if self._k is None else tuple(self.k.shape)
            raise ShapeError(f"KVCache.append: expected k, v of one shape (b, nh, t, dh) that "
                             f"continues the cache {cached}, received k {tuple(k.shape)}, "
                             f"v {tuple(v.shape)}")


class ConcatKVCache(KVCache):
    """The textbook cache, kept as the reference: ``torch.cat`` of the whole cache every step
    (O(s) copying per step, O(T²) over T steps). Same interface and results as ``KVCache``."""

    def append(self, k: torch.Tensor, v: torch.Tensor):
        self._check(k, v)
        self._k = k if self._k is None else torch.cat([self.k, k], dim=2)   # (b, nh, s + t, dh)
        self._v = v if self._v is None else torch.cat([self.v, v], dim=2)
        self._n = self._k.shape[2]
        return self._k, self._v


class MultiHeadAttention(nn.Module):
    """Multi-head attention (Vaswani et al. 2017, §3.2.2): project, split into heads, attend in
    parallel, concat, project.

        head_i = Attention(X W_Q^i, M W_K^i, M W_V^i),  MHA = Concat(head_1..head_nh) W_O

    M = X for self-attention, M = ``memory`` (e.g. the encoder output) for cross-attention.
    ``qkv_proj`` holds W_Q, W_K, W_V stacked as one (3d, d) matrix, exactly like
    ``nn.MultiheadAttention.in_proj_weight``, so weights copy over one to one.
    """

    def __init__(self, d_model: int, n_heads: int, bias: bool = True, dropout: float = 0.0):
        super().__init__()
        if d_model < 1 or n_heads < 1 or d_model % n_heads:
            raise ValueError(f"d_model must be divisible by n_heads: got d_model={d_model}, "
                             f"n_heads={n_heads} (d_model % n_heads = {d_model % max(n_heads, 1)})")
        self.d_model, self.n_heads, self.d_head = d_model, n_heads, d_model // n_heads
        self.dropout = dropout
        self.qkv_proj = nn.Linear(d_model, 3 * d_model, bias=bias)
        self.out_proj = nn.Linear(d_model, d_model, bias=bias)

    def project(self, x: torch.Tensor, memory: torch.Tensor | None = None):
        """Q from x; K, V from memory (cross) or x (self). Each (b, nh, len, dh)."""
        d = self.d_model
        if memory is None:
            q, k, v = self.qkv_proj(x).split(d, dim=-1)                 # 3 x (b, t, d)
        else:
            w, bias = self.qkv_proj.weight, self.qkv_proj.bias
            q = F.linear(x, w[:d], None if bias is None else bias[:d])   # (b, t, d)
            k, v = F.linear(memory, w[d:], None if bias is None else bias[d:]).split(d, dim=-1)
        return tuple(split_heads(z, self.n_heads) for z in (q, k, v))

    def forward(self, x: torch.Tensor, memory: torch.Tensor | None = None, mask=None,
                is_causal: bool = False, need_weights: bool = False,
                cache: KVCache | None = None,
                rotate: Callable[[torch.Tensor, torch.Tensor, int], tuple] | None = None):
        """x: (b, t, d); memory: (b, s, d) or None; mask broadcastable to (b, nh, t, s).

        is_causal: block future keys (self-attention). cache: a KVCache that new keys/values
        are appended to (incremental decoding). rotate(q, k, offset): e.g. RoPE, applied to
        the per-head q and k. Returns ``(out (b, t, d), weights (b, nh, t, s) or None)``.
        In training mode, dropout drops attention weights on both paths (fused and naive); the
        weights returned are the dropped ones that multiplied v.
        """
        self._check_inputs(x, memory)
        q, k, v = self.project(x, memory)                               # (b, nh, t|s, dh)
        offset = 0 if cache is None else cache.length
        if rotate is not None:
            q, k = rotate(q, k, offset)
        if cache is not None:
            k, v = cache.append(k, v)                                   # (b, nh, offset+t, dh)
        t, s = q.shape[-2], k.shape[-2]
        if is_causal:
            causal = causal_mask(t, s, device=x.device)                 # (t, s)
            mask = causal if mask is None else (check_mask(mask, (*q.shape[:-1], s)) & causal)
        drop = self.dropout if self.training else 0.0
        if need_weights:
            out, weights = attention_naive(q, k, v, mask=mask, dropout_p=drop)
        else:
            _check_qkv(q, k, v, mask)
            out = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=drop)
            weights = None
        return self.out_proj(merge_heads(out)), weights                  # (b, t, d)

    def _check_inputs(self, x, memory):
        bound = check_shapes([(x, ("b", "t", self.d_model), "x")])
        if memory is not None:
            check_shapes([(memory, ("b", "s", self.d_model), "memory")], bound)

    @torch.no_grad()
    def load_from_torch(self, mha: nn.MultiheadAttention) -> MultiHeadAttention:
        """Copy the weights of a ``nn.MultiheadAttention(d_model, n_heads, batch_first=True)``."""
        if mha.embed_dim != self.d_model or mha.num_heads != self.n_heads:
            raise ValueError(f"expected nn.MultiheadAttention({self.d_model}, {self.n_heads}), "
                             f"received ({mha.embed_dim}, {mha.num_heads})")
        self.qkv_proj.weight.copy_(mha.in_proj_weight)
        self.out_proj.weight.copy_(mha.out_proj.weight)
        if self.qkv_proj.bias is not None:
            self.qkv_proj.bias.copy_(mha.in_proj_bias)
            self.out_proj.bias.copy_(mha.out_proj.bias)
        return self
