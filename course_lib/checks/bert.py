"""Checkers for the exercises of notebook 04 (BERT)."""
from __future__ import annotations

import torch

from course_lib.bert import corrupt, pair_input
from course_lib.checks import CheckResult, run_check

__all__ = ["check_corrupt", "check_pair_input", "check_bert_embedding_sum", "check_cls_head"]

CLS, SEP, MASK = 2, 3, 4


def check_corrupt(fn) -> CheckResult:
    """fn(ids, selected, r, random_ids, mask_id) -> (inputs, labels): the 80/10/10 rule."""
    g = torch.Generator().manual_seed(4)
    cases = []
    for shape in ((1, 12), (3, 9), (2, 40)):
        ids = torch.randint(7, 30, shape, generator=g)
        selected = torch.rand(shape, generator=g) < 0.5
        r = torch.rand(shape, generator=g)
        random_ids = torch.randint(7, 30, shape, generator=g)
        cases.append((ids, selected, r, random_ids, MASK))
    result = run_check("corrupt (80/10/10)", fn, lambda *c: corrupt(*c), cases)
    if result.status == "failed" and result.message.startswith("case "):
        result.message += _corrupt_hint(fn, cases[int(result.message.split()[1])])
    return result


def _corrupt_hint(fn, case) -> str:
    """Name the rule broken at the first wrong position: which branch r falls in."""
    ids, selected, r, random_ids, mask_id = case
    try:
        got = fn(*case)
        want = corrupt(*case)
        wrong = [(got[i] != want[i]).nonzero() for i in (0, 1)]
    except Exception:  # the student's output has another shape: run_check said so already
        return ""
    for part, idx in zip(("inputs", "labels"), wrong):
        if len(idx):
            pos = tuple(idx[0].tolist())
            if part == "labels":
                rule = "labels = original id where selected, IGNORE_INDEX (-100) elsewhere"
            elif not selected[pos]:
                rule = "positions not selected stay unchanged"
            elif r[pos] < 0.8:
                rule = f"r = {r[pos]:.2f} < 0.8 -> [MASK]"
            elif r[pos] < 0.9:
                rule = f"0.8 <= r = {r[pos]:.2f} < 0.9 -> the random word"
            else:
                rule = f"r = {r[pos]:.2f} >= 0.9 -> keep the original word"
            return f"; at {part}{list(pos)} the rule is: {rule}"
    return ""


def check_pair_input(fn) -> CheckResult:
    """fn(a, b, cls_id, sep_id) -> (ids, segments) lists for [CLS] a [SEP] b [SEP]."""
    cases = [([10, 11, 12], [20, 21], CLS, SEP), ([7], [8], CLS, SEP),
             ([30, 31], [40, 41, 42, 43], 5, 6)]

    def reference(a, b, cls_id, sep_id):
        ids, segments = pair_input(a, b, cls_id, sep_id)
        return list(ids), list(segments)

    def as_lists(a, b, cls_id, sep_id):
        out = fn(a, b, cls_id, sep_id)
        if out is None:
            return None
        ids, segments = out
        return [int(i) for i in ids], [int(s) for s in segments]

    return run_check("pair_input", as_lists, reference, cases)


def _embedding_sum(token_table, segment_table, position_table, ids, segments):
    t = ids.shape[1]
    return token_table[ids] + segment_table[segments] + position_table[:t]   # (b, t, d)


def check_bert_embedding_sum(fn) -> CheckResult:
    """fn(token_table (v, d), segment_table (2, d), position_table (max_len, d), ids (b, t),
    segments (b, t)) -> (b, t, d): E_token[ids] + E_segment[segments] + P[:t] (before LayerNorm)."""
    g = torch.Generator().manual_seed(5)
    cases = []
    for b, t, d in ((1, 5, 4), (2, 7, 8), (3, 3, 6)):
        ids = torch.randint(0, 20, (b, t), generator=g)
        segments = (torch.arange(t) >= t // 2).long().expand(b, t).clone()
        cases.append((torch.randn(20, d, generator=g), torch.randn(2, d, generator=g),
                      torch.randn(16, d, generator=g), ids, segments))
    return run_check("bert_embedding_sum", fn, _embedding_sum, cases)


def _cls_head(hidden, w_pool, b_pool, w_out, b_out):
    pooled = torch.tanh(hidden[:, 0] @ w_pool.T + b_pool)                   # (b, d)
    return pooled @ w_out.T + b_out                                         # (b, k)


def check_cls_head(fn) -> CheckResult:
    """fn(hidden (b, t, d), w_pool (d, d), b_pool (d,), w_out (k, d), b_out (k,)) -> logits (b, k)
    = W_out tanh(W_pool h_[CLS] + b_pool) + b_out, with h_[CLS] = hidden[:, 0]."""
    g = torch.Generator().manual_seed(6)
    cases = [(torch.randn(b, t, d, generator=g), torch.randn(d, d, generator=g),
              torch.randn(d, generator=g), torch.randn(k, d, generator=g), torch.randn(k, generator=g))
             for b, t, d, k in ((2, 5, 4, 3), (1, 9, 8, 2), (4, 3, 6, 5))]
    return run_check("cls_head", fn, _cls_head, cases)
