"""The one-line checks and small pieces every topic module shares (one definition each).

``check_shapes`` and ``check_token_ids`` keep validation at a public boundary to one line, so
the lecture's equation, not its guard clauses, dominates each function. ``right_pad`` is the
course's only padder and ``IGNORE_INDEX`` its only "no target here" value (PyTorch's
``cross_entropy`` default, so losses skip those positions without being told).
"""
from __future__ import annotations

import torch

__all__ = ["IGNORE_INDEX", "ShapeError", "check_shapes", "check_token_ids", "right_pad"]

IGNORE_INDEX = -100  # a target position with no label: F.cross_entropy(ignore_index=-100) skips it


class ShapeError(ValueError):
    """A ValueError raised by course_lib when a tensor has the wrong shape."""


def check_shapes(items, bound: dict | None = None) -> dict:
    """Check ``(tensor, expected, name)`` triples; entries of ``expected`` are ints, axis names
    (str) or None. Axis names are bound on first sight and must agree afterwards, so
    ``check_shapes([(q, ("b", "t", "d"), "q")])`` returns ``{"b": .., "t": .., "d": ..}``.
    Raises ShapeError (a ValueError) naming the expected and the received shape.
    """
    bound = {} if bound is None else dict(bound)
    for x, expected, name in items:
        if not isinstance(x, torch.Tensor):
            raise ValueError(f"{name}: expected a torch.Tensor, received {type(x).__name__}")
        want = "(" + ", ".join(str(e) for e in expected) + ")"
        if x.dim() != len(expected):
            raise ShapeError(f"{name}: expected shape {want} ({len(expected)} dims), "
                             f"received {tuple(x.shape)} ({x.dim()} dims)")
        for axis, (size, e) in enumerate(zip(x.shape, expected)):
            if e is None:
                continue
            if isinstance(e, int):
                ok, target = size == e, e
            else:
                target = bound.setdefault(e, size)
                ok = size == target
            if not ok:
                resolved = "(" + ", ".join(f"{e}={bound[e]}" if isinstance(e, str) and e in bound
                                           else str(e) for e in expected) + ")"
                raise ShapeError(f"{name}: expected shape {want} = {resolved}, received "
                                 f"{tuple(x.shape)} (axis {axis} is {size}, expected {target})")
    return bound


def check_token_ids(ids, vocab_size: int | None = None, name: str = "ids",
                    axes: tuple = ("b", "t")) -> dict:
    """Token ids: an integer tensor (any integer dtype, not bool) shaped ``axes``, every id in
    ``[0, vocab_size)`` when ``vocab_size`` is given. Returns the bound axis sizes.
    Raises ValueError naming the expected and the received shape, dtype or id range."""
    if not isinstance(ids, torch.Tensor):
        raise ValueError(f"{name}: expected an integer tensor of shape ({', '.join(axes)}), "
                         f"received {type(ids).__name__}")
    if ids.is_floating_point() or ids.is_complex() or ids.dtype == torch.bool:
        raise ValueError(f"{name}: expected integer token ids of shape ({', '.join(axes)}), "
                         f"received {tuple(ids.shape)} {ids.dtype}")
    bound = check_shapes([(ids, axes, name)])
    if vocab_size is not None and ids.numel() and (ids.min() < 0 or ids.max() >= vocab_size):
        raise ValueError(f"{name}: expected token ids in [0, {vocab_size}), received "
                         f"min {int(ids.min())}, max {int(ids.max())}")
    return bound


def right_pad(rows: list[list[int]], value: int, length: int | None = None) -> torch.Tensor:
    """Lists of ids -> one (n, length) int64 tensor, each row right-padded with ``value``
    (``length`` defaults to the longest row; a longer row raises ValueError)."""
    if not rows:
        raise ValueError("right_pad: expected at least one row, received none")
    width = max(len(r) for r in rows) if length is None else length
    if max(len(r) for r in rows) > width:
        raise ValueError(f"right_pad: expected rows of at most {width} ids, received "
                         f"{max(len(r) for r in rows)}")
    return torch.tensor([list(r) + [value] * (width - len(r)) for r in rows], dtype=torch.long)
