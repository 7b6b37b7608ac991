"""Train notebook 00's GRU encoder-decoders (without / with additive attention) on the toy
translation and ship seed 0 of each, with every seed's scores in the metadata.

    python tools/train_rnn.py      # writes data/rnn_translation_none.safetensors and
                                   # data/rnn_translation_additive.safetensors

Like with like: both variants share the recipe (RECIPE in course_lib/experiments/rnn.py: width,
steps, batch, learning rate, the same training batches for a seed) and differ only in where
each decoder step's context comes from. Each run keeps the weights with the best exact match on
validation sentences (held-out sentences disjoint from the test set); the test set is scored
once, by length, at the end. Seeded and single-threaded: a rebuild reproduces the weights; the
timings recorded (train_cpu_s: CPU seconds of this process, train_wall_s) are the run's own.
"""

from __future__ import annotations

import argparse
import sys
import time

from course_lib import setup
from course_lib.data.translation import TranslationData
from course_lib.experiments.rnn import (
    CHECKPOINT,
    RECIPE,
    eval_pairs,
    exact_match_by_length,
    train_translation,
)
from course_lib.training import data_dir, save_checkpoint

VARIANTS = ("none", "additive")
SEEDS = (0, 1, 2)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    args = parser.parse_args(argv)
    setup(seed=0)
    data, (test, val) = TranslationData(), eval_pairs()
    for attention in VARIANTS:
        cpu, wall = time.process_time(), time.perf_counter()
        runs, shipped = {}, None
        for seed in args.seeds:
            model, info = train_translation(attention, seed, args.steps, val, data)
            by_length = exact_match_by_length(model, data, test)
            runs[str(seed)] = {**info, "test_by_length": {str(n): list(v) for n, v in by_length.items()}}
            print(
                f"{attention} seed {seed}: val {info['val_exact_match']:.3f} at step "
                f"{info['best_step']}; test by length "
                f"{ {n: round(h / c, 3) for n, (h, c) in by_length.items()} }",
                flush=True,
            )
            if seed == args.seeds[0]:
                shipped = model
        config = {
            "model": shipped.config.to_dict(),
            "task": {
                "name": "toy translation English -> Kalo (course_lib.data.translation)",
                "test": "eval_pairs()[0]: 1000 distinct held-out sentences, seed 0",
                "val": "eval_pairs()[1]: 500 held-out sentences, seed 1, test removed",
            },
            "train": {
                "command": "python tools/train_rnn.py",
                "seed": args.seeds[0],
                "seeds": args.seeds,
                **RECIPE,
                "steps": args.steps,
            },
        }
        metrics = {
            "runs": runs,
            "train_cpu_s": round(time.process_time() - cpu, 1),
            "train_wall_s": round(time.perf_counter() - wall, 1),
        }
        out = data_dir() / CHECKPOINT.replace(".safetensors", f"_{attention}.safetensors")
        save_checkpoint(shipped, out, config, metrics)
        print(f"wrote {out} ({metrics['train_cpu_s']} CPU s for {len(args.seeds)} seeds)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
