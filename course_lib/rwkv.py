"""RWKV (lecture 09): the WKV time mixing, as a recurrence and as masked attention.

Peng et al., *RWKV: Reinventing RNNs for the Transformer Era* (2023): RWKV-4's WKV operator.
Per channel (all operations elementwise over d), with a time-decay w > 0 and a bonus u:

    wkv_t = ( Σ_{i<t} e^{-(t-1-i) w + k_i} v_i + e^{u + k_t} v_t )
            / ( Σ_{i<t} e^{-(t-1-i) w + k_i}     + e^{u + k_t}     )

**Parallel form** (``wkv_parallel``): a softmax over the past i <= t with per-channel scores
k_i - (t-1-i) w (and u + k_t for i = t), i.e. causal attention whose "query" is a fixed decay
by distance: O(t²) work and memory, every position at once. **Recurrent form**
(``wkv_recurrent``): the two sums are a state (num, den) decayed by e^{-w} per token, O(1)
memory per token; the exponentials are kept finite with a running maximum exponent p, as the
paper's CUDA kernel does (the state is (num, den) · e^{-p}). **As a scan** (``wkv_scan``):
num_t = e^{-w} num_{t-1} + e^{k_t} v_t is the linear recurrence h_t = a_t h_{t-1} + β_t of
notebook 07 with a time-invariant a = e^{-w} (an LTI diagonal SSM; linear attention is a = 1),
computed by ``course_lib.scan.scan_chunked`` without the running max (it overflows for large k).

``RWKVTimeMix`` is the whole time-mixing block: token shift, r, k, v projections,
out = W_o (σ(r) ⊙ wkv). Official implementation: BlinkDL/RWKV-LM, ``RWKV-v4/src/model.py``
(``RWKV_TimeMix``) and ``RWKV-v4/cuda/wkv_cuda.cu`` (the stabilized recurrence).

Names: ``w`` (d,) decay rate (> 0; the model stores ``time_decay`` with w = exp(time_decay)),
``u`` (d,) the bonus of the current token, ``k, v, r`` (b, t, d), ``num, den`` the paper's a, b,
``p`` the running maximum exponent.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import check_shapes
from course_lib.scan import scan_chunked

__all__ = ["wkv_parallel", "wkv_recurrent", "wkv_scan", "wkv_step", "wkv_init_state", "RWKVTimeMix"]


def _check_wkv(w, u, k, v, name: str) -> None:
    """w, u (d,), k, v (b, t, d), same dtype; w > 0."""
    check_shapes([(k, ("b", "t", "d"), "k"), (v, ("b", "t", "d"), "v"),
                  (w, ("d",), "w"), (u, ("d",), "u")])
    if len({w.dtype, u.dtype, k.dtype, v.dtype}) != 1:
        raise ValueError(f"{name}: expected w, u, k, v of one dtype, received "
                         f"{w.dtype}, {u.dtype}, {k.dtype}, {v.dtype}")
    if not (w > 0).all():
        raise ValueError(f"{name}: the decay w must be > 0 in every channel, "
                         f"received min {w.min().item():.3g}")


def wkv_parallel(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """WKV as masked attention: w, u (d,), k, v (b, t, d) -> wkv (b, t, d). O(t²) memory."""
    _check_wkv(w, u, k, v, "wkv_parallel")
    t = k.shape[1]
    pos = torch.arange(t, device=k.device)
    dist = (pos[:, None] - 1 - pos[None, :]).to(k.dtype)                # (t, t): t-1-i
    scores = k.transpose(1, 2)[:, :, None, :] - dist * w[:, None, None]  # (b, d, t, t) k_i-(t-1-i)w
    diag = (u + k).transpose(1, 2)                                      # (b, d, t) u + k_t
    scores = scores.masked_fill(pos[None, :] > pos[:, None], float("-inf"))   # only i <= t
    scores = scores.diagonal_scatter(diag, dim1=-2, dim2=-1)            # i = t gets the bonus
    weights = torch.softmax(scores, dim=-1)                             # (b, d, t, t)
    return (weights @ v.transpose(1, 2)[..., None])[..., 0].transpose(1, 2)   # (b, t, d)


def wkv_step(state, w, u, k_t, v_t):
    """One stabilized step: state (num, den, p) each (b, d), k_t, v_t (b, d) -> (wkv_t, state).

    The true sums are num · e^p and den · e^p; every exponent is taken relative to a maximum.
    """
    num, den, p = state
    q = torch.maximum(p, u + k_t)                                       # read: past vs bonus
    e_past, e_now = torch.exp(p - q), torch.exp(u + k_t - q)
    wkv = (e_past * num + e_now * v_t) / (e_past * den + e_now)         # (b, d)
    q = torch.maximum(p - w, k_t)                                       # write: decay, add k_t
    e_past, e_now = torch.exp(p - w - q), torch.exp(k_t - q)
    return wkv, (e_past * num + e_now * v_t, e_past * den + e_now, q)


def wkv_init_state(batch: int, d: int, like: torch.Tensor):
    """The empty state: num = den = 0, p = -inf (no token yet), each (b, d)."""
    zeros = like.new_zeros(batch, d)
    return zeros, zeros.clone(), torch.full_like(zeros, float("-inf"))


def wkv_recurrent(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """WKV as an RNN with a running max (the paper's CUDA kernel): -> wkv (b, t, d)."""
    _check_wkv(w, u, k, v, "wkv_recurrent")
    b, t, d = k.shape
    state, out = wkv_init_state(b, d, k), []
    for k_t, v_t in zip(k.unbind(1), v.unbind(1)):
        wkv, state = wkv_step(state, w, u, k_t, v_t)
        out.append(wkv)
    return torch.stack(out, 1)                                          # (b, t, d)


def wkv_scan(w: torch.Tensor, u: torch.Tensor, k: torch.Tensor, v: torch.Tensor):
    """WKV through notebook 07's scan (no running max: e^k overflows for large k)."""
    _check_wkv(w, u, k, v, "wkv_scan")
    decay = torch.exp(-w).expand_as(k)                                  # (b, t, d): Ā = e^{-w}
    num = scan_chunked(decay, torch.exp(k) * v)                         # Σ_{i<=t} e^{-(t-i)w+k_i} v_i
    den = scan_chunked(decay, torch.exp(k))
    num, den = F.pad(num, (0, 0, 1, -1)), F.pad(den, (0, 0, 1, -1))     # shift: sums over i < t
    bonus = torch.exp(u + k)                                            # (b, t, d)
    return (num + bonus * v) / (den + bonus)


class RWKVTimeMix(nn.Module):
    """RWKV-4 time mixing: token shift, r, k, v = W (μ x_t + (1-μ) x_{t-1}), out = W_o(σ(r) ⊙
    wkv(w, u, k, v)). Official: BlinkDL/RWKV-LM, RWKV-v4/src/model.py, ``RWKV_TimeMix``."""

    def __init__(self, d_model: int):
        super().__init__()
        if not isinstance(d_model, int) or d_model < 1:
            raise ValueError(f"RWKVTimeMix: d_model must be a positive int, got {d_model!r}")
        self.d_model = d_model
        ratio = torch.arange(d_model) / d_model                         # (d,) 0 .. 1 per channel
        self.time_decay = nn.Parameter(-5 + 8 * ratio ** 0.7)           # w = exp(.): slow..fast
        self.time_first = nn.Parameter(torch.full((d_model,), 0.5))     # u
        self.mix_k, self.mix_v, self.mix_r = (nn.Parameter(ratio.clone()) for _ in range(3))
        self.key, self.value, self.receptance, self.output = (
            nn.Linear(d_model, d_model, bias=False) for _ in range(4))

    def _rkv(self, x: torch.Tensor, x_prev: torch.Tensor):
        """r, k, v from the token-shifted mix of x and the previous token x_prev (same shape)."""
        mix = lambda mu: x * mu + x_prev * (1 - mu)                     # noqa: E731
        return (self.receptance(mix(self.mix_r)), self.key(mix(self.mix_k)),
                self.value(mix(self.mix_v)))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """x (b, t, d_model) -> (b, t, d_model), all positions at once (wkv_parallel)."""
        check_shapes([(x, ("b", "t", self.d_model), "x")])
        x_prev = F.pad(x, (0, 0, 1, -1))                                # (b, t, d) token shift
        r, k, v = self._rkv(x, x_prev)
        wkv = wkv_parallel(torch.exp(self.time_decay), self.time_first, k, v)
        return self.output(torch.sigmoid(r) * wkv)                      # (b, t, d)

    def init_state(self, batch: int):
        """(previous token (b, d), num, den, p (b, d)): all the block remembers."""
        x_prev = self.time_decay.new_zeros(batch, self.d_model)
        return (x_prev, *wkv_init_state(batch, self.d_model, x_prev))

    def step(self, x_t: torch.Tensor, state):
        """Recurrent mode, one token: x_t (b, d_model) -> (out (b, d_model), new state)."""
        check_shapes([(x_t, ("b", self.d_model), "x_t")])
        x_prev, *wkv_state = state
        r, k, v = self._rkv(x_t, x_prev)
        wkv, wkv_state = wkv_step(wkv_state, torch.exp(self.time_decay), self.time_first, k, v)
        return self.output(torch.sigmoid(r) * wkv), (x_t, *wkv_state)
