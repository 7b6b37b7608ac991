"""Train the toy English -> Kalo translation Transformer of notebook 03 and ship its checkpoint.

    python tools/train_translation.py            # writes data/translation_transformer.safetensors

Seeded and single-threaded, so re-running reproduces the shipped weights and the held-out
score. The recipe (Adam, β2 = 0.98, linear warm-up then cosine decay, teacher forcing) is the
one the notebook runs for a few steps; here it runs to convergence. The metadata follows the
course's one schema (course_lib.training): config {"model", "task", "train"} and metrics
{"exact_match", "final_loss", "train_cpu_s", "train_wall_s"}: the held-out exact match and the
training time measured by this run (CPU seconds of this process on one thread, and wall-clock
seconds); the notebook quotes both from there.
"""

from __future__ import annotations

import argparse
import sys
import time

import torch

from course_lib import setup
from course_lib.data.translation import TranslationData, sample_pairs
from course_lib.experiments.transformer import CHECKPOINT, REBUILD, exact_match
from course_lib.training import data_dir, save_checkpoint, train
from course_lib.transformer import Transformer, TransformerConfig, teacher_forcing_loss

RECIPE = dict(steps=400, batch_size=64, lr=5e-3, warmup=50, seed=0)
ADAM = dict(optimizer="Adam", betas=[0.9, 0.98], eps=1e-9)
HELD_OUT = dict(held_out_sentences=1000, held_out_seed=0)


def build(data: TranslationData, seed: int = 0) -> Transformer:
    torch.manual_seed(seed)
    config = TransformerConfig(
        data.source.vocab_size,
        data.target.vocab_size,
        d_model=64,
        n_heads=4,
        n_encoder_layers=2,
        n_decoder_layers=2,
        d_ff=128,
        max_len=16,
        pad_id=data.pad_id,
        bos_id=data.bos_id,
        eos_id=data.eos_id,
    )
    return Transformer(config)


def fit(
    model: Transformer,
    data: TranslationData,
    steps: int,
    batch_size: int,
    lr: float,
    warmup: int,
    seed: int = 0,
):
    """Adam + warm-up on freshly sampled training sentences; returns course_lib's TrainResult."""
    optimizer = torch.optim.Adam(model.parameters(), lr=lr, betas=tuple(ADAM["betas"]), eps=ADAM["eps"])

    def get_batch(step):
        return data.batch(sample_pairs(batch_size, "train", seed=seed * 100_000 + step))

    return train(
        model,
        get_batch,
        teacher_forcing_loss,
        steps=steps,
        lr=lr,
        warmup=warmup,
        optimizer=optimizer,
        desc="translation",
    )


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--out", default=str(data_dir() / CHECKPOINT))
    args = parser.parse_args(argv)
    setup(seed=RECIPE["seed"])
    data = TranslationData()
    model = build(data)
    recipe = {**RECIPE, "steps": args.steps}
    cpu = time.process_time()
    result = fit(model, data, recipe["steps"], recipe["batch_size"], recipe["lr"], recipe["warmup"])
    cpu = time.process_time() - cpu
    start = time.perf_counter()
    held_out = sample_pairs(
        HELD_OUT["held_out_sentences"], "test", seed=HELD_OUT["held_out_seed"], distinct=True
    )
    score, _ = exact_match(model, data, held_out)
    print(
        f"trained {recipe['steps']} steps in {cpu:.1f} s of CPU time ({result.seconds:.1f} s "
        f"wall clock, threads={torch.get_num_threads()}); final loss {result.final_loss:.4f}; "
        f"held-out exact match {score:.1%} on {len(held_out)} sentences "
        f"(eval {time.perf_counter() - start:.1f} s)"
    )
    # the weights are bit-for-bit reproducible; the timings in the metadata are this run's own
    config = {
        "model": model.config.to_dict(),
        "task": {"pair": "English -> Kalo (course_lib.data.translation)", **HELD_OUT},
        "train": {"command": REBUILD, **recipe, **ADAM, "threads": torch.get_num_threads()},
    }
    metrics = {
        "exact_match": round(score, 4),
        "final_loss": round(result.final_loss, 4),
        "train_cpu_s": round(cpu, 1),
        "train_wall_s": round(result.seconds, 1),
    }
    save_checkpoint(model, args.out, config, metrics)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
