"""Train the models notebook 07 loads: selective copying (Mamba, the LTI SSM in the same block,
and that LTI SSM without the gate; 3 seeds each) and induction heads (Mamba vs attention with
absolute positions; Mamba's training length chosen on validation sequences, everything reported
on fresh test sequences).
Seeded: re-running on one thread reproduces the shipped numbers.

    python tools/train_mamba.py                  # everything (about 15 min CPU on 1 thread)
    python tools/train_mamba.py selcopy          # selective copying: s6, lti, lti_nogate
    python tools/train_mamba.py induction        # induction heads: Mamba and attention
    python tools/train_mamba.py selcopy --models s6 --seeds 0   # one model, one seed

Each model is written to data/mamba_<task>_<model>.safetensors (the first seed's weights) with
its config and measured metrics (accuracies of every seed, training CPU seconds on one thread)
as metadata. All models discretize with Ā = exp(ΔA) and the Euler B̄ = ΔB (Mamba's reference
code; ``course_lib.scan``, ``method="euler"``).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from course_lib import setup  # noqa: E402
from course_lib.data.synthetic import induction_heads, selective_copying  # noqa: E402
from course_lib.experiments.mamba import (
    build_model,
    last_token_accuracy,
    model_config,  # noqa: E402
    scored_loss,
)
from course_lib.training import accuracy, data_dir, save_checkpoint, train  # noqa: E402

SEEDS = (0, 1, 2)
# Selective copying at CPU scale (the paper: 16 data tokens among 4096, vocabulary 16).
SELCOPY = dict(length=32, n_data=4, n_tokens=8)
SELCOPY_TRAIN = dict(steps=850, batch=32, lr=5e-3, warmup=30)
SELCOPY_MODEL = dict(d_model=32, n_layers=2, d_state=8)
# kind -> (selection on?, gate on?): the rows of the paper's Table 1 that we can build.
SELCOPY_KINDS = {"s6": (True, True), "lti": (False, True), "lti_nogate": (False, False)}
SELCOPY_TEST_SEED = 1234  # 1000 test sequences; no choice is made on them
# Induction heads: train at one of INDUCTION_LENGTHS, test at 1x ... 64x (the paper: 256 -> up
# to 2^20). The length is chosen by the accuracy at 16x on VAL_SEED sequences; the reported
# figures come from TEST_SEED sequences, used for nothing else. (An earlier exploration scored
# lengths 32, 40, 48, 64 and step counts 500-900 on the sequences now used for validation.)
INDUCTION = dict(length=40, n_tokens=16)
INDUCTION_LENGTHS = (32, 40, 48, 64)
INDUCTION_TRAIN = dict(steps=600, batch=32, lr=3e-3, warmup=30)
INDUCTION_MODEL = dict(d_model=32, n_layers=2, d_state=16)
ATTENTION_MODEL = dict(d_model=32, n_heads=4, n_layers=2)
ATTENTION_TRAIN = dict(INDUCTION_TRAIN, steps=1500)  # attention learns the task later
TEST_FACTORS = (1, 2, 4, 8, 16, 32, 64)
SELECT_FACTOR, VAL_SEED, VAL_BATCH, TEST_SEED, TEST_BATCH = 16, 4321, 200, 8642, 500


def selcopy_config(kind: str, seed: int = 0) -> dict:
    """A kind of SELCOPY_KINDS: 's6' (Mamba), 'lti' (selection off: Δ, B, C fixed parameters),
    'lti_nogate' (the LTI model without the SiLU(z) gate)."""
    if kind not in SELCOPY_KINDS:
        raise ValueError(f"selcopy_config: kind must be one of {list(SELCOPY_KINDS)}, got {kind!r}")
    selective, gate = SELCOPY_KINDS[kind]
    return {
        **model_config(
            "mamba", vocab_size=SELCOPY["n_tokens"] + 2, selective=selective, gate=gate, **SELCOPY_MODEL
        ),
        "task": SELCOPY,
        "train": {"command": "python tools/train_mamba.py selcopy", "seed": seed, **SELCOPY_TRAIN},
    }


def selcopy_model(kind: str, seed: int = 0):
    torch.manual_seed(seed)
    return build_model(selcopy_config(kind, seed))


def selcopy_eval(model, batch: int = 1000, seed: int = SELCOPY_TEST_SEED) -> float:
    x, y = selective_copying(batch, seed=seed, **SELCOPY)
    with torch.no_grad():
        return accuracy(model(x), y)


def induction_config(kind: str, seed: int = 0, length: int = INDUCTION["length"]) -> dict:
    """'mamba' or 'attention' (absolute sinusoidal positions) for induction heads."""
    model = INDUCTION_MODEL if kind == "mamba" else dict(ATTENTION_MODEL, max_len=length * max(TEST_FACTORS))
    recipe = INDUCTION_TRAIN if kind == "mamba" else ATTENTION_TRAIN
    return {
        **model_config(kind, vocab_size=INDUCTION["n_tokens"] + 1, **model),
        "task": dict(INDUCTION, length=length),
        "train": {"command": "python tools/train_mamba.py induction", "seed": seed, **recipe},
    }


def induction_model(kind: str, seed: int = 0, length: int = INDUCTION["length"]):
    torch.manual_seed(seed)
    return build_model(induction_config(kind, seed, length))


def induction_eval(
    model, factor: int, batch: int = TEST_BATCH, seed: int = TEST_SEED, length: int = INDUCTION["length"]
) -> float:
    """Accuracy at factor x the training length, in mini-batches of <= 8192 tokens."""
    x, y = induction_heads(batch, length * factor, INDUCTION["n_tokens"], seed=seed)
    return last_token_accuracy(model, x, y)


def fit(model, sample, cfg: dict, seed: int, desc: str):
    """Train with seeded batches; returns (TrainResult, CPU seconds of this process)."""
    gen = torch.Generator().manual_seed(seed)
    cpu = time.process_time()
    result = train(
        model,
        lambda step: sample(cfg["batch"], gen),
        scored_loss,
        steps=cfg["steps"],
        lr=cfg["lr"],
        warmup=cfg["warmup"],
        desc=desc,
    )
    return result, time.process_time() - cpu


def run_selcopy(seeds=SEEDS, kinds=tuple(SELCOPY_KINDS)) -> dict:
    """Train every kind with every seed; save the first seed's model with all seeds' accuracies."""
    results = {}
    for kind in kinds:
        by_seed, first = {}, None
        for seed in seeds:
            model = selcopy_model(kind, seed)
            res, cpu = fit(
                model,
                lambda b, g: selective_copying(b, generator=g, **SELCOPY),
                SELCOPY_TRAIN,
                seed + 1,
                f"selcopy {kind} seed {seed}",
            )
            by_seed[str(seed)] = round(selcopy_eval(model), 4)
            print(
                f"selective copying {kind:>10s} seed {seed}: test accuracy {by_seed[str(seed)]:.1%}, "
                f"{cpu:.1f} s CPU ({res.seconds:.1f} s wall)",
                flush=True,
            )
            if first is None:
                first = (seed, model, res, cpu)
        seed, model, res, cpu = first
        accs = list(by_seed.values())
        metrics = {
            "accuracy": by_seed[str(seed)],
            "accuracy_by_seed": by_seed,
            "accuracy_mean": round(sum(accs) / len(accs), 4),
            "test": f"{1000} sequences, seed {SELCOPY_TEST_SEED}",
            "train_cpu_s": round(cpu, 1),
            "train_wall_s": round(res.seconds, 1),
            "final_loss": round(res.final_loss, 4),
            "params": sum(p.numel() for p in model.parameters()),
        }
        save_checkpoint(
            model, data_dir() / f"mamba_selcopy_{kind}.safetensors", selcopy_config(kind, seed), metrics
        )
        results[kind] = metrics
    return results


def train_induction(kind: str, seed: int, length: int):
    model = induction_model(kind, seed, length)
    res, cpu = fit(
        model,
        lambda b, g: induction_heads(b, length, INDUCTION["n_tokens"], generator=g),
        INDUCTION_TRAIN if kind == "mamba" else ATTENTION_TRAIN,
        seed + 1,
        f"induction {kind} L={length} seed {seed}",
    )
    return model, res, cpu


def run_induction(seeds=SEEDS, kinds=("mamba", "attention")) -> dict:
    """Choose Mamba's training length on validation sequences, then test on fresh ones."""
    first = seeds[0]
    candidates, validation = {}, {}
    for length in INDUCTION_LENGTHS:  # 1: choose on the validation seed
        candidates[length] = train_induction("mamba", first, length)
        validation[str(length)] = round(
            induction_eval(candidates[length][0], SELECT_FACTOR, VAL_BATCH, VAL_SEED, length), 4
        )
        print(
            f"induction mamba L={length}: validation accuracy at {SELECT_FACTOR}x "
            f"{validation[str(length)]:.1%}",
            flush=True,
        )
    length = max(INDUCTION_LENGTHS, key=lambda n: validation[str(n)])  # first of the best
    print(f"chosen training length: {length}")
    results = {}
    for kind in kinds:  # 2: report on the test seed
        models = {}
        for seed in seeds if kind == "mamba" else seeds[:1]:
            models[seed] = (
                candidates[length]
                if kind == "mamba" and seed == first
                else train_induction(kind, seed, length)
            )
        model, res, cpu = models[first]
        accs = {str(f): round(induction_eval(model, f, length=length), 4) for f in TEST_FACTORS}
        by_seed = {
            str(seed): round(induction_eval(m, SELECT_FACTOR, length=length), 4)
            for seed, (m, _, _) in models.items()
        }
        metrics = {
            "accuracy_by_factor": accs,
            f"test_accuracy_{SELECT_FACTOR}x_by_seed": by_seed,
            "test": f"{TEST_BATCH} sequences per length, seed {TEST_SEED}",
            "train_cpu_s": round(cpu, 1),
            "train_wall_s": round(res.seconds, 1),
            "final_loss": round(res.final_loss, 4),
            "params": sum(p.numel() for p in model.parameters()),
        }
        if kind == "mamba":
            metrics.update(
                {
                    f"validation_accuracy_{SELECT_FACTOR}x_by_length": validation,
                    "validation": f"{VAL_BATCH} sequences, seed {VAL_SEED}",
                }
            )
        save_checkpoint(
            model,
            data_dir() / f"mamba_induction_{kind}.safetensors",
            induction_config(kind, first, length),
            metrics,
        )
        shown = ", ".join(f"{f}x {a:.0%}" for f, a in accs.items())
        print(
            f"induction heads {kind:>9s} (test): {shown}; {SELECT_FACTOR}x by seed {by_seed}; "
            f"{cpu:.1f} s CPU, {metrics['params']} params",
            flush=True,
        )
        results[kind] = metrics
    return results


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("tasks", nargs="*", choices=["selcopy", "induction", []], help="default: both")
    parser.add_argument("--seeds", type=int, nargs="+", default=list(SEEDS))
    parser.add_argument(
        "--models", nargs="*", help=f"only these: {' '.join(SELCOPY_KINDS)} (selcopy), mamba attention"
    )
    args = parser.parse_args(argv)
    setup(seed=args.seeds[0], threads=1)
    pick = lambda kinds: [k for k in kinds if not args.models or k in args.models]  # noqa: E731
    tasks = args.tasks or ["selcopy", "induction"]
    if "selcopy" in tasks:
        run_selcopy(args.seeds, pick(tuple(SELCOPY_KINDS)))
    if "induction" in tasks:
        run_induction(args.seeds, pick(("mamba", "attention")))


if __name__ == "__main__":
    main()
