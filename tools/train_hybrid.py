"""Train the models notebook 09 loads: pure Mamba, pure attention and a hybrid (Mamba layer,
then attention layer) on multi-query associative recall, at (about) equal parameter count.

    python tools/train_hybrid.py                   # all three (about 20 min CPU on 1 thread)
    python tools/train_hybrid.py mamba hybrid      # some of them (independent: run in parallel)

Protocol, the same for every architecture (same steps, batch, data order, learning-rate grid):
each rate of LR_GRID is trained with three seeds; within each run the weights of the evaluation
step with the best accuracy on validation sequences (VAL_SEED) are kept (early stopping); the
rate with the best mean validation accuracy over the seeds is chosen, and its three seeds are
then scored on fresh test sequences (TEST_SEED) that play no part in any choice. Each model is
written to data/hybrid_<arch>.safetensors (seed 0's weights at the chosen rate) with its config,
the sweep's validation accuracies and all measured figures as metadata. Seeded: re-running on
one thread reproduces the shipped numbers.
"""

from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_lib import setup  # noqa: E402
from course_lib.data.synthetic import multi_query_recall  # noqa: E402
from course_lib.experiments.hybrid import (
    ARCHS,
    accuracy_by_pair,
    build_model,
    param_count,  # noqa: E402
    recall_accuracy,
    width_for,
)
from course_lib.experiments.mamba import scored_loss  # noqa: E402
from course_lib.training import best_on_validation, data_dir, save_checkpoint, train  # noqa: E402

TASK = dict(n_pairs=8, n_queries=8, n_keys=16, n_values=16)
VOCAB_SIZE = TASK["n_keys"] + TASK["n_values"]
MAMBA_WIDTH, N_HEADS = 26, 4  # the budget: the pure Mamba model at d_model = 26
TRAIN = dict(steps=600, batch=32, warmup=30, eval_every=50)  # the rate: chosen per architecture
LR_GRID = (1e-3, 3e-3, 1e-2, 3e-2)  # about factors of 3 around 3e-3
SEEDS = (0, 1, 2)
VAL_SEED, VAL_BATCH, TEST_SEED, TEST_BATCH = 4321, 500, 8642, 1000


def budget() -> int:
    return param_count(build_model(model_config("mamba", MAMBA_WIDTH)))


def model_config(arch: str, d_model: int) -> dict:
    return {"model": dict(vocab_size=VOCAB_SIZE, pattern=ARCHS[arch], d_model=d_model, n_heads=N_HEADS)}


def checkpoint_config(arch: str, d_model: int, lr: float, seed: int = 0) -> dict:
    return {
        **model_config(arch, d_model),
        "task": {"name": "multi_query_recall", **TASK},
        "train": {
            "command": f"python tools/train_hybrid.py {arch}",
            "seed": seed,
            **TRAIN,
            "lr": lr,
            "lr_grid": list(LR_GRID),
            "validation": f"{VAL_BATCH} sequences, seed {VAL_SEED}",
            "test": f"{TEST_BATCH} sequences, seed {TEST_SEED}",
        },
    }


def fit(arch: str, d_model: int, seed: int, val, lr: float):
    """One run at learning rate lr; keeps the weights of the best validation step.
    -> (model, info). A run that diverges so far that the model refuses its own numbers (at
    high rates Mamba's step size Δ = softplus(·) underflows to 0) ends there and keeps the best
    weights it had; ``info["diverged"]`` says where."""
    torch.manual_seed(seed)
    model = build_model(model_config(arch, d_model))
    gen = torch.Generator().manual_seed(seed + 1)
    best, history = {"acc": 0.0, "state": copy.deepcopy(model.state_dict())}, []

    def evaluate():
        acc = recall_accuracy(model, *val)
        history.append(acc)
        if acc > best["acc"]:
            best.update(acc=acc, state=copy.deepcopy(model.state_dict()))
        return acc

    cpu, wall, diverged = time.process_time(), time.perf_counter(), None
    try:
        res = train(
            model,
            lambda step: multi_query_recall(TRAIN["batch"], generator=gen, **TASK),
            scored_loss,
            steps=TRAIN["steps"],
            lr=lr,
            warmup=TRAIN["warmup"],
            eval_fn=evaluate,
            eval_every=TRAIN["eval_every"],
            desc=f"{arch} lr {lr:g} seed {seed}",
        )
        steps = [step for step, _ in res.evals]
        final_loss = round(res.final_loss, 4)
    except ValueError as error:
        if "delta must be > 0" not in str(error):  # only a diverged Δ ends a run; a bug still raises
            raise
        steps = [TRAIN["eval_every"] * (i + 1) for i in range(len(history))]
        diverged = f"after step {steps[-1] if steps else 0}: {error}"
        final_loss = None
        print(f"{arch} lr {lr:g} seed {seed} diverged {diverged}", flush=True)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    model.load_state_dict(best["state"])
    best_step = steps[history.index(best["acc"])] if best["acc"] in history else 0
    return model.eval(), {
        "val": best["acc"],
        "best_step": best_step,
        "train_cpu_s": round(cpu, 1),
        "train_wall_s": round(wall, 1),
        "final_loss": final_loss,
        "diverged": diverged,
    }


def run(arch: str) -> dict:
    val = multi_query_recall(VAL_BATCH, seed=VAL_SEED, **TASK)
    test = multi_query_recall(TEST_BATCH, seed=TEST_SEED, **TASK)
    d_model = MAMBA_WIDTH if arch == "mamba" else width_for(ARCHS[arch], budget(), VOCAB_SIZE, N_HEADS)
    sweep = {lr: {seed: fit(arch, d_model, seed, val, lr) for seed in SEEDS} for lr in LR_GRID}
    scores = {lr: [i["val"] for _, i in runs.values()] for lr, runs in sweep.items()}
    mean_val = {lr: sum(v) / len(v) for lr, v in scores.items()}
    # the best mean validation accuracy; a tie: the smaller rate
    chosen = best_on_validation(scores, lower_is_better=False)
    by_seed = sweep[chosen]
    test_acc = {str(s): round(recall_accuracy(m, *test), 4) for s, (m, _) in by_seed.items()}
    model, info = by_seed[SEEDS[0]]
    metrics = {
        "params": param_count(model),
        "budget_params": budget(),
        "validation_by_seed": {str(s): round(i["val"], 4) for s, (_, i) in by_seed.items()},
        "best_step_by_seed": {str(s): i["best_step"] for s, (_, i) in by_seed.items()},
        "test_accuracy_by_seed": test_acc,
        "test_accuracy_mean": round(sum(test_acc.values()) / len(test_acc), 4),
        "test_accuracy_by_pair": [
            round(a, 4) for a in accuracy_by_pair(model, *test, TASK["n_pairs"]).tolist()
        ],
        "chosen_lr": chosen,
        "lr_sweep": {
            f"{lr:g}": {
                "validation_by_seed": {str(s): round(i["val"], 4) for s, (_, i) in runs.items()},
                "validation_mean": round(mean_val[lr], 4),
                "best_step_by_seed": {str(s): i["best_step"] for s, (_, i) in runs.items()},
                "diverged_by_seed": {str(s): i["diverged"] for s, (_, i) in runs.items() if i["diverged"]},
            }
            for lr, runs in sweep.items()
        },
        "sweep_cpu_s": round(sum(i["train_cpu_s"] for runs in sweep.values() for _, i in runs.values()), 1),
        "train_cpu_s": info["train_cpu_s"],
        "train_wall_s": info["train_wall_s"],
        "final_loss": info["final_loss"],
    }
    save_checkpoint(
        model, data_dir() / f"hybrid_{arch}.safetensors", checkpoint_config(arch, d_model, chosen), metrics
    )
    print(
        f"{arch}: d_model {d_model}, {metrics['params']} parameters (budget {metrics['budget_params']}), "
        f"validation mean by lr { {f'{lr:g}': round(v, 4) for lr, v in mean_val.items()} }, "
        f"chosen lr {chosen:g}, test by seed {test_acc}",
        flush=True,
    )
    return metrics


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("archs", nargs="*", help=f"some of {list(ARCHS)} (default: all)")
    args = parser.parse_args(argv)
    if set(args.archs) - set(ARCHS):
        parser.error(
            f"unknown architecture(s) {sorted(set(args.archs) - set(ARCHS))}; expected some of {list(ARCHS)}"
        )
    setup(seed=0, threads=1)
    for arch in args.archs or list(ARCHS):
        run(arch)


if __name__ == "__main__":
    main()
