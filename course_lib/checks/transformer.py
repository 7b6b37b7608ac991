"""Checkers for the exercises of notebook 03 (the encoder-decoder Transformer)."""
from __future__ import annotations

import torch

from course_lib.attention import causal_mask, padding_mask
from course_lib.checks import CheckResult, run_check
from course_lib.transformer import EncoderLayer, Transformer, TransformerConfig

__all__ = ["check_decoder_mask", "check_encoder_layer", "check_greedy_step"]


def reference_decoder_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    """(b, 1, t, t): query i may attend to key j iff j <= i (causal) and j < lengths[b] (not padding)."""
    return causal_mask(t) & padding_mask(lengths, t)                 # (t, t) & (b, 1, 1, t)


def check_decoder_mask(fn) -> CheckResult:
    """fn(lengths (b,), t) -> bool (b, 1, t, t): causal AND key-padding mask of the decoder."""
    cases = [(torch.tensor([3]), 3), (torch.tensor([4, 2]), 4), (torch.tensor([1, 5, 3]), 6)]
    return run_check("decoder_mask", fn, reference_decoder_mask, cases)


def reference_encoder_layer(x: torch.Tensor, layer: EncoderLayer, mask=None) -> torch.Tensor:
    """Post-norm encoder layer from its parts: LN(x + MHA(x)), then LN(x + FFN(x))."""
    x = layer.norm1(x + layer.self_attn(x, mask=mask)[0])
    return layer.norm2(x + layer.ffn(x))


def _encoder_cases():
    g = torch.Generator().manual_seed(3)
    cases = []
    for d, nh, t, lengths in ((16, 2, 5, None), (32, 4, 7, [7, 3])):
        torch.manual_seed(len(cases))
        layer = EncoderLayer(d, nh, 2 * d).eval()
        x = torch.randn(len(lengths or [1]), t, d, generator=g)
        mask = None if lengths is None else padding_mask(torch.tensor(lengths), t)
        cases.append((x, layer, mask))
    return cases


def check_encoder_layer(fn) -> CheckResult:
    """fn(x (b, t, d), layer: EncoderLayer, mask) -> (b, t, d), using layer.self_attn, .ffn,
    .norm1, .norm2."""
    return _run_indexed("encoder_layer", fn, reference_encoder_layer, _encoder_cases())


def reference_greedy_step(model: Transformer, src: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    """(b,) the most probable next target word: argmax of the logits at the last position."""
    logits, _ = model(src, prefix)                                     # (b, t, vocab)
    return logits[:, -1].argmax(-1)


def check_greedy_step(fn) -> CheckResult:
    """fn(model, src (b, s), prefix (b, t)) -> (b,) ids of the next word under greedy decoding."""
    torch.manual_seed(0)
    model = Transformer(TransformerConfig(20, 20, d_model=32, n_heads=4, d_ff=64, max_len=12)).eval()
    g = torch.Generator().manual_seed(4)
    cases = []
    for b, s, t in ((1, 4, 1), (3, 6, 4), (2, 5, 7)):
        src = torch.randint(7, 20, (b, s), generator=g)
        prefix = torch.cat([torch.full((b, 1), 5), torch.randint(7, 20, (b, t - 1), generator=g)], 1)
        cases.append((model, src, prefix))
    return _run_indexed("greedy_step", fn, reference_greedy_step, cases)


def _run_indexed(name: str, fn, reference, cases: list[tuple]) -> CheckResult:
    """run_check on cases holding modules: pass case numbers, so messages stay one line."""
    def call(f):
        def wrapped(i):
            with torch.no_grad():
                return f(*cases[i])
        return wrapped

    if not callable(fn):
        return run_check(name, fn, reference, [])
    return run_check(name, call(fn), call(reference), [(i,) for i in range(len(cases))])
