"""course_lib.gpt: the decoder-only model, its KV cache, sampling rules, checkpoint, explorer."""

import pytest
import torch

from course_lib.checks.gpt import (
    check_cached_causal_mask,
    check_next_token_loss,
    check_param_count,
    check_top_k_filter,
    check_top_p_filter,
)
from course_lib.data.stories import corpus_splits, entropy_rate
from course_lib.data.tokenizer import build_tokenizer
from course_lib.experiments.gpt import encode_stories, evaluate_loss, load_gpt, random_batch
from course_lib.gpt import (
    GPT,
    GPT2_FAMILY,
    GPTConfig,
    generate,
    next_token_loss,
    next_token_probs,
    param_count,
    sample_next,
    top_k_filter,
    top_p_filter,
    torch_reference,
)
from course_lib.training import train


def tiny(seed=0, **kw):
    torch.manual_seed(seed)
    return GPT(
        GPTConfig(**{"vocab_size": 30, "max_len": 40, "d_model": 32, "n_layers": 2, "n_heads": 4, **kw})
    ).eval()


def test_matches_torch_transformer_encoder():
    model = tiny()
    ids = torch.randint(0, 30, (3, 11), generator=torch.Generator().manual_seed(0))
    torch.testing.assert_close(model(ids), torch_reference(model)(ids), atol=1e-5, rtol=1e-4)


def test_causal_future_tokens_do_not_change_the_past():
    model = tiny()
    a = torch.randint(0, 30, (1, 12), generator=torch.Generator().manual_seed(1))
    b = a.clone()
    b[0, 7:] = (b[0, 7:] + 5) % 30
    torch.testing.assert_close(model(a)[:, :7], model(b)[:, :7])
    assert not torch.allclose(model(a)[:, 7:], model(b)[:, 7:])


def test_kv_cache_equals_recomputation():
    model = tiny()
    ids = torch.randint(0, 30, (2, 15), generator=torch.Generator().manual_seed(2))
    caches = model.new_caches()
    parts = [model(ids[:, :6], caches=caches)] + [
        model(ids[:, i : i + 1], caches=caches) for i in range(6, 15)
    ]
    torch.testing.assert_close(torch.cat(parts, 1), model(ids), atol=1e-5, rtol=1e-4)
    prompt = ids[:, :3]
    fast = generate(model, prompt, 30, greedy=True, use_cache=True)
    slow = generate(model, prompt, 30, greedy=True, use_cache=False)
    assert torch.equal(fast, slow) and fast.shape == (2, 33)
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    assert torch.equal(
        generate(model, prompt, 20, top_k=5, generator=g1),
        generate(model, prompt, 20, top_k=5, use_cache=False, generator=g2),
    )


def test_preallocated_cache_generates_what_the_concatenating_cache_did():
    from course_lib.attention import ConcatKVCache, KVCache

    model = tiny()
    prompt = torch.randint(0, 30, (3, 4), generator=torch.Generator().manual_seed(3))
    new = generate(model, prompt, 36, greedy=True)  # preallocated (default)
    old = generate(model, prompt, 36, greedy=True, cache_type=ConcatKVCache)
    assert torch.equal(new, old) and new.shape == (3, 40)
    g1, g2 = torch.Generator().manual_seed(7), torch.Generator().manual_seed(7)
    assert torch.equal(
        generate(model, prompt, 30, top_p=0.9, generator=g1),
        generate(model, prompt, 30, top_p=0.9, generator=g2, cache_type=ConcatKVCache),
    )
    caches = model.new_caches(10)  # preallocated: one buffer for all 10 steps
    with torch.no_grad():
        model(prompt, caches=caches)
        start = caches[0].k.data_ptr()
        for _ in range(6):
            model(prompt[:, :1], caches=caches)
    assert isinstance(caches[0], KVCache) and caches[0].k.data_ptr() == start
    assert caches[0].k.shape == (3, 4, 10, 8)


@pytest.mark.parametrize("name", list(GPT2_FAMILY))
def test_param_count_formula_matches_meta_model(name):
    config = GPTConfig.gpt2(name)
    with torch.device("meta"):
        model = GPT(config)
    counted = sum(p.numel() for p in model.parameters())
    assert counted == param_count(config.d_model, config.n_layers, 50257, 1024)
    if name == "gpt2":
        assert counted == 124_439_808  # the published GPT-2 small size


def test_sampling_filters():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0, 3.0]])
    kept = top_k_filter(logits, 2).isfinite()
    assert kept.tolist() == [[True, False, False, False, True]]
    probs = logits.softmax(-1)[0]  # sorted: 4, 0, 1, 2, 3
    for p in (0.05, 0.5, 0.8, 0.95, 1.0):
        keep = top_p_filter(logits, p).isfinite()[0]
        order = probs.argsort(descending=True)
        n = int((probs[order].cumsum(0) < p).sum()) + 1  # brute force: smallest prefix >= p
        assert keep.sum() == min(n, 5) and keep[order[:n]].all()
    q = next_token_probs(logits, temperature=0.5, top_k=3, top_p=0.9)
    torch.testing.assert_close(q.sum(-1), torch.ones(1))
    assert torch.equal(sample_next(logits, greedy=True), torch.tensor([4]))
    cold = next_token_probs(logits, temperature=0.05)
    assert cold[0, 4] > 0.99 and next_token_probs(logits, temperature=100.0).max() < 0.21


def test_bad_input_raises_value_error():
    model, tok = tiny(), build_tokenizer()
    ids = torch.zeros(1, 5, dtype=torch.long)
    with pytest.raises(ValueError, match="unknown token"):
        tok.encode("tom saw a unicorn")
    with pytest.raises(ValueError, match="longer than max_len=40"):
        generate(model, torch.zeros(1, 41, dtype=torch.long), 1)
    with pytest.raises(ValueError, match="longer than max_len=40"):
        generate(model, ids, 36)
    with pytest.raises(ValueError, match="longer than max_len=40"):
        model(torch.zeros(1, 41, dtype=torch.long))
    for t in (0.0, -1.0):
        with pytest.raises(ValueError, match="temperature must be > 0"):
            generate(model, ids, 3, temperature=t)
    for p in (0.0, -0.1, 1.5):
        with pytest.raises(ValueError, match=r"top_p must lie in \(0, 1\]"):
            generate(model, ids, 3, top_p=p)
    for k in (0, -2):
        with pytest.raises(ValueError, match="top_k must be an int >= 1"):
            generate(model, ids, 3, top_k=k)
    with pytest.raises(ValueError, match=r"expected token ids in \[0, 30\)"):
        model(torch.full((1, 3), 30))
    with pytest.raises(ValueError, match=r"expected integer token ids .*float32"):
        model(torch.zeros(3, 2))
    with pytest.raises(ValueError, match=r"expected shape \(b, t\)"):
        model(torch.zeros(3, dtype=torch.long))
    torch.testing.assert_close(model(ids.int()), model(ids))  # any integer dtype
    with pytest.raises(ValueError, match="activation must be one of"):
        GPTConfig(activation="relu")
    with pytest.raises(ValueError, match="at least one story"):
        encode_stories([], tok)
    with pytest.raises(ValueError, match="GPT-2 sizes|must be one of"):
        GPTConfig.gpt2("gpt5")


def test_tiny_gpt_learns_the_stories():
    tok, splits = build_tokenizer(), corpus_splits()
    data = encode_stories(splits["train"][:500], tok)
    val = encode_stories(splits["val"][:50], tok)
    torch.manual_seed(0)
    model = GPT(GPTConfig(vocab_size=tok.vocab_size, max_len=96, d_model=32, n_layers=1, n_heads=2))
    g = torch.Generator().manual_seed(0)
    before = evaluate_loss(model, val)
    train(
        model,
        lambda s: (random_batch(data, 16, g),),
        lambda m, ids: next_token_loss(m(ids), ids, pad_id=0),
        steps=80,
        lr=1e-2,
        progress=False,
    )
    after = evaluate_loss(model, val)
    assert before > 4.5 and after < 2.0, (before, after)  # ln(183) = 5.2 -> far below


def test_shipped_checkpoint_reaches_the_floor():
    model, info = load_gpt()
    splits, tok = corpus_splits(), build_tokenizer()
    floor = entropy_rate(splits["val"])
    val = evaluate_loss(model, encode_stories(splits["val"], tok))
    assert val <= 1.10 * floor, (val, floor)
    assert info["metrics"]["val_loss"] == pytest.approx(val, abs=1e-3)
    assert info["metrics"]["entropy_floor"] == pytest.approx(floor, abs=1e-3)


def test_sampling_explorer_extremes():
    from course_lib.viz.gpt import sampling_explorer

    model, tok = tiny(vocab_size=build_tokenizer().vocab_size, max_len=64), build_tokenizer()
    ex = sampling_explorer(model, tok, ["one day tom and mia", "later mia found a"], n_new=5)
    for name, value in ex.extreme_values():
        ex.controls[name].value = value
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in ex.data.values()), name
        assert abs(ex.data["probs"].sum() - 1) < 1e-4
    with pytest.raises(ValueError, match="unknown token"):
        sampling_explorer(model, tok, ["tom met a dragon"])


def test_checkers_pass_reference_and_fail_wrong():
    from course_lib.attention import causal_mask

    assert check_cached_causal_mask(causal_mask).passed
    wrong_mask = check_cached_causal_mask(lambda t, s: torch.ones(t, s, dtype=torch.bool).tril())
    assert not wrong_mask.passed and "differ" in wrong_mask.message
    assert check_next_token_loss(next_token_loss).passed
    unshifted = check_next_token_loss(
        lambda lg, ids, pad: torch.nn.functional.cross_entropy(lg.flatten(0, 1), ids.flatten())
    )
    assert not unshifted.passed
    assert check_top_k_filter(top_k_filter).passed
    assert not check_top_k_filter(lambda lg, k: lg).passed
    assert check_top_p_filter(top_p_filter).passed
    assert not check_top_p_filter(lambda lg, p: top_k_filter(lg, 2)).passed
    assert check_param_count(param_count).passed
    res = check_param_count(lambda d, n, v, t: v * d + n * 12 * d * d)
    assert not res.passed and "expected" in res.message

    def todo(*args):
        raise NotImplementedError

    assert check_top_p_filter(todo).status == "not implemented yet"
