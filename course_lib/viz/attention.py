"""Attention-map explorers: from raw queries/keys (01, 03) or from a trained model's weights."""
from __future__ import annotations

import math

import torch

from course_lib.viz import Explorer, plot_attention

__all__ = ["attention_scores_explorer", "attention_weights_explorer", "softmax_with_temperature"]


def softmax_with_temperature(q: torch.Tensor, k: torch.Tensor, scaled: bool = True,
                             temperature: float = 1.0, mask: torch.Tensor | None = None):
    """softmax(q kᵀ / (τ √dh)) for one head: q (t, dh), k (s, dh) -> weights (t, s)."""
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    scores = q @ k.T                                           # (t, s)
    if scaled:
        scores = scores / math.sqrt(q.shape[-1])
    scores = scores / temperature
    if mask is not None:
        scores = scores.masked_fill(~mask, float("-inf"))
    return scores.softmax(-1)


def attention_scores_explorer(examples: dict[str, dict]) -> Explorer:
    """Explorer over examples, heads, √dh scaling and a softmax temperature.

    examples[name] = {"q": (nh, t, dh), "k": (nh, s, dh), "x_labels": s keys' labels,
    "y_labels": t queries' labels, "mask": optional bool (t, s)}.
    """
    import ipywidgets as widgets

    if not examples:
        raise ValueError("attention_scores_explorer: expected at least one example, received none")
    n_heads = min(ex["q"].shape[0] for ex in examples.values())
    controls = {
        "example": widgets.Dropdown(options=list(examples), description="example"),
        "head": widgets.IntSlider(0, 0, n_heads - 1, description="head"),
        "scaled": widgets.Checkbox(True, description="divide by √d_k"),
        "temperature": widgets.FloatLogSlider(1.0, base=10, min=-1, max=1, step=0.1,
                                              description="temperature"),
    }

    def compute(example, head, scaled, temperature):
        ex = examples[example]
        w = softmax_with_temperature(ex["q"][head], ex["k"][head], scaled, temperature,
                                     ex.get("mask"))
        entropy = -(w * w.clamp_min(1e-12).log()).sum(-1)     # (t,) bits of "focus" per query
        return {"weights": w, "entropy": entropy}

    def draw(fig, data, example, head, scaled, temperature):
        ex = examples[example]
        ax = fig.add_subplot(1, 1, 1)
        plot_attention(data["weights"], ex.get("x_labels"), ex.get("y_labels"), ax=ax,
                       title=f"{example}, head {head}, τ={temperature:.2g}, "
                             f"{'scaled' if scaled else 'unscaled'}; "
                             f"mean entropy {data['entropy'].mean():.2f} nats")
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(6.5, 4.5))


def attention_weights_explorer(examples: dict[str, dict]) -> Explorer:
    """Explorer over a trained model's maps: examples[name] = {"weights": (layers, nh, t, s),
    "x_labels", "y_labels"}; controls pick the example, layer and head."""
    import ipywidgets as widgets

    if not examples:
        raise ValueError("attention_weights_explorer: expected at least one example, received none")
    shapes = {tuple(ex["weights"].shape[:2]) for ex in examples.values()}
    if len(shapes) != 1 or any(ex["weights"].dim() != 4 for ex in examples.values()):
        raise ValueError(f"attention_weights_explorer: expected every example's weights as "
                         f"(layers, nh, t, s) with equal layers and heads, received {shapes}")
    n_layers, n_heads = shapes.pop()
    controls = {
        "example": widgets.Dropdown(options=list(examples), description="example"),
        "layer": widgets.IntSlider(0, 0, n_layers - 1, description="layer"),
        "head": widgets.IntSlider(0, 0, n_heads - 1, description="head"),
    }

    def compute(example, layer, head):
        return {"weights": examples[example]["weights"][layer, head]}

    def draw(fig, data, example, layer, head):
        ex = examples[example]
        plot_attention(data["weights"], ex.get("x_labels"), ex.get("y_labels"),
                       ax=fig.add_subplot(1, 1, 1), title=f"{example}: layer {layer}, head {head}")
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(6.5, 4.5))
