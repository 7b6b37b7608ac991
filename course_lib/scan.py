"""Scans (lecture 07): the linear recurrence behind every SSM, and the selective scan (S6).

A diagonal linear recurrence over time (axis 1), elementwise over everything else:

    h_t = a_t ⊙ h_{t-1} + x_t,        h_{-1} = 0,        a, x, h: (b, l, ...)

- ``scan_sequential``: the clear reference, one step per time index (``unbind`` the inputs
  once, so backward stays linear in l).
- ``scan_sequential_indexed``: the same loop reading ``a[:, t]`` inside the loop: correct, but
  its backward is O(l²) (every ``a[:, t]`` sends back a full-size zero tensor with one slice
  filled, and autograd sums l of them). Kept only to show the trap.
- ``scan_chunked``: the fast scan. Cut the l steps into c chunks of length T (T ≈ √l).
  Step 1 runs every chunk at once from a zero state, keeping only each chunk's end state s_k
  and total decay p_k = a_1 ⋯ a_T (T steps on small (b, c, ...) tensors). Step 2 carries the
  state across chunks, start_{k+1} = s_k + p_k ⊙ start_k (c tiny steps). Step 3 reruns every
  chunk from its true start state and writes h (T steps). Python steps: 2T + c ≈ 3√l instead
  of l, and a, x are read twice, h written once. Backward is the *reverse* scan of the gradient,

      λ_t = g_t + a_{t+1} ⊙ λ_{t+1},     ∂L/∂x_t = λ_t,     ∂L/∂a_t = λ_t ⊙ h_{t-1},

  run by the same chunked routine (custom ``torch.autograd.Function``).

The selective scan (S6, Algorithm 2 of the Mamba paper) is this recurrence with
a_t = Ā_t = exp(Δ_t A) and x_t = B̄_t u_t, where Δ (b, l, d), B, C (b, l, n) come from the
input, so Ā, B̄ are (b, l, d, n) and no convolution kernel exists:

    h_t = Ā_t ⊙ h_{t-1} + B̄_t u_t,     y_t = Σ_n C_t h_t + D u_t.

Ā is zero-order hold (``course_lib.ssm.discretize_zoh_diag``); B̄ is either ZOH or, as in Mamba's
reference code, the Euler step B̄ = Δ B (the first term of (exp(ΔA) - 1)/A = Δ(1 + ΔA/2 + …)).
The fast path fuses all of it into one autograd Function: with λ the reverse scan of
g_h = g_y C and ∂a_t = λ_t h_{t-1}, the gradients are ∂u = Δ Σ_n λB, ∂B = Σ_d λ Δu,
∂C = Σ_d h g_y, ∂A = Σ_{b,l} Δ ∂a Ā, ∂Δ = Σ_n A ∂a Ā + u Σ_n λB.
Names: ``u`` input, ``delta`` Δ, ``n`` state size, ``A_bar``/``B_bar`` Ā/B̄.
"""
from __future__ import annotations

import math

import torch

from course_lib import ShapeError, check_shapes
from course_lib.ssm import discretize_zoh_diag

__all__ = ["scan_sequential", "scan_sequential_indexed", "scan_chunked", "default_chunk",
           "discretize_selective", "selective_step", "selective_scan_sequential", "selective_scan"]


def _check_scan_inputs(a: torch.Tensor, x: torch.Tensor, name: str) -> None:
    for t, label in ((a, "a"), (x, "x")):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: {label} must be a torch.Tensor, received {type(t).__name__}")
    if a.shape != x.shape:
        raise ValueError(f"{name}: a and x must have the same shape (b, l, ...), received "
                         f"{tuple(a.shape)} and {tuple(x.shape)}")
    if x.dim() < 2:
        raise ValueError(f"{name}: expected shape (b, l, ...) with at least 2 dims, "
                         f"received {tuple(x.shape)}")


def scan_sequential(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """h_t = a_t ⊙ h_{t-1} + x_t, one step at a time. a, x: (b, l, ...) -> h: (b, l, ...)."""
    _check_scan_inputs(a, x, "scan_sequential")
    h = torch.zeros_like(x[:, 0])                        # (b, ...)
    hs = []
    for a_t, x_t in zip(a.unbind(1), x.unbind(1)):       # unbind once: linear backward
        h = a_t * h + x_t
        hs.append(h)
    return torch.stack(hs, 1)                            # (b, l, ...)


def scan_sequential_indexed(a: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
    """The same recurrence, indexing ``a[:, t]`` per step: quadratic backward (the trap)."""
    _check_scan_inputs(a, x, "scan_sequential_indexed")
    h = torch.zeros_like(x[:, 0])
    hs = []
    for t in range(x.shape[1]):
        h = a[:, t] * h + x[:, t]                        # each index: a full-size grad buffer
        hs.append(h)
    return torch.stack(hs, 1)


def default_chunk(length: int) -> int:
    """Chunk length T ≈ √l, a power of two (T + l/T python steps is smallest at T = √l)."""
    return max(1, 2 ** round(math.log2(max(1.0, math.sqrt(length)))))


def _chunk_scan(a: torch.Tensor, x: torch.Tensor, chunk: int, reverse: bool,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """Chunked scan without autograd. a, x: (b, l, m) contiguous with l % chunk == 0.

    forward:  h_t = a_t h_{t-1} + x_t;   reverse (the backward pass):  h_t = a_{t+1} h_{t+1} + x_t
    (a_l = 0). Reads a and x twice and writes h once; only (b, c, m) tensors live between steps.
    ``out`` may be ``x`` itself (step 3 reads x_t just before overwriting it with h_t).
    """
    b, l, m = x.shape
    c = l // chunk
    a4, x4 = a.view(b, c, chunk, m), x.view(b, c, chunk, m)    # (b, c, T, m)
    if reverse:                                               # a_{t+1} without copying a
        edge = torch.cat([a4[:, 1:, 0], a4.new_zeros(b, 1, m)], 1)   # (b, c, m): next chunk's a_0
        coef = lambda t: a4[:, :, t + 1] if t + 1 < chunk else edge   # noqa: E731
        steps = range(chunk - 1, -1, -1)
    else:
        coef, steps = (lambda t: a4[:, :, t]), range(chunk)
    s = x.new_zeros(b, c, m)                                  # each chunk's state from 0
    p = x.new_ones(b, c, m)                                   # each chunk's total decay
    for t in steps:                                           # 1: all chunks at once
        s = torch.addcmul(x4[:, :, t], coef(t), s)
        p = p * coef(t)
    start = torch.zeros_like(s)                               # (b, c, m) state entering chunk k
    carry = s.new_zeros(b, m)
    for k in (range(c - 1, 0, -1) if reverse else range(c - 1)):   # 2: across chunks
        carry = torch.addcmul(s[:, k], p[:, k], carry)
        start[:, k - 1 if reverse else k + 1] = carry
    h = torch.empty_like(x4) if out is None else out.view(b, c, chunk, m)
    prev = start
    for t in steps:                                           # 3: rerun from the true start
        prev = torch.addcmul(x4[:, :, t], coef(t), prev, out=h[:, :, t])
    return h.view(b, l, m)


class _ChunkedScan(torch.autograd.Function):
    """h = scan(a, x) with a hand-written backward: the reverse scan of the gradient."""

    @staticmethod
    def forward(ctx, a, x, chunk):                       # a, x: (b, l, m), l % chunk == 0
        h = _chunk_scan(a, x, chunk, reverse=False)
        ctx.save_for_backward(a, h)
        ctx.chunk = chunk
        return h

    @staticmethod
    def backward(ctx, grad_h):
        a, h = ctx.saved_tensors
        lam = _chunk_scan(a, grad_h.contiguous(), ctx.chunk, reverse=True)   # (b, l, m)
        grad_a = torch.empty_like(a)
        torch.mul(lam[:, 1:], h[:, :-1], out=grad_a[:, 1:])   # λ_t h_{t-1}
        grad_a[:, 0] = 0                                 # h_{-1} = 0
        return grad_a, lam, None


def scan_chunked(a: torch.Tensor, x: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """The fast scan: h_t = a_t ⊙ h_{t-1} + x_t in ≈ 2√l python steps (see module docstring).

    a, x: (b, l, ...) -> h: (b, l, ...). ``chunk`` (default ≈ √l) is the chunk length T;
    the length is padded with a = 1, x = 0 to a multiple of T (padding does not change h).
    """
    _check_scan_inputs(a, x, "scan_chunked")
    b, l = x.shape[:2]
    chunk = default_chunk(l) if chunk is None else chunk
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"scan_chunked: chunk must be a positive int, got {chunk!r}")
    pad = (-l) % chunk
    a3, x3 = a.reshape(b, l, -1), x.reshape(b, l, -1)   # (b, l, m)
    if pad:
        a3 = torch.cat([a3, a3.new_ones(b, pad, a3.shape[-1])], 1)
        x3 = torch.cat([x3, x3.new_zeros(b, pad, x3.shape[-1])], 1)
    h = _ChunkedScan.apply(a3.contiguous(), x3.contiguous(), chunk)   # (b, l + pad, m)
    return h[:, :l].reshape(x.shape)


# ---------------------------------------------------------------------------------------------
# The selective scan (S6, Algorithm 2 of the Mamba paper)
# ---------------------------------------------------------------------------------------------
METHODS = ("euler", "zoh")


def _check_selective(u, delta, A, B, C, D, method: str, name: str) -> None:
    """Shapes u, delta (b, l, d); A (d, n); B, C (b, l, n); D (d,) or None; Δ > 0."""
    items = [(u, ("b", "l", "d"), "u"), (delta, ("b", "l", "d"), "delta"), (A, ("d", "n"), "A"),
             (B, ("b", "l", "n"), "B"), (C, ("b", "l", "n"), "C")]
    if D is not None:
        items.append((D, ("d",), "D"))
    try:
        check_shapes(items)
    except ShapeError as exc:
        raise ShapeError(f"{name}: {exc}") from None
    if method not in METHODS:
        raise ValueError(f"{name}: method must be one of {METHODS}, got {method!r}")
    if not bool((delta > 0).all()):
        raise ValueError(f"{name}: delta must be > 0 everywhere (a step size), received "
                         f"min {delta.min().item():.3g}")


def discretize_selective(delta: torch.Tensor, A: torch.Tensor, B: torch.Tensor,
                         method: str = "euler") -> tuple[torch.Tensor, torch.Tensor]:
    """Ā, B̄ of a selective SSM. delta (..., d), A (d, n), B (..., n) -> both (..., d, n).

    A_bar = exp(ΔA) (zero-order hold, ``course_lib.ssm.discretize_zoh_diag``). B_bar is
    ``"zoh"``: (exp(ΔA) - 1)/A · B, or ``"euler"`` (Mamba's reference code): Δ · B, the first
    term of the ZOH series (exp(ΔA) - 1)/A = Δ (1 + ΔA/2 + (ΔA)²/6 + …).
    """
    if method not in METHODS:
        raise ValueError(f"discretize_selective: method must be one of {METHODS}, got {method!r}")
    A_bar, B_zoh = discretize_zoh_diag(A, B.unsqueeze(-2), delta)       # (..., d, n) each
    if method == "zoh":
        return A_bar, B_zoh
    return A_bar, delta.unsqueeze(-1) * B.unsqueeze(-2)                  # (..., d, n)


def selective_step(h: torch.Tensor, u_t: torch.Tensor, delta_t: torch.Tensor, A: torch.Tensor,
                   B_t: torch.Tensor, C_t: torch.Tensor, D: torch.Tensor | None = None,
                   method: str = "euler") -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the selective SSM: h (b, d, n), u_t, delta_t (b, d), B_t, C_t (b, n).

    h_t = Ā_t ⊙ h_{t-1} + B̄_t u_t,    y_t = h_t C_t + D u_t.    Returns (y_t (b, d), h_t).
    """
    A_bar, B_bar = discretize_selective(delta_t, A, B_t, method)        # (b, d, n)
    h = A_bar * h + B_bar * u_t.unsqueeze(-1)                            # (b, d, n)
    y = (h * C_t.unsqueeze(-2)).sum(-1)                                  # (b, d)
    return (y if D is None else y + D * u_t), h


def selective_scan_sequential(u, delta, A, B, C, D=None, method: str = "euler") -> torch.Tensor:
    """The reference selective scan: ``selective_step`` l times. Shapes as in ``selective_scan``.

    Memory O(b d n): Ā_t, B̄_t are made per step, never for the whole sequence.
    """
    _check_selective(u, delta, A, B, C, D, method, "selective_scan_sequential")
    b, l, d = u.shape
    h = u.new_zeros(b, d, A.shape[1])                                    # (b, d, n)
    ys = []
    for u_t, delta_t, B_t, C_t in zip(u.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1)):
        y_t, h = selective_step(h, u_t, delta_t, A, B_t, C_t, D, method)
        ys.append(y_t)
    return torch.stack(ys, 1)                                            # (b, l, d)


def _row_times(v: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Row vector times matrix per (b, l): v (b, l, i), M (b, l, i, j) -> (b, l, j).

    This orientation (1 × i times i × j) runs as one fast batched matmul; M may be a transposed
    view. (``h @ C`` as matrix times column is several times slower on CPU.)"""
    return (v.unsqueeze(-2) @ M).squeeze(-2)


class _SelectiveScan(torch.autograd.Function):
    """y = Σ_n C ⊙ scan(exp(ΔA), (Δu) B) (Euler B̄, no D) with a hand-written, buffer-reusing backward.

    Only two (b, l', d, n) buffers are made (l' = l padded to a multiple of the chunk): Ā, and
    x = B̄u which the scan overwrites with h. Backward makes one more, the gradient g_h = g_y C,
    which the reverse scan overwrites with λ, then with ∂L/∂a = λ_t h_{t-1}, then with ∂L/∂(ΔA);
    every reduction back to (b, l, d), (b, l, n) or (d, n) is a batched matmul (no product tensor).
    """

    @staticmethod
    def forward(ctx, u, delta, A, B, C, chunk):              # u, delta: (b, l, d); B, C: (b, l, n)
        (b, l, d), n = u.shape, A.shape[1]
        lp = l + (-l) % chunk
        A_bar, x = u.new_empty(b, lp, d, n), u.new_empty(b, lp, d, n)
        A_bar[:, l:], x[:, l:] = 1, 0                        # padding: a = 1, x = 0
        torch.mul(delta.unsqueeze(-1), A, out=A_bar[:, :l]).exp_()   # (b, l, d, n) exp(ΔA)
        torch.mul((delta * u).unsqueeze(-1), B.unsqueeze(2), out=x[:, :l])   # (Δu) B
        h = _chunk_scan(A_bar.view(b, lp, -1), x.view(b, lp, -1), chunk, False, out=x)
        h = h.view(b, lp, d, n)[:, :l]                       # (b, l, d, n), x's buffer
        ctx.save_for_backward(u, delta, A, B, C, A_bar, h)
        ctx.chunk = chunk
        return _row_times(C, h.transpose(-1, -2))            # (b, l, d) Σ_n C h

    @staticmethod
    def backward(ctx, grad_y):                               # (b, l, d)
        u, delta, A, B, C, A_bar, h = ctx.saved_tensors
        (b, l, d), n, lp = u.shape, A.shape[1], A_bar.shape[1]
        lam = A_bar.new_empty(b, lp, d, n)
        lam[:, l:] = 0
        torch.mul(grad_y.unsqueeze(-1), C.unsqueeze(2), out=lam[:, :l])     # g_h = g_y C
        _chunk_scan(A_bar.view(b, lp, -1), lam.view(b, lp, -1), ctx.chunk, True, out=lam)
        lam = lam[:, :l]                                     # λ = ∂L/∂x, (b, l, d, n)
        lam_B = _row_times(B, lam.transpose(-1, -2))         # (b, l, d) Σ_n λ B
        grad_B = _row_times(delta * u, lam)                  # (b, l, n) Σ_d λ Δu
        grad_C = _row_times(grad_y, h)                       # (b, l, n) Σ_d h g_y
        lam[:, 1:].mul_(h[:, :-1])                           # ∂L/∂a_t = λ_t h_{t-1}, in place
        lam[:, 0] = 0
        lam.mul_(A_bar[:, :l])                               # ∂L/∂(ΔA) = ∂L/∂a ⊙ exp(ΔA)
        grad_A = torch.bmm(delta.reshape(b * l, d).T.unsqueeze(1),          # (d, 1, n)
                           lam.reshape(b * l, d, n).transpose(0, 1)).squeeze(1)   # Σ_bl δ ∂a
        grad_delta = lam.mul_(A).sum(-1) + lam_B * u        # (b, l, d) Σ_n A ∂(ΔA) + u Σ_n λB
        return lam_B * delta, grad_delta, grad_A, grad_B, grad_C, None


def selective_scan(u, delta, A, B, C, D=None, method: str = "euler", scan=None) -> torch.Tensor:
    """The selective scan (S6, Algorithm 2) with the fast chunked scan.

    u, delta: (b, l, d); A: (d, n); B, C: (b, l, n); D: (d,) or None -> y: (b, l, d).
    Ā, B̄ now depend on the time step: (b, l, d, n), so there is no convolution kernel; compute
        h_t = Ā_t ⊙ h_{t-1} + B̄_t u_t  (a scan over l),   y_t = h_t C_t + D u_t.
    Default (``scan=None``, Euler B̄): the fused path, one autograd Function around the chunked
    scan that keeps two (b, l, d, n) buffers in forward and one in backward (``_SelectiveScan``).
    ``scan(a, x) -> h`` instead runs the plain-autograd path with that scan (e.g.
    ``scan_chunked``, ``scan_sequential`` or mambapy's ``pscan``, for comparisons).
    """
    _check_selective(u, delta, A, B, C, D, method, "selective_scan")
    if scan is None and method == "euler":                   # the fused fast path
        y = _SelectiveScan.apply(u, delta, A, B, C, default_chunk(u.shape[1]))
        return y if D is None else y + D * u
    scan = scan_chunked if scan is None else scan
    if method == "euler":   # B̄ u = (Δ u) B: one (b, l, d, n) product instead of two
        A_bar = torch.exp(delta.unsqueeze(-1) * A)                       # (b, l, d, n)
        x = (delta * u).unsqueeze(-1) * B.unsqueeze(2)                   # (b, l, d, n)
    else:
        A_bar, B_bar = discretize_selective(delta, A, B, method)         # (b, l, d, n)
        x = B_bar * u.unsqueeze(-1)
    h = scan(A_bar, x)                                                   # (b, l, d, n)
    y = _row_times(C, h.transpose(-1, -2))                               # (b, l, d) Σ_n C h
    return y if D is None else y + D * u
