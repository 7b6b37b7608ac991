"""Train notebook 08's story models: the learning-rate sweep, the compared models and the draft.

    python tools/train_llama.py                                # everything below, 2 processes
    python tools/train_llama.py --arch llama --seed 1 --lr 3e-3   # one run (to --out or data/)

Every model gets 05's recipe (course_lib.experiments.llama.RECIPE: 500 steps of 32 stories,
AdamW β₂ = 0.95, warm-up then cosine, one CPU thread per run, seeded), so the GPT-2-style and
the Llama-style decoder (about 128k parameters each) see the same data for the same steps. What
differs is the learning rate, chosen per architecture on validation data:

1. the sweep: each architecture at each rate of LR_GRID with the seeds SELECT_SEEDS; the
   validation losses go to data/llama_lr_sweep.json, with the rate of lowest mean validation
   loss per architecture (``chosen_lr``);
2. the comparison: the chosen rate's runs become data/llama_stories_<arch>_s<seed>.safetensors,
   and the seeds of REPORT_SEEDS not in the sweep are trained at it (their test loss is the
   comparison, the test split took no part in the choice);
3. the draft model for speculative decoding (RECIPE's lr), data/llama_stories_draft_s0.

Each checkpoint's metadata holds the validation and test loss, the entropy floors, the
parameter count and ``train_cpu_s`` / ``train_wall_s`` in the schema of ``course_lib.training``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import tempfile
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

from course_lib.experiments.llama import (
    ARCHS,
    LR_GRID,
    RECIPE,
    REPORT_SEEDS,
    SELECT_SEEDS,
    checkpoint_path,
    chosen_lr,
    sweep_path,
    train_story_model,
)
from course_lib.training import data_dir

COMPARED = ("gpt", "llama")


def _run(job: tuple) -> dict:
    arch, seed, lr, steps, out = job
    metrics = train_story_model(arch, seed, steps=steps, lr=lr, out=out)
    print(
        f"{arch} lr {lr:g} seed {seed}: {metrics['params']:,} parameters, val loss "
        f"{metrics['val_loss']:.4f} = {metrics['ratio']:.3f} x the floor, test "
        f"{metrics['test_ratio']:.3f}; {metrics['train_cpu_s']} s CPU, {metrics['train_wall_s']} s wall",
        flush=True,
    )
    return dict(arch=arch, seed=seed, lr=lr, **metrics)


def run_all(steps: int, jobs: int, data: Path | None = None) -> dict:
    """Sweep, choose, train the remaining report seeds and the draft; write everything under
    ``data`` (default: the course's data/). Returns the sweep record."""
    folder = data_dir() if data is None else data

    def target(arch: str, seed: int) -> Path:
        return folder / checkpoint_path(arch, seed).name

    with tempfile.TemporaryDirectory() as scratch, ProcessPoolExecutor(jobs) as pool:
        sweep = [
            (a, s, lr, steps, f"{scratch}/{a}_{lr:g}_s{s}.safetensors")
            for a in COMPARED
            for lr in LR_GRID
            for s in SELECT_SEEDS
        ]
        runs = list(pool.map(_run, sweep))
        chosen = {arch: chosen_lr(runs, arch) for arch in COMPARED}
        for arch, seed, lr, _, out in sweep:
            if lr == chosen[arch]:
                shutil.copy(out, target(arch, seed))
        rest = [
            (a, s, chosen[a], steps, target(a, s))
            for a in COMPARED
            for s in REPORT_SEEDS
            if s not in SELECT_SEEDS
        ]
        rest.append(("draft", 0, RECIPE["lr"], steps, target("draft", 0)))
        list(pool.map(_run, rest))
    keep = ("arch", "lr", "seed", "val_loss", "val_loss_history", "train_cpu_s")
    record = {
        "grid": list(LR_GRID),
        "select_seeds": list(SELECT_SEEDS),
        "steps": steps,
        "runs": [{k: run[k] for k in keep} for run in runs],
        "chosen": chosen,
    }
    path = folder / sweep_path().name
    path.write_text(json.dumps(record, indent=1) + "\n")
    print(f"chosen on validation: {chosen}; wrote {path}")
    return record


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--lr", type=float, default=RECIPE["lr"])
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--jobs", type=int, default=2, help="parallel runs (one thread each)")
    parser.add_argument("--out", default=None, help="one run: the checkpoint file; all: a folder")
    args = parser.parse_args(argv)
    if args.arch is None:
        return run_all(args.steps, args.jobs, None if args.out is None else Path(args.out))
    return _run((args.arch, args.seed, args.lr, args.steps, args.out))


if __name__ == "__main__":
    main()
