"""Scans (lecture 07): the linear recurrence behind every SSM, and the selective scan (S6).

A diagonal linear recurrence over time (axis 1), elementwise over everything else:

    h_t = a_t ⊙ h_{t-1} + bx_t,        h_{-1} = 0,        a, bx, h: (b, l, ...)

``a`` is the decay and ``bx`` the input term (B̄_t x_t in an SSM, hence the name).

- ``scan_sequential``: the clear reference, one step per time index (``unbind`` the inputs
  once, so backward stays linear in l).
- ``scan_sequential_indexed``: the same loop reading ``a[:, t]`` inside the loop: correct, but
  its backward is O(l²) (every ``a[:, t]`` sends back a full-size zero tensor with one slice
  filled, and autograd sums l of them). Kept only to show the trap.
- ``scan_chunked``: the fast scan. Cut the l steps into c = l/T chunks of length T (T ≈ √l).
  Step 1 runs every chunk at once from a zero state, keeping only each chunk's end state s_k
  and total decay p_k = a_1 ⋯ a_T (T steps on (b, c, ...) tensors). Step 2 carries the state
  across chunks, start_{k+1} = s_k + p_k ⊙ start_k (c - 1 tiny steps). Step 3 reruns every
  chunk from its true start state and writes h (T steps). Sequential steps: 2T + c - 1 ≈ 3√l
  instead of l (191 for l = 4096, counted by ``trace_scan``), and a, bx are read twice, h
  written once. Backward is the *reverse* scan of the gradient, with the same step count,

      λ_t = g_t + a_{t+1} ⊙ λ_{t+1},     ∂L/∂bx_t = λ_t,     ∂L/∂a_t = λ_t ⊙ h_{t-1},

  run by the same chunked routine (custom ``torch.autograd.Function``).

The selective scan (S6, Algorithm 2 of Gu & Dao, *Mamba*, 2023; official implementation:
state-spaces/mamba, ``mamba_ssm/ops/selective_scan_interface.py``, whose ``selective_scan_ref``
is the PyTorch reference of the fused CUDA kernel in ``csrc/selective_scan``) is this recurrence with
a_t = Ā_t = exp(Δ_t A) and bx_t = B̄_t x_t, where Δ (b, l, d), B, C (b, l, n) come from the
input, so Ā, B̄ are (b, l, d, n) and no convolution kernel exists:

    h_t = Ā_t ⊙ h_{t-1} + B̄_t x_t,     y_t = Σ_n C_t h_t + D x_t.

Ā is zero-order hold (``course_lib.ssm.discretize_zoh_diag``); B̄ is either ZOH or, as in Mamba's
reference code and in every model the course trains, the Euler step B̄ = Δ B (the first term of
(exp(ΔA) - 1)/A = Δ(1 + ΔA/2 + …)). The fast path fuses all of it into one autograd Function
that holds two (b, l, d, n) buffers in forward (Ā, and B̄x overwritten by h; both are kept for
backward) and makes a third in backward (the gradient of h, overwritten by λ, then ∂L/∂a);
``trace_scan`` measures this. With λ the reverse scan of g_h = g_y C and ∂a_t = λ_t h_{t-1}, the
gradients are ∂x = Δ Σ_n λB, ∂B = Σ_d λ Δx, ∂C = Σ_d h g_y, ∂A = Σ_{b,l} Δ ∂a Ā,
∂Δ = Σ_n A ∂a Ā + x Σ_n λB.
Names: ``x`` the layer's input (b, l, d), ``y`` its output, ``h`` the state (b, l, d, n),
``delta`` Δ, ``d`` channels, ``n`` state size, ``A_bar``/``B_bar`` Ā/B̄.
"""
from __future__ import annotations

import math
import weakref
from collections import Counter

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

from course_lib import ShapeError, check_shapes
from course_lib.ssm import discretize_zoh_diag

__all__ = ["scan_sequential", "scan_sequential_indexed", "scan_chunked", "default_chunk",
           "discretize_selective", "selective_step", "selective_scan_sequential", "selective_scan",
           "trace_scan"]


def _check_scan_inputs(a: torch.Tensor, bx: torch.Tensor, name: str) -> None:
    for t, label in ((a, "a"), (bx, "bx")):
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name}: {label} must be a torch.Tensor, received {type(t).__name__}")
    if a.shape != bx.shape:
        raise ValueError(f"{name}: a and bx must have the same shape (b, l, ...), received "
                         f"{tuple(a.shape)} and {tuple(bx.shape)}")
    if bx.dim() < 2:
        raise ValueError(f"{name}: expected shape (b, l, ...) with at least 2 dims, "
                         f"received {tuple(bx.shape)}")


def scan_sequential(a: torch.Tensor, bx: torch.Tensor) -> torch.Tensor:
    """h_t = a_t ⊙ h_{t-1} + bx_t, one step at a time. a, bx: (b, l, ...) -> h: (b, l, ...)."""
    _check_scan_inputs(a, bx, "scan_sequential")
    h = torch.zeros_like(bx[:, 0])                       # (b, ...)
    hs = []
    for a_t, bx_t in zip(a.unbind(1), bx.unbind(1)):     # unbind once: linear backward
        h = a_t * h + bx_t
        hs.append(h)
    return torch.stack(hs, 1)                            # (b, l, ...)


def scan_sequential_indexed(a: torch.Tensor, bx: torch.Tensor) -> torch.Tensor:
    """The same recurrence, indexing ``a[:, t]`` per step: quadratic backward (the trap)."""
    _check_scan_inputs(a, bx, "scan_sequential_indexed")
    h = torch.zeros_like(bx[:, 0])
    hs = []
    for t in range(bx.shape[1]):
        h = a[:, t] * h + bx[:, t]                       # each index: a full-size grad buffer
        hs.append(h)
    return torch.stack(hs, 1)


def default_chunk(length: int) -> int:
    """Chunk length T ≈ √l, a power of two: 2T + l/T - 1 ≈ 3√l sequential steps (the minimum,
    2√(2l) ≈ 2.8√l at T = √(l/2), is barely lower)."""
    return max(1, 2 ** round(math.log2(max(1.0, math.sqrt(length)))))


def _chunk_scan(a: torch.Tensor, bx: torch.Tensor, chunk: int, reverse: bool,
                out: torch.Tensor | None = None) -> torch.Tensor:
    """Chunked scan without autograd. a, bx: (b, l, m) contiguous with l % chunk == 0.

    forward:  h_t = a_t h_{t-1} + bx_t;   reverse (the backward pass):  h_t = a_{t+1} h_{t+1} + bx_t
    (a_l = 0). 2T + c - 1 sequential steps; reads a and bx twice and writes h once; only
    (b, c, m) tensors live between steps. ``out`` may be ``bx`` itself (step 3 reads bx_t just
    before overwriting it with h_t).
    """
    b, l, m = bx.shape
    c = l // chunk
    a4, bx4 = a.view(b, c, chunk, m), bx.view(b, c, chunk, m)    # (b, c, T, m)
    if reverse:                                               # a_{t+1} without copying a
        edge = torch.cat([a4[:, 1:, 0], a4.new_zeros(b, 1, m)], 1)   # (b, c, m): next chunk's a_0
        coef = lambda t: a4[:, :, t + 1] if t + 1 < chunk else edge   # noqa: E731
        steps = range(chunk - 1, -1, -1)
    else:
        coef, steps = (lambda t: a4[:, :, t]), range(chunk)
    s = bx.new_zeros(b, c, m)                                 # each chunk's state from 0
    p = bx.new_ones(b, c, m)                                  # each chunk's total decay
    for t in steps:                                           # 1: all chunks at once, T steps
        s = torch.addcmul(bx4[:, :, t], coef(t), s)
        p = p * coef(t)
    start = torch.zeros_like(s)                               # (b, c, m) state entering chunk k
    carry = s.new_zeros(b, m)
    for k in (range(c - 1, 0, -1) if reverse else range(c - 1)):   # 2: across chunks, c - 1
        carry = torch.addcmul(s[:, k], p[:, k], carry)
        start[:, k - 1 if reverse else k + 1] = carry
    h = torch.empty_like(bx4) if out is None else out.view(b, c, chunk, m)
    prev = start
    for t in steps:                                           # 3: rerun from the true start, T
        prev = torch.addcmul(bx4[:, :, t], coef(t), prev, out=h[:, :, t])
    return h.view(b, l, m)


class _ChunkedScan(torch.autograd.Function):
    """h = scan(a, bx) with a hand-written backward: the reverse scan of the gradient."""

    @staticmethod
    def forward(ctx, a, bx, chunk):                      # a, bx: (b, l, m), l % chunk == 0
        h = _chunk_scan(a, bx, chunk, reverse=False)
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


def scan_chunked(a: torch.Tensor, bx: torch.Tensor, chunk: int | None = None) -> torch.Tensor:
    """The fast scan: h_t = a_t ⊙ h_{t-1} + bx_t in 2T + l/T - 1 ≈ 3√l sequential steps.

    a, bx: (b, l, ...) -> h: (b, l, ...). ``chunk`` (default ≈ √l) is the chunk length T;
    the length is padded with a = 1, bx = 0 to a multiple of T (padding does not change h).
    See the module docstring for the three steps.
    """
    _check_scan_inputs(a, bx, "scan_chunked")
    b, l = bx.shape[:2]
    chunk = default_chunk(l) if chunk is None else chunk
    if not isinstance(chunk, int) or chunk < 1:
        raise ValueError(f"scan_chunked: chunk must be a positive int, got {chunk!r}")
    pad = (-l) % chunk
    a3, bx3 = a.reshape(b, l, -1), bx.reshape(b, l, -1)  # (b, l, m)
    if pad:
        a3 = torch.cat([a3, a3.new_ones(b, pad, a3.shape[-1])], 1)
        bx3 = torch.cat([bx3, bx3.new_zeros(b, pad, bx3.shape[-1])], 1)
    h = _ChunkedScan.apply(a3.contiguous(), bx3.contiguous(), chunk)   # (b, l + pad, m)
    return h[:, :l].reshape(bx.shape)


# ---------------------------------------------------------------------------------------------
# The selective scan (S6, Algorithm 2 of the Mamba paper)
# ---------------------------------------------------------------------------------------------
METHODS = ("euler", "zoh")


def _check_selective(x, delta, A, B, C, D, method: str, name: str) -> None:
    """Shapes x, delta (b, l, d); A (d, n); B, C (b, l, n); D (d,) or None; Δ > 0."""
    items = [(x, ("b", "l", "d"), "x"), (delta, ("b", "l", "d"), "delta"), (A, ("d", "n"), "A"),
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
    ``"zoh"``: (exp(ΔA) - 1)/A · B, or ``"euler"`` (Mamba's reference code, the default): Δ · B,
    the first term of the ZOH series (exp(ΔA) - 1)/A = Δ (1 + ΔA/2 + (ΔA)²/6 + …).
    """
    if method not in METHODS:
        raise ValueError(f"discretize_selective: method must be one of {METHODS}, got {method!r}")
    A_bar, B_zoh = discretize_zoh_diag(A, B.unsqueeze(-2), delta)       # (..., d, n) each
    if method == "zoh":
        return A_bar, B_zoh
    return A_bar, delta.unsqueeze(-1) * B.unsqueeze(-2)                  # (..., d, n)


def selective_step(h: torch.Tensor, x_t: torch.Tensor, delta_t: torch.Tensor, A: torch.Tensor,
                   B_t: torch.Tensor, C_t: torch.Tensor, D: torch.Tensor | None = None,
                   method: str = "euler") -> tuple[torch.Tensor, torch.Tensor]:
    """One step of the selective SSM: h (b, d, n), x_t, delta_t (b, d), B_t, C_t (b, n)
    (Algorithm 2 of Gu & Dao 2023 at one time step; official: state-spaces/mamba,
    mamba_ssm/ops/triton/selective_state_update.py).

    h_t = Ā_t ⊙ h_{t-1} + B̄_t x_t,    y_t = h_t C_t + D x_t.    Returns (y_t (b, d), h_t).
    """
    A_bar, B_bar = discretize_selective(delta_t, A, B_t, method)        # (b, d, n)
    h = A_bar * h + B_bar * x_t.unsqueeze(-1)                            # (b, d, n)
    y = (h * C_t.unsqueeze(-2)).sum(-1)                                  # (b, d)
    return (y if D is None else y + D * x_t), h


def selective_scan_sequential(x, delta, A, B, C, D=None, method: str = "euler") -> torch.Tensor:
    """The reference selective scan: ``selective_step`` l times. Shapes as in ``selective_scan``.

    Memory O(b d n) per step: Ā_t, B̄_t are made per step (autograd still keeps them all).
    """
    _check_selective(x, delta, A, B, C, D, method, "selective_scan_sequential")
    b, l, d = x.shape
    h = x.new_zeros(b, d, A.shape[1])                                    # (b, d, n)
    ys = []
    for x_t, delta_t, B_t, C_t in zip(x.unbind(1), delta.unbind(1), B.unbind(1), C.unbind(1)):
        y_t, h = selective_step(h, x_t, delta_t, A, B_t, C_t, D, method)
        ys.append(y_t)
    return torch.stack(ys, 1)                                            # (b, l, d)


def _row_times(v: torch.Tensor, M: torch.Tensor) -> torch.Tensor:
    """Row vector times matrix per (b, l): v (b, l, i), M (b, l, i, j) -> (b, l, j).

    This orientation (1 × i times i × j) runs as one fast batched matmul; M may be a transposed
    view. (``h @ C`` as matrix times column is several times slower on CPU.)"""
    return (v.unsqueeze(-2) @ M).squeeze(-2)


class _SelectiveScan(torch.autograd.Function):
    """y = Σ_n C ⊙ scan(exp(ΔA), (Δx) B) (Euler B̄, no D) with a hand-written, buffer-reusing backward.

    Inputs come padded to a multiple of the chunk (Δ = 0 there: Ā = 1, B̄x = 0, so h is unchanged).
    Forward makes two (b, l, d, n) buffers: Ā, and bx = B̄x which the scan overwrites with h;
    both are saved for backward. Backward makes one more, the gradient g_h = g_y C, which the
    reverse scan overwrites with λ, then with ∂L/∂a = λ_t h_{t-1}, then with ∂L/∂(ΔA); every
    reduction back to (b, l, d), (b, l, n) or (d, n) is a batched matmul (no product tensor).
    """

    @staticmethod
    def forward(ctx, x, delta, A, B, C, chunk):              # x, delta: (b, l, d); B, C: (b, l, n)
        (b, l, d), n = x.shape, A.shape[1]
        A_bar = torch.mul(delta.unsqueeze(-1), A).exp_()     # (b, l, d, n) exp(ΔA)
        bx = torch.mul((delta * x).unsqueeze(-1), B.unsqueeze(2))   # (b, l, d, n) (Δx) B
        h = _chunk_scan(A_bar.view(b, l, -1), bx.view(b, l, -1), chunk, False, out=bx)
        h = h.view(b, l, d, n)                               # bx's buffer, now h
        ctx.save_for_backward(x, delta, A, B, C, A_bar, h)
        ctx.chunk = chunk
        return _row_times(C, h.transpose(-1, -2))            # (b, l, d) Σ_n C h

    @staticmethod
    def backward(ctx, grad_y):                               # (b, l, d)
        x, delta, A, B, C, A_bar, h = ctx.saved_tensors
        (b, l, d), n = x.shape, A.shape[1]
        lam = torch.mul(grad_y.unsqueeze(-1), C.unsqueeze(2))   # (b, l, d, n) g_h = g_y C
        _chunk_scan(A_bar.view(b, l, -1), lam.view(b, l, -1), ctx.chunk, True, out=lam)
        lam_B = _row_times(B, lam.transpose(-1, -2))         # (b, l, d) Σ_n λ B  (λ = ∂L/∂bx)
        grad_B = _row_times(delta * x, lam)                  # (b, l, n) Σ_d λ Δx
        grad_C = _row_times(grad_y, h)                       # (b, l, n) Σ_d h g_y
        lam[:, 1:].mul_(h[:, :-1])                           # ∂L/∂a_t = λ_t h_{t-1}, in place
        lam[:, 0] = 0
        lam.mul_(A_bar)                                      # ∂L/∂(ΔA) = ∂L/∂a ⊙ exp(ΔA)
        grad_A = torch.bmm(delta.reshape(b * l, d).T.unsqueeze(1),          # (d, 1, n)
                           lam.view(b * l, d, n).transpose(0, 1)).squeeze(1)   # Σ_bl δ ∂a
        grad_delta = lam.mul_(A).sum(-1) + lam_B * x        # (b, l, d) Σ_n A ∂(ΔA) + x Σ_n λB
        return lam_B * delta, grad_delta, grad_A, grad_B, grad_C, None


def _pad_time(t: torch.Tensor, pad: int) -> torch.Tensor:
    """Zeros appended along the time axis: (b, l, k) -> (b, l + pad, k) (small tensors only)."""
    return torch.cat([t, t.new_zeros(t.shape[0], pad, t.shape[2])], 1) if pad else t


def selective_scan(x, delta, A, B, C, D=None, method: str = "euler", scan=None) -> torch.Tensor:
    """The selective scan (S6, Algorithm 2 of Gu & Dao 2023) with the fast chunked scan.
    Official: state-spaces/mamba, mamba_ssm/ops/selective_scan_interface.py (selective_scan_fn).

    x, delta: (b, l, d); A: (d, n); B, C: (b, l, n); D: (d,) or None -> y: (b, l, d).
    Ā, B̄ now depend on the time step: (b, l, d, n), so there is no convolution kernel; compute
        h_t = Ā_t ⊙ h_{t-1} + B̄_t x_t  (a scan over l),   y_t = h_t C_t + D x_t.
    Default (``scan=None``, Euler B̄): the fused path, one autograd Function around the chunked
    scan that makes two (b, l', d, n) buffers in forward and one more in backward, l' = l rounded
    up to a multiple of the chunk (``_SelectiveScan``; measured by ``trace_scan``).
    ``scan(a, bx) -> h`` instead runs the plain-autograd path with that scan (e.g.
    ``scan_chunked``, ``scan_sequential`` or mambapy's ``pscan``, for comparisons).
    """
    _check_selective(x, delta, A, B, C, D, method, "selective_scan")
    if scan is None and method == "euler":                   # the fused fast path
        l = x.shape[1]
        chunk = default_chunk(l)
        pad = (-l) % chunk                                   # Δ = 0 on the padding: Ā = 1, B̄ = 0
        y = _SelectiveScan.apply(*(_pad_time(t, pad) for t in (x, delta)), A,
                                 *(_pad_time(t, pad) for t in (B, C)), chunk)[:, :l]
        return y if D is None else y + D * x
    scan = scan_chunked if scan is None else scan
    if method == "euler":   # B̄ x = (Δ x) B: one (b, l, d, n) product instead of two
        A_bar = torch.exp(delta.unsqueeze(-1) * A)                       # (b, l, d, n)
        bx = (delta * x).unsqueeze(-1) * B.unsqueeze(2)                  # (b, l, d, n)
    else:
        A_bar, B_bar = discretize_selective(delta, A, B, method)         # (b, l, d, n)
        bx = B_bar * x.unsqueeze(-1)
    h = scan(A_bar, bx)                                                  # (b, l, d, n)
    y = _row_times(C, h.transpose(-1, -2))                               # (b, l, d) Σ_n C h
    return y if D is None else y + D * x


class _Tracer(TorchDispatchMode):
    """Counts ops and the bytes of live tensor storage made under it (peak and now)."""

    @classmethod
    def _should_skip_dynamo(cls) -> bool:       # no torch.compile here: skip importing dynamo (s)
        return False

    def __init__(self):
        super().__init__()
        self.live, self.now, self.peak, self.ops = {}, 0, 0, Counter()

    def _free(self, key):
        self.now -= self.live.pop(key)

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        self.ops[func.overloadpacket.__name__] += 1
        given = {t.untyped_storage().data_ptr() for t in tree_flatten((args, kwargs))[0]
                 if isinstance(t, torch.Tensor)}                     # a view or in-place result
        for t in tree_flatten(out)[0]:                               # of these is no new memory
            if isinstance(t, torch.Tensor):
                storage = t.untyped_storage()
                key = storage.data_ptr()
                if storage.nbytes() and key not in self.live and key not in given:   # new memory
                    self.live[key] = storage.nbytes()
                    self.now += storage.nbytes()
                    self.peak = max(self.peak, self.now)
                    weakref.finalize(storage, self._free, key)
        return out


def trace_scan(forward, backward=None) -> dict:
    """Measure a computation: peak bytes of tensors it allocates and its op counts.

    ``forward()`` returns the output; ``backward(output)`` (optional) runs the backward pass.
    Returns {"forward_peak", "kept" (bytes still alive after forward), "peak" (forward and
    backward), "forward_ops", "backward_ops" (Counter of aten op names)}. Only memory made
    inside counts (inputs do not); ``addcmul`` counts the sequential steps of the chunked scan.
    """
    with _Tracer() as tracer:
        out = forward()
        result = {"forward_peak": tracer.peak, "kept": tracer.now, "forward_ops": tracer.ops}
        tracer.ops = Counter()
        if backward is not None:
            backward(out)
        del out
    result.update(peak=tracer.peak, backward_ops=tracer.ops)
    return result
