"""Mamba (lecture 07): the selective SSM inside a gated block, stacked into a language model.

Gu & Dao, *Mamba: Linear-Time Sequence Modeling with Selective State Spaces* (2023). One Mamba
block (their Fig. 3; the selective SSM inside it is Algorithm 2, S6), x: (b, l, d_model):

    x, z = in_proj(x)                         two branches, each (b, l, d)   d = expand·d_model
    x    = SiLU(causal depthwise conv1d(x))   local mixing over the last d_conv tokens
    Δ, B, C = softplus(dt_proj(·)), ·, ·      from x_proj(x): (b, l, d), (b, l, n), (b, l, n)
    y    = SelectiveSSM(x; Δ, A, B, C, D)     course_lib.scan.selective_scan, A = -exp(A_log)
    out  = out_proj(y ⊙ SiLU(z))              the multiplicative gate

Official implementation: state-spaces/mamba, ``mamba_ssm/modules/mamba_simple.py`` (the block,
its ``step``) and ``mamba_ssm/models/mixer_seq_simple.py`` (the language model); the same
architecture is ``MambaForCausalLM`` in Hugging Face transformers, whose weights
``course_lib.pretrained.mamba`` loads into ``MambaLM`` unchanged.

``selective=False`` turns selection off (an S4D-style LTI SSM in the same block): Δ (d,), and
B, C (d, n) become plain parameters, the same at every time step. ``gate=False`` drops the z
branch (out = out_proj(y)): the "no gate" rows of the paper's Table 1. Every model discretizes
with Ā = exp(ΔA) and Mamba's Euler B̄ = ΔB (``course_lib.scan``, ``method="euler"``). The model is
token_emb → [x + block(RMSNorm(x))] × n_layers → norm_f (RMSNorm) → read-out tied to token_emb.
``step`` runs one token with a cached state (the last d_conv - 1 conv inputs and h (b, d, n))
for generation.

Names: ``x`` a layer's input, ``y`` its output, ``h`` the SSM state, ``d_model`` width,
``d_inner`` = d (channels), ``d_state`` = n, ``delta`` = Δ, ``dt_rank`` the low-rank width of Δ's
projection, ``vocab_size`` the vocabulary (shape comments: ``vocab``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import ShapeError, check_token_ids
from course_lib.scan import scan_chunked, selective_scan, selective_step

__all__ = ["MambaConfig", "RMSNorm", "MambaBlock", "MambaLM", "causal_depthwise_conv"]


@dataclass
class MambaConfig:
    """Hyper-parameters of a Mamba language model (CPU-sized defaults; mamba-130m is
    ``MambaConfig(vocab_size=50280, d_model=768, n_layers=24)``)."""
    vocab_size: int
    d_model: int = 32
    n_layers: int = 2
    d_state: int = 16
    expand: int = 2
    d_conv: int = 4
    dt_rank: int = 0            # 0: ceil(d_model / 16), as in the paper
    dt_min: float = 0.001
    dt_max: float = 0.1
    selective: bool = True      # False: the LTI (S4D-style) SSM in the same block
    gate: bool = True           # False: no SiLU(z) branch, out = out_proj(y)
    conv_bias: bool = True      # a bias in the depthwise conv (Mamba's default)
    bias: bool = False          # biases in in_proj and out_proj (Mamba's default: none)
    norm_eps: float = 1e-5      # RMSNorm's epsilon

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_layers", "d_state", "expand", "d_conv"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"MambaConfig.{name} must be a positive int, "
                                 f"got {getattr(self, name)!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"MambaConfig: need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
        if not isinstance(self.dt_rank, int) or self.dt_rank < 0:
            raise ValueError(f"MambaConfig.dt_rank must be an int >= 0 (0: automatic), "
                             f"got {self.dt_rank!r}")
        self.dt_rank = self.dt_rank or math.ceil(self.d_model / 16)
        self.d_inner = self.expand * self.d_model


class RMSNorm(nn.Module):
    """x / sqrt(mean(x²) + eps) · weight over the last axis (no mean subtraction, no bias)."""

    def __init__(self, d_model: int, eps: float = 1e-5):
        super().__init__()
        self.eps, self.weight = eps, nn.Parameter(torch.ones(d_model))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.square().mean(-1, keepdim=True) + self.eps) * self.weight


def causal_depthwise_conv(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None = None):
    """y_t = Σ_k w[:, k] x_{t-K+1+k} (+ bias) per channel, zeros before the start.

    x: (b, l, d), weight: (d, K), bias: (d,) -> (b, l, d). Each channel has its own K-tap filter
    (depthwise) that only sees the current and the K-1 previous tokens (causal).
    """
    if x.dim() != 3 or weight.dim() != 2 or weight.shape[0] != x.shape[-1]:
        raise ShapeError(f"causal_depthwise_conv: expected x (b, l, d) and weight (d, K) with the "
                         f"same d, received {tuple(x.shape)} and {tuple(weight.shape)}")
    d, k = weight.shape
    padded = F.pad(x.transpose(1, 2), (k - 1, 0))                       # (b, d, K - 1 + l)
    return F.conv1d(padded, weight[:, None, :], bias, groups=d).transpose(1, 2)   # (b, l, d)


class MambaBlock(nn.Module):
    """The Mamba mixer (Fig. 3 of Gu & Dao 2023): in_proj, causal depthwise conv, SiLU,
    selective SSM (Algorithm 2), gate, out_proj. Official: mamba_ssm/modules/mamba_simple.py."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        d, n = config.d_inner, config.d_state
        self.in_proj = nn.Linear(config.d_model, (2 if config.gate else 1) * d, bias=config.bias)
        self.conv_weight = nn.Parameter(torch.randn(d, config.d_conv) / math.sqrt(config.d_conv))
        self.conv_bias = nn.Parameter(torch.zeros(d)) if config.conv_bias else None
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1))
        self.D = nn.Parameter(torch.ones(d))
        dt = torch.exp(torch.rand(d) * (math.log(config.dt_max) - math.log(config.dt_min))
                       + math.log(config.dt_min))                       # log-uniform Δ at init
        dt_bias = dt + torch.log(-torch.expm1(-dt))                     # softplus⁻¹(dt)
        if config.selective:
            self.x_proj = nn.Linear(d, config.dt_rank + 2 * n, bias=False)
            self.dt_proj = nn.Linear(config.dt_rank, d)
            with torch.no_grad():
                self.dt_proj.bias.copy_(dt_bias)
        else:
            self.dt_bias = nn.Parameter(dt_bias)                        # Δ (d,)
            self.B = nn.Parameter(torch.randn(d, n) / math.sqrt(n))     # (d, n) per channel
            self.C = nn.Parameter(torch.randn(d, n) / math.sqrt(n))
        self.out_proj = nn.Linear(d, config.d_model, bias=config.bias)

    def ssm_params(self, x: torch.Tensor):
        """Δ (b, l, d), B, C (b, l, n) from the conv output x (b, l, d): selection."""
        n, r = self.config.d_state, self.config.dt_rank
        if not self.config.selective:
            b, l, d = x.shape
            return F.softplus(self.dt_bias).expand(b, l, d), self.B, self.C
        dt_low, B, C = self.x_proj(x).split([r, n, n], dim=-1)          # (b, l, r), (b, l, n) x2
        return F.softplus(self.dt_proj(dt_low)), B, C                   # Δ > 0

    def ssm(self, x: torch.Tensor, need_delta: bool = False):
        """The SSM of the block, x (b, l, d) -> y (b, l, d) (and Δ when need_delta)."""
        A = -torch.exp(self.A_log)                                      # (d, n), real < 0
        delta, B, C = self.ssm_params(x)
        if self.config.selective:
            y = selective_scan(x, delta, A, B, C, self.D)
        else:                                                           # same scan, fixed Ā, B̄
            A_bar = torch.exp(delta[..., None] * A)                     # (b, l, d, n)
            h = scan_chunked(A_bar, (delta * x)[..., None] * B)         # (b, l, d, n)
            y = (h * C).sum(-1) + self.D * x                            # (b, l, d)
        return (y, delta) if need_delta else y

    def _gated(self, y: torch.Tensor, z: torch.Tensor | None) -> torch.Tensor:
        """out_proj(y ⊙ SiLU(z)), or out_proj(y) without the gate: (..., d) -> (..., d_model)."""
        return self.out_proj(y if z is None else y * F.silu(z))

    def _split(self, x: torch.Tensor):
        """in_proj: x (..., d_model) -> the SSM branch (..., d) and the gate branch z or None."""
        if not self.config.gate:
            return self.in_proj(x), None
        return self.in_proj(x).chunk(2, dim=-1)                         # (..., d) each

    def conv(self, xs: torch.Tensor) -> torch.Tensor:
        """SiLU(causal depthwise conv1d(xs)): (b, l, d) -> (b, l, d)."""
        return F.silu(causal_depthwise_conv(xs, self.conv_weight, self.conv_bias))

    def forward(self, x: torch.Tensor, need_delta: bool = False):
        """x (b, l, d_model) -> (b, l, d_model) (and Δ (b, l, d_inner) when need_delta)."""
        xs, z = self._split(x)                                          # (b, l, d) each
        y, delta = self.ssm(self.conv(xs), need_delta=True)             # (b, l, d)
        out = self._gated(y, z)                                         # (b, l, d_model)
        return (out, delta) if need_delta else out

    def init_state(self, batch: int):
        """Empty generation state: conv inputs (b, d_conv - 1, d) and h (b, d, n)."""
        w = self.conv_weight
        return (w.new_zeros(batch, self.config.d_conv - 1, self.config.d_inner),
                w.new_zeros(batch, self.config.d_inner, self.config.d_state))

    def prefill(self, x: torch.Tensor):
        """The parallel mode that also returns the generation state after the last token:
        x (b, l, d_model) -> (out (b, l, d_model), (conv inputs (b, d_conv - 1, d), h (b, d, n)))."""
        xs_in, z = self._split(x)                                       # (b, l, d) each
        xs = self.conv(xs_in)
        delta, B, C = self.ssm_params(xs)                               # B, C (b, l, n) or (d, n)
        B, C = (B, C) if B.dim() == 2 else (B.unsqueeze(-2), C.unsqueeze(-2))
        A_bar = torch.exp(delta[..., None] * -torch.exp(self.A_log))    # (b, l, d, n)
        h = scan_chunked(A_bar, (delta * xs)[..., None] * B)            # (b, l, d, n)
        y = (h * C).sum(-1) + self.D * xs                               # (b, l, d)
        k = self.config.d_conv - 1
        conv_in = F.pad(xs_in, (0, 0, k, 0))[:, xs_in.shape[1]:]        # (b, k, d) last k inputs
        return self._gated(y, z), (conv_in, h[:, -1])

    def step(self, x_t: torch.Tensor, state):
        """One token: x_t (b, d_model) -> (out (b, d_model), new state). Same maths as forward
        (mamba_simple.py's ``step``): O(1) work and memory per token, whatever the position."""
        conv_in, h = state
        xs, z = self._split(x_t)                                        # (b, d) each
        window = torch.cat([conv_in, xs[:, None]], 1)                   # (b, d_conv, d)
        xs = (window * self.conv_weight.T).sum(1)                       # (b, d) the conv's last output
        xs = F.silu(xs if self.conv_bias is None else xs + self.conv_bias)
        delta, B, C = self.ssm_params(xs[:, None])
        delta, A = delta[:, 0], -torch.exp(self.A_log)
        if self.config.selective:
            B, C = B[:, 0], C[:, 0]                                     # (b, n)
            y, h = selective_step(h, xs, delta, A, B, C, self.D)
        else:
            h = torch.exp(delta[..., None] * A) * h + (delta * xs)[..., None] * B
            y = (h * C).sum(-1) + self.D * xs
        return self._gated(y, z), (window[:, 1:], h)


class MambaLM(nn.Module):
    """Tokens (b, l) -> logits (b, l, vocab): token_emb, residual Mamba blocks, norm_f, tied
    read-out (official: mamba_ssm/models/mixer_seq_simple.py, MambaLMHeadModel)."""

    def __init__(self, config: MambaConfig):
        super().__init__()
        self.config = config
        self.token_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.norms = nn.ModuleList(RMSNorm(config.d_model, config.norm_eps)
                                   for _ in range(config.n_layers))
        self.layers = nn.ModuleList(MambaBlock(config) for _ in range(config.n_layers))
        self.norm_f = RMSNorm(config.d_model, config.norm_eps)

    def forward(self, tokens: torch.Tensor, need_deltas: bool = False):
        """logits (b, l, vocab); with need_deltas also [Δ (b, l, d_inner) per layer]."""
        check_token_ids(tokens, self.config.vocab_size, "tokens", ("b", "l"))
        x, deltas = self.token_emb(tokens), []                          # (b, l, d_model)
        for norm, block in zip(self.norms, self.layers):
            out, delta = block(norm(x), need_delta=True)
            x, deltas = x + out, deltas + [delta]
        logits = F.linear(self.norm_f(x), self.token_emb.weight)        # (b, l, vocab), tied
        return (logits, deltas) if need_deltas else logits

    def ssm_inputs(self, tokens: torch.Tensor) -> list[dict]:
        """What each layer's SSM sees: [{"x" (b, l, d), "delta" (b, l, d), "B", "C" (b, l, n) or
        (d, n) without selection, "A" (d, n)}] per layer, for looking inside a trained model."""
        check_token_ids(tokens, self.config.vocab_size, "tokens", ("b", "l"))
        x, seen = self.token_emb(tokens), []                            # (b, l, d_model)
        for norm, block in zip(self.norms, self.layers):
            xs = block.conv(block._split(norm(x))[0])                   # (b, l, d)
            delta, B, C = block.ssm_params(xs)
            seen.append({"x": xs, "delta": delta, "B": B, "C": C, "A": -torch.exp(block.A_log)})
            x = x + block(norm(x))
        return seen

    def init_state(self, batch: int) -> list:
        """Per layer: (conv inputs (b, d_conv - 1, d), h (b, d, n)), all zeros."""
        return [block.init_state(batch) for block in self.layers]

    def step(self, token: torch.Tensor, states: list):
        """Recurrent mode: token (b,) -> (logits (b, vocab), new states). O(1) memory per token."""
        check_token_ids(token, self.config.vocab_size, "token", ("b",))
        x, new = self.token_emb(token), []                              # (b, d_model)
        for norm, block, state in zip(self.norms, self.layers, states):
            out, state = block.step(norm(x), state)
            x, new = x + out, new + [state]
        return F.linear(self.norm_f(x), self.token_emb.weight), new     # (b, vocab), tied

    def prefill(self, tokens: torch.Tensor):
        """Parallel mode over a prompt (b, l) -> (logits (b, l, vocab), the states ``step``
        continues from): the prompt in one scan, then one token at a time."""
        check_token_ids(tokens, self.config.vocab_size, "tokens", ("b", "l"))
        x, states = self.token_emb(tokens), []                          # (b, l, d_model)
        for norm, block in zip(self.norms, self.layers):
            out, state = block.prefill(norm(x))
            x, states = x + out, states + [state]
        return F.linear(self.norm_f(x), self.token_emb.weight), states  # (b, l, vocab), tied

    @torch.no_grad()
    def generate(self, prompt: torch.Tensor, n_new: int, return_state: bool = False):
        """Greedy decoding: the prompt (b, l) in one parallel scan (``prefill``), then each new
        token with the recurrent ``step``, whose state has the same size at every position.
        Returns (b, l + n_new) tokens (and the state after all but the last when return_state)."""
        b, l = check_token_ids(prompt, self.config.vocab_size, "prompt", ("b", "l")).values()
        if l < 1 or not isinstance(n_new, int) or n_new < 0:
            raise ValueError(f"generate: expected a prompt of >= 1 token and an int n_new >= 0, "
                             f"received prompt {tuple(prompt.shape)}, n_new={n_new!r}")
        logits, states = self.prefill(prompt[:, :-1]) if l > 1 else (None, self.init_state(b))
        out = list(prompt.unbind(1))
        for t in range(l - 1, l + n_new - 1):
            logits, states = self.step(out[t], states)                  # (b, vocab)
            out.append(logits.argmax(-1))                               # (b,) greedy
        tokens = torch.stack(out, 1)                                    # (b, l + n_new)
        return (tokens, states) if return_state else tokens
