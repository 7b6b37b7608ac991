"""Training services shared by every notebook: a small loop, evaluation, checkpoints.

The loop is deliberately plain (AdamW, optional linear warm-up then cosine decay, gradient
clipping) so students can read it in one go. Progress bars use ``tqdm.auto`` (a widget in
Jupyter); they are switched off when ``COURSE_PROGRESS=0`` (set by the test suite, so bars never
end up in the outputs nbval compares). Checkpoints are safetensors files, never pickles.

Every checkpoint the course ships has one metadata schema (two JSON strings):
``config`` = ``{"model": {the model's constructor config}, "task": {...}, "train": {"command":
"python tools/train_x.py ...", "seed": ..., the recipe}}`` (``"arch"`` too where one file format
holds several model classes) and ``metrics`` = ``{the measured figures, "train_cpu_s",
"train_wall_s"}``. ``load_model`` is the one loader: it reads that config, builds the model with
the caller's ``build(config)`` and loads the weights strictly.
"""
from __future__ import annotations

import json
import math
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from collections.abc import Callable

import torch
from torch import nn

from course_lib.common import IGNORE_INDEX

__all__ = ["train", "TrainResult", "accuracy", "best_on_validation", "lr_schedule",
           "save_checkpoint", "load_checkpoint", "checkpoint_meta", "load_model",
           "progress_enabled", "data_dir"]


def progress_enabled() -> bool:
    """Progress bars on unless the environment says ``COURSE_PROGRESS=0``."""
    return os.environ.get("COURSE_PROGRESS", "1") != "0"


def data_dir() -> Path:
    """The repository's ``data/`` folder (shipped checkpoints, cached optional downloads)."""
    return Path(__file__).resolve().parent.parent / "data"


def lr_schedule(step: int, steps: int, warmup: int = 0, min_ratio: float = 0.1) -> float:
    """Learning-rate multiplier: linear warm-up for ``warmup`` steps, then cosine to min_ratio."""
    if warmup and step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, steps - warmup)
    return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * min(1.0, progress)))


@dataclass
class TrainResult:
    """What ``train`` returns: per-step losses, optional eval history, and wall time."""
    losses: list[float] = field(default_factory=list)
    evals: list[tuple[int, float]] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def final_loss(self) -> float:
        tail = self.losses[-max(1, len(self.losses) // 20):]
        return sum(tail) / len(tail)


def train(model: nn.Module, get_batch: Callable[[int], tuple], loss_fn: Callable[..., torch.Tensor],
          steps: int, lr: float = 3e-3, warmup: int = 0, weight_decay: float = 0.0,
          clip: float | None = 1.0, eval_fn: Callable[[], float] | None = None,
          eval_every: int = 0, progress: bool | None = None, desc: str = "train",
          optimizer: torch.optim.Optimizer | None = None) -> TrainResult:
    """Train ``model`` for ``steps`` steps; returns a TrainResult.

    get_batch(step) -> tuple of tensors; loss_fn(model, *batch) -> scalar loss.
    eval_fn() -> float is called every ``eval_every`` steps (and at the end) in eval mode.
    """
    if steps < 1:
        raise ValueError(f"steps must be >= 1, got {steps}")
    if lr <= 0:
        raise ValueError(f"lr must be > 0, got {lr}")
    from tqdm.auto import tqdm

    opt = optimizer or torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    base_lrs = [g["lr"] for g in opt.param_groups]
    result, start = TrainResult(), time.perf_counter()
    show = progress_enabled() if progress is None else progress
    bar = tqdm(range(steps), desc=desc, disable=not show, leave=False)
    model.train()
    for step in bar:
        for g, base in zip(opt.param_groups, base_lrs):
            g["lr"] = base * lr_schedule(step, steps, warmup)
        loss = loss_fn(model, *get_batch(step))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        if clip:
            nn.utils.clip_grad_norm_(model.parameters(), clip)
        opt.step()
        result.losses.append(loss.item())
        if step % 10 == 0:
            bar.set_postfix(loss=f"{result.losses[-1]:.3f}")
        if eval_fn is not None and eval_every and (step + 1) % eval_every == 0 and step + 1 < steps:
            result.evals.append((step + 1, _run_eval(model, eval_fn)))
    if eval_fn is not None:
        result.evals.append((steps, _run_eval(model, eval_fn)))
    model.eval()
    result.seconds = time.perf_counter() - start
    return result


def best_on_validation(scores: dict, lower_is_better: bool = True):
    """The setting (a key of ``scores``: {setting: [validation score of each seed]}) with the
    best mean score; a tie goes to the smaller setting. Every setting needs the same number of
    seeds (a mean over fewer seeds is a different, noisier estimate)."""
    if not scores:
        raise ValueError("best_on_validation: expected at least one setting, received none")
    counts = {setting: len(values) for setting, values in scores.items()}
    if len(set(counts.values())) != 1 or 0 in counts.values():
        raise ValueError(f"best_on_validation: every setting needs the same (non-zero) number of "
                         f"scores, received {counts}")
    sign = 1 if lower_is_better else -1
    return min(scores, key=lambda setting: (sign * sum(scores[setting]) / counts[setting], setting))


def _run_eval(model: nn.Module, eval_fn: Callable[[], float]) -> float:
    model.eval()
    with torch.no_grad():
        value = float(eval_fn())
    model.train()
    return value


def accuracy(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> float:
    """Fraction of positions where argmax(logits) == targets, skipping ``ignore_index``.

    logits: (..., v), targets: (...) with the same leading shape.
    """
    if logits.shape[:-1] != targets.shape:
        raise ValueError(f"accuracy: expected logits (..., v) and targets (...) with the same "
                         f"leading shape, received {tuple(logits.shape)} and {tuple(targets.shape)}")
    keep = targets != ignore_index
    if not keep.any():
        raise ValueError("accuracy: every target equals ignore_index")
    return (logits.argmax(-1)[keep] == targets[keep]).float().mean().item()


def save_checkpoint(model: nn.Module, path: str | Path, config: dict | None = None,
                    metrics: dict | None = None) -> Path:
    """Write the model's weights as safetensors, with config and metrics as JSON metadata."""
    from safetensors.torch import save_file

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors, seen = {}, {}
    for key, value in model.state_dict().items():
        ptr = (value.data_ptr(), value.shape)
        if ptr in seen:  # a tied weight (e.g. embedding == output layer) is stored once
            continue
        seen[ptr] = key
        tensors[key] = value.detach().to("cpu").contiguous()
    meta = {"config": json.dumps(config or {}, sort_keys=True),
            "metrics": json.dumps(metrics or {}, sort_keys=True)}
    save_file(tensors, str(path), metadata=meta)
    return path


def load_checkpoint(model: nn.Module, path: str | Path, device=None) -> dict:
    """Load safetensors weights into ``model`` (strict); return {"config":..., "metrics":...}.

    Raises ValueError naming missing/unexpected keys or mismatched shapes.
    """
    from safetensors import safe_open
    from safetensors.torch import load_file

    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint not found: {path}")
    tensors = load_file(str(path), device=str(device or "cpu"))
    own = model.state_dict()
    for key, value in own.items():  # tied weights: fill from the tensor they share memory with
        twin = next((k for k, v in own.items() if k in tensors and k != key
                     and v.data_ptr() == value.data_ptr() and v.shape == value.shape), None)
        if key not in tensors and twin is not None:
            tensors[key] = tensors[twin]
    missing, unexpected = sorted(set(own) - set(tensors)), sorted(set(tensors) - set(own))
    if missing or unexpected:
        raise ValueError(f"checkpoint {path.name} does not fit the model: missing {missing[:5]}, "
                         f"unexpected {unexpected[:5]}")
    for key, value in sorted(tensors.items()):
        if value.shape != own[key].shape:
            raise ValueError(f"checkpoint {path.name}: {key} expected shape {tuple(own[key].shape)}, "
                             f"received {tuple(value.shape)}")
    model.load_state_dict(tensors)
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: json.loads(meta.get(k, "{}")) for k in ("config", "metrics")}


def checkpoint_meta(path: str | Path) -> dict:
    """A checkpoint's metadata without its weights: ``{"config": {...}, "metrics": {...}}``."""
    from safetensors import safe_open

    path = Path(path)
    if not path.exists():
        raise ValueError(f"checkpoint not found: {path}")
    with safe_open(str(path), framework="pt") as f:
        meta = f.metadata() or {}
    return {k: json.loads(meta.get(k, "{}")) for k in ("config", "metrics")}


def load_model(path: str | Path, build: Callable[[dict], nn.Module], rebuild: str = "",
               device=None) -> tuple[nn.Module, dict]:
    """The course's one checkpoint loader: ``build(config)`` makes the model from the stored
    config, the weights are loaded strictly, and ``(model in eval mode, {"config", "metrics"})``
    comes back. ``rebuild`` names the command that makes a missing file (for the message)."""
    path = Path(path)
    if not path.exists():
        hint = f" (rebuild it: {rebuild})" if rebuild else ""
        raise ValueError(f"checkpoint not found: {path}{hint}")
    model = build(checkpoint_meta(path)["config"])
    meta = load_checkpoint(model, path, device=device)
    return model.eval(), meta
