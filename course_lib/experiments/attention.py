"""Notebook 01's measurement: the peak memory of naive vs tiled (FlashAttention-style) attention.

``peak_tensor_bytes(fn)`` runs ``fn`` and returns the largest number of bytes held at once by
the tensors it allocated (its own intermediates and its result; not its inputs). It counts
every tensor that PyTorch's dispatcher hands back while ``fn`` runs (a ``TorchDispatchMode``)
and releases a storage when the last of those tensors is freed, so the figure is exact and
the same on every machine, thread count and run (no allocator caches, no sampling). Buffers a
fused kernel allocates *internally* are invisible to it: measure written-out code with it.
"""
from __future__ import annotations

import weakref
from collections.abc import Callable

import torch
from torch.utils._python_dispatch import TorchDispatchMode
from torch.utils._pytree import tree_flatten

__all__ = ["peak_tensor_bytes", "attention_memory_rows"]


class _LiveBytes(TorchDispatchMode):
    """Tracks the bytes of the storages that dispatched ops create, and their peak."""

    def __init__(self):
        super().__init__()
        self.refs, self.sizes, self.now, self.peak = {}, {}, 0, 0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        out = func(*args, **(kwargs or {}))
        inputs = {x.untyped_storage().data_ptr() for x in tree_flatten((args, kwargs))[0]
                  if isinstance(x, torch.Tensor)}
        for x in tree_flatten(out)[0]:
            if not isinstance(x, torch.Tensor) or x.untyped_storage().nbytes() == 0:
                continue
            key = x.untyped_storage().data_ptr()
            if key in inputs and key not in self.refs:   # a view or in-place result of an input
                continue
            if key not in self.refs:
                self.refs[key], self.sizes[key] = 0, x.untyped_storage().nbytes()
                self.now += self.sizes[key]
                self.peak = max(self.peak, self.now)
            self.refs[key] += 1
            weakref.finalize(x, self._release, key)
        return out

    def _release(self, key: int) -> None:
        self.refs[key] -= 1
        if self.refs[key] == 0:
            self.now -= self.sizes.pop(key)
            del self.refs[key]


def peak_tensor_bytes(fn: Callable[[], object]) -> int:
    """Peak bytes held at once by the tensors ``fn()`` allocates (run under ``torch.no_grad``)."""
    counter = _LiveBytes()
    with torch.no_grad(), counter:
        result = fn()
    del result
    return counter.peak


def attention_memory_rows(functions: dict, lengths, d_head: int = 32, seed: int = 0) -> list[dict]:
    """Peak bytes of each ``functions[name](q, k, v)`` at each length t (b = nh = 1, s = t)."""
    g = torch.Generator().manual_seed(seed)
    rows = []
    for t in lengths:
        q, k, v = (torch.randn(1, 1, t, d_head, generator=g) for _ in range(3))
        rows.append({"t": t, **{name: peak_tensor_bytes(lambda f=f, q=q, k=k, v=v: f(q, k, v))
                                for name, f in functions.items()}})
    return rows
