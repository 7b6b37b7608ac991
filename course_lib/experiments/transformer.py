"""Notebook 03's experiment: the toy English -> Kalo translation model, scored and re-measured.

``tools/train_translation.py`` trains ``course_lib.transformer.Transformer`` on
``course_lib.data.translation`` and ships ``data/translation_transformer.safetensors``;
``load_translation_model`` reads it back, ``exact_match`` re-measures its held-out score.
"""
from __future__ import annotations

from pathlib import Path

from course_lib.data.translation import Pair, TranslationData
from course_lib.training import data_dir, load_model
from course_lib.transformer import Transformer, TransformerConfig, greedy_decode

__all__ = ["exact_match", "load_translation_model", "CHECKPOINT", "REBUILD"]

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
