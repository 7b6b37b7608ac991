"""Benchmark of the GPT (notebook 05): KV-cache generation and training speed.

    python benchmarks/bench_gpt.py            # full table
    python benchmarks/bench_gpt.py --quick    # fewer repeats, shorter runs

1. Generating 200 tokens with the KV cache (``generate(use_cache=True)``: each step feeds only
   the newest token) against recomputing the whole prefix every step (``use_cache=False``),
   greedy, with the shipped tiny GPT (data/gpt_tiny.safetensors), for 1 and 16 prompts of 8
   tokens; and (full run only) for 1 prompt with a wider, untrained GPT (d_model 256, 4 blocks),
   where the work per token, not Python's per-call overhead, dominates. The outputs are
   asserted identical before timing. The course's target: >= 3x.
2. One training step (forward, backward, AdamW) of the tiny GPT on a batch of 32 stories:
   ``course_lib.gpt.GPT`` against the same network built from ``nn.TransformerEncoder``
   (``torch_reference``), same weights, logits asserted equal first; tokens/s in the labels.

Times are medians of repeats on one thread (the course's setting; ``COURSE_THREADS`` overrides).
"""
from __future__ import annotations

import argparse
import copy
import os

import torch

from course_lib.data.stories import corpus_splits
from course_lib.data.tokenizer import build_tokenizer
from course_lib.timing import format_rows, median_time
from course_lib.gpt import (GPT, GPTConfig, encode_stories, generate, load_gpt, next_token_loss,
                            torch_reference)

N_NEW = 200


def kv_cache_rows(model, tok, repeats: int, wide: bool) -> list[dict]:
    rows = []
    cases = [(model, 1, "tiny GPT"), (model, 16, "tiny GPT")]
    if wide:
        torch.manual_seed(0)
        cases.append((GPT(GPTConfig(vocab_size=tok.vocab_size, context_len=256, d_model=256,
                                    n_layers=4, n_heads=4)).eval(), 1, "d=256, 4 blocks"))
    for model, n_prompts, label in cases:
        prompts = encode_stories(corpus_splits()["val"][:n_prompts], tok)[:, :8]     # (b, 8)
        run = {c: (lambda c=c: generate(model, prompts, N_NEW, greedy=True, use_cache=c))
               for c in (True, False)}
        assert torch.equal(run[True](), run[False]())
        rows.append({"name": f"generate {N_NEW} tokens, {n_prompts} prompt(s), {label}",
                     "ours": "KV cache", "ours_s": median_time(run[True], repeats),
                     "reference": "recompute prefix", "reference_s": median_time(run[False], repeats)})
    return rows


def training_rows(model, tok, repeats: int) -> list[dict]:
    ids = encode_stories(corpus_splits()["train"][:32], tok)                     # (32, t)
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
    return [{"name": f"train step, 32 stories ({n_tokens} tokens)",
             "ours": f"course GPT ({n_tokens / times['ours']:,.0f} tok/s)", "ours_s": times["ours"],
             "reference": f"nn.TransformerEncoder ({n_tokens / times['reference']:,.0f} tok/s)",
             "reference_s": times["reference"]}]


def run(quick: bool = False) -> list[dict]:
    torch.set_num_threads(int(os.environ.get("COURSE_THREADS", "1")))
    model, _ = load_gpt()
    tok = build_tokenizer()
    repeats = 3 if quick else 7
    return (kv_cache_rows(model, tok, 1 if quick else 3, wide=not quick)
            + training_rows(model, tok, repeats))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true")
    print(format_rows(run(quick=parser.parse_args().quick)))


if __name__ == "__main__":
    main()
