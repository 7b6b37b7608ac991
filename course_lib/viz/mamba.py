"""Selection made visible (notebook 07): per-token Δ of a trained Mamba model and its gate.

Δ_t is the step size the model picks for token t. In one state (d, n) of a diagonal SSM with
A = -a (a > 0) the update is h_t = keep_t · h_{t-1} + write_t · (B_t / a) x_t with

    keep_t = exp(-Δ_t a)          (Ā, zero-order hold, as in every model of the course)
    write_t = Δ_t a               (Euler B̄ = ΔB, what Mamba's code and the course's models use)
    write_t = 1 - exp(-Δ_t a)     (ZOH B̄: then keep + write = 1, the convex gate of Theorem 1)

Euler's keep + write = exp(-z) + z ≥ 1 (z = Δa): close to the convex gate for small Δa, above
it for large Δa. The explorer shows Δ, keep, the Euler write or the ZOH gate, for each channel's
slowest state (the smallest a: the longest memory), given the trained A; without A it uses
a = 1 (Theorem 1's n = 1, A = -1).
"""
from __future__ import annotations

import torch

from course_lib.viz import Explorer, to_numpy

__all__ = ["selection_explorer", "plot_selection", "selection_summary", "QUANTITIES"]

QUANTITIES = {"delta": "Δ", "keep": "keep exp(-Δa)", "write": "Euler write Δa",
              "zoh gate": "ZOH gate 1 - exp(-Δa)"}


def selection_summary(delta: torch.Tensor, quantity: str = "delta", channel: int = -1,
                      a_slow: torch.Tensor | None = None):
    """delta (l, d) -> per-token values (l,) of a QUANTITIES entry, one channel or the mean.

    a_slow (d,): each channel's slowest decay rate a = min_n |A[c, n]| (default: ones).
    """
    if delta.dim() != 2:
        raise ValueError(f"selection_summary: expected delta of shape (l, d), received "
                         f"{tuple(delta.shape)}")
    if quantity not in QUANTITIES:
        raise ValueError(f"selection_summary: quantity must be one of {list(QUANTITIES)}, "
                         f"got {quantity!r}")
    if not -1 <= channel < delta.shape[1]:
        raise ValueError(f"selection_summary: channel must be -1 (mean) or in [0, {delta.shape[1]}), "
                         f"got {channel}")
    a = torch.ones(delta.shape[1]) if a_slow is None else torch.as_tensor(a_slow).float()
    if a.shape != (delta.shape[1],):
        raise ValueError(f"selection_summary: expected a_slow of shape (d,) = ({delta.shape[1]},), "
                         f"received {tuple(a.shape)}")
    z = delta * a                                                   # (l, d) Δa
    values = {"delta": delta, "keep": torch.exp(-z), "write": z,
              "zoh gate": -torch.expm1(-z)}[quantity]               # (l, d)
    return values.mean(-1) if channel == -1 else values[:, channel]


def plot_selection(tokens, delta, highlight=None, ax=None, title: str | None = None,
                   quantity: str = "delta", channel: int = -1, a_slow=None):
    """Bar per token of a quantity (mean over channels, or one channel); highlighted in orange."""
    import matplotlib.pyplot as plt

    delta = torch.as_tensor(to_numpy(delta))
    values = to_numpy(selection_summary(delta, quantity, channel, a_slow))
    if len(tokens) != len(values):
        raise ValueError(f"plot_selection: expected {len(values)} token labels, received {len(tokens)}")
    if ax is None:
        _, ax = plt.subplots(figsize=(max(6.0, 0.16 * len(tokens)), 2.6))
    highlight = [False] * len(tokens) if highlight is None else list(highlight)
    colors = ["tab:orange" if h else "tab:blue" for h in highlight]
    ax.bar(range(len(values)), values, color=colors)
    ax.set_xticks(range(len(tokens)))
    ax.set_xticklabels(tokens, fontsize=6, rotation=90)
    ax.set_xlim(-0.5, len(tokens) - 0.5)
    ax.set_ylabel(QUANTITIES[quantity])
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def selection_explorer(examples: dict[str, dict]) -> Explorer:
    """Explorer over examples[name] = {"tokens": labels (l,), "deltas": (layers, l, d),
    "highlight": optional bools (l,), "A": optional (layers, d, n) trained A}: pick the example,
    layer, channel (-1 = mean) and the quantity (Δ, keep, Euler write, ZOH gate)."""
    import ipywidgets as widgets

    if not examples:
        raise ValueError("selection_explorer: expected at least one example, received none")
    shapes = {(ex["deltas"].shape[0], ex["deltas"].shape[2]) for ex in examples.values()}
    if len(shapes) != 1 or any(ex["deltas"].dim() != 3 for ex in examples.values()):
        raise ValueError(f"selection_explorer: expected deltas (layers, l, d) with equal layers and "
                         f"d in every example, received {shapes}")
    n_layers, d = shapes.pop()
    for name, ex in examples.items():
        if "A" in ex and tuple(ex["A"].shape[:2]) != (n_layers, d):
            raise ValueError(f"selection_explorer: example {name!r}: expected A (layers, d, n) = "
                             f"({n_layers}, {d}, n), received {tuple(ex['A'].shape)}")
    controls = {
        "example": widgets.Dropdown(options=list(examples), description="example"),
        "layer": widgets.IntSlider(n_layers - 1, 0, n_layers - 1, description="layer"),
        "channel": widgets.IntSlider(-1, -1, d - 1, description="channel (-1 = mean)"),
        "quantity": widgets.Dropdown(options=list(QUANTITIES), description="show"),
    }

    def slow_rate(example, layer):
        A = examples[example].get("A")
        return None if A is None else A[layer].abs().min(-1).values        # (d,)

    def compute(example, layer, channel, quantity):
        delta = examples[example]["deltas"][layer]                      # (l, d)
        a = slow_rate(example, layer)
        order = delta.std(0).argsort(descending=True)[:16]              # most varying Δ first
        heat = torch.stack([selection_summary(delta, quantity, int(c), a) for c in order])  # (16, l)
        return {"values": selection_summary(delta, quantity, channel, a), "heat": heat}

    def draw(fig, data, example, layer, channel, quantity):
        ex = examples[example]
        ax1, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
        plot_selection(ex["tokens"], ex["deltas"][layer], ex.get("highlight"), ax=ax1,
                       quantity=quantity, channel=channel, a_slow=slow_rate(example, layer),
                       title=f"{example}: layer {layer}, "
                             f"{'mean over channels' if channel < 0 else f'channel {channel}'}")
        ax2.imshow(data["heat"], aspect="auto", cmap="viridis")
        ax2.set_ylabel("16 channels\n(most varying Δ)", fontsize=8)
        ax2.set_xlabel("token position")
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(9, 5))
