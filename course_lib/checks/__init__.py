"""Exercise checkers: say "passed", "what differs" or "not implemented yet", and never raise.

A checker calls the student's function on a few cases, compares with the course's reference
implementation and returns a ``CheckResult`` (its repr is the one line the notebook shows).
Topic checkers live in ``course_lib.checks.<topic>`` and are built with ``run_check``.
"""
from __future__ import annotations

import traceback
from dataclasses import dataclass
from collections.abc import Callable, Sequence

import torch

__all__ = ["CheckResult", "run_check", "describe_difference"]

PASSED, FAILED, TODO = "passed", "failed", "not implemented yet"


@dataclass
class CheckResult:
    """Outcome of one exercise check: status is 'passed', 'failed' or 'not implemented yet'."""
    name: str
    status: str
    message: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    def __bool__(self) -> bool:
        return self.passed

    def __repr__(self) -> str:
        mark = {PASSED: "✅", FAILED: "❌", TODO: "⏳"}.get(self.status, "?")
        tail = f": {self.message}" if self.message else ""
        return f"{mark} {self.name} {self.status}{tail}"


def describe_difference(got, want, atol: float = 1e-5, rtol: float = 1e-4) -> str | None:
    """None when ``got`` matches ``want``; otherwise one sentence on what differs."""
    if isinstance(want, (tuple, list)):
        if not isinstance(got, (tuple, list)) or len(got) != len(want):
            return f"expected a sequence of {len(want)} items, received {type(got).__name__}"
        for i, (g, w) in enumerate(zip(got, want)):
            diff = describe_difference(g, w, atol, rtol)
            if diff:
                return f"item {i}: {diff}"
        return None
    if not isinstance(want, torch.Tensor):
        return None if got == want else f"expected {want!r}, received {got!r}"
    if not isinstance(got, torch.Tensor):
        return f"expected a tensor of shape {tuple(want.shape)}, received {type(got).__name__}"
    if got.shape != want.shape:
        return f"shape {tuple(got.shape)}, expected {tuple(want.shape)}"
    if want.dtype == torch.bool or got.dtype == torch.bool:
        if got.dtype != want.dtype:
            return f"dtype {got.dtype}, expected {want.dtype}"
        wrong = (got != want).nonzero()
        if len(wrong):
            idx = tuple(wrong[0].tolist())
            return (f"{len(wrong)} of {want.numel()} entries differ, first at index {idx}: "
                    f"{got[idx].item()} instead of {want[idx].item()}")
        return None
    got, want = got.detach().double(), want.detach().double()
    if torch.isnan(got).any() and not torch.isnan(want).any():
        return f"contains NaN at index {tuple(torch.isnan(got).nonzero()[0].tolist())}"
    err = (got - want).abs()
    bad = err > atol + rtol * want.abs()
    bad |= (got.isinf() | want.isinf()) & (got != want)  # inf - inf is nan, finite vs inf is not close
    err = torch.where(bad & err.isnan(), torch.full_like(err, float("inf")), err)
    if bad.any():
        idx = tuple(int(i) for i in torch.unravel_index(err.flatten().argmax(), err.shape))
        return (f"max abs diff {err.max().item():.3g} at index {idx} "
                f"(got {got[idx].item():.4g}, expected {want[idx].item():.4g})")
    return None


def run_check(name: str, student_fn: Callable, reference_fn: Callable,
              cases: Sequence[tuple], atol: float = 1e-5, rtol: float = 1e-4,
              extra: Callable[[Callable], str | None] | None = None) -> CheckResult:
    """Call student_fn(*case) and reference_fn(*case) for each case; compare the results.

    ``extra(student_fn)`` may run further checks and return a message when something is off.
    Never raises: exceptions in the student's code become a 'failed' result with the reason.
    """
    if not callable(student_fn):
        return CheckResult(name, FAILED, f"expected a function, received {type(student_fn).__name__}")
    for i, case in enumerate(cases):
        try:
            got = student_fn(*case)
        except NotImplementedError:
            return CheckResult(name, TODO, "replace `raise NotImplementedError` with your code")
        except Exception as exc:  # the student's bug, reported, not raised
            where = traceback.extract_tb(exc.__traceback__)[-1]
            return CheckResult(name, FAILED, f"case {i} raised {type(exc).__name__}: {exc} "
                                             f"(line {where.lineno})")
        if got is None:
            return CheckResult(name, TODO, "your function returned None")
        want = reference_fn(*case)
        diff = describe_difference(got, want, atol, rtol)
        if diff:
            return CheckResult(name, FAILED, f"case {i} ({_describe_case(case)}): {diff}")
    if extra is not None:
        try:
            problem = extra(student_fn)
        except Exception as exc:
            problem = f"raised {type(exc).__name__}: {exc}"
        if problem:
            return CheckResult(name, FAILED, problem)
    return CheckResult(name, PASSED, f"{len(cases)} cases match the reference")


def _describe_case(case: tuple) -> str:
    parts = []
    for a in case:
        if isinstance(a, torch.Tensor):
            parts.append(f"tensor{tuple(a.shape)}")
        else:
            parts.append(repr(a))
    return ", ".join(parts)
