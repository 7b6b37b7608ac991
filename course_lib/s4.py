"""S4's answer to "which A?" (lecture 06): HiPPO, diagonal S4D kernels, the SSM layer and model.

A trained dense A drifts to eigenvalues with |λ̄| > 1 (the kernel explodes) or |λ̄| << 1 (it
vanishes within a few steps), like an RNN. S4 starts from HiPPO-LegS, the A whose state holds the
Legendre coefficients of the whole input history (scaled to the interval [0, t]):

    A_nk = -sqrt(2n+1) sqrt(2k+1)  (n > k),   -(n+1)  (n = k),   0  (n < k);    B_n = sqrt(2n+1)
    u(s) ≈ Σ_n x_n(t) sqrt(2n+1) P_n(2s/t - 1)         for 0 <= s <= t     (reconstruction)

S4D keeps A diagonal (entries A_n, complex, Re A_n < 0). With ZOH, Ā_n = exp(ΔA_n), and the
kernel is a Vandermonde product, computed for every k at once (no recurrence, no powers):

    K_k = Re Σ_n C_n B̄_n Ā_n^k = Re (C ⊙ B̄) · V,     V_nk = exp(k Δ A_n)      V: (n, l)

An ``SSMLayer`` runs ``d_model`` independent S4D SSMs (one per channel, FFT convolution, D skip),
mixes the channels with a linear layer and applies an activation; ``SSMClassifier`` stacks them.
Names: ``h`` channels (= d_model), ``n`` state size, ``l`` length, ``delta`` = Δ.
"""
from __future__ import annotations

import json
import math
from dataclasses import dataclass

import torch
from torch import nn

from course_lib.ssm import _delta_tensor, discretize_zoh_diag, fft_conv

__all__ = ["init_ssm", "INITS", "hippo_legs", "legendre_basis", "legs_memory", "legs_reconstruct", "s4d_lin_init",
           "s4d_kernel", "SSMLayer", "SSMConfig", "SSMClassifier", "load_ssm_classifier", "long_range_batch"]


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


def legs_memory(u: torch.Tensor, n: int) -> torch.Tensor:
    """Run HiPPO-LegS over a signal: u (l,) -> states x (l, n), x_k summarizing u_0 .. u_k.

    Scale-invariant HiPPO (the state covers the whole history [0, t]): x' = (A x + B u) / t,
    i.e. the SSM (A, B) with step Δ = 1/(k+1) at step k, discretized bilinearly (all l steps'
    Ā_k, B̄_k in one batched solve, then the l-step recurrence).
    """
    if not isinstance(u, torch.Tensor) or u.dim() != 1:
        raise ValueError(f"legs_memory: expected a signal u of shape (l,), received "
                         f"{tuple(u.shape) if isinstance(u, torch.Tensor) else type(u).__name__}")
    A, B = hippo_legs(n, dtype=torch.float64)                         # (n, n), (n, 1)
    half_step = 0.5 / torch.arange(1, len(u) + 1, dtype=torch.float64)[:, None, None]  # (l, 1, 1)
    eye = torch.eye(n, dtype=torch.float64)
    back = eye - half_step * A                                        # (l, n, n)
    A_bar = torch.linalg.solve(back, eye + half_step * A)             # (l, n, n) bilinear Ā_k
    B_bar = torch.linalg.solve(back, 2 * half_step * B)[..., 0]       # (l, n)    bilinear B̄_k
    x, xs = torch.zeros(n, dtype=torch.float64), []
    for A_k, B_k, u_k in zip(A_bar, B_bar, u.double()):
        x = A_k @ x + B_k * u_k
        xs.append(x)
    return torch.stack(xs).to(u.dtype)                                # (l, n)


def legs_reconstruct(x: torch.Tensor, length: int) -> torch.Tensor:
    """The history u_0 .. u_{length-1} read back from one LegS state x (n,): -> (length,)."""
    s = (torch.arange(length, dtype=torch.float64) + 0.5) / length * 2 - 1   # cell midpoints
    return (x.double() @ legendre_basis(x.shape[-1], s)).to(x.dtype)        # (length,)


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


def s4d_lin_init(h: int, n: int) -> torch.Tensor:
    """S4D-Lin initialization: A_n = -1/2 + iπn for every channel -> A (h, n), complex."""
    A = torch.complex(torch.full((n,), -0.5, dtype=torch.float32), math.pi * torch.arange(n, dtype=torch.float32))
    return A.expand(h, n).clone()


def s4d_kernel(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, delta,
               length: int) -> torch.Tensor:
    """Diagonal-SSM kernel by a Vandermonde product: A, B, C (h, n), delta (h,) -> K (h, length).

    K_k = Re Σ_n C_n B̄_n exp(k Δ A_n) with B̄ from ZOH (``discretize_zoh_diag``). Equals the
    dense kernel C Ā^k B̄ with Ā = diag(exp(ΔA)), at O(h n l) cost in one vectorized step.
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"s4d_kernel: length must be a positive int, received {length!r}")
    if C.shape[-1] != A.shape[-1]:
        raise ValueError(f"s4d_kernel: C must have the state size n = {A.shape[-1]} of A, "
                         f"received C {tuple(C.shape)} and A {tuple(A.shape)}")
    d = _delta_tensor(delta, A, "s4d_kernel")
    _, B_bar = discretize_zoh_diag(A, B, d)                           # (h, n)
    d = d.unsqueeze(-1) if d.dim() > 0 else d
    k = torch.arange(length, device=A.device, dtype=d.dtype)          # (l,)
    V = torch.exp((d * A).unsqueeze(-1) * k)                          # (h, n, l) Vandermonde
    K = torch.einsum("...n,...nl->...l", C * B_bar, V)                # (h, l)
    return K.real if K.is_complex() else K


class SSMLayer(nn.Module):
    """H = d_model independent S4D SSMs (one per channel), mixed by a linear layer, activation.

    u (b, l, h) -> y (b, l, h):   z_c = K_c * u_c + D_c u_c  (per channel c, FFT convolution),
    y = GELU(z W^T + b). Parameters per channel: log Δ, A (n complex entries, Re A < 0 kept by
    A = -exp(a_log) + i a_im), C (n complex), D; B = 1 (C absorbs it, as in S4D).
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
        h, n = d_model, d_state
        self.d_model, self.d_state, self.window, self.l_max = h, n, window, l_max
        u = torch.rand(h)                                                 # log-uniform Δ
        self.log_delta = nn.Parameter(math.log(dt_min) + u * math.log(dt_max / dt_min))
        A = s4d_lin_init(h, n)                                            # (h, n)
        self.a_log = nn.Parameter(torch.log(-A.real))                     # Re A = -exp(a_log)
        self.a_im = nn.Parameter(A.imag.clone())
        self.C = nn.Parameter(torch.randn(h, n, 2) * 0.5**0.5)          # complex as (re, im)
        self.D = nn.Parameter(torch.randn(h))
        self.out_proj = nn.Linear(h, h)
        self.activation = nn.GELU()

    def kernel(self, length: int) -> torch.Tensor:
        """The h convolution kernels K_bar: -> (h, length) (zero beyond ``window`` taps)."""
        if self.l_max is not None and length > self.l_max:
            raise ValueError(f"SSMLayer: sequence length {length} is longer than l_max {self.l_max}")
        A = torch.complex(-torch.exp(self.a_log), self.a_im)             # (h, n)
        C = torch.view_as_complex(self.C)                                 # (h, n)
        K = s4d_kernel(A, torch.ones_like(A), C, torch.exp(self.log_delta), length)  # (h, l)
        if self.window is not None:
            K = K * (torch.arange(length, device=K.device) < self.window)
        return K

    def forward(self, u: torch.Tensor) -> torch.Tensor:
        if u.dim() != 3 or u.shape[-1] != self.d_model:
            raise ValueError(f"SSMLayer: expected input (b, l, {self.d_model}), received "
                             f"{tuple(u.shape)}")
        K = self.kernel(u.shape[1])                                       # (h, l)
        u_t = u.transpose(1, 2)                                           # (b, h, l)
        z = fft_conv(u_t, K) + self.D[:, None] * u_t                      # (b, h, l)
        return self.activation(self.out_proj(z.transpose(1, 2)))          # (b, l, h)


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
