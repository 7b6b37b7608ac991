"""Notebook 03's experiment: the toy English -> Kalo translation model, scored and re-measured.

``tools/train_translation.py`` trains ``course_lib.transformer.Transformer`` on
``course_lib.data.translation`` and ships ``data/translation_transformer.safetensors``;
``load_translation_model`` reads it back, ``exact_match`` re-measures its held-out score.

"Why several heads": ``head_features`` summarises where each head looks in each sentence
(entropy of its rows, mean offset of the attended key), and ``head_identity_share`` measures
how much of the variation of such a feature is explained by *which head* it is, against the
same share after the head labels were shuffled within each sentence (the baseline where all
heads are interchangeable).
"""
from __future__ import annotations

from pathlib import Path

import torch

from course_lib.data.translation import Pair, TranslationData
from course_lib.training import data_dir, load_model
from course_lib.transformer import Transformer, TransformerConfig, greedy_decode

__all__ = ["exact_match", "load_translation_model", "head_features", "head_identity_share",
           "head_distance",
           "CHECKPOINT", "REBUILD"]

CHECKPOINT = "translation_transformer.safetensors"
REBUILD = "python tools/train_translation.py"


def exact_match(model: Transformer, data: TranslationData, pairs: list[Pair],
                batch_size: int = 500) -> tuple[float, list[str]]:
    """Greedy-decode every source sentence; return (fraction translated exactly, predictions)."""
    predictions = []
    for i in range(0, len(pairs), batch_size):
        src = data.encode_source([p.source for p in pairs[i:i + batch_size]])   # (b, s)
        predictions += data.decode_target(greedy_decode(model, src).tokens)
    hits = sum(p == pair.target for p, pair in zip(predictions, pairs))
    return hits / len(pairs), predictions


def load_translation_model(path: str | Path | None = None) -> tuple[Transformer, dict]:
    """The shipped translation model: ``(model in eval mode, {"config", "metrics"})``."""
    path = data_dir() / CHECKPOINT if path is None else path
    return load_model(path, lambda config: Transformer(TransformerConfig(**config["model"])),
                      rebuild=REBUILD)


def head_features(weights: torch.Tensor, queries: torch.Tensor) -> dict[str, torch.Tensor]:
    """Where each head looks, per sentence: weights (b, nh, t, s), queries (b, t) bool (real rows).

    Returns {"entropy": (b, nh) mean row entropy in bits, "offset": (b, nh) mean of
    E[j] − i, the attended key position j relative to the query position i}.
    """
    p_log_p = torch.special.xlogy(weights, weights) / torch.log(torch.tensor(2.0, dtype=weights.dtype))
    entropy = -p_log_p.sum(-1)                                          # (b, nh, t) bits per row
    j = torch.arange(weights.shape[-1], dtype=weights.dtype)            # (s,)
    i = torch.arange(weights.shape[-2], dtype=weights.dtype)            # (t,)
    offset = (weights * j).sum(-1) - i                                  # (b, nh, t)
    keep = queries[:, None, :].to(weights.dtype)                        # (b, 1, t)
    return {name: (x * keep).sum(-1) / keep.sum(-1)                     # (b, nh)
            for name, x in (("entropy", entropy), ("offset", offset))}


def head_distance(weights: torch.Tensor, queries: torch.Tensor) -> float:
    """Mean total-variation distance ½‖a_h − a_h'‖₁ between the rows of two different heads for
    the same query (0: the same map, 1: disjoint), over head pairs and real query rows."""
    nh = weights.shape[1]
    tv = 0.5 * (weights[:, :, None] - weights[:, None, :]).abs().sum(-1)  # (b, nh, nh, t)
    pairs = ~torch.eye(nh, dtype=torch.bool)                               # (nh, nh) h != h'
    keep = queries[:, None, None, :] & pairs[None, :, :, None]             # (b, nh, nh, t)
    return float(tv[keep].mean())


def _eta_squared(x: torch.Tensor) -> float:
    """Share of the variance of x (b, nh) explained by the head axis (equal group sizes)."""
    grand = x.mean()
    return float(((x.mean(0) - grand) ** 2).mean() / ((x - grand) ** 2).mean())


def head_identity_share(values: torch.Tensor, n_shuffles: int = 200, seed: int = 0) -> dict:
    """How much of a per-(sentence, head) feature (b, nh) is explained by which head it is.

    Returns {"real": η² of the real head labels, "shuffled_mean", "shuffled_max": η² after
    shuffling the head labels independently within each sentence, n_shuffles times}.
    """
    g = torch.Generator().manual_seed(seed)
    shuffled = [_eta_squared(values.gather(1, torch.rand(values.shape, generator=g).argsort(1)))
                for _ in range(n_shuffles)]
    return {"real": _eta_squared(values), "shuffled_mean": sum(shuffled) / n_shuffles,
            "shuffled_max": max(shuffled)}
