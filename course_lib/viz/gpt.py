"""Figures and the sampling explorer of notebook 05 (GPT)."""
from __future__ import annotations

import torch

from course_lib.gpt import GPT, generate, next_token_probs
from course_lib.viz import Explorer, to_numpy

__all__ = ["plot_loss_vs_floor", "plot_next_token", "sampling_explorer"]


def plot_loss_vs_floor(train_steps, train_losses, val_history, floor: float, ax=None,
                       title: str | None = None):
    """Train loss (line), validation loss (dots) and the entropy floor (dashed), log-scale y."""
    import matplotlib.pyplot as plt

    if ax is None:
        _, ax = plt.subplots(figsize=(6, 3.5))
    if len(train_steps) != len(train_losses):
        raise ValueError(f"expected as many steps as losses, received {len(train_steps)} and "
                         f"{len(train_losses)}")
    ax.plot(train_steps, train_losses, lw=1, label="train loss")
    if val_history:
        steps, vals = zip(*val_history)
        ax.plot(steps, vals, "o-", ms=3, label="validation loss")
    ax.axhline(floor, ls="--", color="k", lw=1, label=f"entropy floor {floor:.3f}")
    ax.axhline(1.1 * floor, ls=":", color="gray", lw=1, label="1.10 × floor")
    ax.set_yscale("log")
    ax.set_yticks([t for t in (0.5, 0.75, 1, 1.5, 2, 3, 4, 6) if t >= 0.8 * floor])
    ax.set_yticks([], minor=True)
    ax.set_yticklabels([f"{t:g}" for t in ax.get_yticks()])
    ax.set_xlabel("step")
    ax.set_ylabel("nats / token")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title, fontsize=10)
    return ax


def plot_next_token(probs, tokens: list[str], top: int = 12, ax=None, raw=None,
                    title: str | None = None):
    """Bar chart of the ``top`` most likely next tokens; ``raw`` (unfiltered) drawn behind."""
    import matplotlib.pyplot as plt

    p = to_numpy(probs)
    if p.ndim != 1 or len(tokens) != len(p):
        raise ValueError(f"expected probs of shape (vocab,) with vocab={len(tokens)} tokens, received "
                         f"{p.shape}")
    base = p if raw is None else to_numpy(raw)
    order = sorted(range(len(p)), key=lambda i: (-max(p[i], base[i]), i))[:top]
    if ax is None:
        _, ax = plt.subplots(figsize=(5, 3))
    y = list(range(len(order)))[::-1]
    if raw is not None:
        ax.barh(y, [base[i] for i in order], color="lightgray", label="before filtering")
    ax.barh(y, [p[i] for i in order], height=0.5, color="tab:blue", label="sampled from")
    ax.set_yticks(y)
    ax.set_yticklabels([tokens[i] for i in order], fontsize=8)
    ax.set_xlim(0, 1)
    ax.set_xlabel("probability of the next token")
    if raw is not None:
        ax.legend(fontsize=7, loc="lower right")
    if title:
        ax.set_title(title, fontsize=9)
    return ax


def sampling_explorer(model: GPT, tokenizer, prompts: list[str], n_new: int = 16,
                      seed: int = 0) -> Explorer:
    """Prompt, temperature, top-k, top-p: the next-token distribution and a sampled continuation.

    top_k = 0 and top_p = 1.0 mean "no filter"; greedy ignores the other three.
    """
    import ipywidgets as widgets

    if not prompts:
        raise ValueError("sampling_explorer: expected at least one prompt, received none")
    ids = {p: torch.tensor([tokenizer.encode("[BOS] " + p)]) for p in prompts}  # checks words
    controls = {
        "prompt": widgets.Dropdown(options=list(prompts), description="prompt"),
        "temperature": widgets.FloatLogSlider(1.0, base=10, min=-1, max=1, step=0.05,
                                              description="temperature"),
        "top_k": widgets.IntSlider(0, 0, 50, description="top-k (0=off)"),
        "top_p": widgets.FloatSlider(1.0, min=0.05, max=1.0, step=0.05, description="top-p"),
        "greedy": widgets.Checkbox(False, description="greedy"),
    }

    def compute(prompt, temperature, top_k, top_p, greedy):
        with torch.no_grad():
            logits = model(ids[prompt])[0, -1]                            # (vocab,)
        k, p = (top_k or None), (top_p if top_p < 1 else None)
        probs = (torch.nn.functional.one_hot(logits.argmax(), logits.shape[-1]).float()
                 if greedy else next_token_probs(logits, temperature, k, p))
        g = torch.Generator().manual_seed(seed)
        out = generate(model, ids[prompt], n_new, temperature, k, p, greedy, generator=g,
                       stop_id=tokenizer.eos_id)[0, ids[prompt].shape[1]:]
        return {"probs": probs, "raw": logits.softmax(-1), "sample": out}

    def draw(fig, data, prompt, temperature, top_k, top_p, greedy):
        text = tokenizer.decode([int(i) for i in data["sample"]])
        ax = fig.add_subplot(1, 1, 1)
        plot_next_token(data["probs"], tokenizer.id_to_token, raw=data["raw"], ax=ax,
                        title=f"{prompt} ▸ …\nsample: {_wrap(text)}")
        fig.tight_layout()

    return Explorer(controls, compute, draw, figsize=(6.5, 4.2))


def _wrap(text: str, width: int = 70) -> str:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) > width:
            lines.append(line)
            line = ""
        line = f"{line} {word}".strip()
    return "\n".join(lines + [line])
