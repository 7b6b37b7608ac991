"""S4's answer to "which A?" (lecture 06): HiPPO, diagonal S4D kernels, the SSM layer and model.

A dense A trained directly (``DenseSSM``, ``fit_kernel``) has eigenvalues with |λ̄| > 1 (the
kernel explodes) or |λ̄| < 1 (it forgets at that rate), like an RNN. S4 starts from HiPPO-LegS,
the A whose hidden state h holds the Legendre coefficients of the whole input history x (scaled
to the interval [0, t]):

    A_nk = -sqrt(2n+1) sqrt(2k+1)  (n > k),   -(n+1)  (n = k),   0  (n < k);    B_n = sqrt(2n+1)
    x(s) ≈ Σ_n h_n(t) sqrt(2n+1) P_n(2s/t - 1)         for 0 <= s <= t     (reconstruction)

S4D keeps A diagonal (entries A_n, complex, Re A_n < 0). With ZOH, Ā_n = exp(ΔA_n), and the
kernel is a Vandermonde product, computed for every k at once (no recurrence, no powers):

    K_k = Re Σ_n C_n B̄_n Ā_n^k = Re (C ⊙ B̄) · V,     V_nk = exp(k Δ A_n)      V: (n, l)

S4D's n complex modes count as 2n real state dimensions: the real part of a complex mode is the
sum of the mode and its conjugate, so a real SSM needs both (S4D writes a real state size N as
N/2 complex pairs).

An ``SSMLayer`` runs ``d_model`` independent S4D SSMs (one per channel, FFT convolution, D x
feed-through), then mixes the channels with a linear layer and applies GELU (linear, then GELU;
S4's reference code applies GELU first, then the linear layer); ``SSMClassifier`` stacks them
with a residual connection around each layer.
Names: ``x`` a layer's input, ``y`` its output, ``h`` the hidden state, ``d`` channels
(= d_model), ``n`` state size, ``l`` length, ``delta`` = Δ.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
from torch import nn

from course_lib.ssm import (_check_siso, _delta_tensor, discretize_zoh, discretize_zoh_diag, fft_conv,
                            ssm_kernel)

__all__ = ["init_ssm", "INITS", "hippo_legs", "legendre_basis", "legs_memory", "legs_reconstruct",
           "s4d_lin_init", "s4d_kernel", "DenseSSM", "fit_kernel", "SSMLayer", "SSMConfig",
           "SSMClassifier", "load_ssm_classifier", "long_range_batch"]


def hippo_legs(n: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The HiPPO-LegS matrices (stable sign convention): -> A (n, n), B (n, 1). See module doc."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"hippo_legs: state size n must be a positive int, received {n!r}")
    q = torch.sqrt(2 * torch.arange(n, dtype=dtype) + 1)              # (n,)  sqrt(2n+1)
    A = -torch.tril(q[:, None] * q[None, :], diagonal=-1)             # (n, n) below the diagonal
    A = A - torch.diag(torch.arange(n, dtype=dtype) + 1)              # -(n+1) on the diagonal
    return A, q[:, None]


def legendre_basis(n: int, s: torch.Tensor) -> torch.Tensor:
    """Scaled Legendre polynomials sqrt(2k+1) P_k(s), k < n, at points s in [-1, 1]: -> (n, len(s)).

    Bonnet's recursion (k+1) P_{k+1} = (2k+1) s P_k - k P_{k-1}.
    """
    P = [torch.ones_like(s), s]
    for k in range(1, n - 1):
        P.append(((2 * k + 1) * s * P[k] - k * P[k - 1]) / (k + 1))
    q = torch.sqrt(2 * torch.arange(n, dtype=s.dtype) + 1)
    return q[:, None] * torch.stack(P[:n])                            # (n, len(s))


def legs_memory(x: torch.Tensor, n: int) -> torch.Tensor:
    """Run HiPPO-LegS over a signal: x (l,) -> states h (l, n), h_k summarizing x_0 .. x_k.

    Scale-invariant HiPPO (the state covers the whole history [0, t]): h' = (A h + B x) / t,
    i.e. the SSM (A, B) with step Δ = 1/(k+1) at step k, discretized bilinearly (all l steps'
    Ā_k, B̄_k in one batched solve, then the l-step recurrence).
    """
    if not isinstance(x, torch.Tensor) or x.dim() != 1:
        raise ValueError(f"legs_memory: expected a signal x of shape (l,), received "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
    A, B = hippo_legs(n, dtype=torch.float64)                         # (n, n), (n, 1)
    half_step = 0.5 / torch.arange(1, len(x) + 1, dtype=torch.float64)[:, None, None]  # (l, 1, 1)
    eye = torch.eye(n, dtype=torch.float64)
    back = eye - half_step * A                                        # (l, n, n)
    A_bar = torch.linalg.solve(back, eye + half_step * A)             # (l, n, n) bilinear Ā_k
    B_bar = torch.linalg.solve(back, 2 * half_step * B)[..., 0]       # (l, n)    bilinear B̄_k
    h, hs = torch.zeros(n, dtype=torch.float64), []
    for A_k, B_k, x_k in zip(A_bar, B_bar, x.double()):
        h = A_k @ h + B_k * x_k
        hs.append(h)
    return torch.stack(hs).to(x.dtype)                                # (l, n)


def legs_reconstruct(h: torch.Tensor, length: int) -> torch.Tensor:
    """The history x_0 .. x_{length-1} read back from one LegS state h (n,): -> (length,)."""
    s = (torch.arange(length, dtype=torch.float64) + 0.5) / length * 2 - 1   # cell midpoints
    return (h.double() @ legendre_basis(h.shape[-1], s)).to(h.dtype)        # (length,)


INITS = ("hippo", "diagonal", "random")


def init_ssm(kind: str, n: int, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """A dense SISO SSM to compare initializations: -> A (n, n), B (n, 1), C (1, n).

    "hippo": HiPPO-LegS (float64); "diagonal": S4D-Lin, A = diag(-1/2 + iπk), B = 1 (complex128;
    its kernel is the real part); "random": A ~ N(0, 1/n) entries (the naive trainable A: about
    half its eigenvalues have Re λ > 0). C ~ N(0, 1/n) from the seed in every case.
    """
    if kind not in INITS:
        raise ValueError(f"init_ssm: kind must be one of {INITS}, received {kind!r}")
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"init_ssm: state size n must be a positive int, received {n!r}")
    g = torch.Generator().manual_seed(seed)
    C = torch.randn(1, n, generator=g, dtype=torch.float64) / math.sqrt(n)
    if kind == "hippo":
        A, B = hippo_legs(n)
    elif kind == "diagonal":
        A = torch.diag(s4d_lin_init(1, n)[0].to(torch.complex128))
        B, C = torch.ones(n, 1, dtype=torch.complex128), C.to(torch.complex128)
    else:
        A = torch.randn(n, n, generator=g, dtype=torch.float64) / math.sqrt(n)
        B = torch.randn(n, 1, generator=g, dtype=torch.float64)
    return A, B, C


def s4d_lin_init(d: int, n: int) -> torch.Tensor:
    """S4D-Lin initialization: A_n = -1/2 + iπn for every channel -> A (d, n), complex."""
    A = torch.complex(torch.full((n,), -0.5, dtype=torch.float32), math.pi * torch.arange(n, dtype=torch.float32))
    return A.expand(d, n).clone()


def s4d_kernel(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, delta,
               length: int) -> torch.Tensor:
    """Diagonal-SSM kernel by a Vandermonde product: A, B, C (d, n), delta (d,) -> K (d, length).

    K_k = Re Σ_n C_n B̄_n exp(k Δ A_n) with B̄ from ZOH (``discretize_zoh_diag``). Equals the
    dense kernel C Ā^k B̄ with Ā = diag(exp(ΔA)), at O(d n l) cost in one vectorized step.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"s4d_kernel: length must be a positive int, received {length!r}")
    if C.shape[-1] != A.shape[-1]:
        raise ValueError(f"s4d_kernel: C must have the state size n = {A.shape[-1]} of A, "
                         f"received C {tuple(C.shape)} and A {tuple(A.shape)}")
    delta = _delta_tensor(delta, A, "s4d_kernel")
    _, B_bar = discretize_zoh_diag(A, B, delta)                       # (d, n)
    delta = delta.unsqueeze(-1) if delta.dim() > 0 else delta         # (d, 1): the state axis
    k = torch.arange(length, device=A.device, dtype=delta.dtype)      # (l,)
    V = torch.exp((delta * A).unsqueeze(-1) * k)                      # (d, n, l) Vandermonde
    K = torch.einsum("...n,...nl->...l", C * B_bar, V)                # (d, l)
    return K.real if K.is_complex() else K


class DenseSSM(nn.Module):
    """One SISO SSM with a dense, trainable A: the naive parameterization that S4 replaces.

    Parameters A (n, n), B (n, 1), C (1, n) and log Δ (so Δ > 0), ZOH-discretized; nothing keeps
    A stable. ``kernel(length)`` -> K_bar (length,); forward: x (..., l) -> y = K_bar * x (..., l).
    """

    def __init__(self, A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, delta=0.01):
        super().__init__()
        B_vec, C_vec = _check_siso(A, B, C, "DenseSSM")                  # (n,), (n,)
        delta = _delta_tensor(delta, A, "DenseSSM")
        if delta.dim() != 0:
            raise ValueError(f"DenseSSM: delta must be a scalar, received shape {tuple(delta.shape)}")
        self.A = nn.Parameter(A.detach().clone())                         # (n, n)
        self.B = nn.Parameter(B_vec.detach().clone()[:, None])            # (n, 1)
        self.C = nn.Parameter(C_vec.detach().clone()[None, :])            # (1, n)
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


class SSMLayer(nn.Module):
    """d = d_model independent S4D SSMs (one per channel), mixed by a linear layer, then GELU.

    x (b, l, d) -> y (b, l, d):   z_c = K_c * x_c + D_c x_c  (per channel c, FFT convolution),
    y = GELU(out_proj(z)): mix, then activate, as on the lecture's slide (S4's reference code
    applies GELU first, then a linear layer). Parameters per channel: log Δ, A (n complex
    entries, Re A < 0 kept by A = -exp(a_log) + i a_im; n complex modes = 2n real state
    dimensions), C (n complex), D; B = 1 (C absorbs it, as in S4D).
    ``window`` (optional) keeps only the first ``window`` kernel taps: a model that cannot see
    further back (the baseline); ``l_max`` (optional) the longest input allowed.
    """

    def __init__(self, d_model: int, d_state: int = 32, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 window: int | None = None, l_max: int | None = None):
        super().__init__()
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"SSMLayer: expected 0 < dt_min <= dt_max, received {dt_min}, {dt_max}")
        if window is not None and window < 1:
            raise ValueError(f"SSMLayer: window must be >= 1 or None, received {window}")
        d, n = d_model, d_state
        self.d_model, self.d_state, self.window, self.l_max = d, n, window, l_max
        r = torch.rand(d)                                                 # log-uniform Δ
        self.log_delta = nn.Parameter(math.log(dt_min) + r * math.log(dt_max / dt_min))
        A = s4d_lin_init(d, n)                                            # (d, n)
        self.a_log = nn.Parameter(torch.log(-A.real))                     # Re A = -exp(a_log)
        self.a_im = nn.Parameter(A.imag.clone())
        self.C = nn.Parameter(torch.randn(d, n, 2) * 0.5**0.5)          # complex as (re, im)
        self.D = nn.Parameter(torch.randn(d))
        self.out_proj = nn.Linear(d, d)
        self.activation = nn.GELU()

    def kernel(self, length: int) -> torch.Tensor:
        """The d convolution kernels K_bar: -> (d, length) (zero beyond ``window`` taps)."""
        if self.l_max is not None and length > self.l_max:
            raise ValueError(f"SSMLayer: sequence length {length} is longer than l_max {self.l_max}")
        A = torch.complex(-torch.exp(self.a_log), self.a_im)             # (d, n)
        C = torch.view_as_complex(self.C)                                 # (d, n)
        K = s4d_kernel(A, torch.ones_like(A), C, torch.exp(self.log_delta), length)  # (d, l)
        if self.window is not None:
            K = K * (torch.arange(length, device=K.device) < self.window)
        return K

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() != 3 or x.shape[-1] != self.d_model:
            raise ValueError(f"SSMLayer: expected input (b, l, {self.d_model}), received "
                             f"{tuple(x.shape)}")
        K = self.kernel(x.shape[1])                                       # (d, l)
        x_t = x.transpose(1, 2)                                           # (b, d, l)
        z = fft_conv(x_t, K) + self.D[:, None] * x_t                      # (b, d, l) D: feed-through
        return self.activation(self.out_proj(z.transpose(1, 2)))          # (b, l, d) mix, then GELU


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


class SSMClassifier(nn.Module):
    """Tokens (b, l) -> class logits (b, n_classes), read at the last position.

    embed -> n_layers × [x + SSMLayer(LayerNorm(x))] -> LayerNorm -> last position -> linear.
    The residual x + ... goes around each layer; each layer's D x feed-through is inside it.
    Causal, so the last position's features depend on the whole input.
    """

    def __init__(self, config: SSMConfig):
        super().__init__()
        self.config = c = config
        self.embed = nn.Embedding(c.vocab_size, c.d_model)
        self.norms = nn.ModuleList(nn.LayerNorm(c.d_model) for _ in range(c.n_layers))
        self.layers = nn.ModuleList(SSMLayer(c.d_model, c.d_state, c.dt_min, c.dt_max, c.window)
                                    for _ in range(c.n_layers))
        self.norm_f = nn.LayerNorm(c.d_model)
        self.head = nn.Linear(c.d_model, c.n_classes)

    def forward(self, tokens: torch.Tensor) -> torch.Tensor:
        if tokens.dim() != 2:
            raise ValueError(f"SSMClassifier: expected tokens (b, l), received {tuple(tokens.shape)}")
        x = self.embed(tokens)                                            # (b, l, d)
        for norm, layer in zip(self.norms, self.layers):
            x = x + layer(norm(x))                                        # (b, l, d)
        return self.head(self.norm_f(x[:, -1]))                           # (b, n_classes)


def load_ssm_classifier(path) -> tuple[SSMClassifier, dict]:
    """An SSMClassifier built from the config stored in a checkpoint: -> (model, {config, metrics})."""
    from safetensors import safe_open

    from course_lib.training import load_checkpoint

    try:
        with safe_open(str(path), framework="pt") as f:
            stored = json.loads((f.metadata() or {}).get("config", "{}"))
    except (OSError, FileNotFoundError) as exc:
        raise ValueError(f"load_ssm_classifier: cannot read checkpoint {path}: {exc}") from None
    fields = {k: stored[k] for k in SSMConfig.__dataclass_fields__ if k in stored}
    model = SSMClassifier(SSMConfig(**fields))
    meta = load_checkpoint(model, path)
    model.eval()
    return model, meta


def long_range_batch(batch: int, length: int, n_classes: int = 8, n_noise: int = 8,
                     span: int | None = None, density: float = 0.5,
                     generator: torch.Generator | None = None):
    """A sequence-level task whose answer sits only at the start: -> tokens (b, l), labels (b,).

    Noise tokens (ids n_classes .. n_classes+n_noise-1) everywhere; among the first ``span``
    positions (default l/8) each is the signal token (id = the label, < n_classes) with
    probability ``density`` (at least one per sequence). Read at the last position, the evidence
    is >= l - span steps away: a kernel shorter than that sees only noise (chance 1/n_classes).
    """
    span = max(1, length // 8) if span is None else span
    if not 1 <= span <= length:
        raise ValueError(f"long_range_batch: expected 1 <= span <= length={length}, received {span}")
    if not 0 < density <= 1:
        raise ValueError(f"long_range_batch: expected 0 < density <= 1, received {density}")
    g = generator
    tokens = torch.randint(n_classes, n_classes + n_noise, (batch, length), generator=g)
    labels = torch.randint(0, n_classes, (batch,), generator=g)
    signal = torch.rand(batch, span, generator=g) < density                   # (b, span)
    signal[torch.arange(batch), torch.randint(0, span, (batch,), generator=g)] = True
    tokens[:, :span] = torch.where(signal, labels[:, None], tokens[:, :span])
    return tokens, labels
