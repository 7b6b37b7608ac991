"""Figures and explorer widgets shared by the notebooks.

Static figures are plain matplotlib (PNG in the notebook, readable on GitHub). Explorers are
ipywidgets controls + a matplotlib figure redrawn into an ``Output`` widget. Every explorer is an
``Explorer``: its ``compute(**values)`` returns the arrays that are drawn, which pytest checks
directly (set ``explorer.controls[name].value`` and read ``explorer.data``), so the widgets are
tested without a browser. Topic-specific explorers live in ``course_lib.viz.<topic>``.
"""
from __future__ import annotations

import base64
import io
import math
from collections.abc import Callable, Sequence

import numpy as np
import torch

__all__ = ["Explorer", "plot_attention", "plot_heads", "to_numpy"]


def to_numpy(x) -> np.ndarray:
    """Tensor or array-like -> float numpy array on the CPU."""
    if isinstance(x, torch.Tensor):
        return x.detach().to("cpu", torch.float32).numpy()
    return np.asarray(x, dtype=np.float32)


def plot_attention(weights, x_labels: Sequence[str] | None = None,
                   y_labels: Sequence[str] | None = None, ax=None, title: str | None = None,
                   vmax: float | None = 1.0, annotate: bool = False, cmap: str = "viridis"):
    """Heatmap of one attention map (t, s): rows are queries, columns are keys."""
    import matplotlib.pyplot as plt

    w = to_numpy(weights)
    if w.ndim != 2:
        raise ValueError(f"plot_attention: expected weights of shape (t, s), received {w.shape}")
    if ax is None:
        _, ax = plt.subplots(figsize=(0.35 * w.shape[1] + 2.5, 0.35 * w.shape[0] + 1.5))
    im = ax.imshow(w, cmap=cmap, vmin=0.0, vmax=vmax, aspect="auto")
    for labels, set_ticks, set_labels, n in ((x_labels, ax.set_xticks, ax.set_xticklabels, w.shape[1]),
                                             (y_labels, ax.set_yticks, ax.set_yticklabels, w.shape[0])):
        if labels is not None:
            if len(labels) != n:
                raise ValueError(f"plot_attention: expected {n} labels, received {len(labels)}")
            set_ticks(range(n))
            set_labels(labels, rotation=90 if set_ticks == ax.set_xticks else 0, fontsize=8)
    if annotate:
        for i in range(w.shape[0]):
            for j in range(w.shape[1]):
                ax.text(j, i, f"{w[i, j]:.2f}", ha="center", va="center", fontsize=6,
                        color="white" if w[i, j] < 0.5 * (vmax or w.max()) else "black")
    ax.set_xlabel("key (attended to)")
    ax.set_ylabel("query")
    if title:
        ax.set_title(title, fontsize=10)
    return im


def plot_heads(weights, x_labels=None, y_labels=None, titles: Sequence[str] | None = None,
               ncols: int = 4, size: float = 2.6, suptitle: str | None = None):
    """Grid of attention maps (h, t, s), one panel per head. Returns the figure."""
    import matplotlib.pyplot as plt

    w = to_numpy(weights)
    if w.ndim != 3:
        raise ValueError(f"plot_heads: expected weights of shape (h, t, s), received {w.shape}")
    h = w.shape[0]
    ncols = min(ncols, h)
    nrows = math.ceil(h / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(size * ncols + 0.5, size * nrows + 0.3),
                             squeeze=False)
    for i, ax in enumerate(axes.flat):
        if i >= h:
            ax.axis("off")
            continue
        plot_attention(w[i], x_labels, y_labels, ax=ax,
                       title=titles[i] if titles else f"head {i}")
        if i % ncols:
            ax.set_ylabel("")
    if suptitle:
        fig.suptitle(suptitle)
    fig.tight_layout()
    return fig


class Explorer:
    """Controls + a figure that redraws whenever a control changes.

    compute(**values) -> dict of arrays (what is drawn; checked for NaN by the tests)
    draw(fig, data, **values) -> None (fills the figure)
    controls: name -> ipywidgets control. ``explorer.widget`` is what the notebook displays.
    """

    def __init__(self, controls: dict, compute: Callable[..., dict], draw: Callable[..., None],
                 figsize=(6, 4)):
        import ipywidgets as widgets

        self.controls, self.compute, self.draw, self.figsize = controls, compute, draw, figsize
        self.output = widgets.Output()
        self.data: dict = {}
        self.draws = 0
        for control in controls.values():
            control.observe(lambda _change: self.redraw(), names="value")
        self.widget = widgets.VBox([widgets.HBox(list(controls.values()),
                                                 layout=widgets.Layout(flex_flow="row wrap")),
                                    self.output])
        self.redraw(render=False)  # data now (for tests); the figure when displayed

    @property
    def values(self) -> dict:
        return {name: control.value for name, control in self.controls.items()}

    def redraw(self, render: bool = True) -> None:
        """Recompute the data and (when render) redraw the figure into the output area."""
        import matplotlib.pyplot as plt

        values = self.values
        self.data = {k: to_numpy(v) for k, v in self.compute(**values).items()}
        self.draws += 1
        if not render:
            return
        fig = plt.figure(figsize=self.figsize)
        self.draw(fig, self.data, **values)
        if _in_kernel():
            # Replace the Output widget's content directly (no capture context): robust in
            # JupyterLab, Colab and under nbclient, which can stall on clear_output(wait=True).
            buffer = io.BytesIO()
            fig.savefig(buffer, format="png")
            self.output.outputs = ({"output_type": "display_data", "metadata": {},
                                    "data": {"image/png": base64.b64encode(buffer.getvalue()).decode(),
                                             "text/plain": f"<explorer figure {self.draws}>"}},)
        plt.close(fig)

    def extreme_values(self) -> list[tuple[str, object]]:
        """(control, value) pairs at each control's extremes: slider min/max, every option."""
        pairs = []
        for name, control in self.controls.items():
            if hasattr(control, "options") and control.options:
                opts = [o[1] if isinstance(o, tuple) else o for o in control.options]
                pairs += [(name, o) for o in opts]
            elif hasattr(control, "base"):  # FloatLogSlider: min/max are exponents
                pairs += [(name, control.base ** control.min), (name, control.base ** control.max)]
            elif hasattr(control, "min") and hasattr(control, "max"):
                pairs += [(name, control.min), (name, control.max)]
            elif isinstance(control.value, bool):
                pairs += [(name, True), (name, False)]
        return pairs

    def _ipython_display_(self):  # shows the widget when the explorer is a cell's last value
        from IPython.display import display

        display(self.widget)
        self.redraw()


def _in_kernel() -> bool:
    try:
        from IPython import get_ipython
    except ImportError:  # pragma: no cover
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None
