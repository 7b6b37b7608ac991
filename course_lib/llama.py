"""From GPT-2 to today's decoders (lecture 08): the Llama-3-style block and speculative decoding.

A Llama-style decoder keeps GPT's recipe (pre-norm blocks, causal self-attention, next-token
loss) and swaps four parts:

* RMSNorm instead of LayerNorm (Zhang & Sennrich, 2019, Eq. 4): x / RMS(x) · g, no mean, no bias
  (the course's one RMSNorm is ``course_lib.mamba.RMSNorm``);
* a SwiGLU feed-forward (Shazeer, 2020, Eq. 6): W_2 (SiLU(x W_1) ⊙ x W_3), no biases;
* RoPE on the queries and keys instead of a learned position table (Su et al., 2021; the
  course's ``course_lib.positional.RotaryEmbedding``);
* grouped-query attention (Ainslie et al., 2023): nh query heads share n_kv_heads key/value
  heads (n_kv_heads = nh: multi-head; 1: multi-query, Shazeer, 2019), so the KV cache holds
  n_kv_heads heads per layer instead of nh.

Papers: Touvron et al. (2023), LLaMA; Dubey et al. (2024), The Llama 3 Herd of Models.
Official implementation: meta-llama/llama3, llama/model.py (``RMSNorm``, ``Attention``,
``repeat_kv``, ``FeedForward``, ``TransformerBlock``); the Hugging Face one:
huggingface/transformers, models/llama/modeling_llama.py.

Packed sequences: several documents in one row attend only inside their own document
(``document_mask``). Speculative decoding (Leviathan et al., 2023, Algorithm 1; Chen et al.,
2023): a small draft model proposes k tokens, the target model scores them in one pass, and
the accept/reject rule keeps the output distributed exactly as the target's.
Shapes: b batch, t length, d d_model, nh query heads, nkv key/value heads, dh d_head,
vocab the vocabulary axis.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import KVCache, attention, causal_mask, merge_heads, split_heads
from course_lib.common import ShapeError, check_shapes, check_token_ids
from course_lib.gpt import next_token_probs
from course_lib.mamba import RMSNorm
from course_lib.positional import RotaryEmbedding

__all__ = ["LlamaConfig", "SwiGLU", "repeat_kv", "GroupedQueryAttention", "document_mask",
           "LlamaBlock", "Llama", "cache_bytes", "kv_bytes_per_token", "accept_probability",
           "residual_distribution", "speculative_round", "speculative_generate",
           "speculative_distribution", "target_distribution", "LLAMA3_8B"]

# Llama-3-8B's published attention shape (Dubey et al., 2024, Table 3): layers, query heads,
# KV heads, head width (d_model 4096 / 32 heads)
LLAMA3_8B = {"n_layers": 32, "n_heads": 32, "n_kv_heads": 8, "d_head": 128}


@dataclass
class LlamaConfig:
    """Hyper-parameters; the defaults are the course's tiny CPU model (about the parameter
    count of 05's tiny GPT: d_ff = 238 makes up for GPT's position table and biases)."""
    vocab_size: int = 183
    max_len: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    n_kv_heads: int = 2            # = n_heads: multi-head; 1: multi-query
    d_ff: int = 238
    eps: float = 1e-5              # RMSNorm ε (Llama 3: 1e-5)
    rope_base: float = 10000.0     # Llama 3 uses 500000 for its 8192-token context

    def __post_init__(self):
        for name in ("vocab_size", "max_len", "d_model", "n_layers", "n_heads", "n_kv_heads",
                     "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"LlamaConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.d_model % self.n_heads or self.n_heads % self.n_kv_heads:
            raise ValueError(f"LlamaConfig: d_model must be divisible by n_heads and n_heads by "
                             f"n_kv_heads, got d_model={self.d_model}, n_heads={self.n_heads}, "
                             f"n_kv_heads={self.n_kv_heads}")


class SwiGLU(nn.Module):
    """FFN_SwiGLU(x) = W_2 (SiLU(x W_1) ⊙ x W_3), Shazeer (2020), Eq. 6 (no biases).

    Llama's names: ``gate_proj`` = W_1, ``up_proj`` = W_3, ``down_proj`` = W_2."""

    def __init__(self, d_model: int, d_ff: int):
        super().__init__()
        self.gate_proj = nn.Linear(d_model, d_ff, bias=False)
        self.up_proj = nn.Linear(d_model, d_ff, bias=False)
        self.down_proj = nn.Linear(d_ff, d_model, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))    # (b, t, d)


def repeat_kv(x: torch.Tensor, n_rep: int) -> torch.Tensor:
    """(b, nkv, s, dh) -> (b, nkv·n_rep, s, dh): query head j reads key/value head j // n_rep
    (the grouping of Ainslie et al., 2023, §2.2; official: meta-llama/llama3 ``repeat_kv``)."""
    check_shapes([(x, ("b", "nkv", "s", "dh"), "x")])
    if not isinstance(n_rep, int) or n_rep < 1:
        raise ValueError(f"n_rep must be an int >= 1, got {n_rep!r}")
    return x.repeat_interleave(n_rep, dim=1)


def document_mask(doc_ids: torch.Tensor) -> torch.Tensor:
    """Packed sequences: doc_ids (b, t) -> bool (b, 1, t, t), True where key j may be seen
    by query i: j <= i and both tokens belong to the same document."""
    check_token_ids(doc_ids, name="doc_ids")
    same = doc_ids[:, :, None] == doc_ids[:, None, :]                  # (b, t, t)
    return (same & causal_mask(doc_ids.shape[1], device=doc_ids.device))[:, None]


class GroupedQueryAttention(nn.Module):
    """Causal self-attention with nh query heads and nkv key/value heads, RoPE on q and k.

        head_j = softmax(R q_j (R k_{g(j)})ᵀ / √dh) v_{g(j)},   g(j) = j // (nh / nkv)

    Ainslie et al. (2023); nkv = nh is multi-head attention, nkv = 1 multi-query
    (Shazeer, 2019). The cache stores only the nkv heads: that is the saving."""

    def __init__(self, d_model: int, n_heads: int, n_kv_heads: int, max_len: int = 4096,
                 rope_base: float = 10000.0):
        super().__init__()
        self.n_heads, self.n_kv_heads, self.d_head = n_heads, n_kv_heads, d_model // n_heads
        self.q_proj = nn.Linear(d_model, n_heads * self.d_head, bias=False)
        self.k_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.v_proj = nn.Linear(d_model, n_kv_heads * self.d_head, bias=False)
        self.out_proj = nn.Linear(n_heads * self.d_head, d_model, bias=False)
        self.rope = RotaryEmbedding(self.d_head, max_len, rope_base)

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None,
                cache: KVCache | None = None) -> torch.Tensor:
        """x (b, t, d) -> (b, t, d). No mask: causal (the t queries are the last t positions
        of the cache); a bool mask (b, 1, t, s) replaces it (e.g. ``document_mask``)."""
        offset = 0 if cache is None else cache.length
        q = split_heads(self.q_proj(x), self.n_heads)                  # (b, nh, t, dh)
        k = split_heads(self.k_proj(x), self.n_kv_heads)               # (b, nkv, t, dh)
        v = split_heads(self.v_proj(x), self.n_kv_heads)               # (b, nkv, t, dh)
        q, k = self.rope(q, k, offset=offset)                          # positions offset..
        if cache is not None:
            k, v = cache.append(k, v)                                  # (b, nkv, s, dh)
        n_rep = self.n_heads // self.n_kv_heads
        if mask is None and x.shape[1] > 1:
            mask = causal_mask(x.shape[1], k.shape[2], device=x.device)     # (t, s)
        out = attention(q, repeat_kv(k, n_rep), repeat_kv(v, n_rep), mask=mask)  # (b, nh, t, dh)
        return self.out_proj(merge_heads(out))                         # (b, t, d)


class LlamaBlock(nn.Module):
    """Pre-norm decoder block: x += Attn(RMSNorm₁(x)); x += SwiGLU(RMSNorm₂(x)).

    Official: meta-llama/llama3, llama/model.py ``TransformerBlock``."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        c = config
        self.norm1 = RMSNorm(c.d_model, eps=c.eps)
        self.attn = GroupedQueryAttention(c.d_model, c.n_heads, c.n_kv_heads, c.max_len,
                                          c.rope_base)
        self.norm2 = RMSNorm(c.d_model, eps=c.eps)
        self.ffn = SwiGLU(c.d_model, c.d_ff)

    def forward(self, x: torch.Tensor, mask=None, cache: KVCache | None = None) -> torch.Tensor:
        x = x + self.attn(self.norm1(x), mask=mask, cache=cache)      # (b, t, d)
        return x + self.ffn(self.norm2(x))                             # (b, t, d)


class Llama(nn.Module):
    """Token embedding -> n Llama blocks -> RMSNorm_f -> W_Eᵀ (tied read-out, like the
    Llama 3.2 1B/3B models; no position table: RoPE lives in the attention)."""

    def __init__(self, config: LlamaConfig):
        super().__init__()
        self.config = c = config
        self.token_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.layers = nn.ModuleList(LlamaBlock(c) for _ in range(c.n_layers))
        self.norm_f = RMSNorm(c.d_model, eps=c.eps)
        nn.init.normal_(self.token_emb.weight, std=0.02)

    def new_caches(self, max_len: int | None = None) -> list[KVCache]:
        """One empty, preallocated KVCache per layer (it will hold nkv heads)."""
        return [KVCache(self.config.max_len if max_len is None else max_len) for _ in self.layers]

    def forward(self, ids: torch.Tensor, caches: list[KVCache] | None = None,
                doc_ids: torch.Tensor | None = None) -> torch.Tensor:
        """ids (b, t) -> logits (b, t, vocab). ``doc_ids`` (b, t): packed documents, each
        attending only to itself; ``caches``: the t tokens continue the cached ones."""
        check_token_ids(ids, self.config.vocab_size)
        offset = 0 if caches is None else caches[0].length
        if offset + ids.shape[1] > self.config.max_len:
            raise ValueError(f"sequence of {offset + ids.shape[1]} tokens (cached {offset} + new "
                             f"{ids.shape[1]}) is longer than max_len={self.config.max_len}")
        if doc_ids is not None and (caches is not None or doc_ids.shape != ids.shape):
            raise ShapeError(f"doc_ids: expected shape {tuple(ids.shape)} like ids and no caches, "
                             f"received {tuple(doc_ids.shape)}")
        mask = None if doc_ids is None else document_mask(doc_ids)    # (b, 1, t, t)
        x = self.token_emb(ids.long())                                 # (b, t, d)
        for i, layer in enumerate(self.layers):
            x = layer(x, mask=mask, cache=None if caches is None else caches[i])
        return F.linear(self.norm_f(x), self.token_emb.weight)        # (b, t, vocab) tied


def cache_bytes(caches: list[KVCache]) -> int:
    """Bytes the keys and values of all layers' caches hold (filled positions only)."""
    return sum(c.k.numel() * c.k.element_size() + c.v.numel() * c.v.element_size()
               for c in caches if c.k is not None)


def kv_bytes_per_token(n_layers: int, n_kv_heads: int, d_head: int, bytes_per_number: int = 2):
    """KV-cache bytes one token costs: 2 (k and v) · layers · nkv · dh · bytes per number."""
    return 2 * n_layers * n_kv_heads * d_head * bytes_per_number


# ---------------------------------------------------------------------------------------------
# Speculative decoding (Leviathan et al., 2023, Algorithm 1)

def accept_probability(p: torch.Tensor, q: torch.Tensor, token: int) -> torch.Tensor:
    """Keep the draft's token x with probability min(1, p(x) / q(x)); p, q (vocab,)."""
    return torch.clamp(p[token] / q[token], max=1.0)


def residual_distribution(p: torch.Tensor, q: torch.Tensor) -> torch.Tensor:
    """After a rejection, sample from norm(max(0, p − q)) (vocab,): the mass p has where the
    draft under-proposes. (p == q everywhere leaves nothing; then p itself.)"""
    r = (p - q).clamp_min(0)                                           # (vocab,)
    total = r.sum()
    return r / total if total > 0 else p


def _probs(model, ids: torch.Tensor, temperature: float) -> torch.Tensor:
    return next_token_probs(model(ids)[0].double(), temperature)       # (t, vocab)


@torch.no_grad()
def speculative_round(target, draft, ids: torch.Tensor, k: int, temperature: float = 1.0,
                      generator: torch.Generator | None = None) -> tuple[torch.Tensor, int]:
    """One round on ids (1, t): the draft proposes k tokens, the target scores all k + 1
    next-token distributions in one pass, tokens are accepted left to right with
    ``accept_probability``; the first rejection is replaced by a draw from
    ``residual_distribution``, and if all k pass a bonus token is drawn from the target.
    Returns (new tokens (n,), accepted count), 1 <= n <= k + 1."""
    x, qs = ids, []
    for _ in range(k):
        q = _probs(draft, x, temperature)[-1]                          # (vocab,)
        x = torch.cat([x, torch.multinomial(q.float(), 1, generator=generator)[None]], dim=1)
        qs.append(q)
    ps = _probs(target, x, temperature)[-k - 1:]                       # (k + 1, vocab)
    proposed = x[0, ids.shape[1]:]                                     # (k,)
    for i, token in enumerate(proposed.tolist()):
        if torch.rand((), generator=generator, dtype=torch.float64) >= accept_probability(
                ps[i], qs[i], token):
            fix = torch.multinomial(residual_distribution(ps[i], qs[i]).float(), 1,
                                    generator=generator)
            return torch.cat([proposed[:i], fix]), i
    bonus = torch.multinomial(ps[k].float(), 1, generator=generator)
    return torch.cat([proposed, bonus]), k


@torch.no_grad()
def speculative_generate(target, draft, ids: torch.Tensor, max_new_tokens: int, k: int = 4,
                         temperature: float = 1.0, generator: torch.Generator | None = None):
    """Append max_new_tokens tokens to ids (1, t) by speculative rounds; both models are
    called on the whole prefix (no cache). Returns (ids (1, t + new), {"rounds", "proposed",
    "accepted"}); the acceptance rate is accepted / proposed."""
    check_token_ids(ids)
    if ids.shape[0] != 1 or not isinstance(k, int) or k < 1 or max_new_tokens < 0:
        raise ValueError(f"speculative_generate: expected ids (1, t), k >= 1 and "
                         f"max_new_tokens >= 0, received ids {tuple(ids.shape)}, k={k!r}, "
                         f"max_new_tokens={max_new_tokens}")
    stats = {"rounds": 0, "proposed": 0, "accepted": 0}
    start = ids.shape[1]
    while ids.shape[1] - start < max_new_tokens:
        new, accepted = speculative_round(target, draft, ids, k, temperature, generator)
        ids = torch.cat([ids, new[None]], dim=1)
        stats["rounds"] += 1
        stats["proposed"] += k
        stats["accepted"] += accepted
    return ids[:, :start + max_new_tokens], stats


def _round_outcomes(p_fn, q_fn, prefix: tuple, k: int) -> dict[tuple, float]:
    """Exact distribution of one round's output tokens (tuples of length 1..k+1)."""
    out: dict[tuple, float] = {}

    def extend(drafted: tuple, weight: float):
        if len(drafted) == k:
            for x, px in enumerate(p_fn(prefix + drafted).tolist()):        # all accepted: bonus
                out[drafted + (x,)] = out.get(drafted + (x,), 0.0) + weight * px
            return
        q = q_fn(prefix + drafted)
        p = p_fn(prefix + drafted)
        resid = residual_distribution(p, q)
        for x, qx in enumerate(q.tolist()):
            if qx == 0:
                continue
            a = float(accept_probability(p, q, x))
            extend(drafted + (x,), weight * qx * a)                         # accepted
            for y, ry in enumerate(resid.tolist()):                         # rejected: residual
                key = drafted + (y,)
                out[key] = out.get(key, 0.0) + weight * qx * (1 - a) * ry
    extend((), 1.0)
    return out


def speculative_distribution(p_fn, q_fn, prefix: tuple, k: int, length: int) -> dict[tuple, float]:
    """The exact probability of every sequence of the first ``length`` tokens speculative
    decoding produces after ``prefix``, by enumerating every draft proposal and every
    accept/reject outcome of every round. p_fn(prefix) and q_fn(prefix) -> (vocab,) float64:
    the target's and the draft's next-token distributions."""
    dist: dict[tuple, float] = {}
    for tokens, w in _round_outcomes(p_fn, q_fn, prefix, k).items():
        if len(tokens) >= length:
            key = tokens[:length]
            dist[key] = dist.get(key, 0.0) + w
            continue
        for rest, w2 in speculative_distribution(p_fn, q_fn, prefix + tokens, k,
                                                 length - len(tokens)).items():
            dist[tokens + rest] = dist.get(tokens + rest, 0.0) + w * w2
    return dist


def target_distribution(p_fn, prefix: tuple, length: int) -> dict[tuple, float]:
    """The target model's own probability of every continuation of ``length`` tokens:
    Π_i p(x_i | prefix, x_<i)."""
    if length == 0:
        return {(): 1.0}
    dist = {}
    for x, px in enumerate(p_fn(prefix).tolist()):
        for rest, w in target_distribution(p_fn, prefix + (x,), length - 1).items():
            dist[(x,) + rest] = px * w
    return dist
