"""Mamba (lecture 07): the selective SSM inside a gated block, stacked into a language model.

One Mamba block (Gu & Dao 2023, Fig. 3), x: (b, l, d_model):

    x, z = in_proj(x)                         two branches, each (b, l, d)   d = expand·d_model
    x    = SiLU(causal depthwise conv1d(x))   local mixing over the last d_conv tokens
    Δ, B, C = softplus(dt_proj(·)), ·, ·      from x_proj(x): (b, l, d), (b, l, n), (b, l, n)
    y    = SelectiveSSM(x; Δ, A, B, C, D)     course_lib.scan.selective_scan, A = -exp(A_log)
    out  = out_proj(y ⊙ SiLU(z))              the multiplicative gate

``selective=False`` turns selection off (an S4D-style LTI SSM in the same block): Δ (d,), and
B, C (d, n) become plain parameters, the same at every time step. ``gate=False`` drops the z
branch (out = out_proj(y)): the "no gate" rows of the paper's Table 1. Every model discretizes
with Ā = exp(ΔA) and Mamba's Euler B̄ = ΔB (``course_lib.scan``, ``method="euler"``). The model is
embedding → [x + block(RMSNorm(x))] × n_layers → RMSNorm → tied read-out. ``step`` runs one
token with a cached state (the last d_conv - 1 conv inputs and h (b, d, n)) for generation.
``AttentionLM`` is the Transformer baseline (causal ``EncoderLayer`` + absolute positions).

Names: ``x`` a layer's input, ``y`` its output, ``h`` the SSM state, ``d_model`` width,
``d_inner`` = d (channels), ``d_state`` = n, ``delta`` = Δ, ``dt_rank`` the low-rank width of Δ's
projection, ``nh`` the attention heads of the baseline.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import ShapeError
from course_lib.positional import SinusoidalPositional
from course_lib.scan import scan_chunked, selective_scan, selective_step
from course_lib.transformer import EncoderLayer

__all__ = ["MambaConfig", "RMSNorm", "MambaBlock", "MambaLM", "AttentionLM", "causal_depthwise_conv",
           "build_model", "load_model"]


@dataclass
class MambaConfig:
    """Hyper-parameters of a (tiny, CPU-sized) Mamba language model."""
    vocab: int
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

    def __post_init__(self):
        for name in ("vocab", "d_model", "n_layers", "d_state", "expand", "d_conv"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"MambaConfig.{name} must be a positive int, "
                                 f"got {getattr(self, name)!r}")
        if not 0 < self.dt_min <= self.dt_max:
            raise ValueError(f"MambaConfig: need 0 < dt_min <= dt_max, got {self.dt_min}, {self.dt_max}")
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
    """The Mamba mixer: in_proj, causal depthwise conv, SiLU, selective SSM, gate, out_proj."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.cfg = cfg
        d, n = cfg.d_inner, cfg.d_state
        self.in_proj = nn.Linear(cfg.d_model, (2 if cfg.gate else 1) * d, bias=False)
        self.conv_weight = nn.Parameter(torch.randn(d, cfg.d_conv) / math.sqrt(cfg.d_conv))
        self.conv_bias = nn.Parameter(torch.zeros(d))
        self.A_log = nn.Parameter(torch.log(torch.arange(1, n + 1, dtype=torch.float32)).repeat(d, 1))
        self.D = nn.Parameter(torch.ones(d))
        dt = torch.exp(torch.rand(d) * (math.log(cfg.dt_max) - math.log(cfg.dt_min))
                       + math.log(cfg.dt_min))                          # log-uniform Δ at init
        dt_bias = dt + torch.log(-torch.expm1(-dt))                     # softplus⁻¹(dt)
        if cfg.selective:
            self.x_proj = nn.Linear(d, cfg.dt_rank + 2 * n, bias=False)
            self.dt_proj = nn.Linear(cfg.dt_rank, d)
            with torch.no_grad():
                self.dt_proj.bias.copy_(dt_bias)
        else:
            self.dt_bias = nn.Parameter(dt_bias)                        # Δ (d,)
            self.B = nn.Parameter(torch.randn(d, n) / math.sqrt(n))     # (d, n) per channel
            self.C = nn.Parameter(torch.randn(d, n) / math.sqrt(n))
        self.out_proj = nn.Linear(d, cfg.d_model, bias=False)

    def ssm_params(self, x: torch.Tensor):
        """Δ (b, l, d), B, C (b, l, n) from the conv output x (b, l, d): selection."""
        n, r = self.cfg.d_state, self.cfg.dt_rank
        if not self.cfg.selective:
            b, l, d = x.shape
            return F.softplus(self.dt_bias).expand(b, l, d), self.B, self.C
        dt_low, B, C = self.x_proj(x).split([r, n, n], dim=-1)          # (b, l, r), (b, l, n) x2
        return F.softplus(self.dt_proj(dt_low)), B, C                   # Δ > 0

    def ssm(self, x: torch.Tensor, need_delta: bool = False):
        """The SSM of the block, x (b, l, d) -> y (b, l, d) (and Δ when need_delta)."""
        A = -torch.exp(self.A_log)                                      # (d, n), real < 0
        delta, B, C = self.ssm_params(x)
        if self.cfg.selective:
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
        if not self.cfg.gate:
            return self.in_proj(x), None
        return self.in_proj(x).chunk(2, dim=-1)                         # (..., d) each

    def forward(self, x: torch.Tensor, need_delta: bool = False):
        """x (b, l, d_model) -> (b, l, d_model) (and Δ (b, l, d_inner) when need_delta)."""
        xs, z = self._split(x)                                          # (b, l, d) each
        xs = F.silu(causal_depthwise_conv(xs, self.conv_weight, self.conv_bias))
        y, delta = self.ssm(xs, need_delta=True)
        out = self._gated(y, z)                                         # (b, l, d_model)
        return (out, delta) if need_delta else out

    def init_state(self, batch: int):
        """Empty generation state: conv inputs (b, d_conv - 1, d) and h (b, d, n)."""
        w = self.conv_weight
        return (w.new_zeros(batch, self.cfg.d_conv - 1, self.cfg.d_inner),
                w.new_zeros(batch, self.cfg.d_inner, self.cfg.d_state))

    def step(self, x_t: torch.Tensor, state):
        """One token: x_t (b, d_model) -> (out (b, d_model), new state). Same maths as forward."""
        conv_in, h = state
        xs, z = self._split(x_t)                                        # (b, d) each
        window = torch.cat([conv_in, xs[:, None]], 1)                   # (b, d_conv, d)
        xs = F.silu((window * self.conv_weight.T).sum(1) + self.conv_bias)   # (b, d)
        delta, B, C = self.ssm_params(xs[:, None])
        delta, A = delta[:, 0], -torch.exp(self.A_log)
        if self.cfg.selective:
            B, C = B[:, 0], C[:, 0]                                     # (b, n)
            y, h = selective_step(h, xs, delta, A, B, C, self.D)
        else:
            h = torch.exp(delta[..., None] * A) * h + (delta * xs)[..., None] * B
            y = (h * C).sum(-1) + self.D * xs
        return self._gated(y, z), (window[:, 1:], h)


class MambaLM(nn.Module):
    """Tokens (b, l) -> logits (b, l, vocab): embedding, residual Mamba blocks, RMSNorm, read-out."""

    def __init__(self, cfg: MambaConfig):
        super().__init__()
        self.cfg = cfg
        self.embed = nn.Embedding(cfg.vocab, cfg.d_model)
        self.norms = nn.ModuleList(RMSNorm(cfg.d_model) for _ in range(cfg.n_layers))
        self.blocks = nn.ModuleList(MambaBlock(cfg) for _ in range(cfg.n_layers))
        self.norm_f = RMSNorm(cfg.d_model)

    def _check(self, tokens: torch.Tensor) -> None:
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2 or tokens.is_floating_point():
            shape = tuple(tokens.shape) if isinstance(tokens, torch.Tensor) else type(tokens).__name__
            raise ShapeError(f"MambaLM: expected integer tokens of shape (b, l), received {shape}")
        if tokens.numel() and (tokens.min() < 0 or tokens.max() >= self.cfg.vocab):
            raise ValueError(f"MambaLM: token ids must be in [0, {self.cfg.vocab}), received "
                             f"{tokens.min().item()}..{tokens.max().item()}")

    def forward(self, tokens: torch.Tensor, need_deltas: bool = False):
        """logits (b, l, v); with need_deltas also [Δ (b, l, d_inner) per layer]."""
        self._check(tokens)
        x, deltas = self.embed(tokens), []                              # (b, l, d_model)
        for norm, block in zip(self.norms, self.blocks):
            out, delta = block(norm(x), need_delta=True)
            x, deltas = x + out, deltas + [delta]
        logits = self.norm_f(x) @ self.embed.weight.T                   # (b, l, v), tied
        return (logits, deltas) if need_deltas else logits

    def ssm_inputs(self, tokens: torch.Tensor) -> list[dict]:
        """What each layer's SSM sees: [{"x" (b, l, d), "delta" (b, l, d), "B", "C" (b, l, n) or
        (d, n) without selection, "A" (d, n)}] per layer, for looking inside a trained model."""
        self._check(tokens)
        x, seen = self.embed(tokens), []                                # (b, l, d_model)
        for norm, block in zip(self.norms, self.blocks):
            xs, _ = block._split(norm(x))
            xs = F.silu(causal_depthwise_conv(xs, block.conv_weight, block.conv_bias))
            delta, B, C = block.ssm_params(xs)
            seen.append({"x": xs, "delta": delta, "B": B, "C": C, "A": -torch.exp(block.A_log)})
            x = x + block(norm(x))
        return seen

    def init_state(self, batch: int) -> list:
        return [block.init_state(batch) for block in self.blocks]

    def step(self, token: torch.Tensor, states: list):
        """Recurrent mode: token (b,) -> (logits (b, v), new states). O(1) memory per token."""
        self._check(token[:, None])
        x, new = self.embed(token), []                                  # (b, d_model)
        for norm, block, state in zip(self.norms, self.blocks, states):
            out, state = block.step(norm(x), state)
            x, new = x + out, new + [state]
        return self.norm_f(x) @ self.embed.weight.T, new


class AttentionLM(nn.Module):
    """Baseline: embedding + sinusoidal (absolute) positions, causal pre-norm EncoderLayers."""

    def __init__(self, vocab: int, d_model: int = 64, n_heads: int = 4, n_layers: int = 2,
                 max_len: int = 8192):
        super().__init__()
        self.vocab = vocab
        self.embed = nn.Embedding(vocab, d_model)
        self.pos = SinusoidalPositional(d_model, max_len)
        self.layers = nn.ModuleList(EncoderLayer(d_model, n_heads, norm_first=True)
                                    for _ in range(n_layers))
        self.norm_f = nn.LayerNorm(d_model)
        self.head = nn.Linear(d_model, vocab)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        """tokens (b, l) -> logits (b, l, vocab)."""
        if not isinstance(tokens, torch.Tensor) or tokens.dim() != 2:
            raise ShapeError(f"AttentionLM: expected tokens of shape (b, l), received "
                             f"{getattr(tokens, 'shape', type(tokens).__name__)}")
        x = self.pos(self.embed(tokens))                                # (b, l, d_model)
        for layer in self.layers:
            x, _ = layer(x, is_causal=True)
        return self.head(self.norm_f(x))


def build_model(config: dict) -> nn.Module:
    """A model from a checkpoint's config: {"arch": "mamba"|"attention", "vocab", "model": {...}}."""
    arch, kwargs = config.get("arch"), dict(config.get("model", {}))
    if arch == "mamba":
        return MambaLM(MambaConfig(vocab=config["vocab"], selective=config.get("selective", True),
                                   **kwargs))
    if arch == "attention":
        return AttentionLM(config["vocab"], **kwargs)
    raise ValueError(f"build_model: arch must be 'mamba' or 'attention', got {arch!r}")


def load_model(path) -> tuple[nn.Module, dict]:
    """Rebuild a model saved by tools/train_mamba.py: (model in eval mode, {"config", "metrics"})."""
    from pathlib import Path

    from safetensors import safe_open

    from course_lib.training import load_checkpoint

    path = Path(path)
    if not path.exists():
        raise ValueError(f"load_model: checkpoint not found: {path} (run tools/train_mamba.py)")
    with safe_open(str(path), framework="pt") as f:
        config = json.loads((f.metadata() or {}).get("config", "{}"))
    model = build_model(config)
    meta = load_checkpoint(model, path)
    return model.eval(), meta
