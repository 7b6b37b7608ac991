"""State-space models (lecture 06): discretization, recurrence, kernel, convolution, FFT.

A continuous linear time-invariant SSM maps an input signal x(t) to an output y(t) through a
hidden state h(t) of size n (1-D input and output, n-dimensional state):

    h'(t) = A h(t) + B x(t),        y(t) = C h(t) + D x(t)       A (n, n), B (n, 1), C (1, n)

D x is a feed-through from input to output inside the SSM (not a network's residual path).
With a step size Δ (``delta``) the SSM is discretized:

    zero-order hold:  A_bar = exp(ΔA),                  B_bar = A^{-1} (exp(ΔA) - I) B
    bilinear:         A_bar = (I - Δ/2 A)^{-1}(I + Δ/2 A),  B_bar = (I - Δ/2 A)^{-1} Δ B

and becomes a linear RNN:  h_k = A_bar h_{k-1} + B_bar x_k,  y_k = C h_k + D x_k  (h_{-1} = 0).
Unrolled, y is a causal convolution of x with the kernel

    K_bar = (C B_bar, C A_bar B_bar, ..., C A_bar^{L-1} B_bar),     y = K_bar * x + D x,

computed here three ways: ``ssm_recurrence`` (L steps), ``causal_conv`` (direct, O(L²)) and
``fft_conv`` (O(L log L), zero-padded to 2L so the circular convolution of the FFT does not wrap
the end of the signal onto its start). Diagonal A (S4D) and HiPPO live in ``course_lib.s4``.

Paper: Gu, Goel & Ré, *Efficiently Modeling Long Sequences with Structured State Spaces* (S4,
ICLR 2022): eq. 1 (the continuous SSM), eq. 3 (bilinear discretization, the recurrence), eqs. 4-5
(the kernel K̄ and y = K̄ * x). Official implementation: state-spaces/s4, models/s4/s4.py.

Names (the course's convention): ``x`` input, ``y`` output, ``h`` hidden state, ``n`` state size,
``l`` sequence length, ``delta`` = Δ, ``A_bar`` = Ā, ``B_bar`` = B̄, ``K_bar`` = K̄. The lectures and
the S4 paper write u for the input and x for the state.
"""
from __future__ import annotations

import torch

from course_lib.common import check_shapes

__all__ = ["check_delta", "discretize_zoh", "discretize_bilinear", "discretize_euler",
           "discretize_zoh_diag", "ssm_recurrence",
           "ssm_kernel", "ssm_kernel_powers", "causal_conv", "fft_conv"]


def check_delta(delta, like: torch.Tensor, name: str) -> torch.Tensor:
    """The step Δ as a real tensor on like's device, in like's (real) dtype, every entry > 0.

    The one-line boundary check of every discretization (here, in ``course_lib.s4``): a float or
    a real tensor; raises ValueError naming the first entry that is not a step size."""
    real = like.real if like.is_complex() else like       # delta is real even when A is complex
    if isinstance(delta, bool) or not isinstance(delta, (int, float, torch.Tensor)) or (
            isinstance(delta, torch.Tensor) and (delta.is_complex() or delta.numel() == 0)):
        raise ValueError(f"{name}: expected delta a positive float or a non-empty real tensor, "
                         f"received {type(delta).__name__}")
    out = (delta.to(real.device, torch.promote_types(real.dtype, delta.dtype))
           if isinstance(delta, torch.Tensor) else torch.tensor(float(delta), dtype=real.dtype,
                                                                device=real.device))
    if not bool((out > 0).all()):                         # NaN fails too
        bad = out.detach().flatten()[~(out.detach().flatten() > 0)][0].item()
        raise ValueError(f"{name}: delta must be > 0 (a step size), received {bad:g}")
    return out


def _check_last_axis(name: str, axis: str, **tensors) -> None:
    """Each tensor has at least one axis, the last one named ``axis``: (..., axis)."""
    for label, t in tensors.items():
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            got = tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__
            raise ValueError(f"{name}: {label} must be a tensor (..., {axis}), received {got}")


def _col(t):
    """(n,) -> (n, 1) so one shape check covers a vector B; anything else unchanged."""
    return t[:, None] if isinstance(t, torch.Tensor) and t.dim() == 1 else t


def _check_dense(A, B, delta, name: str) -> tuple[int, torch.Tensor]:
    """A (n, n), B (n, m) or (n,), scalar delta > 0 -> (n, delta as a tensor)."""
    n = check_shapes([(A, ("n", "n"), f"{name}: A"), (_col(B), ("n", "m"), f"{name}: B")])["n"]
    delta = check_delta(delta, A, name)
    if delta.dim() != 0:
        raise ValueError(f"{name}: expected a scalar delta (0-dim), received shape "
                         f"{tuple(delta.shape)}; one delta per channel: discretize_zoh_diag")
    return n, delta


def discretize_zoh(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold: A (n, n), B (n, m) or (n,), delta > 0 -> A_bar (n, n), B_bar like B.

    A_bar = exp(ΔA),  B_bar = ∫_0^Δ exp(sA) ds B = A^{-1}(exp(ΔA) - I) B (when A is invertible)
    (Gu & Dao (2023) eq. 4, the rule Mamba uses; S4 used the bilinear rule). Computed without
    inverting A by the block-matrix exponential
        exp(Δ [[A, B], [0, 0]]) = [[A_bar, B_bar], [0, I]],
    so singular A (e.g. A = 0, where B_bar = ΔB) works too. Differentiable in A, B and delta.
    """
    n, delta = _check_dense(A, B, delta, "discretize_zoh")
    B2 = _col(B)                                          # (n, m)
    M = torch.zeros(n + B2.shape[1], n + B2.shape[1], dtype=torch.promote_types(A.dtype, B2.dtype),
                    device=A.device)                      # (n+m, n+m)
    M[:n, :n], M[:n, n:] = A, B2
    E = torch.linalg.matrix_exp(delta * M)                # (n+m, n+m)
    A_bar, B_bar = E[:n, :n], E[:n, n:]                   # (n, n), (n, m)
    return A_bar, B_bar.reshape(B.shape)


def discretize_bilinear(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear (Tustin): A (n, n), B (n, m) or (n,), delta > 0 -> A_bar (n, n), B_bar like B.

    A_bar = (I - Δ/2 A)^{-1} (I + Δ/2 A),   B_bar = (I - Δ/2 A)^{-1} Δ B    (S4, Gu, Goel & Ré
    (2022) eq. 3; official: state-spaces/s4). Maps the stable half-plane Re λ < 0 exactly into
    the unit disk |λ̄| < 1.
    """
    n, delta = _check_dense(A, B, delta, "discretize_bilinear")
    eye = torch.eye(n, dtype=A.dtype, device=A.device)
    back = eye - delta / 2 * A                            # (n, n)
    A_bar = torch.linalg.solve(back, eye + delta / 2 * A) # (n, n)
    B_bar = torch.linalg.solve(back, delta * _col(B))     # (n, m)
    return A_bar, B_bar.reshape(B.shape)


def discretize_euler(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Forward Euler, the naive rule: A (n, n), B (n, m) or (n,), delta > 0 -> A_bar, B_bar.

    A_bar = I + ΔA,  B_bar = ΔB: first order in Δ, and unstable (|1 + Δλ| > 1) for a stable
    oscillating A once Δ is too large. Shown to compare against ZOH and bilinear.
    """
    n, delta = _check_dense(A, B, delta, "discretize_euler")
    return torch.eye(n, dtype=A.dtype, device=A.device) + delta * A, delta * B


def discretize_zoh_diag(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold for a diagonal A given by its entries (real or complex), elementwise.

    A (..., n), B (..., n), delta: a float or a tensor of shape (...) -- one step per channel,
    without the state axis (a trailing state axis is added: Δ[..., None]). Everything broadcasts,
    e.g. A (d, n), B (b, l, 1, n), delta (b, l, d) -> A_bar, B_bar (b, l, d, n) as in Mamba.

    A_bar = exp(ΔA),   B_bar = (exp(ΔA) - 1) / A · B = Δ · expm1(ΔA)/(ΔA) · B,
    where expm1(z)/z -> 1 as A -> 0 (so A = 0 gives B_bar = ΔB, no division by zero). The S4D
    discretization (Gu, Gupta, Goel & Ré (2022) §3; official: state-spaces/s4, models/s4/s4d.py).
    """
    delta = _check_diag(A, B, delta, "discretize_zoh_diag")  # (..., 1): Δ with a state axis
    dA = delta * A                                        # (..., n)
    return torch.exp(dA), delta * _expm1_over_z(dA) * B   # A_bar, B_bar


def _check_diag(A, B, delta, name: str) -> torch.Tensor:
    """A (..., n), B (..., n) and delta (...) broadcast together -> delta as (..., 1) (or 0-dim)."""
    _check_last_axis(name, "n", A=A, B=B)
    if A.shape[-1] != B.shape[-1]:
        raise ValueError(f"{name}: A (..., n) and B (..., n) must share the state size n, "
                         f"received A {tuple(A.shape)} and B {tuple(B.shape)}")
    delta = check_delta(delta, A, name)
    delta = delta.unsqueeze(-1) if delta.dim() > 0 else delta
    try:
        torch.broadcast_shapes(A.shape, B.shape, delta.shape)
    except RuntimeError:
        raise ValueError(f"{name}: shapes do not broadcast: A {tuple(A.shape)}, B {tuple(B.shape)}, "
                         f"delta {tuple(delta.shape[:-1])} (+ state axis)") from None
    return delta


def _expm1_over_z(z: torch.Tensor) -> torch.Tensor:
    """(exp(z) - 1) / z with its limit 1 + z/2 + z²/6 near z = 0 (gradient-safe)."""
    small = z.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(z), z)
    exact = torch.expm1(safe) / safe                      # expm1: no cancellation for small z
    return torch.where(small, 1 + z / 2 + z * z / 6, exact)


def _siso(A_bar, B_bar, C, name: str) -> tuple[torch.Tensor, torch.Tensor]:
    """Single input, single output: A_bar (n, n), B_bar (n,)|(n, 1), C (n,)|(1, n) -> B_bar, C (n,)."""
    row = C[None] if isinstance(C, torch.Tensor) and C.dim() == 1 else C
    check_shapes([(A_bar, ("n", "n"), f"{name}: A_bar"), (_col(B_bar), ("n", 1), f"{name}: B_bar"),
                  (row, (1, "n"), f"{name}: C")])
    return B_bar.reshape(-1), C.reshape(-1)


def _check_length(length, name: str) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"{name}: length must be a positive int, received {length!r}")


def ssm_recurrence(A_bar, B_bar, C, x: torch.Tensor, D=None, return_states: bool = False):
    """Run the SSM as a linear RNN: x (..., l) -> y (..., l) [, states h (..., l, n)].

    h_k = A_bar h_{k-1} + B_bar x_k,   y_k = C h_k + D x_k,   h_{-1} = 0   (S4, Gu, Goel & Ré
    (2022) eq. 3, the recurrent view). L sequential steps.
    """
    B_bar, C = _siso(A_bar, B_bar, C, "ssm_recurrence")               # (n,), (n,)
    _check_last_axis("ssm_recurrence", "l", x=x)
    h = torch.zeros(*x.shape[:-1], A_bar.shape[0], dtype=torch.promote_types(A_bar.dtype, x.dtype),
                    device=x.device)                      # (..., n)
    ys, hs = [], []
    for x_k in x.unbind(-1):                              # (...,) each
        h = h @ A_bar.T + x_k[..., None] * B_bar          # h_k = A_bar h_{k-1} + B_bar x_k
        ys.append(h @ C)                                  # y_k = C h_k
        if return_states:
            hs.append(h)
    y = torch.stack(ys, -1)                               # (..., l)
    if D is not None:
        y = y + D * x
    return (y, torch.stack(hs, -2)) if return_states else y


def ssm_kernel_powers(A_bar, B_bar, C, length: int) -> torch.Tensor:
    """K_bar by its definition, one power of A_bar at a time: -> (length,).

    K_k = C A_bar^k B_bar,  k = 0 .. length-1   (S4 eq. 5; length matrix-vector products).
    """
    B_bar, C = _siso(A_bar, B_bar, C, "ssm_kernel_powers")            # (n,), (n,)
    _check_length(length, "ssm_kernel_powers")
    v, ks = B_bar, []                                     # v = A_bar^k B_bar, (n,)
    for _ in range(length):
        ks.append(C @ v)
        v = A_bar @ v
    return torch.stack(ks)                                # (length,)


def ssm_kernel(A_bar, B_bar, C, length: int) -> torch.Tensor:
    """K_bar = (C B_bar, C A_bar B_bar, ..., C A_bar^{length-1} B_bar) by doubling: -> (length,).

    S4's kernel (Gu, Goel & Ré (2022) eq. 5). Keeps V = [B_bar, A_bar B_bar, ..., A_bar^{j-1}
    B_bar] (n, j) and P = A_bar^j; then V <- [V, P V], P <- P², so log2(length) matrix products
    instead of length steps.
    """
    B_bar, C = _siso(A_bar, B_bar, C, "ssm_kernel")                   # (n,), (n,)
    _check_length(length, "ssm_kernel")
    V, P = B_bar[:, None], A_bar                          # (n, 1), (n, n)
    while V.shape[1] < length:
        V = torch.cat([V, P @ V], dim=1)                  # (n, 2j)
        P = P @ P
    return (C @ V)[:length]                               # (length,)


def _check_conv(x, K, name: str) -> None:
    """x (..., l) and K (..., lk) with lk <= l."""
    _check_last_axis(name, "l", x=x, K=K)
    if K.shape[-1] > x.shape[-1]:
        raise ValueError(f"{name}: kernel K (..., {K.shape[-1]}) is longer than the input "
                         f"x (..., {x.shape[-1]}); expected K length <= {x.shape[-1]}")


def causal_conv(x: torch.Tensor, K: torch.Tensor) -> torch.Tensor:
    """Direct causal convolution y_k = Σ_{j=0}^{k} K_j x_{k-j}: x (..., l), K (..., lk) -> (..., l).

    O(l · lk) work: one shifted multiply-add per kernel tap. K broadcasts against x.
    """
    _check_conv(x, K, "causal_conv")
    l = x.shape[-1]
    y = torch.zeros(torch.broadcast_shapes(x.shape, K.shape[:-1] + (l,)),
                    dtype=torch.promote_types(x.dtype, K.dtype), device=x.device)   # (..., l)
    for j in range(K.shape[-1]):
        y[..., j:] += K[..., j, None] * x[..., : l - j]   # tap j delays x by j steps
    return y


def fft_conv(x: torch.Tensor, K: torch.Tensor, pad: bool = True) -> torch.Tensor:
    """Causal convolution by FFT: x (..., l), K (..., lk) -> y (..., l) in O(l log l).

    y = irfft(rfft(x, 2l) · rfft(K, 2l))[:l] (S4 §3.3; official: state-spaces/s4,
    models/s4/s4.py). The FFT multiplies *circular* convolutions; zero padding both to length 2l
    makes the wrapped part land in the discarded second half.
    ``pad=False`` shows the bug: y_k then also receives K_j x_{l+k-j} from the end of x.
    """
    _check_conv(x, K, "fft_conv")
    l = x.shape[-1]
    n_fft = 2 * l if pad else l
    X_f = torch.fft.rfft(x, n=n_fft)                      # (..., n_fft//2 + 1), complex
    K_f = torch.fft.rfft(K, n=n_fft)                      # (..., n_fft//2 + 1)
    return torch.fft.irfft(X_f * K_f, n=n_fft)[..., :l]   # (..., l)
