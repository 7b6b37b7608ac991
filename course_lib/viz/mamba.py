"""Selection made visible (notebook 07): per-token Δ of a trained Mamba model.

Δ_t is the step size the model picks for token t. Large Δ: Ā = exp(ΔA) ≈ 0, the state is
overwritten by this token (remembered). Small Δ: Ā ≈ 1 and B̄ = ΔB ≈ 0, the token is ignored and
the state carried on. With n = 1, A = -1, B = 1 and ZOH the update is exactly the gated RNN
h_t = (1 - g_t) h_{t-1} + g_t x_t with g_t = 1 - exp(-Δ_t) (Theorem 1 of the Mamba paper);
the explorer shows Δ or this gate.
"""
from __future__ import annotations

import torch

from course_lib.viz import Explorer, to_numpy

__all__ = ["selection_explorer", "plot_selection", "selection_summary"]


def selection_summary(delta: torch.Tensor, quantity: str = "delta", channel: int = -1):
    """delta (l, d) -> per-token values (l,): Δ or the gate 1 - exp(-Δ), one channel or the mean."""
    if delta.dim() != 2:
        raise ValueError(f"selection_summary: expected delta of shape (l, d), received "
                         f"{tuple(delta.shape)}")
    if quantity not in ("delta", "gate"):
        raise ValueError(f"selection_summary: quantity must be 'delta' or 'gate', got {quantity!r}")
    if not -1 <= channel < delta.shape[1]:
        raise ValueError(f"selection_summary: channel must be -1 (mean) or in [0, {delta.shape[1]}), "
                         f"got {channel}")
    values = delta if quantity == "delta" else 1 - torch.exp(-delta)  # (l, d)
    return values.mean(-1) if channel == -1 else values[:, channel]


def plot_selection(tokens, delta, highlight=None, ax=None, title: str | None = None,
                   quantity: str = "delta", channel: int = -1):
    """Bar per token of Δ (mean over channels, or one channel); highlighted tokens in orange."""
    import matplotlib.pyplot as plt

    delta = torch.as_tensor(to_numpy(delta))
    values = to_numpy(selection_summary(delta, quantity, channel))
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
    ax.set_ylabel("Δ" if quantity == "delta" else "gate 1 - exp(-Δ)")
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def selection_explorer(examples: dict[str, dict]) -> Explorer:
    """Explorer over examples[name] = {"tokens": labels (l,), "deltas": (layers, l, d),
    "highlight": optional bools (l,)}: pick the example, layer, channel (-1 = mean) and Δ/gate."""
    import ipywidgets as widgets

    if not examples:
        raise ValueError("selection_explorer: expected at least one example, received none")
    shapes = {(ex["deltas"].shape[0], ex["deltas"].shape[2]) for ex in examples.values()}
    if len(shapes) != 1 or any(ex["deltas"].dim() != 3 for ex in examples.values()):
        raise ValueError(f"selection_explorer: expected deltas (layers, l, d) with equal layers and "
                         f"d in every example, received {shapes}")
    n_layers, d = shapes.pop()
    controls = {
        "example": widgets.Dropdown(options=list(examples), description="example"),
        "layer": widgets.IntSlider(n_layers - 1, 0, n_layers - 1, description="layer"),
        "channel": widgets.IntSlider(-1, -1, d - 1, description="channel (-1 = mean)"),
        "quantity": widgets.Dropdown(options=["delta", "gate"], description="show"),
    }

    def compute(example, layer, channel, quantity):
        delta = examples[example]["deltas"][layer]                      # (l, d)
        gate = 1 - torch.exp(-delta)
        order = delta.std(0).argsort(descending=True)                   # most varying first
        heat = (delta if quantity == "delta" else gate)[:, order[:16]].T   # (16, l)
        return {"values": selection_summary(delta, quantity, channel), "heat": heat}

    def draw(fig, data, example, layer, channel, quantity):
        ex = examples[example]
        ax1, ax2 = fig.add_subplot(2, 1, 1), fig.add_subplot(2, 1, 2)
        plot_selection(ex["tokens"], examples[example]["deltas"][layer], ex.get("highlight"),
                       ax=ax1, quantity=quantity, channel=channel,
                       title=f"{example}: layer {layer}, "
                             f"{'mean over channels' if channel < 0 else f'channel {channel}'}")
        ax2.imshow(data["heat"], aspect="auto", cmap="viridis")
        ax2.set_ylabel("16 channels\n(most varying Δ)", fontsize=8)
        ax2.set_xlabel("token position")
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(9, 5))
