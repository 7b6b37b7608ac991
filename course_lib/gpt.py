"""GPT, the decoder-only Transformer (lecture 05): causal self-attention, next-token prediction.

"Rip away the encoder, stack decoders": a GPT is a stack of pre-norm blocks
(``course_lib.transformer.EncoderLayer`` with ``norm_first=True``) whose self-attention is
*causal*, so position i only sees tokens 1..i. Trained on next-token prediction,

    L = -1/N Σ_i ln p_θ(x_{i+1} | x_1 .. x_i),    p_θ(· | x_≤i) = softmax(LN(x_i) W_Eᵀ)

with x_i the last block's output at position i and W_E the token embedding (tied input/output
weights, as in GPT-2). Generation samples one token at a time. Recomputing the whole prefix
at every step costs, over T generated tokens, O(T²) for the projections and FFN and O(T³) for
attention. A ``KVCache`` per layer keeps the keys and values of past positions, so each step
projects only the newest token (projections and FFN: O(T) in total) and attends over the t
cached keys (attention: still O(t) a step, O(T²) in total). The cache is preallocated, so
storing a step's keys copies only that step's positions.
The sampling rules (greedy, temperature, top-k, top-p) are small functions on logits.
Shapes: b batch, t length, d d_model, v vocabulary, nh heads.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import ShapeError
from course_lib.attention import KVCache
from course_lib.positional import LearnedPositional
from course_lib.transformer import EncoderLayer

__all__ = ["GPTConfig", "GPT", "encode_stories", "random_batch", "next_token_loss",
           "token_nll", "evaluate_loss", "param_count", "GPT2_FAMILY", "load_gpt",
           "torch_reference",
           "apply_temperature", "top_k_filter", "top_p_filter", "next_token_probs",
           "sample_next", "generate"]

GPT2_FAMILY = {"gpt2": (768, 12, 12), "gpt2-medium": (1024, 24, 16),
               "gpt2-large": (1280, 36, 20), "gpt2-xl": (1600, 48, 25)}   # d_model, layers, heads


@dataclass
class GPTConfig:
    """Hyper-parameters; the defaults are the course's tiny CPU model."""
    vocab_size: int = 183
    context_len: int = 256
    d_model: int = 64
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int | None = None        # None -> 4 * d_model (GPT-2)
    dropout: float = 0.0

    def __post_init__(self):
        if self.d_ff is None:
            self.d_ff = 4 * self.d_model
        for name in ("vocab_size", "context_len", "d_model", "n_layers", "n_heads", "d_ff"):
            if getattr(self, name) < 1:
                raise ValueError(f"GPTConfig.{name} must be >= 1, got {getattr(self, name)}")

    @classmethod
    def gpt2(cls, name: str = "gpt2") -> "GPTConfig":
        """The published GPT-2 sizes (vocabulary 50257, context 1024)."""
        if name not in GPT2_FAMILY:
            raise ValueError(f"name must be one of {sorted(GPT2_FAMILY)}, got {name!r}")
        d, layers, heads = GPT2_FAMILY[name]
        return cls(vocab_size=50257, context_len=1024, d_model=d, n_layers=layers, n_heads=heads)


class GPT(nn.Module):
    """Token + learned position embeddings -> n pre-norm causal blocks -> LayerNorm -> W_Eᵀ."""

    def __init__(self, config: GPTConfig):
        super().__init__()
        self.config = c = config
        self.tok_emb = nn.Embedding(c.vocab_size, c.d_model)
        self.pos = LearnedPositional(c.d_model, max_len=c.context_len)
        self.blocks = nn.ModuleList(
            EncoderLayer(c.d_model, c.n_heads, c.d_ff, c.dropout, activation="gelu",
                         norm_first=True) for _ in range(c.n_layers))
        self.norm = nn.LayerNorm(c.d_model)
        if not self.tok_emb.weight.is_meta:
            nn.init.normal_(self.tok_emb.weight, std=0.02)

    def new_caches(self, max_len: int | None = None, cache_type: type = KVCache) -> list[KVCache]:
        """One empty cache per block, for incremental decoding, preallocated for ``max_len``
        positions (default: the context length). ``cache_type=ConcatKVCache``: the reference."""
        max_len = self.config.context_len if max_len is None else max_len
        return [cache_type(max_len) for _ in self.blocks]

    def forward(self, ids: torch.Tensor, caches: list[KVCache] | None = None,
                need_weights: bool = False):
        """ids (b, t) -> logits (b, t, v); with need_weights also the maps (layers, b, nh, t, s).

        With ``caches`` the t tokens continue the cached ones (positions offset by the cache).
        """
        offset = self._check_ids(ids, caches)
        x = self.pos(self.tok_emb(ids), offset=offset)      # (b, t, d)
        maps = []
        causal = ids.shape[1] > 1        # one new query may see every cached key: no mask
        for i, block in enumerate(self.blocks):
            x, w = block(x, is_causal=causal, need_weights=need_weights,
                         cache=None if caches is None else caches[i])
            maps.append(w)
        logits = F.linear(self.norm(x), self.tok_emb.weight)  # (b, t, v) tied: LN(x) W_Eᵀ
        return (logits, torch.stack(maps)) if need_weights else logits

    def _check_ids(self, ids, caches) -> int:
        if not isinstance(ids, torch.Tensor) or ids.dim() != 2 or ids.dtype != torch.long:
            got = (f"{tuple(ids.shape)} {ids.dtype}" if isinstance(ids, torch.Tensor)
                   else type(ids).__name__)
            raise ShapeError(f"ids: expected a (b, t) int64 tensor, received {got}")
        if caches is not None and len(caches) != len(self.blocks):
            raise ValueError(f"expected {len(self.blocks)} caches (one per block), "
                             f"received {len(caches)}")
        offset = 0 if caches is None else caches[0].length
        if offset + ids.shape[1] > self.config.context_len:
            raise ValueError(f"sequence of {offset + ids.shape[1]} tokens (cached {offset} + new "
                             f"{ids.shape[1]}) is longer than the context of "
                             f"{self.config.context_len} tokens")
        if ids.numel() and (ids.min() < 0 or ids.max() >= self.config.vocab_size):
            raise ValueError(f"token ids must lie in [0, {self.config.vocab_size}), got "
                             f"min {int(ids.min())}, max {int(ids.max())}")
        return offset


def encode_stories(stories, tokenizer) -> torch.Tensor:
    """Stories -> (n, t) int64 ids "[BOS] words [EOS]", right-padded with [PAD] (id 0)."""
    rows = [tokenizer.encode(f"[BOS] {s if isinstance(s, str) else s.text} [EOS]")
            for s in stories]
    if not rows:
        raise ValueError("encode_stories needs at least one story")
    out = torch.full((len(rows), max(map(len, rows))), tokenizer.pad_id, dtype=torch.long)
    for i, row in enumerate(rows):
        out[i, :len(row)] = torch.tensor(row)
    return out                                                    # (n, t)


def load_gpt(path=None) -> tuple[GPT, dict]:
    """Build a GPT from a checkpoint's stored config and load its weights (default: the
    shipped ``data/gpt_tiny.safetensors`` made by ``tools/train_gpt.py``)."""
    import json
    from pathlib import Path

    from safetensors import safe_open

    from course_lib.training import data_dir, load_checkpoint

    p = data_dir() / "gpt_tiny.safetensors" if path is None else Path(path)
    if not p.exists():
        raise ValueError(f"checkpoint not found: {p} (rebuild it: python tools/train_gpt.py)")
    with safe_open(str(p), framework="pt") as f:
        config = json.loads((f.metadata() or {}).get("config", "{}"))
    model = GPT(GPTConfig(**config))
    info = load_checkpoint(model, p)
    model.eval()
    return model, info


@torch.no_grad()
def torch_reference(model: GPT) -> nn.Module:
    """The same network built from PyTorch's ``nn.TransformerEncoder`` (weights copied), a
    second implementation to check ours against. Call it as ``ref(ids) -> logits (b, t, v)``."""
    c = model.config
    layer = nn.TransformerEncoderLayer(c.d_model, c.n_heads, c.d_ff, dropout=0.0,
                                       activation="gelu", batch_first=True, norm_first=True)
    encoder = nn.TransformerEncoder(layer, c.n_layers, enable_nested_tensor=False)
    for ours, theirs in zip(model.blocks, encoder.layers):
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
            self.tok_emb, self.pos_table, self.encoder = model.tok_emb, model.pos.table, encoder
            self.norm = model.norm

        def forward(self, ids):
            t = ids.shape[1]
            x = self.tok_emb(ids) + self.pos_table(torch.arange(t, device=ids.device))
            future = nn.Transformer.generate_square_subsequent_mask(t, device=ids.device)
            x = self.encoder(x, mask=future, is_causal=True)                # (b, t, d)
            return F.linear(self.norm(x), self.tok_emb.weight)               # (b, t, v)

    return TorchGPT().eval()


def next_token_loss(logits: torch.Tensor, ids: torch.Tensor, pad_id: int | None = None):
    """Mean cross-entropy of predicting ids[:, i+1] from logits[:, i] (pads not scored).

    logits (b, t, v), ids (b, t): L = -mean_i ln softmax(logits_i)[ids_{i+1}].
    """
    if logits.dim() != 3 or logits.shape[:2] != ids.shape:
        raise ShapeError(f"expected logits (b, t, v) and ids (b, t), received "
                         f"{tuple(logits.shape)} and {tuple(ids.shape)}")
    targets = ids[:, 1:]                                    # (b, t-1)
    if pad_id is not None:
        targets = targets.masked_fill(targets == pad_id, -100)
    return F.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), targets.reshape(-1))


def random_batch(data: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
                 pad_id: int = 0) -> torch.Tensor:
    """batch_size random rows of padded ids (n, t), trimmed to the longest row: (b, t')."""
    rows = data[torch.randint(0, len(data), (batch_size,), generator=generator)]   # (b, t)
    return rows[:, :int((rows != pad_id).sum(1).max())]


@torch.no_grad()
def token_nll(model: GPT, ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """-ln p(ids[:, i+1] | ids[:, :i+1]) for every position: (b, t) -> (b, t-1), NaN on pads."""
    logits = model(ids)                                           # (b, t, v)
    targets = ids[:, 1:]                                          # (b, t-1)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")
    return nll.masked_fill(targets == pad_id, float("nan"))


@torch.no_grad()
def evaluate_loss(model: GPT, data: torch.Tensor, pad_id: int = 0, batch_size: int = 250) -> float:
    """Mean next-token loss (nats per token) over all non-pad targets of data (n, t)."""
    total, count = 0.0, 0
    model.eval()
    for i in range(0, len(data), batch_size):
        nll = token_nll(model, data[i:i + batch_size], pad_id)   # (b, t-1)
        keep = ~nll.isnan()
        total, count = total + nll[keep].sum().item(), count + int(keep.sum())
    return total / count


def param_count(d_model: int, n_layers: int, vocab_size: int = 50257,
                context_len: int = 1024) -> int:
    """Parameters of a GPT-2-shaped model from the formula (tied embeddings, biases, d_ff = 4d):

        V d + T d  +  L (12 d² + 13 d)  +  2 d
        (tokens, positions; per block: qkv 3d²+3d, out d²+d, FFN 8d²+5d, 2 LayerNorms 4d)
    """
    d = d_model
    return vocab_size * d + context_len * d + n_layers * (12 * d * d + 13 * d) + 2 * d


def apply_temperature(logits: torch.Tensor, temperature: float) -> torch.Tensor:
    """logits / τ: τ < 1 sharpens the distribution, τ > 1 flattens it (τ must be > 0)."""
    if not temperature > 0:
        raise ValueError(f"temperature must be > 0 (use greedy decoding for τ → 0), "
                         f"got {temperature}")
    return logits / temperature


def top_k_filter(logits: torch.Tensor, k: int) -> torch.Tensor:
    """Keep the k largest logits of the last axis, set the others to -inf. (..., v) -> (..., v)."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"top_k must be an int >= 1, got {k!r}")
    k = min(k, logits.shape[-1])
    kth = logits.topk(k, dim=-1).values[..., -1:]           # (..., 1) the k-th largest
    return logits.masked_fill(logits < kth, float("-inf"))


def top_p_filter(logits: torch.Tensor, p: float) -> torch.Tensor:
    """Nucleus filter: keep the smallest set of most likely tokens whose probability >= p.

    Sort probabilities descending; token j (in sorted order) is kept when the mass *before*
    it is < p, so the top token is always kept. (..., v) -> (..., v) with -inf elsewhere.
    """
    if not 0 < p <= 1:
        raise ValueError(f"top_p must lie in (0, 1], got {p}")
    sorted_logits, order = logits.sort(dim=-1, descending=True)   # (..., v)
    probs = sorted_logits.softmax(-1)
    before = probs.cumsum(-1) - probs                              # mass of better tokens
    drop_sorted = before >= p
    drop = drop_sorted.scatter(-1, order, drop_sorted)              # back to vocabulary order
    return logits.masked_fill(drop, float("-inf"))


def next_token_probs(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                     top_p: float | None = None) -> torch.Tensor:
    """softmax(filter(logits / τ)): the distribution a sampler draws from. (..., v) -> (..., v)."""
    logits = apply_temperature(logits, temperature)
    if top_k is not None:
        logits = top_k_filter(logits, top_k)
    if top_p is not None:
        logits = top_p_filter(logits, top_p)
    return logits.softmax(-1)


def sample_next(logits: torch.Tensor, temperature: float = 1.0, top_k: int | None = None,
                top_p: float | None = None, greedy: bool = False,
                generator: torch.Generator | None = None) -> torch.Tensor:
    """One token per row: argmax (greedy) or a draw from next_token_probs. (b, v) -> (b,)."""
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

    use_cache=True feeds only the newest token each step (a ``cache_type`` per block,
    preallocated for t + max_new_tokens positions); False recomputes the whole prefix every
    step (same tokens, more work). Stops early when every row has produced ``stop_id``.
    """
    if ids.dim() == 1:
        ids = ids[None]
    if max_new_tokens < 0:
        raise ValueError(f"max_new_tokens must be >= 0, got {max_new_tokens}")
    apply_temperature(torch.zeros(1), temperature)             # validate before any work
    top_k is None or top_k_filter(torch.zeros(1), top_k)
    top_p is None or top_p_filter(torch.zeros(1), top_p)
    context = model.config.context_len
    if ids.shape[1] > context or ids.shape[1] + max_new_tokens > context:
        raise ValueError(f"prompt of {ids.shape[1]} tokens + {max_new_tokens} new tokens is "
                         f"longer than the context of {context} tokens")
    model.eval()
    caches = model.new_caches(ids.shape[1] + max_new_tokens, cache_type) if use_cache else None
    logits = model(ids, caches=caches)[:, -1]                  # (b, v) prefill
    done = torch.zeros(ids.shape[0], dtype=torch.bool)
    for step in range(max_new_tokens):
        nxt = sample_next(logits, temperature, top_k, top_p, greedy, generator)   # (b,)
        ids = torch.cat([ids, nxt[:, None]], dim=1)             # (b, t + 1)
        if stop_id is not None:
            done |= nxt == stop_id
        if step == max_new_tokens - 1 or done.all():
            break
        logits = (model(nxt[:, None], caches=caches) if use_cache else model(ids))[:, -1]
    return ids
