"""Train the tiny GPT of notebook 05 on the story corpus and write data/gpt_tiny.safetensors.

    python tools/train_gpt.py            # 500 steps on one CPU thread (the shipped run: 40.1 s CPU)

Seeded and single-threaded (course_lib.setup), so a re-run reproduces the shipped weights and
numbers on the same machine. The checkpoint's metadata holds the config and the metrics the
notebook plots: train loss every 10 steps, validation loss every 100 steps, the generator's
entropy floor on the same validation stories, and the CPU/wall seconds of training
(``train_cpu_s``, ``train_wall_s``), in the schema of ``course_lib.training``.
"""

from __future__ import annotations

import argparse
import time
from dataclasses import asdict

import torch

from course_lib import setup
from course_lib.data.stories import corpus_splits, entropy_rate
from course_lib.data.tokenizer import build_tokenizer
from course_lib.experiments.gpt import TINY_GPT, encode_stories, evaluate_loss, random_batch
from course_lib.gpt import GPT, GPTConfig, next_token_loss
from course_lib.training import data_dir, save_checkpoint, train

COMMAND = "python tools/train_gpt.py"
CONFIG = dict(max_len=256, d_model=64, n_layers=2, n_heads=4)
TASK = {
    "corpus": "course_lib.data.stories.corpus_splits(seed=0)",
    "split_seed": 0,
    "tokenizer": "course_lib.data.tokenizer.build_tokenizer()",
    "format": "[BOS] story [EOS], right-padded with [PAD]",
    "eval": "val split",
}
TRAIN = dict(
    steps=500,
    batch_size=32,
    lr=6e-3,
    warmup=50,
    betas=(0.9, 0.95),
    eval_every=100,
    optimizer="AdamW",
    clip=1.0,
    threads=1,
)


def main(argv=None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=TRAIN["steps"])
    parser.add_argument("--out", default=str(data_dir() / TINY_GPT))
    args = parser.parse_args(argv)
    setup(seed=0)
    tok, splits = build_tokenizer(), corpus_splits(seed=0)
    train_ids, val_ids = encode_stories(splits["train"], tok), encode_stories(splits["val"], tok)
    floor = entropy_rate(splits["val"])
    gpt_config = GPTConfig(**CONFIG, vocab_size=tok.vocab_size)
    model = GPT(gpt_config)
    g = torch.Generator().manual_seed(0)
    opt = torch.optim.AdamW(model.parameters(), lr=TRAIN["lr"], betas=TRAIN["betas"])
    cpu0 = time.process_time()
    result = train(
        model,
        lambda step: (random_batch(train_ids, TRAIN["batch_size"], g),),
        lambda m, ids: next_token_loss(m(ids), ids, pad_id=tok.pad_id),
        steps=args.steps,
        lr=TRAIN["lr"],
        warmup=TRAIN["warmup"],
        optimizer=opt,
        eval_fn=lambda: evaluate_loss(model, val_ids, tok.pad_id),
        eval_every=TRAIN["eval_every"],
        desc="tiny GPT",
    )
    cpu = time.process_time() - cpu0
    val = result.evals[-1][1]
    config = {
        "model": asdict(gpt_config),
        "task": TASK,
        "train": dict(TRAIN, steps=args.steps, command=COMMAND, seed=0),
    }
    metrics = {
        "val_loss": round(val, 4),
        "entropy_floor": round(floor, 4),
        "ratio": round(val / floor, 4),
        "train_loss_every_10": [
            round(sum(result.losses[i : i + 10]) / len(result.losses[i : i + 10]), 4)
            for i in range(0, len(result.losses), 10)
        ],
        "val_loss_history": [[s, round(v, 4)] for s, v in result.evals],
        "train_cpu_s": round(cpu, 1),
        "train_wall_s": round(result.seconds, 1),
    }
    save_checkpoint(model, args.out, config=config, metrics=metrics)
    print(
        f"val loss {val:.4f} nats/token = {val / floor:.3f} x the entropy floor {floor:.4f}; "
        f"{args.steps} steps in {result.seconds:.1f} s wall, {cpu:.1f} s CPU -> {args.out}"
    )
    return metrics


if __name__ == "__main__":
    main()
