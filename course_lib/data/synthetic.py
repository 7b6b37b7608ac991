"""Classic synthetic tasks for sequence models, generated on the fly (seeded, offline).

Every generator returns ``(inputs, targets)`` as int64 tensors with ``targets = IGNORE_INDEX``
(-100) wherever no prediction is scored (PyTorch's ``ignore_index``), so one cross-entropy loss
serves them all.
Token layout is documented per task; vocabularies start at 0 and special tokens come last.
"""
from __future__ import annotations

import torch

from course_lib.common import IGNORE_INDEX

__all__ = ["associative_recall", "selective_copying", "induction_heads", "tokens_back", "long_range_batch",
           "multi_query_recall"]


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
    targets = torch.full_like(inputs, IGNORE_INDEX)
    targets[:, -1] = values[rows, pick]
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
    targets = torch.full_like(inputs, IGNORE_INDEX)
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
    targets = torch.full_like(inputs, IGNORE_INDEX)
    targets[:, -1] = answer
    return inputs, targets


def tokens_back(batch: int, length: int, k: int = 3, n_tokens: int = 16,
                generator: torch.Generator | None = None):
    """Notebook 02's task "output the token k places back": targets[:, i] = inputs[:, i - k].

    inputs (b, t) uniform over 0..n_tokens-1; targets (b, t) with the first k positions
    IGNORE_INDEX (not scored). Content alone cannot solve it: every answer is a matter of
    *position*. Vocabulary: n_tokens.
    """
    _check_positive(batch=batch, length=length, k=k, n_tokens=n_tokens)
    if k >= length:
        raise ValueError(f"k={k} must be smaller than length={length} (nothing would be scored)")
    inputs = torch.randint(0, n_tokens, (batch, length), generator=generator)   # (b, t)
    targets = torch.full_like(inputs, IGNORE_INDEX)                             # (b, t)
    targets[:, k:] = inputs[:, :-k]
    return inputs, targets


def long_range_batch(batch: int, length: int, n_classes: int = 8, n_noise: int = 8,
                     span: int | None = None, density: float = 0.5,
                     generator: torch.Generator | None = None):
    """A sequence-level task whose answer sits only at the start: -> tokens (b, l), labels (b,)
    (notebook 06's long-range experiment; one label per sequence, so no IGNORE_INDEX).

    Noise tokens (ids n_classes .. n_classes+n_noise-1) everywhere; among the first ``span``
    positions (default l/8) each is the signal token (id = the label, < n_classes) with
    probability ``density`` (at least one per sequence). Read at the last position, the evidence
    is >= l - span steps away: a kernel shorter than that sees only noise (chance 1/n_classes).
    """
    span = max(1, length // 8) if span is None else span
    if not 1 <= span <= length:
        raise ValueError(f"long_range_batch: expected 1 <= span <= length={length}, received {span}")
    if not 0 < density <= 1:
        raise ValueError(f"long_range_batch: expected 0 < density <= 1, received {density}")
    g = generator
    tokens = torch.randint(n_classes, n_classes + n_noise, (batch, length), generator=g)
    labels = torch.randint(0, n_classes, (batch,), generator=g)
    signal = torch.rand(batch, span, generator=g) < density                   # (b, span)
    signal[torch.arange(batch), torch.randint(0, span, (batch,), generator=g)] = True
    tokens[:, :span] = torch.where(signal, labels[:, None], tokens[:, :span])
    return tokens, labels


def multi_query_recall(batch: int, n_pairs: int, n_queries: int, n_keys: int = 16,
                       n_values: int = 16, seed: int | None = None,
                       generator: torch.Generator | None = None):
    """Multi-query associative recall (MQAR, Arora et al., 2023, "Zoology"): key-value pairs,
    then ``n_queries`` of those keys again, each followed by its value; every query is scored.

    Tokens: keys 0..n_keys-1, values n_keys..n_keys+n_values-1. inputs (b, 2*(n_pairs +
    n_queries)) = k1 v1 … kp vp q1 a1 … qm am with distinct keys and distinct queries; the
    target at the position of q_j is its value a_j (IGNORE_INDEX elsewhere). Vocabulary size:
    n_keys + n_values.
    """
    _check_positive(batch=batch, n_pairs=n_pairs, n_queries=n_queries, n_keys=n_keys,
                    n_values=n_values)
    if not n_queries <= n_pairs <= n_keys:
        raise ValueError(f"multi_query_recall: expected n_queries ({n_queries}) <= n_pairs "
                         f"({n_pairs}) <= n_keys ({n_keys}): keys and queries are distinct")
    g = _generator(seed, generator)
    keys = torch.rand(batch, n_keys, generator=g).argsort(-1)[:, :n_pairs]          # (b, p)
    values = torch.randint(n_keys, n_keys + n_values, (batch, n_pairs), generator=g)  # (b, p)
    pick = torch.rand(batch, n_pairs, generator=g).argsort(-1)[:, :n_queries]       # (b, m)
    queries, answers = keys.gather(1, pick), values.gather(1, pick)                 # (b, m)
    inputs = torch.cat([torch.stack([keys, values], -1).flatten(1),
                        torch.stack([queries, answers], -1).flatten(1)], 1)          # (b, 2p+2m)
    targets = torch.full_like(inputs, IGNORE_INDEX)
    targets[:, 2 * n_pairs::2] = answers
    return inputs, targets
