"""The encoder-decoder Transformer (lecture 03): layers built from course_lib.attention.

Vaswani et al. (2017), "Attention Is All You Need", §3.1-§3.5. Official implementation:
tensorflow/tensor2tensor, ``tensor2tensor/models/transformer.py``; PyTorch's own is
``torch.nn.Transformer`` (``torch/nn/modules/transformer.py``), which the tests match.

Encoder layer (post-norm, as in the paper §3.1; ``norm_first=True`` gives the pre-norm of GPT-2):

    x = LayerNorm(x + SelfAttention(x))
    x = LayerNorm(x + FFN(x)),        FFN(x) = W_2 ReLU(W_1 x + b_1) + b_2      (Eq. 2)

Decoder layer: masked self-attention (no peeking at future positions), cross-attention with
K, V from the encoder output ("memory"), then the FFN; each with residual + LayerNorm.
Layer names and parameter layout match ``nn.TransformerEncoderLayer``/``DecoderLayer`` so
``load_from_torch`` copies weights one to one (and the tests assert equal outputs).

The encoder-decoder model (``Transformer``) stacks N of each. Tokens are embedded (scaled by
√d_model, as in the paper), sinusoidal positions are added, the encoder turns the source into
a memory (b, s, d), the decoder reads the target so far plus that memory, and a final Linear
maps each decoder output vector o_i to one score per target word:

    p(y_i | y_<i, x) = softmax(W_out o_i + b_out),     ŷ_i = argmax_w p(w | y_<i, x)

The argmax is an *index*; the target vocabulary says which word it is. Training uses teacher
forcing (``teacher_forcing_loss``); inference decodes greedily, one word at a time, re-using
the decoder's past keys and values (``greedy_decode``, with a KV cache per layer).

Deviation from the paper: its three token matrices are one shared weight (source embedding,
target embedding and the pre-softmax Linear, Vaswani et al. 2017 §3.4, over a shared BPE
vocabulary). Here they are *untied*: ``src_token_emb``, ``tgt_token_emb`` and ``vocab_proj``
are three separate matrices, because the two toy languages have separate vocabularies.

Shapes: ``b`` batch, ``s`` source length, ``t`` target length, ``d`` d_model, ``nh`` heads
(the paper's h), ``dh`` = d / nh, ``vocab`` target vocabulary size (``tgt_vocab_size``),
``f`` = d_ff. Masks are boolean, True = may attend, broadcastable to (b, nh, t, s).
"""
from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import IGNORE_INDEX, check_shapes, check_token_ids
from course_lib.attention import KVCache, MultiHeadAttention
from course_lib.positional import SinusoidalPositional

__all__ = ["FeedForward", "EncoderLayer", "DecoderLayer", "Encoder", "Decoder", "TransformerConfig",
           "Transformer", "teacher_forcing_loss", "greedy_decode", "beam_search", "Decoded"]

_ACTIVATIONS = {"relu": F.relu, "gelu": F.gelu}


class FeedForward(nn.Module):
    """Position-wise FFN (Vaswani et al. 2017, §3.3, Eq. 2): FFN(x) = W_2 ReLU(W_1 x + b_1) + b_2,
    the same two-layer MLP applied to every position, (b, t, d) -> (b, t, d).

    One MLP for the whole layer, shared by all positions, applied to the d-wide vector after
    the heads were concatenated and mixed by W_O: there is no feed-forward net per head.
    """

    def __init__(self, d_model: int, d_ff: int, dropout: float = 0.0, activation: str = "relu"):
        super().__init__()
        if activation not in _ACTIVATIONS:
            raise ValueError(f"activation must be one of {sorted(_ACTIVATIONS)}, got {activation!r}")
        self.linear1 = nn.Linear(d_model, d_ff)                           # W_1: (f, d), b_1: (f,)
        self.linear2 = nn.Linear(d_ff, d_model)                           # W_2: (d, f), b_2: (d,)
        self.act, self.dropout = _ACTIVATIONS[activation], nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden = self.dropout(self.act(self.linear1(x)))                   # (b, t, f)
        return self.linear2(hidden)                                        # (b, t, d)


class EncoderLayer(nn.Module):
    """Self-attention + FFN, each wrapped in residual + LayerNorm (Vaswani et al. 2017, §3.1:
    LayerNorm(x + Sublayer(x)); ``norm_first`` puts the norm inside: x + Sublayer(LayerNorm(x))).

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
        """x: (b, t, d); mask broadcastable to (b, nh, t, t), True = may attend.

        Returns ``(x (b, t, d), weights)``; weights (b, nh, t, t) when need_weights else None.
        """
        def attend(z):
            out, w = self.self_attn(z, mask=mask, is_causal=is_causal, need_weights=need_weights,
                                    cache=cache, rotate=rotate)          # (b, t, d), (b, nh, t, t)
            return self.dropout1(out), w                                   # (b, t, d), weights

        if self.norm_first:
            a, weights = attend(self.norm1(x))                             # (b, t, d)
            x = x + a                                                      # (b, t, d)
            x = x + self.dropout2(self.ffn(self.norm2(x)))                 # (b, t, d)
        else:
            a, weights = attend(x)                                         # (b, t, d)
            x = self.norm1(x + a)                                          # (b, t, d)
            x = self.norm2(x + self.dropout2(self.ffn(x)))                 # (b, t, d)
        return x, weights                                                  # (b, t, d), weights

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerEncoderLayer) -> EncoderLayer:
        """Copy the weights of a ``nn.TransformerEncoderLayer(..., batch_first=True)``."""
        self.self_attn.load_from_torch(layer.self_attn)
        _copy_ffn_norms(self, layer, ("norm1", "norm2"))
        return self


class DecoderLayer(nn.Module):
    """Masked self-attention, cross-attention to the encoder memory, FFN; residual + LayerNorm
    (Vaswani et al. 2017, §3.1 "Decoder" and §3.2.3)."""

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

        memory_mask (e.g. source padding) broadcastable to (b, nh, t, s); self_mask (target
        padding) to (b, nh, t, t), combined with the causal mask. Returns ``(x (b, t, d),
        (self_weights (b, nh, t, t), cross_weights (b, nh, t, s)))``, None unless need_weights.
        """
        check_shapes([(x, ("b", "t", "d"), "x"), (memory, ("b", "s", "d"), "memory")])

        def self_block(z):
            out, w = self.self_attn(z, mask=self_mask, is_causal=is_causal,
                                    need_weights=need_weights, cache=cache)  # (b, t, d), (b, nh, t, t)
            return self.dropout1(out), w                                   # (b, t, d), weights

        def cross_block(z):                                                # Q from z, K, V from memory
            out, w = self.cross_attn(z, memory, mask=memory_mask, need_weights=need_weights)
            return self.dropout2(out), w                                   # (b, t, d), (b, nh, t, s)

        if self.norm_first:
            a, w_self = self_block(self.norm1(x))                          # (b, t, d)
            x = x + a                                                      # (b, t, d)
            c, w_cross = cross_block(self.norm2(x))                        # (b, t, d)
            x = x + c                                                      # (b, t, d)
            x = x + self.dropout3(self.ffn(self.norm3(x)))                 # (b, t, d)
        else:
            a, w_self = self_block(x)                                      # (b, t, d)
            x = self.norm1(x + a)                                          # (b, t, d)
            c, w_cross = cross_block(x)                                    # (b, t, d)
            x = self.norm2(x + c)                                          # (b, t, d)
            x = self.norm3(x + self.dropout3(self.ffn(x)))                 # (b, t, d)
        return x, (w_self, w_cross)                                        # (b, t, d), (self, cross)

    @torch.no_grad()
    def load_from_torch(self, layer: nn.TransformerDecoderLayer) -> DecoderLayer:
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


# ----------------------------------------------------------------- stacks of N layers
class Encoder(nn.Module):
    """N encoder layers: (b, s, d) -> (b, s, d) memory, plus each layer's weights (b, nh, s, s)."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int | None = None,
                 dropout: float = 0.0, activation: str = "relu", norm_first: bool = False):
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, d_ff, dropout, activation,
                                                 norm_first) for _ in range(n_layers))
        # pre-norm stacks end with a LayerNorm (the last residual sum is never normalized)
        self.norm_f = nn.LayerNorm(d_model) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, mask: torch.Tensor | None = None, need_weights: bool = False):
        weights = []
        for layer in self.layers:
            x, w = layer(x, mask=mask, need_weights=need_weights)          # (b, s, d)
            weights.append(w)
        return self.norm_f(x), weights                                     # (b, s, d)


class Decoder(nn.Module):
    """N decoder layers reading the target so far (b, t, d) and the encoder memory (b, s, d)."""

    def __init__(self, n_layers: int, d_model: int, n_heads: int, d_ff: int | None = None,
                 dropout: float = 0.0, activation: str = "relu", norm_first: bool = False):
        super().__init__()
        self.d_model = d_model
        self.layers = nn.ModuleList(DecoderLayer(d_model, n_heads, d_ff, dropout, activation,
                                                 norm_first) for _ in range(n_layers))
        self.norm_f = nn.LayerNorm(d_model) if norm_first else nn.Identity()

    def forward(self, x: torch.Tensor, memory: torch.Tensor, memory_mask: torch.Tensor | None = None,
                self_mask: torch.Tensor | None = None, caches: list[KVCache] | None = None,
                need_weights: bool = False):
        """Returns ``(x (b, t, d), self_weights, cross_weights)``: lists of (b, nh, t, t|s) or None."""
        if memory.dim() != 3 or memory.shape[-1] != self.d_model:
            raise ValueError(f"encoder and decoder widths differ: the decoder has d_model="
                             f"{self.d_model} but the encoder memory has shape "
                             f"{tuple(memory.shape)} (expected (b, s, {self.d_model}))")
        if caches is not None and len(caches) != len(self.layers):
            raise ValueError(f"expected one KVCache per layer ({len(self.layers)}), "
                             f"received {len(caches)}")
        self_ws, cross_ws = [], []
        for i, layer in enumerate(self.layers):
            x, (w_self, w_cross) = layer(x, memory, memory_mask, self_mask, is_causal=True,
                                         need_weights=need_weights,
                                         cache=None if caches is None else caches[i])  # (b, t, d)
            self_ws.append(w_self)
            cross_ws.append(w_cross)
        return self.norm_f(x), self_ws, cross_ws                           # (b, t, d)


# ----------------------------------------------------------------- the encoder-decoder model
@dataclass
class TransformerConfig:
    """Hyper-parameters of a (tiny) encoder-decoder Transformer. The paper's base model is
    d_model=512, n_heads=8, 6 + 6 layers, d_ff=2048, dropout=0.1."""
    src_vocab_size: int
    tgt_vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    n_encoder_layers: int = 2
    n_decoder_layers: int = 2
    d_ff: int = 128
    max_len: int = 32
    dropout: float = 0.0
    pad_id: int = 0
    bos_id: int = 5
    eos_id: int = 6

    def __post_init__(self):
        for name in ("src_vocab_size", "tgt_vocab_size", "d_model", "n_heads", "n_encoder_layers",
                     "n_decoder_layers", "d_ff", "max_len"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"TransformerConfig.{name} must be a positive int, "
                                 f"got {getattr(self, name)!r}")
        if self.d_model % self.n_heads or self.d_model % 2:
            raise ValueError(f"d_model={self.d_model} must be even (sinusoidal table) and "
                             f"divisible by n_heads={self.n_heads}")
        for name in ("pad_id", "bos_id", "eos_id"):
            if not 0 <= getattr(self, name) < self.tgt_vocab_size:
                raise ValueError(f"{name}={getattr(self, name)} outside the target vocabulary "
                                 f"[0, {self.tgt_vocab_size})")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


class Transformer(nn.Module):
    """Encoder-decoder Transformer (Vaswani et al. 2017): source ids -> target word scores.

    forward(src (b, s), tgt_in (b, t)) -> (logits (b, t, vocab), weights or None); weights is
    {"encoder", "decoder", "cross"}: lists (one per layer) of (b, nh, s, s), (b, nh, t, t),
    (b, nh, t, s). Embeddings are untied (the paper ties them, §3.4): see the module docstring.
    """

    def __init__(self, config: TransformerConfig):
        super().__init__()
        c = self.config = config
        self.src_token_emb = nn.Embedding(c.src_vocab_size, c.d_model)     # untied: three separate
        self.tgt_token_emb = nn.Embedding(c.tgt_vocab_size, c.d_model)     # token matrices
        self.pos_emb = SinusoidalPositional(c.d_model, c.max_len)
        self.encoder = Encoder(c.n_encoder_layers, c.d_model, c.n_heads, c.d_ff, c.dropout)
        self.decoder = Decoder(c.n_decoder_layers, c.d_model, c.n_heads, c.d_ff, c.dropout)
        self.vocab_proj = nn.Linear(c.d_model, c.tgt_vocab_size)   # the final Linear
        self.dropout = nn.Dropout(c.dropout)

    def embed(self, ids: torch.Tensor, table: nn.Embedding, name: str, offset: int = 0):
        """(b, t) ids -> (b, t, d): E[ids]·√d + PE[offset : offset + t] (§3.4, §3.5)."""
        check_token_ids(ids, table.num_embeddings, name)
        if offset + ids.shape[1] > self.config.max_len:
            raise ValueError(f"{name}: positions up to {offset + ids.shape[1] - 1} exceed the "
                             f"positional table of max_len={self.config.max_len} (sequence "
                             f"length {ids.shape[1]}); shorten it or raise TransformerConfig.max_len")
        x = table(ids) * math.sqrt(self.config.d_model)                    # (b, t, d)
        return self.dropout(self.pos_emb(x, offset))                       # (b, t, d)

    def encode(self, src: torch.Tensor, need_weights: bool = False):
        """src (b, s) -> memory (b, s, d), source padding mask (b, 1, 1, s), encoder weights."""
        memory_mask = (src != self.config.pad_id)[:, None, None, :]        # (b, 1, 1, s)
        x = self.embed(src, self.src_token_emb, "src")                     # (b, s, d)
        memory, weights = self.encoder(x, memory_mask, need_weights)       # (b, s, d)
        return memory, memory_mask, weights                                # (b, s, d), (b, 1, 1, s), list

    def decode(self, tgt_in: torch.Tensor, memory: torch.Tensor, memory_mask=None,
               caches: list[KVCache] | None = None, need_weights: bool = False):
        """tgt_in (b, t) -> logits (b, t, vocab), self weights, cross weights (causal: no peeking).

        With caches, tgt_in holds only the new positions; their positions continue the cache.
        """
        offset = 0 if caches is None else caches[0].length
        x = self.embed(tgt_in, self.tgt_token_emb, "tgt", offset)          # (b, t, d)
        x, self_ws, cross_ws = self.decoder(x, memory, memory_mask, caches=caches,
                                            need_weights=need_weights)     # (b, t, d)
        return self.vocab_proj(x), self_ws, cross_ws                       # (b, t, vocab)

    def forward(self, src: torch.Tensor, tgt_in: torch.Tensor, need_weights: bool = False):
        memory, memory_mask, enc_ws = self.encode(src, need_weights)       # (b, s, d), (b, 1, 1, s)
        logits, self_ws, cross_ws = self.decode(tgt_in, memory, memory_mask,
                                                need_weights=need_weights) # (b, t, vocab)
        weights = {"encoder": enc_ws, "decoder": self_ws, "cross": cross_ws} if need_weights else None
        return logits, weights                                             # (b, t, vocab), dict or None


def teacher_forcing_loss(model: Transformer, src: torch.Tensor, tgt_in: torch.Tensor,
                         tgt_out: torch.Tensor, label_smoothing: float = 0.0) -> torch.Tensor:
    """Cross-entropy of predicting tgt_out[i] from the *true* tgt_in[:i+1] (teacher forcing).

    The decoder's causal mask makes all t predictions one parallel pass; IGNORE_INDEX = padding.
    Label smoothing ε_ls: §5.4 of Vaswani et al. (2017).
    """
    check_shapes([(tgt_in, ("b", "t"), "tgt_in"), (tgt_out, ("b", "t"), "tgt_out")])
    logits, _ = model(src, tgt_in)                                         # (b, t, vocab)
    return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(),        # (b·t, vocab), (b·t,)
                           ignore_index=IGNORE_INDEX, label_smoothing=label_smoothing)


@dataclass
class Decoded:
    """Output of greedy_decode: tokens (b, n) after [BOS] ([PAD] after [EOS]) and, when asked,
    the cross-attention of every generated word, (layers, b, nh, n, s)."""
    tokens: torch.Tensor
    cross: torch.Tensor | None = None


@torch.no_grad()
def greedy_decode(model: Transformer, src: torch.Tensor, max_new_tokens: int | None = None,
                  use_cache: bool = True, need_weights: bool = False) -> Decoded:
    """Greedy decoding: start from [BOS], append argmax p(y_i | y_<i, x) until [EOS].

    With ``use_cache`` each step feeds only the newest word; past keys/values of the decoder's
    self-attention come from a KVCache per layer (same result, less work).
    """
    c = model.config
    max_new_tokens = c.max_len if max_new_tokens is None else max_new_tokens
    if not 1 <= max_new_tokens <= c.max_len:
        raise ValueError(f"max_new_tokens must lie in [1, max_len={c.max_len}], got {max_new_tokens}")
    model.eval()
    memory, memory_mask, _ = model.encode(src)                             # (b, s, d)
    ys = torch.full((src.shape[0], 1), c.bos_id, dtype=torch.long, device=src.device)  # (b, 1)
    caches = [KVCache(c.max_len) for _ in model.decoder.layers] if use_cache else None
    done = torch.zeros(src.shape[0], dtype=torch.bool, device=src.device)  # (b,) seen [EOS]
    cross = []
    for _ in range(max_new_tokens):
        logits, _, cross_ws = model.decode(ys[:, -1:] if use_cache else ys, memory, memory_mask,
                                           caches, need_weights)           # (b, 1 or i+1, vocab)
        next_id = logits[:, -1].argmax(-1).masked_fill(done, c.pad_id)     # (b,)
        ys = torch.cat([ys, next_id[:, None]], dim=1)                      # (b, i+2)
        if need_weights:
            cross.append(torch.stack([w[:, :, -1:] for w in cross_ws]))    # (layers, b, nh, 1, s)
        done |= next_id == c.eos_id
        if done.all():
            break
    return Decoded(ys[:, 1:], torch.cat(cross, dim=3) if need_weights else None)  # (b, n), cross


@torch.no_grad()
def beam_search(model: Transformer, src: torch.Tensor, beam_size: int = 4,
                max_new_tokens: int | None = None) -> tuple[torch.Tensor, float]:
    """Beam search for one sentence src (1, s): keep the beam_size best prefixes at every step.

    score(y) = Σ_i log p(y_i | y_<i, x). A prefix ending in [EOS] is finished; the search stops
    when no unfinished prefix can beat the best finished one (scores only fall as words are
    added). Returns (tokens (n,) ending in [EOS], score). beam_size=1 is greedy decoding.
    """
    c = model.config
    max_new_tokens = c.max_len if max_new_tokens is None else max_new_tokens
    if src.dim() != 2 or src.shape[0] != 1:
        raise ValueError(f"beam_search: expected src of shape (1, s), received {tuple(src.shape)}")
    if beam_size < 1 or not 1 <= max_new_tokens <= c.max_len:
        raise ValueError(f"need beam_size >= 1 and max_new_tokens in [1, {c.max_len}], got "
                         f"{beam_size}, {max_new_tokens}")
    model.eval()
    memory, memory_mask, _ = model.encode(src)                             # (1, s, d)
    beams, finished = [([c.bos_id], 0.0)], []
    for _ in range(max_new_tokens):
        ys = torch.tensor([seq for seq, _ in beams], device=src.device)    # (k, i+1)
        k = ys.shape[0]
        logits, _, _ = model.decode(ys, memory.expand(k, -1, -1),
                                    memory_mask.expand(k, -1, -1, -1))     # (k, i+1, vocab)
        logp = logits[:, -1].log_softmax(-1).cpu()                         # (k, vocab) next word
        scores = torch.tensor([s for _, s in beams])[:, None] + logp       # (k, vocab) whole prefix
        top = scores.flatten().topk(beam_size)                             # best (prefix, word) pairs
        beams = []
        for score, index in zip(top.values.tolist(), top.indices.tolist()):
            row, word = divmod(index, scores.shape[1])
            (finished if word == c.eos_id else beams).append((ys[row].tolist() + [word], score))
        if not beams or (finished and max(s for _, s in finished) >= beams[0][1]):
            break
    seq, score = max(finished or beams, key=lambda item: item[1])
    return torch.tensor(seq[1:]), score                                    # (n,), float
