"""SSM figures and the kernel explorer (notebook 06).

The explorer shows the kernel K̄_k = C Ā^k B̄ of one SISO SSM and the eigenvalues of Ā (against
the unit circle: |λ̄| > 1 explodes, |λ̄| << 1 forgets) as the step Δ, the state size n and the
initialization of A (HiPPO, diagonal S4D-Lin, random) change.
"""
from __future__ import annotations

import math

import numpy as np
import torch

from course_lib.s4 import INITS, init_ssm
from course_lib.ssm import discretize_zoh, ssm_kernel
from course_lib.viz import Explorer, to_numpy

__all__ = ["kernel_and_eigenvalues", "plot_kernel_magnitudes", "plot_eigenvalues",
           "ssm_kernel_explorer"]


def kernel_and_eigenvalues(kind: str, n: int, delta: float, length: int, seed: int = 0) -> dict:
    """ZOH-discretize ``init_ssm(kind, n)`` with step delta; its kernel and the eigenvalues of Ā.

    Returns float arrays that stay finite even when the kernel explodes: "kernel" (length,) is
    K̄ divided by its largest |K̄_k|, "log10_abs" (length,) is log10 |K̄_k| (floored at -30),
    "eig_re", "eig_im" (n,) the eigenvalues of Ā.
    """
    A, B, C = init_ssm(kind, n, seed)
    A_bar, B_bar = discretize_zoh(A, B, delta)                      # (n, n), (n, 1)
    K = ssm_kernel(A_bar, B_bar, C, length)                         # (length,)
    K = K.real if K.is_complex() else K
    K = torch.nan_to_num(K, nan=0.0, posinf=1e300, neginf=-1e300)
    peak = K.abs().max().clamp_min(1e-300)
    eig = torch.linalg.eigvals(A_bar)                               # (n,) complex
    return {"kernel": K / peak, "log10_abs": torch.log10(K.abs().clamp_min(1e-30)),
            "eig_re": eig.real, "eig_im": eig.imag}


def plot_kernel_magnitudes(kernels: dict, ax=None, title: str | None = None):
    """log10 |K̄_k| against k for several kernels {label: (length,)} on one axis."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    for label, K in kernels.items():
        k = to_numpy(K).astype(np.float64)
        ax.plot(np.log10(np.maximum(np.abs(k), 1e-30)), label=label, lw=1.2)
    ax.set_xlabel("lag k")
    ax.set_ylabel(r"$\log_{10}|\bar K_k|$")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_eigenvalues(eigs: dict, ax=None, title: str | None = None):
    """Eigenvalues of Ā {label: complex (n,)} in the complex plane, with the unit circle."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(3.2, 3.2))
    theta = np.linspace(0, 2 * math.pi, 200)
    ax.plot(np.cos(theta), np.sin(theta), "k--", lw=0.8, label="|λ| = 1")
    for label, e in eigs.items():
        e = e.detach().cpu().numpy() if isinstance(e, torch.Tensor) else np.asarray(e)
        ax.scatter(e.real, e.imag, s=12, label=label)
    ax.set_aspect("equal")
    ax.set_xlabel("Re λ(Ā)")
    ax.set_ylabel("Im λ(Ā)")
    ax.legend(fontsize=7, loc="upper left")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def ssm_kernel_explorer(length: int = 256, seed: int = 0) -> Explorer:
    """Explorer: the SSM kernel and the eigenvalues of Ā as Δ, n and the A initialization change."""
    import ipywidgets as widgets

    if length < 2:
        raise ValueError(f"ssm_kernel_explorer: length must be >= 2, received {length}")
    controls = {
        "init": widgets.Dropdown(options=list(INITS), value="hippo", description="A init"),
        "n": widgets.IntSlider(16, 1, 64, description="state n"),
        "delta": widgets.FloatLogSlider(0.05, base=10, min=-3, max=0, step=0.1,
                                        description="Δ", readout_format=".3f"),
    }

    def compute(init, n, delta):
        return kernel_and_eigenvalues(init, n, delta, length, seed)

    def draw(fig, data, init, n, delta):
        ax1, ax2, ax3 = fig.subplots(1, 3, gridspec_kw={"width_ratios": [3, 3, 2]})
        ax1.plot(data["kernel"], lw=1)
        ax1.set_title(f"K̄ / max|K̄|  ({init}, n={n}, Δ={delta:.3g})", fontsize=9)
        ax1.set_xlabel("lag k")
        ax2.plot(data["log10_abs"], lw=1)
        ax2.set_title("log10 |K̄_k|", fontsize=9)
        ax2.set_xlabel("lag k")
        plot_eigenvalues({"Ā": data["eig_re"] + 1j * data["eig_im"]}, ax=ax3)
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(11, 3.2))
