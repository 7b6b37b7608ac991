"""Checkers for the RNN and attention exercises of notebook 00."""
from __future__ import annotations

import torch
from torch import nn

from course_lib.checks import CheckResult, run_check
from course_lib.rnn import DotScore, attend

__all__ = ["check_gru_cell", "check_dot_attention"]


def _gru_cases():
    g = torch.Generator().manual_seed(5)
    cases = []
    for b, d_in, d in ((1, 2, 3), (4, 6, 5)):
        torch.manual_seed(b)
        cases.append((torch.randn(b, d_in, generator=g), torch.randn(b, d, generator=g),
                      nn.GRUCell(d_in, d)))
    return cases


def check_gru_cell(fn) -> CheckResult:
    """fn(x (b, d_in), h (b, d), cell: nn.GRUCell) -> h' computed from cell.weight_ih, weight_hh,
    bias_ih, bias_hh with the GRU equations; compared with cell(x, h) itself."""
    with torch.no_grad():
        return run_check("gru_cell", fn, lambda x, h, cell: cell(x, h).detach(), _gru_cases())


def check_dot_attention(fn) -> CheckResult:
    """fn(q (b, d), keys (b, s, d), values (b, s, dv), mask bool (b, s)) -> (context (b, dv),
    weights (b, s)) with weights = softmax of q·k_j over the keys where mask is True."""
    g = torch.Generator().manual_seed(6)
    cases = []
    for b, s, d, dv in ((1, 3, 2, 2), (3, 5, 4, 6)):
        mask = torch.ones(b, s, dtype=torch.bool)
        mask[-1, s - 1:] = False                       # the last row has one padded key
        cases.append((torch.randn(b, d, generator=g), torch.randn(b, s, d, generator=g),
                      torch.randn(b, s, dv, generator=g), mask))
    return run_check("dot_attention", fn,
                     lambda q, k, v, m: attend(DotScore(), q, k, v, m), cases)
