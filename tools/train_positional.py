"""Train notebook 02's experiment: "output the token k places back" with four position encodings.

    python tools/train_positional.py            # writes data/positional_models.safetensors (seeded)
    python tools/train_positional.py --steps 100 --seeds 1 --out /tmp/pos_quick.safetensors  # smoke run

For each encoding (none / sinusoidal / learned / RoPE) the same one-layer bidirectional encoder
(course_lib.experiments.positional.PositionTaskModel) is trained on sequences of TRAIN_LEN tokens, then
tested on held-out sequences of 1×, 2× and 4× that length (length extrapolation), with full
attention and with a local window |m − n| < TRAIN_LEN (only offsets seen in training). Every
encoding is trained for several seeds; the checkpoint holds the seed-0 models and, as
safetensors metadata in the course's one schema (course_lib.training), the config
{"model", "task", "train"} and the metrics {"runs": {encoding: per-seed accuracies},
"train_cpu_s", "train_wall_s"} (CPU and wall-clock seconds of this process); notebook 02
quotes the time from there.
"""

from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import IGNORE_INDEX, setup
from course_lib.data.synthetic import tokens_back
from course_lib.experiments.positional import ENCODINGS, PositionTaskModel, tokens_back_accuracy
from course_lib.training import data_dir, save_checkpoint, train

MODEL = dict(vocab_size=16, d_model=64, n_heads=4, n_layers=1, d_ff=128, max_len=64)
TASK = dict(k=3, train_len=16, test_lens=[16, 32, 64])
TRAIN = dict(steps=1000, batch_size=64, lr=3e-3, warmup=50)


def loss_fn(model, x, y):
    logits, _ = model(x)
    return F.cross_entropy(logits.flatten(0, 1), y.flatten(), ignore_index=IGNORE_INDEX)


def train_one(encoding: str, seed: int, steps: int) -> tuple[PositionTaskModel, dict]:
    """Seeded training of one encoding; returns (model, metrics at each test length)."""
    torch.manual_seed(seed)
    model = PositionTaskModel(encoding, **MODEL)
    g = torch.Generator().manual_seed(seed)
    cpu = time.process_time()
    result = train(
        model,
        lambda step: tokens_back(TRAIN["batch_size"], TASK["train_len"], TASK["k"], MODEL["vocab_size"], g),
        loss_fn,
        steps,
        TRAIN["lr"],
        warmup=TRAIN["warmup"],
        desc=f"{encoding} s{seed}",
    )
    cpu = time.process_time() - cpu
    metrics = tokens_back_accuracy(
        model, TASK["test_lens"], TASK["k"], MODEL["vocab_size"], train_len=TASK["train_len"]
    )
    windowed = tokens_back_accuracy(
        model,
        TASK["test_lens"],
        TASK["k"],
        MODEL["vocab_size"],
        train_len=TASK["train_len"],
        window=TASK["train_len"],
    )
    metrics.update({f"{key}_window": value for key, value in windowed.items()})
    metrics.update(
        final_loss=round(result.final_loss, 4),
        train_wall_s=round(result.seconds, 1),
        train_cpu_s=round(cpu, 1),
    )
    return model, metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=TRAIN["steps"])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--out", type=Path, default=data_dir() / "positional_models.safetensors")
    args = parser.parse_args()
    setup(seed=0)
    start, start_cpu = time.perf_counter(), time.process_time()
    models, runs_by_encoding = nn.ModuleDict(), {}
    for encoding in ENCODINGS:
        runs = []
        for seed in range(args.seeds):
            model, m = train_one(encoding, seed, args.steps)
            runs.append(m)
            if seed == 0:
                models[encoding] = model
            print(
                f"{encoding:10s} seed {seed}: "
                + ", ".join(
                    f"{key} {value:.3f}" if isinstance(value, float) and value <= 1 else f"{key} {value}"
                    for key, value in m.items()
                )
            )
        runs_by_encoding[encoding] = runs
    total, total_cpu = time.perf_counter() - start, time.process_time() - start_cpu
    print(f"\nmean over {args.seeds} seeds (train length {TASK['train_len']}, k={TASK['k']}):")
    for encoding, runs in runs_by_encoding.items():
        means = {
            key: statistics.mean(r[key] for r in runs)
            for key in runs[0]
            if key not in ("final_loss", "train_wall_s", "train_cpu_s")
        }
        print(f"  {encoding:10s} " + "  ".join(f"{key} {v:.1%}" for key, v in means.items()))
    config = dict(
        model=MODEL,
        task=TASK,
        train=dict(
            TRAIN,
            steps=args.steps,
            command="python tools/train_positional.py",
            seed=0,
            seeds=args.seeds,
            threads=torch.get_num_threads(),
        ),
    )
    metrics = dict(runs=runs_by_encoding, train_cpu_s=round(total_cpu, 1), train_wall_s=round(total, 1))
    save_checkpoint(models, args.out, config=config, metrics=metrics)
    print(f"wrote {args.out} ({args.out.stat().st_size / 1e6:.2f} MB) in {total:.0f} s")


if __name__ == "__main__":
    main()
