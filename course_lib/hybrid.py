"""Hybrid models (lecture 09): attention layers interleaved with Mamba layers.

Jamba (Lieber et al., *Jamba: A Hybrid Transformer-Mamba Language Model*, 2024) and Zamba
(Glorioso et al., 2024) stack mostly Mamba layers with an attention layer every few layers:
Mamba carries the sequence cheaply in a fixed-size state, the few attention layers give exact
look-up of any earlier token (in-context recall) at the cost of a KV cache for those layers only.
Jamba uses no positional encoding (the Mamba layers know the order); here every attention layer
rotates q and k with RoPE (notebook 02) so that a model made only of attention layers has
positions too, and all three models of notebook 09 share one class:

    x = token_emb(tokens)                                            (b, l, d_model)
    x = x + mixer_i(RMSNorm_i(x))   for each letter of ``pattern``:  "m" MambaBlock (07),
                                                                     "a" causal attention (01)
    logits = norm_f(x) · token_emb.weightᵀ                           (b, l, vocab), tied

``pattern="mm"`` is a pure Mamba model (the ``MambaLM`` of 07, same modules), ``"aa"`` a pure
attention model without MLPs (an attention-only Transformer), ``"ma"`` the hybrid. Official
Jamba implementation: ``JambaForCausalLM`` in Hugging Face transformers
(``models/jamba/modeling_jamba.py``), attention every ``attn_layer_period`` layers.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import check_token_ids
from course_lib.attention import MultiHeadAttention
from course_lib.mamba import MambaBlock, MambaConfig, RMSNorm
from course_lib.positional import RotaryEmbedding

__all__ = ["HybridConfig", "CausalSelfAttention", "HybridLM"]

LAYER_KINDS = {"m": "Mamba", "a": "attention"}


@dataclass
class HybridConfig:
    """A stack of Mamba ("m") and attention ("a") layers, one letter per layer."""
    vocab_size: int
    pattern: str = "ma"
    d_model: int = 32
    n_heads: int = 4
    d_state: int = 16           # Mamba layers: state size n
    expand: int = 2             # Mamba layers: d_inner = expand · d_model
    d_conv: int = 4
    max_len: int = 2048         # attention layers: the RoPE table
    norm_eps: float = 1e-5

    def __post_init__(self):
        if not isinstance(self.pattern, str) or not self.pattern or set(self.pattern) - set(LAYER_KINDS):
            raise ValueError(f"HybridConfig.pattern: expected a non-empty string of 'm' (Mamba) "
                             f"and 'a' (attention), got {self.pattern!r}")
        if "a" in self.pattern and (self.d_model % self.n_heads or (self.d_model // self.n_heads) % 2):
            raise ValueError(f"HybridConfig: d_model must split into n_heads heads of even width "
                             f"(RoPE), got d_model={self.d_model}, n_heads={self.n_heads}")

    @property
    def n_layers(self) -> int:
        return len(self.pattern)

    def mamba_config(self) -> MambaConfig:
        """The MambaConfig of the "m" layers (07's block, its defaults otherwise)."""
        return MambaConfig(self.vocab_size, self.d_model, self.n_layers, self.d_state,
                           self.expand, self.d_conv, norm_eps=self.norm_eps)


class CausalSelfAttention(nn.Module):
    """Causal multi-head self-attention (01's ``MultiHeadAttention``) with RoPE on q and k."""

    def __init__(self, d_model: int, n_heads: int, max_len: int):
        super().__init__()
        self.attn = MultiHeadAttention(d_model, n_heads)
        self.rope = RotaryEmbedding(d_model // n_heads, max_len)

    def forward(self, x: torch.Tensor, need_weights: bool = False):
        """x (b, l, d_model) -> (out (b, l, d_model), weights (b, nh, l, l) or None)."""
        return self.attn(x, is_causal=True, need_weights=need_weights, rotate=self.rope)


class HybridLM(nn.Module):
    """Tokens (b, l) -> logits (b, l, vocab): token_emb, one residual pre-norm mixer per letter
    of ``config.pattern`` (Mamba or attention), norm_f, read-out tied to token_emb."""

    def __init__(self, config: HybridConfig):
        super().__init__()
        self.config = config
        mamba = config.mamba_config()
        self.token_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.norms = nn.ModuleList(RMSNorm(config.d_model, config.norm_eps) for _ in config.pattern)
        self.layers = nn.ModuleList(MambaBlock(mamba) if kind == "m" else
                                    CausalSelfAttention(config.d_model, config.n_heads, config.max_len)
                                    for kind in config.pattern)
        self.norm_f = RMSNorm(config.d_model, config.norm_eps)

    def forward(self, tokens: torch.Tensor, need_weights: bool = False):
        """logits (b, l, vocab); with need_weights also {layer index: (b, nh, l, l)} of the
        attention layers."""
        check_token_ids(tokens, self.config.vocab_size, "tokens", ("b", "l"))
        if tokens.shape[1] > self.config.max_len and "a" in self.config.pattern:
            raise ValueError(f"HybridLM: sequence of {tokens.shape[1]} tokens exceeds "
                             f"max_len={self.config.max_len}")
        x, weights = self.token_emb(tokens), {}                         # (b, l, d_model)
        for i, (kind, norm, layer) in enumerate(zip(self.config.pattern, self.norms, self.layers)):
            if kind == "m":
                x = x + layer(norm(x))
            else:
                out, weights[i] = layer(norm(x), need_weights=need_weights)
                x = x + out
        logits = F.linear(self.norm_f(x), self.token_emb.weight)        # (b, l, vocab), tied
        return (logits, weights) if need_weights else logits

    def layer_params(self) -> list[tuple[str, int]]:
        """[(kind, parameters)] per layer (its norm included), for the equal-budget table."""
        return [(LAYER_KINDS[kind], sum(p.numel() for p in (*norm.parameters(), *layer.parameters())))
                for kind, norm, layer in zip(self.config.pattern, self.norms, self.layers)]
