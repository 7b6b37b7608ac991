"""GPT, the decoder-only Transformer (lecture 05): causal self-attention, next-token prediction.

"Rip away the encoder, stack decoders": a GPT is a stack of pre-norm blocks
(``course_lib.transformer.EncoderLayer`` with ``norm_first=True``) whose self-attention is
*causal*, so position i only sees tokens 1..i. Trained on next-token prediction,

    L = -1/N Σ_i ln p_θ(x_{i+1} | x_1 .. x_i),    p_θ(· | x_≤i) = softmax(LN_f(x_i) W_Eᵀ)

with x_i the last block's output at position i and W_E the token embedding (tied input/output
weights, as in GPT-2). Papers: Radford et al. (2018), GPT; Radford et al. (2019), GPT-2 (§2.3:
pre-norm blocks, a final LayerNorm, context 1024, vocabulary 50257). Official implementation:
openai/gpt-2, src/model.py (``block``, ``model``); the reference the tests compare with:
huggingface/transformers, models/gpt2/modeling_gpt2.py (``course_lib.pretrained.gpt2`` loads
its weights into ``GPT``, logits equal to 1e-4).

Generation samples one token at a time. Recomputing the whole prefix at every step costs, over
T generated tokens, O(T²) for the projections and FFN and O(T³) for attention. A ``KVCache``
per layer keeps the keys and values of past positions, so each step projects only the newest
token (projections and FFN: O(T) in total) and attends over the t cached keys (attention:
still O(t) a step, O(T²) in total). The cache is preallocated, so storing a step's keys copies
only that step's positions. The sampling rules (greedy, temperature, top-k of Fan et al.
(2018), top-p of Holtzman et al. (2020)) are small functions on logits.
Shapes: b batch, t length, d d_model, vocab the vocabulary axis, nh heads.
"""
from __future__ import annotations

from dataclasses import dataclass
from functools import partial

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import KVCache
from course_lib.common import IGNORE_INDEX, check_shapes, check_token_ids
from course_lib.positional import LearnedPositional
from course_lib.transformer import EncoderLayer

__all__ = ["GPTConfig", "GPT", "next_token_loss", "param_count", "GPT2_FAMILY",
           "torch_reference", "apply_temperature", "top_k_filter", "top_p_filter",
           "next_token_probs", "sample_next", "generate"]

GPT2_FAMILY = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16),
               "gpt2-large": (1280, 36, 20), "gpt2-xl": (1600, 48, 25)}   # d_model, layers, heads
# "gelu": the exact GELU x Φ(x); "gelu_tanh": GPT-2's tanh approximation (Hendrycks & Gimpel,
# 2016, §2), 0.5 x (1 + tanh(√(2/π) (x + 0.044715 x³))), which exact equality with GPT-2 needs
_GELU = {"gelu": F.gelu, "gelu_tanh": partial(F.gelu, approximate="tanh")}


@dataclass
class GPTConfig:
    """Hyper-parameters; the defaults are the course's tiny CPU model."""
    vocab_size: int = 183
    max_len: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int | None = None        # None -> 4 * d_model (GPT-2)
    dropout: float = 0.0
    activation: str = "gelu"       # "gelu_tanh" for GPT-2's weights
    eps: float = 1e-5              # LayerNorm ε (GPT-2: 1e-5)

    def __post_init__(self):
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        for name in ("vocab_size", "max_len", "d_model", "n_layers", "n_heads", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be >= 1, got {getattr(self, name)}")
        if self.activation not in _GELU:
            raise ValueError(f"GPTConfig.activation must be one of {sorted(_GELU)}, "
                             f"got {self.activation!r}")

    @classmethod
    def gpt2(cls, name: str = "gpt2") -> GPTConfig:
        """The published GPT-2 sizes (vocabulary 50257, context 1024, tanh GELU)."""
        if name not in GPT2_FAMILY:
            raise ValueError(f"name must be one of {sorted(GPT2_FAMILY)}, got {name!r}")
        d, layers, heads = GPT2_FAMILY[name]
        return cls(vocab_size=50257, max_len=1024, d_model=d, n_layers=layers, n_heads=heads,
                   activation="gelu_tanh")


class GPT(nn.Module):
    """Token + learned position embeddings -> n pre-norm causal blocks -> LN_f -> W_Eᵀ.

    Radford et al. (2019), §2.3; official: openai/gpt-2, src/model.py ``model``."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.token_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos_emb = LearnedPositional(c.d_model, max_len=c.max_len)
        self.layers = nn.ModuleList(
            EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, activation="gelu",
                         norm_first=True, eps=c.eps) for _ in range(c.n_layers))
        for layer in self.layers:
            layer.ffn.act = _GELU[c.activation]
        self.norm_f = nn.LayerNorm(c.d_model, eps=c.eps)
        if not self.token_emb.weight.is_meta:
            nn.init.normal_(self.token_emb.weight, std=0.02)

    def new_caches(self, max_len: int | None = None, cache_type: type = KVCache) -> list[KVCache]:
        """One empty cache per layer, for incremental decoding, preallocated for ``max_len``
        positions (default: the model's max_len). ``cache_type=ConcatKVCache``: the reference."""
        max_len = self.config.max_len if max_len is None else max_len
        return [cache_type(max_len) for _ in self.layers]

    def forward(self, ids: torch.Tensor, caches: list[KVCache] | None = None,
                need_weights: bool = False):
        """ids (b, t) -> logits (b, t, vocab); with need_weights also the maps
        (n_layers, b, nh, t, s). With ``caches`` the t tokens continue the cached ones
        (positions offset by the cache)."""
        offset = self._check_ids(ids, caches)
        x = self.pos_emb(self.token_emb(ids.long()), offset=offset)   # (b, t, d)
        maps = []
        causal = ids.shape[1] > 1        # one new query may see every cached key: no mask
        for i, layer in enumerate(self.layers):
            x, w = layer(x, is_causal=causal, need_weights=need_weights,
                         cache=None if caches is None else caches[i])
            maps.append(w)
        logits = F.linear(self.norm_f(x), self.token_emb.weight)   # (b, t, vocab) tied: W_Eᵀ
        return (logits, torch.stack(maps)) if need_weights else logits

    def _check_ids(self, ids, caches) -> int:
        check_token_ids(ids, self.config.vocab_size)
        if caches is not None and len(caches) != len(self.layers):
            raise ValueError(f"expected {len(self.layers)} caches (one per layer), "
                             f"received {len(caches)}")
        offset = 0 if caches is None else caches[0].length
        if offset + ids.shape[1] > self.config.max_len:
            raise ValueError(f"sequence of {offset + ids.shape[1]} tokens (cached {offset} + new "
                             f"{ids.shape[1]}) is longer than max_len={self.config.max_len}")
        return offset


@torch.no_grad()
def torch_reference(model: GPT) -> nn.Module:
    """The same network built from PyTorch's ``nn.TransformerEncoder`` (weights copied), a
    second implementation to check ours against. Call it as ``ref(ids) -> logits (b, t, vocab)``."""
    c = model.config
    layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, dropout=0.0,
                                       activation=_GELU[c.activation], layer_norm_eps=c.eps,
                                       batch_first=True, norm_first=True)
    encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
    for ours, theirs in zip(model.layers, encoder.layers):
        theirs.self_attn.in_proj_weight.copy_(ours.self_attn.qkv_proj.weight)
        theirs.self_attn.in_proj_bias.copy_(ours.self_attn.qkv_proj.bias)
        theirs.self_attn.out_proj.load_state_dict(ours.self_attn.out_proj.state_dict())
        for name in ("norm1", "norm2"):
            getattr(theirs, name).load_state_dict(getattr(ours, name).state_dict())
        theirs.linear1.load_state_dict(ours.ffn.linear1.state_dict())
        theirs.linear2.load_state_dict(ours.ffn.linear2.state_dict())

    class TorchGPT(nn.Module):
        def __init__(self):
            super().__init__()
            self.token_emb, self.pos_table, self.encoder = model.token_emb, model.pos_emb.table, encoder
            self.norm_f = model.norm_f

        def forward(self, ids):
            t = ids.shape[1]
            x = self.token_emb(ids) + self.pos_table(torch.arange(t, device=ids.device))
            future = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
            x = self.encoder(x, mask=future, is_causal=True)                # (b, t, d)
            return F.linear(self.norm_f(x), self.token_emb.weight)           # (b, t, vocab)

    return TorchGPT().eval()


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor, pad_id: int | None = None):
    """Mean cross-entropy of predicting ids[:, i+1] from logits[:, i] (pads not scored).

    logits (b, t, vocab), ids (b, t): L = -mean_i ln softmax(logits_i)[ids_{i+1}].
    """
    check_shapes([(logits, ("b", "t", "vocab"), "logits"), (ids, ("b", "t"), "ids")])
    targets = ids[:, 1:]                                    # (b, t-1)
    if pad_id is not None:
        targets = targets.masked_fill(targets == pad_id, IGNORE_INDEX)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1))


def param_count(d_model: int, n_layers: int, vocab_size: int = 50257,
                max_len: int = 1024) -> int:
    """Parameters of a GPT-2-shaped model from the formula (tied embeddings, biases, d_ff = 4d):

        V d + T d  +  L (12 d² + 13 d)  +  2 d
        (tokens, positions; per block: qkv 3d²+3d, out d²+d, FFN 8d²+5d, 2 LayerNorms 4d)
    """
    d = d_model
    return vocab_size * d + max_len * d + n_layers * (12 * d * d + 13 * d) + 2 * d


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / τ: τ < 1 sharpens the distribution, τ > 1 flattens it (τ must be > 0)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy decoding for τ → 0), "
                         f"got {temperature}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of the last axis, set the others to -inf (Fan et al., 2018, §5.4).
    (..., vocab) -> (..., vocab)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {k!r}")
    k = min(k, logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]           # (..., 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter (Holtzman et al., 2020, Eq. 2): keep the smallest set of most likely
    tokens whose probability is >= p.

    Sort probabilities descending; token j (in sorted order) is kept when the mass *before*
    it is < p, so the top token is always kept. (..., vocab) -> (..., vocab), -inf elsewhere.
    """
    if not 0 < p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)   # (..., vocab)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs                              # mass of better tokens
    drop_sorted = before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)              # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """softmax(filter(logits / τ)): the distribution a sampler draws from.
    (..., vocab) -> (..., vocab)."""
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits.softmax(-1)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, greedy: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row: argmax (greedy) or a draw from next_token_probs. (b, vocab) -> (b,)."""
    if greedy:
        return logits.argmax(-1)
    probs = next_token_probs(logits, temperature, top_k, top_p)
    return torch.multinomial(probs, 1, generator=generator).squeeze(-1)


@torch.no_grad()
def generate(model: GPT, ids: torch.Tensor, max_new_tokens: int, temperature: float = 1.0,
             top_k: int | None = None, top_p: float | None = None, greedy: bool = False,
             use_cache: bool = True, generator: torch.Generator | None = None,
             stop_id: int | None = None, cache_type: type = KVCache) -> torch.Tensor:
    """Autoregressive decoding: append max_new_tokens tokens to ids (b, t) -> (b, t + new).

    use_cache=True feeds only the newest token each step (a ``cache_type`` per layer,
    preallocated for t + max_new_tokens positions); False recomputes the whole prefix every
    step (same tokens, more work). Stops early when every row has produced ``stop_id``.
    """
    if isinstance(ids, torch.Tensor) and ids.dim() == 1:
        ids = ids[None]
    check_token_ids(ids, model.config.vocab_size)
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    apply_temperature(torch.zeros(1), temperature)             # validate before any work
    top_k is None or top_k_filter(torch.zeros(1), top_k)
    top_p is None or top_p_filter(torch.zeros(1), top_p)
    if ids.shape[1] + max_new_tokens > model.config.max_len:
        raise ValueError(f"prompt of {ids.shape[1]} tokens + {max_new_tokens} new tokens is "
                         f"longer than max_len={model.config.max_len}")
    model.eval()
    ids = ids.long()
    caches = model.new_caches(ids.shape[1] + max_new_tokens, cache_type) if use_cache else None
    logits = model(ids, caches=caches)[:, -1]                  # (b, vocab) prefill
    done = torch.zeros(ids.shape[0], dtype=torch.bool, device=ids.device)
    for step in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, greedy, generator)   # (b,)
        ids = torch.cat([ids, nxt[:, None]], dim=1)             # (b, t + 1)
        if stop_id is not None:
            done |= nxt == stop_id
        if step == max_new_tokens - 1 or done.all():
            break
        logits = (model(nxt[:, None], caches=caches) if use_cache else model(ids))[:, -1]
    return ids
