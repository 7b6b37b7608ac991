"""Notebook 09's experiment: pure Mamba vs pure attention vs a hybrid on multi-query recall.

- ``ARCHS``: the three layer patterns of ``course_lib.hybrid.HybridLM`` that are compared.
- ``width_for``: the d_model that brings a pattern closest to a parameter budget (equal-size
  comparison).
- ``build_model`` / ``load_model``: the models ``tools/train_hybrid.py`` writes to
  ``data/hybrid_*.safetensors``, through the course's one loader ``course_lib.training.load_model``.
- ``recall_accuracy``, ``accuracy_by_pair``: the metrics (all queries; per position of the
  queried pair in the context).
"""
from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from course_lib import IGNORE_INDEX, check_shapes
from course_lib.hybrid import HybridConfig, HybridLM
from course_lib.training import load_model as _load_checkpoint

__all__ = ["ARCHS", "param_count", "width_for", "build_model", "load_model", "recall_accuracy",
           "accuracy_by_pair"]

REBUILD = "python tools/train_hybrid.py"
ARCHS = {"mamba": "mm", "attention": "aa", "hybrid": "ma"}     # name -> HybridConfig.pattern


def param_count(model: nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def width_for(pattern: str, budget: int, vocab_size: int, n_heads: int = 4,
              widths=range(8, 129, 4)) -> int:
    """The d_model (from ``widths``) whose HybridLM(pattern) has a parameter count closest to
    ``budget``; widths the pattern cannot use (heads of odd width) are skipped."""
    best = None
    for d in widths:
        if "a" in pattern and (d % n_heads or (d // n_heads) % 2):
            continue
        n = param_count(HybridLM(HybridConfig(vocab_size, pattern, d_model=d, n_heads=n_heads)))
        if best is None or abs(n - budget) < best[0]:
            best = (abs(n - budget), d)
    if best is None:
        raise ValueError(f"width_for: no width in {widths} fits pattern {pattern!r} with "
                         f"n_heads={n_heads}")
    return best[1]


def build_model(config: dict) -> HybridLM:
    """A HybridLM from a checkpoint's config {"model": {HybridConfig fields}, ...}."""
    return HybridLM(HybridConfig(**config["model"]))


def load_model(path: str | Path) -> tuple[HybridLM, dict]:
    """A model written by tools/train_hybrid.py: (model in eval mode, {"config", "metrics"})."""
    return _load_checkpoint(path, build_model, rebuild=REBUILD)


@torch.no_grad()
def _hits(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 250):
    """Per scored position: (correct? (b, l) bool, scored? (b, l) bool), in mini-batches."""
    check_shapes([(x, ("b", "l"), "x"), (y, ("b", "l"), "y")])
    pred = torch.cat([model(x[i:i + batch]).argmax(-1) for i in range(0, x.shape[0], batch)])
    scored = y != IGNORE_INDEX
    return (pred == y) & scored, scored


def recall_accuracy(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> float:
    """Fraction of the queries (targets != IGNORE_INDEX) answered with the right value."""
    hits, scored = _hits(model, x, y)
    return hits.sum().item() / scored.sum().item()


def accuracy_by_pair(model: nn.Module, x: torch.Tensor, y: torch.Tensor, n_pairs: int):
    """Accuracy per position of the queried pair in the context (pair 0 = the oldest), (n_pairs,)
    for multi_query_recall sequences: how far back a model can look things up."""
    hits, scored = _hits(model, x, y)
    keys = x[:, :2 * n_pairs:2]                                          # (b, p)
    where = (x[:, :, None] == keys[:, None, :]).float().argmax(-1)      # (b, l) pair of each key
    correct, total = torch.zeros(n_pairs), torch.zeros(n_pairs)
    correct.index_add_(0, where[scored], hits[scored].float())
    total.index_add_(0, where[scored], torch.ones(int(scored.sum())))
    return correct / total.clamp(min=1)
