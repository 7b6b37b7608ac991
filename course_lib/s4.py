"""S4's answer to "which A?" (lecture 06): HiPPO, diagonal S4D kernels and the SSM layer.

S4 starts from HiPPO-LegS (Gu, Dao, Ermon, Rudra & Ré, *HiPPO: Recurrent Memory with Optimal
Polynomial Projections*, NeurIPS 2020, §3: HiPPO-LegS), the A whose hidden
state h holds the Legendre coefficients of the whole input history x (scaled to [0, t]):

    A_nk = -sqrt(2n+1) sqrt(2k+1)  (n > k),   -(n+1)  (n = k),   0  (n < k);    B_n = sqrt(2n+1)
    x(s) ≈ Σ_n h_n(t) sqrt(2n+1) P_n(2s/t - 1)         for 0 <= s <= t     (reconstruction)

S4D (Gu, Gupta, Goel & Ré, *On the Parameterization and Initialization of Diagonal State Space
Models*, NeurIPS 2022) keeps A diagonal (entries A_n, complex, Re A_n < 0). With ZOH,
Ā_n = exp(ΔA_n), and the kernel is a Vandermonde product, computed for every k at once:

    K_k = Re Σ_n C_n B̄_n Ā_n^k = Re (C ⊙ B̄) · V,     V_nk = exp(k Δ A_n)      V: (n, l)

S4D's n complex modes count as 2n real state dimensions: the real part of a complex mode is the
sum of the mode and its conjugate, so a real SSM needs both (S4D writes a real state size N as
N/2 complex pairs). Official implementations: state-spaces/s4, models/s4/s4d.py (S4D) and
models/s4/s4.py (S4); HiPPO matrices in state-spaces/s4, src/models/hippo/hippo.py.

An ``SSMLayer`` runs ``d_model`` independent S4D SSMs (one per channel, FFT convolution, D x
feed-through), then mixes the channels with a linear layer and applies GELU (linear, then GELU;
S4's reference code applies GELU first, then the linear layer). The experiments of notebook 06
(a dense trainable A, the classifier that stacks these layers) are in ``course_lib.experiments.ssm``.
Names: ``x`` a layer's input, ``y`` its output, ``h`` the hidden state, ``d`` channels
(= d_model), ``n`` state size, ``l`` length, ``delta`` = Δ.
"""
from __future__ import annotations

import math

import torch
from torch import nn

from course_lib.common import check_shapes
from course_lib.ssm import check_delta, discretize_zoh_diag, fft_conv

__all__ = ["init_ssm", "INITS", "hippo_legs", "legendre_basis", "legs_memory", "legs_reconstruct",
           "s4d_lin_init", "s4d_kernel", "SSMLayer"]


def hippo_legs(n: int, dtype=torch.float64) -> tuple[torch.Tensor, torch.Tensor]:
    """The HiPPO-LegS matrices (stable sign convention): -> A (n, n), B (n, 1). See module doc.

    Gu, Dao et al. (2020), HiPPO §3 (LegS); official: state-spaces/s4, src/models/hippo/hippo.py
    (``transition("legs", N)``)."""
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
    check_shapes([(x, ("l",), "legs_memory: x")])
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
    """S4D-Lin initialization: A_n = -1/2 + iπn for every channel -> A (d, n), complex.

    Gu, Gupta, Goel & Ré (2022), S4D §4; official: state-spaces/s4, models/s4/s4d.py."""
    k = torch.arange(n, dtype=torch.float32)                          # (n,)
    A = torch.complex(torch.full_like(k, -0.5), math.pi * k)          # -1/2 + iπk
    return A.expand(d, n).clone()


def s4d_kernel(A: torch.Tensor, B: torch.Tensor, C: torch.Tensor, delta,
               length: int) -> torch.Tensor:
    """Diagonal-SSM kernel by a Vandermonde product: A, B, C (d, n), delta (d,) -> K (d, length).

    K_k = Re Σ_n C_n B̄_n exp(k Δ A_n) with B̄ from ZOH (``discretize_zoh_diag``). Equals the
    dense kernel C Ā^k B̄ with Ā = diag(exp(ΔA)), at O(d n l) cost in one vectorized step.
    Gu, Gupta, Goel & Ré (2022), S4D §3 (the Vandermonde kernel); official: state-spaces/s4,
    models/s4/s4d.py (``S4DKernel``).
    """
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"s4d_kernel: length must be a positive int, received {length!r}")
    if C.shape[-1] != A.shape[-1]:
        raise ValueError(f"s4d_kernel: C must have the state size n = {A.shape[-1]} of A, "
                         f"received C {tuple(C.shape)} and A {tuple(A.shape)}")
    delta = check_delta(delta, A, "s4d_kernel")
    _, B_bar = discretize_zoh_diag(A, B, delta)                       # (d, n)
    delta = delta.unsqueeze(-1) if delta.dim() > 0 else delta         # (d, 1): the state axis
    k = torch.arange(length, device=A.device, dtype=delta.dtype)      # (l,)
    V = torch.exp((delta * A).unsqueeze(-1) * k)                      # (d, n, l) Vandermonde
    K = torch.einsum("...n,...nl->...l", C * B_bar, V)                # (d, l)
    return K.real if K.is_complex() else K


class SSMLayer(nn.Module):
    """d = d_model independent S4D SSMs (one per channel), mixed by a linear layer, then GELU.

    x (b, l, d) -> y (b, l, d):   z_c = K_c * x_c + D_c x_c  (per channel c, FFT convolution),
    y = GELU(out_proj(z)): mix, then activate, as on the lecture's slide (S4's reference code
    applies GELU first, then a linear layer). Parameters per channel: log Δ, A (n complex
    entries, Re A < 0 kept by A = -exp(a_log) + i a_im; n complex modes = 2n real state
    dimensions), C (n complex), D; B = 1 (C absorbs it, as in S4D).
    ``window`` (optional) keeps only the first ``window`` kernel taps: a model that cannot see
    further back (the baseline); ``max_len`` (optional) the longest input allowed.
    The S4D layer of Gu, Gupta, Goel & Ré (2022); official: state-spaces/s4, models/s4/s4d.py
    (``S4D``).
    """

    def __init__(self, d_model: int, d_state: int = 32, dt_min: float = 1e-3, dt_max: float = 1e-1,
                 window: int | None = None, max_len: int | None = None):
        super().__init__()
        if not 0 < dt_min <= dt_max:
            raise ValueError(f"SSMLayer: expected 0 < dt_min <= dt_max, received {dt_min}, {dt_max}")
        if window is not None and window < 1:
            raise ValueError(f"SSMLayer: window must be >= 1 or None, received {window}")
        d, n = d_model, d_state
        self.d_model, self.d_state, self.window, self.max_len = d, n, window, max_len
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
        if self.max_len is not None and length > self.max_len:
            raise ValueError(f"SSMLayer: sequence length {length} is longer than max_len {self.max_len}")
        A = torch.complex(-torch.exp(self.a_log), self.a_im)             # (d, n)
        C = torch.view_as_complex(self.C)                                 # (d, n)
        K = s4d_kernel(A, torch.ones_like(A), C, torch.exp(self.log_delta), length)  # (d, l)
        if self.window is not None:
            K = K * (torch.arange(length, device=K.device) < self.window)
        return K

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        check_shapes([(x, ("b", "l", self.d_model), "SSMLayer: x")])
        K = self.kernel(x.shape[1])                                       # (d, l)
        x_t = x.transpose(1, 2)                                           # (b, d, l)
        z = fft_conv(x_t, K) + self.D[:, None] * x_t                      # (b, d, l) D: feed-through
        return self.activation(self.out_proj(z.transpose(1, 2)))          # (b, l, d) mix, then GELU
