"""course_lib.attention against PyTorch's implementations, plus masks and bad input."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from course_lib.attention import (
    ConcatKVCache,
    KVCache,
    MultiHeadAttention,
    attention,
    attention_naive,
    attention_tiled,
    causal_mask,
    merge_heads,
    padding_mask,
    split_heads,
)
from course_lib.checks.attention import check_merge_softmax_stats, reference_merge_softmax_stats
from course_lib.experiments.attention import attention_memory_rows, peak_tensor_bytes


@pytest.fixture
def pair():
    torch.manual_seed(0)
    reference = nn.MultiheadAttention(32, 4, batch_first=True).eval()
    return reference, MultiHeadAttention(32, 4).load_from_torch(reference).eval()


def test_naive_equals_formula_and_sdpa():
    g = torch.Generator().manual_seed(0)
    q, k, v = (
        torch.randn(2, 3, 5, 8, generator=g),
        torch.randn(2, 3, 7, 8, generator=g),
        torch.randn(2, 3, 7, 6, generator=g),
    )
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
    torch.testing.assert_close(
        attention_naive(q, k, v, causal)[0], F.scaled_dot_product_attention(q, k, v, is_causal=True)
    )
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
        torch.testing.assert_close(
            ours(x, is_causal=True)[0], reference(x, x, x, attn_mask=~causal_mask(5))[0]
        )
        pad = padding_mask([5, 2], 5)
        torch.testing.assert_close(
            ours(x, mask=pad)[0], reference(x, x, x, key_padding_mask=~pad[:, 0, 0])[0]
        )


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
            steps.append(ours(x[:, i : i + 1], is_causal=True, cache=cache)[0])
    torch.testing.assert_close(torch.cat(steps, 1), full)
    assert cache.length == 6


@pytest.mark.parametrize(
    "make",
    [lambda: KVCache(12), lambda: KVCache(), lambda: KVCache(2)],
    ids=["preallocated", "growing", "too small"],
)
def test_kv_cache_preallocated_equals_concatenation(pair, make):
    _, ours = pair
    x = torch.randn(2, 12, 32, generator=torch.Generator().manual_seed(3))
    with torch.no_grad():
        out = {}
        for name, cache in (("ours", make()), ("cat", ConcatKVCache())):
            steps = [ours(x[:, :4], is_causal=True, cache=cache)[0]]  # prefill 4
            steps += [ours(x[:, i : i + 1], cache=cache)[0] for i in range(4, 12)]
            out[name] = (torch.cat(steps, 1), cache.k, cache.v)
    for a, b in zip(out["ours"], out["cat"]):
        assert torch.equal(a, b)  # bit for bit
    assert out["ours"][1].shape == (2, 4, 12, 8)


def test_kv_cache_writes_in_place_without_reallocating():
    cache = KVCache(max_len=50)
    k = torch.randn(1, 2, 1, 4)
    cache.append(k, k)
    buffer = cache.k.data_ptr()
    for i in range(49):
        cache.append(k + i, k - i)
    assert cache.k.data_ptr() == buffer and cache.length == 50
    torch.testing.assert_close(cache.k[0, 0, 1:, 0], k[0, 0, 0, 0] + torch.arange(49.0))
    cache.append(k, k)  # past max_len: grows
    assert cache.length == 51 and cache.capacity == 100
    growing = KVCache()
    for _ in range(9):
        growing.append(k, k)
    assert growing.capacity == 16  # doubling: 1, 2, 4, 8, 16


def test_kv_cache_under_autograd_gives_gradients(pair):
    _, ours = pair
    x = torch.randn(1, 5, 32, requires_grad=True)
    cache = KVCache(5)
    out = torch.cat([ours(x[:, i : i + 1], cache=cache)[0] for i in range(5)], 1)
    out.pow(2).sum().backward()
    x2 = x.detach().clone().requires_grad_()
    ours(x2, is_causal=True)[0].pow(2).sum().backward()
    torch.testing.assert_close(x.grad, x2.grad)


def test_dropout_drops_the_weights_not_the_output():
    torch.manual_seed(0)
    mha = MultiHeadAttention(32, 4, dropout=0.5).train()
    x = torch.randn(2, 6, 32)
    with torch.no_grad():
        q, k, v = mha.project(x)  # (b, nh, t, dh)
        _, clean = attention_naive(q, k, v)  # (b, nh, t, t) undropped
        out, w = mha(x, need_weights=True)
    # the output is exactly the returned (dropped) weights applied to v
    torch.testing.assert_close(out, mha.out_proj(merge_heads(w @ v)))
    kept = w != 0
    assert 0.35 < kept.float().mean() < 0.65  # about half the weights dropped
    torch.testing.assert_close(w[kept], clean[kept] / 0.5)  # survivors scaled by 1/(1-p)
    # dropping the output instead (the old behaviour) would leave the weights undropped
    assert not torch.allclose(w, clean)
    with pytest.raises(ValueError, match=r"dropout_p must lie in \[0, 1\)"):
        attention_naive(q, k, v, dropout_p=1.0)


def test_split_merge_roundtrip():
    x = torch.randn(2, 3, 12)
    torch.testing.assert_close(split_heads(x, 4), x.view(2, 3, 4, 3).transpose(1, 2))
    torch.testing.assert_close(merge_heads(split_heads(x, 4)), x)


@pytest.mark.parametrize(
    "call, message",
    [
        (lambda: MultiHeadAttention(30, 4), r"divisible.*d_model=30, n_heads=4"),
        (lambda: MultiHeadAttention(32, 4)(torch.randn(2, 5, 16)), r"expected shape \(b, t, 32\)"),
        (
            lambda: MultiHeadAttention(32, 4)(torch.randn(2, 5, 32), torch.randn(3, 6, 32)),
            r"memory: expected shape \(b, s, 32\)",
        ),
        (
            lambda: MultiHeadAttention(32, 4)(torch.randn(2, 5, 32), mask=torch.ones(5, 4, dtype=torch.bool)),
            r"mask: expected a shape broadcastable to \(2, 4, 5, 5\).*received \(5, 4\)",
        ),
        (lambda: MultiHeadAttention(32, 4)(torch.randn(2, 5, 32), mask=torch.ones(5, 5)), r"bool tensor"),
        (lambda: attention_naive(torch.randn(3, 4), torch.randn(5, 3), torch.randn(5, 2)), r"same width dh"),
        (
            lambda: attention_naive(torch.randn(2, 3, 4), torch.randn(3, 5, 4), torch.randn(3, 5, 4)),
            r"equal leading dims",
        ),
        (
            lambda: attention(
                torch.randn(3, 4), torch.randn(3, 4), torch.randn(3, 4), mask=causal_mask(3), is_causal=True
            ),
            r"either is_causal",
        ),
        (lambda: split_heads(torch.randn(2, 3, 10), 4), r"divisible by nh=4"),
        (lambda: causal_mask(5, 3), r"1 <= t <= s"),
        (
            lambda: KVCache(4).append(torch.randn(1, 2, 1, 4), torch.randn(1, 2, 1, 3)),
            r"k, v of one shape \(b, nh, t, dh\)",
        ),
        (lambda: KVCache(0), r"max_len must be >= 1"),
        (lambda: padding_mask([3, 0], 4), r"lengths must lie in \[1, s=4\]"),
        (
            lambda: MultiHeadAttention(32, 4).load_from_torch(nn.MultiheadAttention(32, 8)),
            r"expected nn.MultiheadAttention\(32, 4\)",
        ),
    ],
)
def test_bad_input_raises_clear_valueerror(call, message):
    with pytest.raises(ValueError, match=message):
        call()


# ---------------------------------------------------------------- tiled attention (FlashAttention's idea)
@pytest.mark.parametrize("t, s, block", [(1, 1, 1), (7, 7, 3), (64, 64, 16), (10, 13, 4), (30, 30, 128)])
def test_tiled_equals_sdpa_with_and_without_masks(t, s, block):
    g = torch.Generator().manual_seed(t * 100 + s)
    q, k, v = (
        torch.randn(2, 3, t, 8, generator=g),
        torch.randn(2, 3, s, 8, generator=g),
        torch.randn(2, 3, s, 5, generator=g),
    )
    torch.testing.assert_close(
        attention_tiled(q, k, v, block_size=block), F.scaled_dot_product_attention(q, k, v)
    )
    torch.testing.assert_close(
        attention_tiled(q, k, v, is_causal=True, block_size=block),
        F.scaled_dot_product_attention(q, k, v, attn_mask=causal_mask(t, s)),
    )
    keep = torch.rand(2, 1, t, s, generator=g) > 0.5
    keep[..., 0] = True  # every row sees a key
    torch.testing.assert_close(
        attention_tiled(q, k, v, mask=keep, block_size=block),
        F.scaled_dot_product_attention(q, k, v, attn_mask=keep),
    )
    torch.testing.assert_close(
        attention_tiled(q, k, v, scale=0.3, block_size=block),
        F.scaled_dot_product_attention(q, k, v, scale=0.3),
    )


def test_tiled_gradients_equal_sdpa():
    g = torch.Generator().manual_seed(1)
    q, k, v = (torch.randn(1, 2, 37, 8, generator=g, requires_grad=True) for _ in range(3))
    ours = torch.autograd.grad(attention_tiled(q, k, v, is_causal=True, block_size=8).pow(2).sum(), (q, k, v))
    ref = torch.autograd.grad(F.scaled_dot_product_attention(q, k, v, is_causal=True).pow(2).sum(), (q, k, v))
    for a, b in zip(ours, ref):
        torch.testing.assert_close(a, b)


def test_peak_memory_naive_quadratic_tiled_linear():
    assert peak_tensor_bytes(lambda: torch.zeros(1000)) == 4000
    assert peak_tensor_bytes(lambda: [torch.zeros(10) for _ in range(3)][-1]) == 120  # all alive
    assert peak_tensor_bytes(lambda: torch.zeros(100).sum()) == 404  # input alive beside its sum

    rows = attention_memory_rows(
        {
            "naive": lambda q, k, v: attention_naive(q, k, v)[0],
            "tiled": lambda q, k, v: attention_tiled(q, k, v, block_size=64),
        },
        [128, 512],
        d_head=16,
    )
    small, large = rows
    assert large["naive"] / small["naive"] > 15  # 4x longer: ~16x memory
    assert large["tiled"] / small["tiled"] < 4  # at most linear
    assert small["naive"] >= 2 * 128 * 128 * 4  # scores + weights, float32
    assert rows == attention_memory_rows(
        {
            "naive": lambda q, k, v: attention_naive(q, k, v)[0],
            "tiled": lambda q, k, v: attention_tiled(q, k, v, block_size=64),
        },
        [128, 512],
        d_head=16,
    )  # exact: same every run


def test_tiled_bad_input():
    q = torch.randn(1, 4, 8)
    with pytest.raises(ValueError, match="block_size must be a positive int, got 0"):
        attention_tiled(q, q, q, block_size=0)
    with pytest.raises(ValueError, match="either is_causal=True or a mask"):
        attention_tiled(q, q, q, mask=causal_mask(4), is_causal=True)
    with pytest.raises(ValueError, match="same width dh"):
        attention_tiled(q, torch.randn(1, 4, 6), q)


def test_merge_softmax_stats_checker():
    assert check_merge_softmax_stats(reference_merge_softmax_stats).passed
    wrong = check_merge_softmax_stats(lambda m1, l1, m2, l2: (torch.maximum(m1, m2), l1 + l2))
    assert wrong.status == "failed" and "max abs diff" in wrong.message

    def todo(m1, l1, m2, l2):
        raise NotImplementedError

    assert check_merge_softmax_stats(todo).status == "not implemented yet"
