"""Benchmark of the GPT (notebook 05): KV-cache generation and training speed.

    python benchmarks/bench_gpt.py            # full table
    python benchmarks/bench_gpt.py --quick    # fewer repeats, shorter runs

1. Generating 200 tokens with the KV cache (``generate(use_cache=True)``: each step feeds only
   the newest token) against recomputing the whole prefix every step (``use_cache=False``),
   greedy, with the shipped tiny GPT (data/gpt_tiny.safetensors), for 1 and 16 prompts of 8
   tokens; and (full run only) for 1 prompt with a wider, untrained GPT (d_model 256, 4 blocks),
   where the work per token, not Python's per-call overhead, dominates. The outputs are
   asserted identical before timing. The course's target: >= 3x.
2. The preallocated ``KVCache`` (each step writes its keys/values in place: O(T) copying over
   T steps) against ``ConcatKVCache`` (``torch.cat`` of the whole cache every step: O(T²)),
   same run: appends alone (1024 steps of a (8, 4, 1, 64) key and value; --quick: 256), and
   (full run only) greedy generation of 500 tokens for 8 prompts with the wide GPT, tokens
   asserted identical first. Attention itself still reads all t cached keys every step, so
   generation gains less than the appends alone.
3. One training step (forward, backward, AdamW) of the tiny GPT on a batch of 32 stories:
   ``course_lib.gpt.GPT`` against the same network built from ``nn.TransformerEncoder``
   (``torch_reference``), same weights, logits asserted equal first; tokens/s in the labels.

Times are medians of repeats on one thread (the course's setting; ``COURSE_THREADS`` overrides).
"""

from __future__ import annotations

import argparse
import copy
import os

import torch

from course_lib.attention import ConcatKVCache, KVCache
from course_lib.data.stories import corpus_splits
from course_lib.data.tokenizer import build_tokenizer
from course_lib.experiments.gpt import encode_stories, load_gpt
from course_lib.gpt import GPT, GPTConfig, generate, next_token_loss, torch_reference
from course_lib.timing import format_rows, median_time

N_NEW = 200


def kv_cache_rows(model, tok, repeats: int, wide: bool) -> list[dict]:
    rows = []
    cases = [(model, 1, "tiny GPT"), (model, 16, "tiny GPT")]
    if wide:
        cases.append((wide_gpt(tok), 1, "d=256, 4 blocks"))
    for model, n_prompts, label in cases:
        prompts = encode_stories(corpus_splits()["val"][:n_prompts], tok)[:, :8]  # (b, 8)
        run = {
            c: (
                lambda c=c, model=model, prompts=prompts: generate(
                    model, prompts, N_NEW, greedy=True, use_cache=c
                )
            )
            for c in (True, False)
        }
        assert torch.equal(run[True](), run[False]())
        rows.append(
            {
                "name": f"generate {N_NEW} tokens, {n_prompts} prompt(s), {label}",
                "ours": "KV cache",
                "ours_s": median_time(run[True], repeats),
                "reference": "recompute prefix",
                "reference_s": median_time(run[False], repeats),
            }
        )
    return rows


def wide_gpt(tok) -> GPT:
    torch.manual_seed(0)
    return GPT(GPTConfig(vocab_size=tok.vocab_size, max_len=1024, d_model=256, n_layers=4, n_heads=4)).eval()


def cache_copy_rows(tok, quick: bool) -> list[dict]:
    steps = 256 if quick else 1024
    k = torch.randn(8, 4, 1, 64)  # (b, nh, 1, dh)

    def appends(cache_type):
        cache = cache_type(steps)
        for _ in range(steps):
            cache.append(k, k)
        return cache.k

    assert torch.equal(appends(KVCache), appends(ConcatKVCache))
    rows = [
        {
            "name": f"KV cache: {steps} appends of (8, 4, 1, 64)",
            "ours": "preallocated",
            "ours_s": median_time(lambda: appends(KVCache), 3),
            "reference": "torch.cat every step",
            "reference_s": median_time(lambda: appends(ConcatKVCache), 3),
        }
    ]
    if not quick:
        model = wide_gpt(tok)
        prompts = encode_stories(corpus_splits()["val"][:8], tok)[:, :8]  # (8, 8)
        run = {
            c: (lambda c=c: generate(model, prompts, 500, greedy=True, cache_type=c))
            for c in (KVCache, ConcatKVCache)
        }
        assert torch.equal(run[KVCache](), run[ConcatKVCache]())
        rows.append(
            {
                "name": "generate 500 tokens, 8 prompts, d=256, 4 blocks",
                "ours": "preallocated cache",
                "ours_s": median_time(run[KVCache], 1, 0),
                "reference": "torch.cat cache",
                "reference_s": median_time(run[ConcatKVCache], 1, 0),
            }
        )
    return rows


def training_rows(model, tok, repeats: int) -> list[dict]:
    ids = encode_stories(corpus_splits()["train"][:32], tok)  # (32, t)
    ours = copy.deepcopy(model).train()
    theirs = torch_reference(copy.deepcopy(model)).train()
    with torch.no_grad():
        torch.testing.assert_close(ours(ids), theirs(ids), atol=1e-5, rtol=1e-4)
    times = {}
    for name, net in (("ours", ours), ("reference", theirs)):
        opt = torch.optim.AdamW(net.parameters(), lr=1e-4)

        def step(net=net, opt=opt):
            loss = next_token_loss(net(ids), ids, pad_id=tok.pad_id)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()

        times[name] = median_time(step, repeats)
    n_tokens = int((ids[:, 1:] != tok.pad_id).sum())
    return [
        {
            "name": f"train step, 32 stories ({n_tokens} tokens)",
            "ours": f"course GPT ({n_tokens / times['ours']:,.0f} tok/s)",
            "ours_s": times["ours"],
            "reference": f"nn.TransformerEncoder ({n_tokens / times['reference']:,.0f} tok/s)",
            "reference_s": times["reference"],
        }
    ]


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(int(os.environ.get("COURSE_THREADS", "1")))
    model, _ = load_gpt()
    tok = build_tokenizer()
    repeats = 3 if quick else 7
    return (
        kv_cache_rows(model, tok, 1 if quick else 3, wide=not quick)
        + cache_copy_rows(tok, quick)
        + training_rows(model, tok, repeats)
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(format_rows(run(quick=parser.parse_args().quick)))


if __name__ == "__main__":
    main()
