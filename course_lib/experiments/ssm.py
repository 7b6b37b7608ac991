"""Notebook 06's experiments: a dense trainable A, the discretizations against the ODE, and the
long-range classifier built from S4D layers (with the loaders of their shipped checkpoints).

The mechanisms (discretizations, kernels, FFT convolution, HiPPO, S4D, ``SSMLayer``) are in
``course_lib.ssm`` and ``course_lib.s4``; this module holds what the notebook *does* with them:

- ``DenseSSM`` and ``fit_kernel``: the naive parameterization (a dense A trained directly) and
  the exact population loss it is trained on (§7), ``load_dense_sweep`` its shipped sweep;
- ``rk4_states`` and ``discretization_errors``: how fast ZOH, bilinear and Euler converge to the
  continuous SSM's solution as Δ -> 0 (§2);
- ``SSMConfig``, ``SSMBlock``, ``SSMClassifier`` and ``load_ssm_classifier``: the long-range
  experiment of §11 (task: ``course_lib.data.synthetic.long_range_batch``; trained by
  ``python tools/train_ssm.py``).
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from course_lib.common import check_shapes, check_token_ids
from course_lib.s4 import SSMLayer
from course_lib.ssm import (check_delta, discretize_bilinear, discretize_euler, discretize_zoh,
                            fft_conv, ssm_kernel)
from course_lib.training import data_dir, load_model

__all__ = ["DenseSSM", "fit_kernel", "load_dense_sweep", "rk4_states", "discretization_errors",
           "SSMConfig", "SSMBlock", "SSMClassifier", "load_ssm_classifier"]


class DenseSSM(nn.Module):
    """One SISO SSM with a dense, trainable A: the naive parameterization that S4 replaces.

    Parameters A (n, n), B (n, 1), C (1, n) and log Δ (so Δ > 0), ZOH-discretized; nothing keeps
    A stable. ``kernel(length)`` -> K_bar (length,); forward: x (..., l) -> y = K_bar * x (..., l).
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, delta=0.01):
        super().__init__()
        check_shapes([(A, ("n", "n"), "DenseSSM: A"), (B, ("n", 1), "DenseSSM: B"),
                      (C, (1, "n"), "DenseSSM: C")])
        delta = check_delta(delta, A, "DenseSSM")
        if delta.dim() != 0:
            raise ValueError(f"DenseSSM: expected a scalar delta, received shape {tuple(delta.shape)}")
        self.A = nn.Parameter(A.detach().clone())                         # (n, n)
        self.B = nn.Parameter(B.detach().clone())                         # (n, 1)
        self.C = nn.Parameter(C.detach().clone())                         # (1, n)
        self.log_delta = nn.Parameter(torch.log(delta.detach().clone()))

    def discretize(self) -> tuple[torch.Tensor, torch.Tensor]:
        return discretize_zoh(self.A, self.B, torch.exp(self.log_delta))  # (n, n), (n, 1)

    def kernel(self, length: int) -> torch.Tensor:
        A_bar, B_bar = self.discretize()
        return ssm_kernel(A_bar, B_bar, self.C, length)                   # (length,)

    @torch.no_grad()
    def spectral_radius(self) -> float:
        """max |λ(Ā)|: above 1 the kernel grows geometrically (explodes), below 1 it decays."""
        return torch.linalg.eigvals(self.discretize()[0]).abs().max().item()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return fft_conv(x, self.kernel(x.shape[-1]))                      # (..., l)


def fit_kernel(model: nn.Module, target: torch.Tensor, steps: int = 300, lr: float = 1e-2,
               record_every: int = 10) -> list[tuple[int, float, float]]:
    """Train ``model.kernel`` towards a target kernel with Adam: -> [(step, loss, max |λ̄|)].

    loss = ||K_bar - K_target||² / ||K_target||². For a white-noise input x (unit variance) this
    is the expected squared error of y = K_bar * x against the target task y* = K_target * x
    (at every step >= l - 1), relative to the target's: the task's exact population loss, and
    outputting zero scores 1. Recorded every ``record_every`` steps and after the last one;
    stops early (last entry non-finite) if the loss overflows. max |λ̄| is NaN unless the model
    is a ``DenseSSM``.
    """
    if not isinstance(target, torch.Tensor) or target.dim() == 0 or target.shape[-1] < 1:
        got = tuple(target.shape) if isinstance(target, torch.Tensor) else type(target).__name__
        raise ValueError(f"fit_kernel: target must be a kernel tensor (..., l), received {got}")
    for value, label in ((steps, "steps"), (record_every, "record_every")):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"fit_kernel: {label} must be a positive int, received {value!r}")
    if not lr > 0:
        raise ValueError(f"fit_kernel: lr must be > 0, received {lr!r}")
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    scale = (target ** 2).sum()
    history = []
    for step in range(steps + 1):
        K = model.kernel(target.shape[-1])                                # (..., l)
        if K.shape != target.shape:
            raise ValueError(f"fit_kernel: the model's kernel {tuple(K.shape)} does not match "
                             f"the target {tuple(target.shape)}")
        loss = ((K - target) ** 2).sum() / scale
        finite = bool(torch.isfinite(loss))
        if step % record_every == 0 or step == steps or not finite:
            radius = model.spectral_radius() if isinstance(model, DenseSSM) else float("nan")
            history.append((step, loss.item(), radius))
        if step == steps or not finite:
            break
        opt.zero_grad()
        loss.backward()
        opt.step()
    return history


def rk4_states(A: torch.Tensor, B: torch.Tensor, x_held: torch.Tensor, step: float) -> torch.Tensor:
    """The continuous SSM h' = A h + B x(t) solved by classical Runge-Kutta (RK4), h(0) = 0.

    x(t) = x_held[j] on ((j-1)·step, j·step] (held constant over each step, so RK4 integrates a
    smooth ODE inside every step and its O(step⁴) error is all there is). A (n, n), B (n, 1),
    x_held (l,) -> h at t = step, 2·step, ..., l·step: (l, n). An independent reference: no
    matrix exponential, only evaluations of the right-hand side f(h) = A h + B x.
    """
    check_shapes([(A, ("n", "n"), "rk4_states: A"), (B, ("n", 1), "rk4_states: B"),
                  (x_held, ("l",), "rk4_states: x_held")])
    def f(state, x):
        return A @ state + B[:, 0] * x                                    # h' = A h + B x

    h, hs = torch.zeros(A.shape[0], dtype=A.dtype), []
    for x_j in x_held:
        k1 = f(h, x_j)
        k2 = f(h + step / 2 * k1, x_j)
        k3 = f(h + step / 2 * k2, x_j)
        k4 = f(h + step * k3, x_j)
        h = h + step / 6 * (k1 + 2 * k2 + 2 * k3 + k4)
        hs.append(h)
    return torch.stack(hs)                                                # (l, n)


def discretization_errors(A: torch.Tensor, B: torch.Tensor, values: torch.Tensor, deltas,
                          reference_step: float = 2 ** -10) -> dict:
    """Largest state error of each discretization against the ODE, for an input x(t) that is
    constant on each unit interval, x(t) = values[j] for t in (j, j+1]: -> {rule: [error per Δ]}.

    Each Δ must divide 1 (here powers of two), so the input is constant over every step:
    ZOH then solves the ODE exactly, bilinear is second order (error ∝ Δ²) and Euler first
    order (∝ Δ). The reference is ``rk4_states`` at ``reference_step`` (error ~ its step⁴).
    """
    per_unit = round(1 / reference_step)
    h_ref = rk4_states(A, B, values.repeat_interleave(per_unit), reference_step)   # (T·per_unit, n)
    errors = {"ZOH": [], "bilinear": [], "Euler": []}
    for delta in deltas:
        steps = round(1 / delta)                                          # steps per unit time
        if abs(steps * delta - 1) > 1e-12 or per_unit % steps:
            raise ValueError(f"discretization_errors: expected each delta to divide 1 and the "
                             f"reference step, received {delta}")
        x = values.repeat_interleave(steps)                               # (l,) x_k held over step k
        ref = h_ref[per_unit // steps - 1::per_unit // steps]             # (l, n) h(kΔ), k = 1..l
        for rule, discretize in (("ZOH", discretize_zoh), ("bilinear", discretize_bilinear),
                                 ("Euler", discretize_euler)):
            A_bar, B_bar = discretize(A, B, delta)
            h, worst = torch.zeros(A.shape[0], dtype=A.dtype), 0.0
            for x_k, h_true in zip(x, ref):
                h = A_bar @ h + B_bar[:, 0] * x_k                         # h_k = A_bar h_{k-1} + B_bar x_k
                worst = max(worst, (h - h_true).abs().max().item())
            errors[rule].append(worst)
    return errors


@dataclass
class SSMConfig:
    """Hyper-parameters of an SSMClassifier (CPU-sized defaults)."""
    vocab_size: int = 16
    n_classes: int = 8
    d_model: int = 32
    d_state: int = 32
    n_layers: int = 2
    dt_min: float = 1e-3
    dt_max: float = 1e-1
    window: int | None = None      # set: every kernel is cut to this many taps (the baseline)


class SSMBlock(nn.Module):
    """One residual block: x + SSMLayer(LayerNorm(x)), x (b, l, d) -> (b, l, d) (pre-norm)."""

    def __init__(self, config: SSMConfig):
        super().__init__()
        self.norm1 = nn.LayerNorm(config.d_model)
        self.ssm = SSMLayer(config.d_model, config.d_state, config.dt_min, config.dt_max,
                            config.window)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.ssm(self.norm1(x))                               # (b, l, d)


class SSMClassifier(nn.Module):
    """Tokens (b, l) -> class logits (b, n_classes), read at the last position.

    token_emb -> n_layers × SSMBlock -> norm_f -> last position -> linear head.
    The residual x + ... goes around each layer; each layer's D x feed-through is inside it.
    Causal, so the last position's features depend on the whole input.
    """

    def __init__(self, config: SSMConfig):
        super().__init__()
        self.config = config
        self.token_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.layers = nn.ModuleList(SSMBlock(config) for _ in range(config.n_layers))
        self.norm_f = nn.LayerNorm(config.d_model)
        self.head = nn.Linear(config.d_model, config.n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        check_token_ids(tokens, self.config.vocab_size, "SSMClassifier: tokens", ("b", "l"))
        x = self.token_emb(tokens)                                        # (b, l, d)
        for layer in self.layers:
            x = layer(x)                                                  # (b, l, d)
        return self.head(self.norm_f(x[:, -1]))                           # (b, n_classes)


def load_ssm_classifier(name: str = "ssm_long", path=None) -> tuple[SSMClassifier, dict]:
    """A shipped SSMClassifier (data/ssm_long or ssm_local): -> (model, {config, metrics})."""
    return load_model(path or data_dir() / f"{name}.safetensors",
                      lambda config: SSMClassifier(SSMConfig(**config["model"])),
                      rebuild="python tools/train_ssm.py")


def load_dense_sweep(path=None) -> tuple[nn.ModuleDict, dict]:
    """The dense-A sweep of §7 (data/ssm_dense_a): -> (ModuleDict run -> DenseSSM, meta)."""
    def build(config):
        n = config["model"]["n"]
        return nn.ModuleDict({run: DenseSSM(*(torch.zeros(shape, dtype=torch.float64)
                                                      for shape in ((n, n), (n, 1), (1, n))))
                              for run in config["model"]["runs"]})
    return load_model(path or data_dir() / "ssm_dense_a.safetensors", build,
                      rebuild="python tools/train_ssm.py --dense-a")
