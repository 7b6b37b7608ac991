"""course_lib.attention against PyTorch's implementations, plus masks and bad input."""
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import (KVCache, MultiHeadAttention, attention, attention_naive,
                                  causal_mask, merge_heads, padding_mask, split_heads)


@pytest.fixture
def pair():
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    return reference, MultiHeadAttention(32, 4).load_from_torch(reference).eval()


def test_naive_equals_formula_and_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = torch.randn(2, 3, 5, 8, generator=g), torch.randn(2, 3, 7, 8, generator=g), \
        torch.randn(2, 3, 7, 6, generator=g)
    out, w = attention_naive(q, k, v)
    manual = ((q @ k.transpose(-2, -1)) / math.sqrt(8)).softmax(-1) @ v
    torch.testing.assert_close(out, manual)
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v))
    torch.testing.assert_close(attention(q, k, v), out)
    torch.testing.assert_close(w.sum(-1), torch.ones(2, 3, 5))


def test_masks_match_sdpa():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(2, 2, 6, 4, generator=g) for _ in range(3))
    causal = causal_mask(6)
    torch.testing.assert_close(attention_naive(q, k, v, causal)[0],
                               F.scaled_dot_product_attention(q, k, v, is_causal=True))
    pad = padding_mask([6, 3], 6)
    out, w = attention_naive(q, k, v, pad)
    assert w[1, :, :, 3:].abs().max() == 0
    torch.testing.assert_close(out, F.scaled_dot_product_attention(q, k, v, attn_mask=pad))


def test_causal_mask_with_offset_is_last_rows():
    full = causal_mask(7)
    torch.testing.assert_close(causal_mask(3, 7), full[-3:])
    assert causal_mask(1, 5).all()


def test_mha_equals_torch_self_cross_masked(pair):
    reference, ours = pair
    x, mem = torch.randn(2, 5, 32), torch.randn(2, 8, 32)
    with torch.no_grad():
        ref, ref_w = reference(x, x, x, average_attn_weights=False)
        out, w = ours(x, need_weights=True)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(w, ref_w)
        torch.testing.assert_close(ours(x)[0], ref)
        torch.testing.assert_close(ours(x, mem)[0], reference(x, mem, mem)[0])
        torch.testing.assert_close(ours(x, is_causal=True)[0],
                                   reference(x, x, x, attn_mask=~causal_mask(5))[0])
        pad = padding_mask([5, 2], 5)
        torch.testing.assert_close(ours(x, mask=pad)[0],
                                   reference(x, x, x, key_padding_mask=~pad[:, 0, 0])[0])


def test_mha_gradients_match_torch(pair):
    reference, ours = pair
    reference.train(), ours.train()
    x = torch.randn(2, 5, 32)
    reference(x, x, x)[0].pow(2).sum().backward()
    ours(x)[0].pow(2).sum().backward()
    torch.testing.assert_close(ours.qkv_proj.weight.grad, reference.in_proj_weight.grad)
    torch.testing.assert_close(ours.out_proj.weight.grad, reference.out_proj.weight.grad)


def test_kv_cache_equals_full_causal(pair):
    _, ours = pair
    x = torch.randn(1, 6, 32)
    with torch.no_grad():
        full, _ = ours(x, is_causal=True)
        cache, steps = KVCache(), []
        for i in range(6):
            steps.append(ours(x[:, i:i + 1], is_causal=True, cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, 1), full)
    assert cache.length == 6


def test_split_merge_roundtrip():
    x = torch.randn(2, 3, 12)
    torch.testing.assert_close(split_heads(x, 4), x.view(2, 3, 4, 3).transpose(1, 2))
    torch.testing.assert_close(merge_heads(split_heads(x, 4)), x)


@pytest.mark.parametrize("call, message", [
    (lambda: MultiHeadAttention(30, 4), r"divisible.*d_model=30, n_heads=4"),
    (lambda: MultiHeadAttention(32, 4)(torch.randn(2, 5, 16)), r"expected shape \(b, t, 32\)"),
    (lambda: MultiHeadAttention(32, 4)(torch.randn(2, 5, 32), torch.randn(3, 6, 32)),
     r"memory: expected shape \(b, s, 32\)"),
    (lambda: MultiHeadAttention(32, 4)(torch.randn(2, 5, 32), mask=torch.ones(5, 4, dtype=torch.bool)),
     r"mask: expected a shape broadcastable to \(2, 4, 5, 5\).*received \(5, 4\)"),
    (lambda: MultiHeadAttention(32, 4)(torch.randn(2, 5, 32), mask=torch.ones(5, 5)),
     r"bool tensor"),
    (lambda: attention_naive(torch.randn(3, 4), torch.randn(5, 3), torch.randn(5, 2)),
     r"same width dh"),
    (lambda: attention_naive(torch.randn(2, 3, 4), torch.randn(3, 5, 4), torch.randn(3, 5, 4)),
     r"equal leading dims"),
    (lambda: attention(torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4),
                       mask=causal_mask(3), is_causal=True), r"either is_causal"),
    (lambda: split_heads(torch.randn(2, 3, 10), 4), r"divisible by h=4"),
    (lambda: causal_mask(5, 3), r"1 <= t <= s"),
    (lambda: padding_mask([3, 0], 4), r"lengths must lie in \[1, s=4\]"),
    (lambda: MultiHeadAttention(32, 4).load_from_torch(nn.MultiheadAttention(32, 8)),
     r"expected nn.MultiheadAttention\(32, 4\)"),
])
def test_bad_input_raises_clear_valueerror(call, message):
    with pytest.raises(ValueError, match=message):
        call()
