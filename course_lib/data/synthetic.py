"""Classic synthetic tasks for sequence models, generated on the fly (seeded, offline).

Every generator returns ``(inputs, targets)`` as int64 tensors with ``targets = -100`` wherever
no prediction is scored (PyTorch's ``ignore_index``), so one cross-entropy loss serves them all.
Token layout is documented per task; vocabularies start at 0 and special tokens come last.
"""
from __future__ import annotations

import torch

__all__ = ["associative_recall", "copying", "selective_copying", "induction_heads"]

IGNORE = -100


def _generator(seed: int | None, generator: torch.Generator | None) -> torch.Generator | None:
    if generator is not None:
        return generator
    return None if seed is None else torch.Generator().manual_seed(seed)


def _check_positive(**kwargs):
    for name, value in kwargs.items():
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")


def associative_recall(batch: int, n_pairs: int, n_keys: int = 16, n_values: int = 16,
                       seed: int | None = None, generator: torch.Generator | None = None):
    """Key-value pairs, then a query key; the model must answer that key's value.

    Tokens: keys 0..n_keys-1, values n_keys..n_keys+n_values-1, then QUERY = n_keys+n_values.
    inputs (b, 2*n_pairs + 2) = k1 v1 k2 v2 … QUERY k*; targets score only the last position
    (the value that followed k* earlier). Keys within one sequence are distinct.
    Vocabulary size: n_keys + n_values + 1.
    """
    _check_positive(batch=batch, n_pairs=n_pairs, n_keys=n_keys, n_values=n_values)
    if n_pairs > n_keys:
        raise ValueError(f"n_pairs ({n_pairs}) must be <= n_keys ({n_keys}): keys are distinct")
    g = _generator(seed, generator)
    keys = torch.rand(batch, n_keys, generator=g).argsort(-1)[:, :n_pairs]        # (b, p)
    values = torch.randint(n_keys, n_keys + n_values, (batch, n_pairs), generator=g)  # (b, p)
    pick = torch.randint(0, n_pairs, (batch,), generator=g)                        # (b,)
    rows = torch.arange(batch)
    query = torch.full((batch, 1), n_keys + n_values)
    inputs = torch.cat([torch.stack([keys, values], -1).flatten(1), query,
                        keys[rows, pick][:, None]], dim=1)                          # (b, 2p+2)
    targets = torch.full_like(inputs, IGNORE)
    targets[:, -1] = values[rows, pick]
    return inputs, targets


def copying(batch: int, length: int, n_tokens: int = 8, lag: int = 0,
            seed: int | None = None, generator: torch.Generator | None = None):
    """Copy a random sequence after a delay: data, ``lag`` blanks, SEP, then blanks to fill.

    Tokens: data 0..n_tokens-1, BLANK = n_tokens, SEP = n_tokens+1. inputs (b, 2*length+lag+1);
    targets score the last ``length`` positions (the data in order). Vocabulary: n_tokens + 2.
    """
    _check_positive(batch=batch, length=length, n_tokens=n_tokens)
    if lag < 0:
        raise ValueError(f"lag must be >= 0, got {lag}")
    g = _generator(seed, generator)
    blank, sep = n_tokens, n_tokens + 1
    data = torch.randint(0, n_tokens, (batch, length), generator=g)
    inputs = torch.cat([data, torch.full((batch, lag), blank), torch.full((batch, 1), sep),
                        torch.full((batch, length), blank)], dim=1)
    targets = torch.full_like(inputs, IGNORE)
    targets[:, -length:] = data
    return inputs, targets


def selective_copying(batch: int, length: int, n_data: int, n_tokens: int = 8,
                      seed: int | None = None, generator: torch.Generator | None = None):
    """The Mamba paper's selective copying: n_data tokens scattered among noise, copy them in order.

    Tokens: data 0..n_tokens-1, NOISE = n_tokens, SEP = n_tokens+1. inputs (b, length + 1 + n_data):
    ``length`` positions of which n_data (random, sorted) hold data and the rest NOISE, then SEP,
    then n_data NOISE placeholders whose targets are the data tokens in order.
    Vocabulary: n_tokens + 2.
    """
    _check_positive(batch=batch, length=length, n_data=n_data, n_tokens=n_tokens)
    if n_data > length:
        raise ValueError(f"n_data ({n_data}) must be <= length ({length})")
    g = _generator(seed, generator)
    noise, sep = n_tokens, n_tokens + 1
    data = torch.randint(0, n_tokens, (batch, n_data), generator=g)               # (b, m)
    where = torch.rand(batch, length, generator=g).argsort(-1)[:, :n_data].sort(-1).values
    body = torch.full((batch, length), noise)
    body.scatter_(1, where, data)
    inputs = torch.cat([body, torch.full((batch, 1), sep), torch.full((batch, n_data), noise)], 1)
    targets = torch.full_like(inputs, IGNORE)
    targets[:, -n_data:] = data
    return inputs, targets


def induction_heads(batch: int, length: int, n_tokens: int = 16,
                    seed: int | None = None, generator: torch.Generator | None = None):
    """Induction heads: a random sequence containing ``TRIGGER x`` once; it ends with TRIGGER
    and the model must recall x (the token that followed the trigger before).

    Tokens: 0..n_tokens-1 ordinary, TRIGGER = n_tokens. inputs (b, length); only the last
    target is scored. Vocabulary: n_tokens + 1.
    """
    _check_positive(batch=batch, length=length, n_tokens=n_tokens)
    if length < 4:
        raise ValueError(f"length must be >= 4, got {length}")
    g = _generator(seed, generator)
    trigger = n_tokens
    inputs = torch.randint(0, n_tokens, (batch, length), generator=g)
    pos = torch.randint(0, length - 3, (batch,), generator=g)                     # trigger spot
    rows = torch.arange(batch)
    answer = inputs[rows, pos + 1]
    inputs[rows, pos] = trigger
    inputs[:, -1] = trigger
    targets = torch.full_like(inputs, IGNORE)
    targets[:, -1] = answer
    return inputs, targets
