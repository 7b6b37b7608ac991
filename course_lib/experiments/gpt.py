"""Notebook 05's experiments: the story task for a GPT, its loss against the entropy floor,
and the loader of the shipped tiny GPT (``data/gpt_tiny.safetensors``, ``tools/train_gpt.py``).

The task: every story becomes "[BOS] words [EOS]", right-padded with [PAD]; the loss is the
next-token loss of ``course_lib.gpt`` on every non-pad target, in nats per token, compared with
the generator's exact entropy rate (``course_lib.data.stories.entropy_rate``).
"""
from __future__ import annotations

from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib.common import right_pad
from course_lib.gpt import GPT, GPTConfig
from course_lib.training import data_dir, load_model

__all__ = ["encode_stories", "random_batch", "token_nll", "evaluate_loss", "load_gpt",
           "TINY_GPT"]

TINY_GPT = "gpt_tiny.safetensors"


def encode_stories(stories, tokenizer) -> torch.Tensor:
    """Stories -> (n, t) int64 ids "[BOS] words [EOS]", right-padded with [PAD] (id 0)."""
    if not stories:
        raise ValueError("encode_stories: expected at least one story, received none")
    rows = [tokenizer.encode(f"[BOS] {s if isinstance(s, str) else s.text} [EOS]")
            for s in stories]
    return right_pad(rows, tokenizer.pad_id)                      # (n, t)


def random_batch(data: torch.Tensor, batch_size: int, generator: torch.Generator | None = None,
                 pad_id: int = 0) -> torch.Tensor:
    """batch_size random rows of padded ids (n, t), trimmed to the longest row: (b, t')."""
    rows = data[torch.randint(0, len(data), (batch_size,), generator=generator)]   # (b, t)
    return rows[:, :int((rows != pad_id).sum(1).max())]


@torch.no_grad()
def token_nll(model: GPT, ids: torch.Tensor, pad_id: int = 0) -> torch.Tensor:
    """-ln p(ids[:, i+1] | ids[:, :i+1]) for every position: (b, t) -> (b, t-1), NaN on pads."""
    logits = model(ids)                                           # (b, t, vocab)
    targets = ids[:, 1:]                                          # (b, t-1)
    nll = F.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")
    return nll.masked_fill(targets == pad_id, float("nan"))


@torch.no_grad()
def evaluate_loss(model: GPT, data: torch.Tensor, pad_id: int = 0, batch_size: int = 250) -> float:
    """Mean next-token loss (nats per token) over all non-pad targets of data (n, t)."""
    total, count = 0.0, 0
    model.eval()
    for i in range(0, len(data), batch_size):
        nll = token_nll(model, data[i:i + batch_size], pad_id)   # (b, t-1)
        keep = ~nll.isnan()
        total, count = total + nll[keep].sum().item(), count + int(keep.sum())
    return total / count


def load_gpt(path: str | Path | None = None) -> tuple[GPT, dict]:
    """The shipped tiny GPT (default ``data/gpt_tiny.safetensors``) in eval mode, with its
    metadata ``{"config": {"model", "task", "train"}, "metrics": {...}}``."""
    return load_model(data_dir() / TINY_GPT if path is None else path,
                      lambda config: GPT(GPTConfig(**config["model"])),
                      rebuild="python tools/train_gpt.py")
