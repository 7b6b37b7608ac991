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

Names (the course's convention): ``x`` input, ``y`` output, ``h`` hidden state, ``n`` state size,
``l`` sequence length, ``delta`` = Δ, ``A_bar`` = Ā, ``B_bar`` = B̄, ``K_bar`` = K̄. The lectures and
the S4 paper write u for the input and x for the state.
"""
from __future__ import annotations

import torch

__all__ = ["discretize_zoh", "discretize_bilinear", "discretize_zoh_diag", "ssm_recurrence",
           "ssm_kernel", "ssm_kernel_powers", "causal_conv", "fft_conv"]


def _delta_tensor(delta, like: torch.Tensor, name: str) -> torch.Tensor:
    """delta as a tensor on like's device/dtype; ValueError unless every entry is > 0."""
    if isinstance(delta, bool) or not isinstance(delta, (int, float, torch.Tensor)):
        raise ValueError(f"{name}: delta must be a positive float or tensor, "
                         f"received {type(delta).__name__}")
    if like.is_complex():
        like = like.real                                  # delta is real even when A is complex
    if isinstance(delta, torch.Tensor):
        out = delta.to(like.device)
        out = out if out.is_complex() else out.to(torch.promote_types(like.dtype, out.dtype))
    else:  # a Python number: straight to like's dtype (no float32 rounding on the way)
        out = torch.tensor(float(delta), dtype=like.dtype, device=like.device)
    if out.is_complex():
        raise ValueError(f"{name}: delta must be real, received a complex tensor")
    if out.numel() == 0:
        raise ValueError(f"{name}: delta is empty, expected positive values")
    if not bool(torch.all(out > 0)):
        flat = out.detach().flatten()
        bad = flat[(flat <= 0) | flat.isnan()]
        shown = bad[0].item() if len(bad) else float("nan")
        raise ValueError(f"{name}: delta must be > 0 (a step size), received {shown:g}")
    return out


def _check_dense(A: torch.Tensor, B: torch.Tensor, name: str) -> torch.Tensor:
    """Check A (n, n) and B (n, m) or (n,); return B as (n, m)."""
    for t, label in ((A, "A"), (B, "B")):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: {label} must be a torch.Tensor, received {type(t).__name__}")
    if A.dim() != 2 or A.shape[0] != A.shape[1]:
        raise ValueError(f"{name}: A must be square (n, n), received {tuple(A.shape)}")
    B2 = B.unsqueeze(-1) if B.dim() == 1 else B
    if B2.dim() != 2 or B2.shape[0] != A.shape[0]:
        raise ValueError(f"{name}: B must be (n, m) with n = {A.shape[0]} (the state size of A), "
                         f"received {tuple(B.shape)}")
    return B2


def discretize_zoh(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold: A (n, n), B (n, m), delta > 0 -> A_bar (n, n), B_bar (n, m).

    A_bar = exp(ΔA),  B_bar = ∫_0^Δ exp(sA) ds B = A^{-1}(exp(ΔA) - I) B (when A is invertible).
    Computed without inverting A by the block-matrix exponential
        exp(Δ [[A, B], [0, 0]]) = [[A_bar, B_bar], [0, I]],
    so singular A (e.g. A = 0, where B_bar = ΔB) works too. Differentiable in A, B and delta.
    """
    B2 = _check_dense(A, B, "discretize_zoh")
    delta = _delta_tensor(delta, A, "discretize_zoh")
    if delta.dim() != 0:
        raise ValueError(f"discretize_zoh: delta must be a scalar (0-dim), received shape "
                         f"{tuple(delta.shape)}; use discretize_zoh_diag for one delta per channel")
    n, m = B2.shape
    M = torch.zeros(n + m, n + m, dtype=torch.promote_types(A.dtype, B2.dtype), device=A.device)
    M[:n, :n] = A
    M[:n, n:] = B2
    E = torch.linalg.matrix_exp(delta * M)                   # (n+m, n+m)
    A_bar, B_bar = E[:n, :n], E[:n, n:]                   # (n, n), (n, m)
    return A_bar, (B_bar.squeeze(-1) if B.dim() == 1 else B_bar)


def discretize_bilinear(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Bilinear (Tustin): A (n, n), B (n, m), delta > 0 -> A_bar (n, n), B_bar (n, m).

    A_bar = (I - Δ/2 A)^{-1} (I + Δ/2 A),   B_bar = (I - Δ/2 A)^{-1} Δ B.
    Maps the stable half-plane Re λ < 0 exactly into the unit disk |λ̄| < 1.
    """
    B2 = _check_dense(A, B, "discretize_bilinear")
    delta = _delta_tensor(delta, A, "discretize_bilinear")
    if delta.dim() != 0:
        raise ValueError(f"discretize_bilinear: delta must be a scalar (0-dim), received shape "
                         f"{tuple(delta.shape)}")
    eye = torch.eye(A.shape[0], dtype=A.dtype, device=A.device)
    back = eye - delta / 2 * A                            # (n, n)
    A_bar = torch.linalg.solve(back, eye + delta / 2 * A) # (n, n)
    B_bar = torch.linalg.solve(back, delta * B2)          # (n, m)
    return A_bar, (B_bar.squeeze(-1) if B.dim() == 1 else B_bar)


def discretize_zoh_diag(A: torch.Tensor, B: torch.Tensor, delta) -> tuple[torch.Tensor, torch.Tensor]:
    """Zero-order hold for a diagonal A given by its entries (real or complex), elementwise.

    A (..., n), B (..., n), delta: a float or a tensor of shape (...) -- one step per channel,
    without the state axis (a trailing state axis is added: Δ[..., None]). Everything broadcasts,
    e.g. A (d, n), B (b, l, 1, n), delta (b, l, d) -> A_bar, B_bar (b, l, d, n) as in Mamba.

    A_bar = exp(ΔA),   B_bar = (exp(ΔA) - 1) / A · B = Δ · expm1(ΔA)/(ΔA) · B,
    where expm1(z)/z -> 1 as A -> 0 (so A = 0 gives B_bar = ΔB, no division by zero).
    """
    for t, label in ((A, "A"), (B, "B")):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"discretize_zoh_diag: {label} must be a torch.Tensor, "
                             f"received {type(t).__name__}")
    if A.dim() == 0 or B.dim() == 0 or A.shape[-1] != B.shape[-1]:
        raise ValueError(f"discretize_zoh_diag: A (..., n) and B (..., n) must share the state "
                         f"size n, received A {tuple(A.shape)} and B {tuple(B.shape)}")
    delta = _delta_tensor(delta, A, "discretize_zoh_diag")
    delta = delta.unsqueeze(-1) if delta.dim() > 0 else delta   # (..., 1): the state axis
    try:
        torch.broadcast_shapes(A.shape, B.shape, delta.shape)
    except RuntimeError:
        raise ValueError(f"discretize_zoh_diag: shapes do not broadcast: A {tuple(A.shape)}, "
                         f"B {tuple(B.shape)}, delta {tuple(delta.shape[:-1])} (+ state axis)") from None
    dA = delta * A                                        # (..., n)
    A_bar = torch.exp(dA)
    return A_bar, delta * _expm1_over_z(dA) * B


def _expm1_over_z(z: torch.Tensor) -> torch.Tensor:
    """(exp(z) - 1) / z with its limit 1 + z/2 + z²/6 near z = 0 (gradient-safe)."""
    small = z.abs() < 1e-4
    safe = torch.where(small, torch.ones_like(z), z)
    exact = torch.expm1(safe) / safe                      # expm1: no cancellation for small z
    return torch.where(small, 1 + z / 2 + z * z / 6, exact)


def _check_siso(A_bar: torch.Tensor, B_bar: torch.Tensor, C: torch.Tensor, name: str):
    """Check a single-input single-output SSM: A_bar (n, n), B_bar (n,)|(n, 1), C (n,)|(1, n).

    Returns B_bar and C flattened to vectors (n,), (n,).
    """
    B2 = _check_dense(A_bar, B_bar, name)
    if B2.shape[1] != 1:
        raise ValueError(f"{name}: expected one input, B_bar (n, 1), received {tuple(B_bar.shape)}")
    if not isinstance(C, torch.Tensor) or C.numel() != A_bar.shape[0] or C.dim() > 2:
        got = tuple(C.shape) if isinstance(C, torch.Tensor) else type(C).__name__
        raise ValueError(f"{name}: C must be (1, n) or (n,) with n = {A_bar.shape[0]} "
                         f"(the state size of A_bar), received {got}")
    return B2[:, 0], C.reshape(-1)                        # (n,), (n,)


def ssm_recurrence(A_bar, B_bar, C, x: torch.Tensor, D=None, return_states: bool = False):
    """Run the SSM as a linear RNN: x (..., l) -> y (..., l) [, states h (..., l, n)].

    h_k = A_bar h_{k-1} + B_bar x_k,   y_k = C h_k + D x_k,   h_{-1} = 0.   L sequential steps.
    """
    B_bar, C = _check_siso(A_bar, B_bar, C, "ssm_recurrence")          # (n,), (n,)
    if not isinstance(x, torch.Tensor) or x.dim() == 0:
        raise ValueError(f"ssm_recurrence: x must be a tensor (..., l), received "
                         f"{tuple(x.shape) if isinstance(x, torch.Tensor) else type(x).__name__}")
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

    K_k = C A_bar^k B_bar,  k = 0 .. length-1   (length matrix-vector products).
    """
    B_bar, C = _check_siso(A_bar, B_bar, C, "ssm_kernel_powers")       # (n,), (n,)
    _check_length(length, "ssm_kernel_powers")
    v, ks = B_bar, []                                     # v = A_bar^k B_bar, (n,)
    for _ in range(length):
        ks.append(C @ v)
        v = A_bar @ v
    return torch.stack(ks)                                # (length,)


def ssm_kernel(A_bar, B_bar, C, length: int, max_length: int | None = None) -> torch.Tensor:
    """K_bar = (C B_bar, C A_bar B_bar, ..., C A_bar^{length-1} B_bar) by doubling: -> (length,).

    Keeps V = [B_bar, A_bar B_bar, ..., A_bar^{j-1} B_bar] (n, j) and P = A_bar^j; then
    V <- [V, P V], P <- P², so log2(length) matrix products instead of length steps.
    ``max_length`` (optional) is the longest kernel allowed; a longer request is a ValueError.
    """
    B_bar, C = _check_siso(A_bar, B_bar, C, "ssm_kernel")              # (n,), (n,)
    _check_length(length, "ssm_kernel", max_length)
    V, P = B_bar[:, None], A_bar                          # (n, 1), (n, n)
    while V.shape[1] < length:
        V = torch.cat([V, P @ V], dim=1)                  # (n, 2j)
        P = P @ P
    return (C @ V)[:length]                               # (length,)


def _check_length(length, name: str, max_length: int | None = None) -> None:
    if isinstance(length, bool) or not isinstance(length, int) or length < 1:
        raise ValueError(f"{name}: length must be a positive int, received {length!r}")
    if max_length is not None and length > max_length:
        raise ValueError(f"{name}: kernel length {length} is longer than the allowed "
                         f"max_length {max_length}")


def _check_conv(x: torch.Tensor, K: torch.Tensor, name: str) -> None:
    for t, label in ((x, "x"), (K, "K")):
        if not isinstance(t, torch.Tensor) or t.dim() == 0:
            raise ValueError(f"{name}: {label} must be a tensor (..., l), received "
                             f"{tuple(t.shape) if isinstance(t, torch.Tensor) else type(t).__name__}")
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

    y = irfft(rfft(x, 2l) · rfft(K, 2l))[:l]. The FFT multiplies *circular* convolutions; zero
    padding both to length 2l makes the wrapped part land in the discarded second half.
    ``pad=False`` shows the bug: y_k then also receives K_j x_{l+k-j} from the end of x.
    """
    _check_conv(x, K, "fft_conv")
    l = x.shape[-1]
    n_fft = 2 * l if pad else l
    X_f = torch.fft.rfft(x, n=n_fft)                      # (..., n_fft//2 + 1), complex
    K_f = torch.fft.rfft(K, n=n_fft)                      # (..., n_fft//2 + 1)
    return torch.fft.irfft(X_f * K_f, n=n_fft)[..., :l]   # (..., l)
