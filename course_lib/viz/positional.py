"""Figures and explorers of notebook 02 (positional encodings).

- ``plot_pe_table``: heatmap of the sinusoidal table, rows = position pos, columns = component.
- ``sinusoidal_explorer``: the table over position, component and d_model, with the chosen
  row (one position's vector), column (one component over positions) and the dot product of the
  chosen position with every other one.
- ``plot_rope_rotation`` and ``rope_explorer``: each pair of a query rotated by m·θ_i, and the
  score matrix q_m · k_n whose diagonals are constant (it depends only on the offset m − n).
"""
from __future__ import annotations

import math

import numpy as np
import torch

from course_lib.positional import rope_angles, rotate_pairs, sinusoidal_table
from course_lib.viz import Explorer, to_numpy

__all__ = ["plot_pe_table", "sinusoidal_explorer", "plot_rope_rotation", "rope_scores",
           "rope_explorer"]


def plot_pe_table(pe, ax=None, title: str | None = None, marks: tuple | None = None):
    """Heatmap of a positional table (max_len, d): rows are positions, columns components."""
    import matplotlib.pyplot as plt

    pe = to_numpy(pe)
    if pe.ndim != 2:
        raise ValueError(f"plot_pe_table: expected a table of shape (max_len, d), received {pe.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    im = ax.imshow(pe, cmap="RdBu_r", vmin=-1, vmax=1, aspect="auto", interpolation="nearest")
    ax.set_xlabel("component (2i: sin, 2i+1: cos)")
    ax.set_ylabel("position pos")
    if marks is not None:  # (pos, component) crosshair
        ax.axhline(marks[0], color="k", lw=0.8)
        ax.axvline(marks[1], color="k", lw=0.8)
    if title:
        ax.set_title(title, fontsize=10)
    return im


def sinusoidal_explorer(max_len: int = 100, max_d_model: int = 256) -> Explorer:
    """Explorer over d_model, a position and a component of the sinusoidal table.

    Data: ``table`` (max_len, d), ``row`` = PE[position] (d,), ``column`` = PE[:, component]
    (max_len,), ``similarity`` = PE · PE[position] (max_len,), ``wavelength`` (1,) of the component.
    """
    import ipywidgets as widgets

    if max_len < 2 or max_d_model < 4:
        raise ValueError(f"sinusoidal_explorer: expected max_len >= 2 and max_d_model >= 4, "
                         f"received {max_len} and {max_d_model}")
    controls = {
        "d_model": widgets.IntSlider(64, 4, max_d_model, step=4, description="d_model"),
        "position": widgets.IntSlider(10, 0, max_len - 1, description="position"),
        "component": widgets.IntSlider(0, 0, 63, description="component"),
    }
    # the component slider follows d_model (registered before the explorer's own observer)
    controls["d_model"].observe(
        lambda change: setattr(controls["component"], "max", change["new"] - 1), names="value")

    def compute(d_model, position, component):
        component = min(component, d_model - 1)
        pe = sinusoidal_table(max_len, d_model)                          # (max_len, d)
        i = component // 2
        return {"table": pe, "row": pe[position], "column": pe[:, component],
                "similarity": pe @ pe[position],                         # (max_len,)
                "wavelength": torch.tensor([2 * math.pi * 10000 ** (2 * i / d_model)])}

    def draw(fig, data, d_model, position, component):
        component = min(component, d_model - 1)
        axes = fig.subplots(2, 2)
        plot_pe_table(data["table"], axes[0, 0], f"PE, d_model={d_model}", (position, component))
        axes[0, 1].plot(data["row"], ".-", ms=3)
        axes[0, 1].set(title=f"PE[pos={position}, :] (one position's vector)", xlabel="component")
        kind = "sin" if component % 2 == 0 else "cos"
        axes[1, 0].plot(data["column"])
        axes[1, 0].set(title=f"PE[:, {component}] = {kind}(pos·ω_{component // 2}), "
                             f"wavelength {data['wavelength'][0]:.3g}", xlabel="position pos")
        axes[1, 1].plot(data["similarity"])
        axes[1, 1].axvline(position, color="k", lw=0.8)
        axes[1, 1].set(title=f"PE[pos] · PE[{position}]", xlabel="position pos")
        for ax in axes.flat:
            ax.title.set_fontsize(9)
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(9, 6))


def rope_scores(q: torch.Tensor, k: torch.Tensor, max_len: int) -> torch.Tensor:
    """S[m, n] = (R_m q) · (R_n k) for one query q (dh,) and key k (dh,) at every position pair."""
    if q.dim() != 1 or q.shape != k.shape:
        raise ValueError(f"rope_scores: expected q and k of the same shape (dh,), received "
                         f"{tuple(q.shape)} and {tuple(k.shape)}")
    angles = rope_angles(torch.arange(max_len), q.shape[0])                 # (t, dh/2)
    q_rot = rotate_pairs(q.expand(max_len, -1), angles)                   # (t, dh): q at every m
    k_rot = rotate_pairs(k.expand(max_len, -1), angles)                   # (t, dh): k at every n
    return q_rot @ k_rot.T                                                 # (t, t)


def plot_rope_rotation(q: torch.Tensor, pairs=(0, 1), n_positions: int = 8, axes=None):
    """Arrows of pair i of R_m q for m = 0..n_positions-1: the pair turns by θ_i per position."""
    import matplotlib.pyplot as plt

    if axes is None:
        _, axes = plt.subplots(1, len(pairs), figsize=(3.2 * len(pairs), 3.2))
    axes = np.atleast_1d(axes)
    angles = rope_angles(torch.arange(n_positions), q.shape[0])            # (m, dh/2)
    rotated = to_numpy(rotate_pairs(q.expand(n_positions, -1), angles))   # (m, dh)
    colors = plt.cm.viridis(np.linspace(0, 1, n_positions))
    for ax, i in zip(axes, pairs):
        radius = float(np.hypot(*rotated[0, 2 * i:2 * i + 2])) * 1.15
        for m in range(n_positions):
            x, y = rotated[m, 2 * i], rotated[m, 2 * i + 1]
            ax.annotate("", (x, y), (0, 0), arrowprops=dict(arrowstyle="->", color=colors[m]))
            ax.text(x * 1.08, y * 1.08, str(m), fontsize=7, ha="center", va="center")
        circle = np.linspace(0, 2 * math.pi, 100)
        ax.plot(radius / 1.15 * np.cos(circle), radius / 1.15 * np.sin(circle), "k:", lw=0.5)
        ax.set(xlim=(-radius, radius), ylim=(-radius, radius), aspect="equal",
               title=f"pair {i}: θ_{i} = {float(angles[1, i]):.3g} rad/position")
        ax.title.set_fontsize(9)
    return axes


def rope_explorer(d_head: int = 16, max_len: int = 32, seed: int = 0) -> Explorer:
    """Explorer over the query position m, key position n and the pair i of a random q, k.

    Data: ``q_pair`` (2,) = pair i of R_m q, ``k_pair`` (2,) = pair i of R_n k,
    ``scores`` (max_len, max_len) = (R_m q)·(R_n k), ``by_offset`` (2·max_len−1,) one score
    per offset m − n (constant along each diagonal, which the tests assert).
    """
    import ipywidgets as widgets

    g = torch.Generator().manual_seed(seed)
    q, k = torch.randn(d_head, generator=g), torch.randn(d_head, generator=g)   # (dh,)
    scores = rope_scores(q, k, max_len)                                          # (t, t)
    angles = rope_angles(torch.arange(max_len), d_head)                          # (t, dh/2)
    controls = {
        "m": widgets.IntSlider(5, 0, max_len - 1, description="query pos m"),
        "n": widgets.IntSlider(2, 0, max_len - 1, description="key pos n"),
        "pair": widgets.IntSlider(0, 0, d_head // 2 - 1, description="pair i"),
    }

    def compute(m, n, pair):
        q_m = rotate_pairs(q[None], angles[m:m + 1])[0]                  # (dh,)
        k_n = rotate_pairs(k[None], angles[n:n + 1])[0]
        offsets = torch.arange(-(max_len - 1), max_len)                  # m − n
        rows = torch.where(offsets >= 0, offsets, 0)
        cols = torch.where(offsets >= 0, 0, -offsets)
        return {"q_pair": q_m[2 * pair:2 * pair + 2], "k_pair": k_n[2 * pair:2 * pair + 2],
                "scores": scores, "by_offset": scores[rows, cols], "score": (q_m @ k_n)[None]}

    def draw(fig, data, m, n, pair):
        ax1, ax2 = fig.subplots(1, 2)
        for vec, name, color in ((data["q_pair"], f"q at m={m}", "C0"),
                                 (data["k_pair"], f"k at n={n}", "C1")):
            ax1.annotate("", tuple(vec), (0, 0), arrowprops=dict(arrowstyle="->", color=color, lw=2))
            ax1.plot([], [], color=color, label=name)
        r = 1.2 * max(np.hypot(*data["q_pair"]), np.hypot(*data["k_pair"]), 1e-3)
        ax1.set(xlim=(-r, r), ylim=(-r, r), aspect="equal",
                title=f"pair {pair}: angle between = (m−n)·θ_{pair}")
        ax1.legend(fontsize=7, loc="lower right")
        ax2.imshow(data["scores"], cmap="RdBu_r", aspect="auto")
        ax2.plot([n], [m], "k+", ms=12)
        ax2.set(xlabel="key position n", ylabel="query position m",
                title=f"q_m·k_n = {data['score'][0]:.3f}; m−n = {m - n}")
        for ax in (ax1, ax2):
            ax.title.set_fontsize(9)
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(9, 4))
