"""Train the notebook-06 models and ship them as tiny checkpoints in data/.

    python tools/train_ssm.py                      # both models -> data/ssm_{long,local}.safetensors
    python tools/train_ssm.py --dense-a            # dense-A sweep -> data/ssm_dense_a.safetensors
    python tools/train_ssm.py --out-dir /tmp/ssm   # re-measure without touching data/

Measured on the course machine (2 cores shared with other jobs, load ~12): 2.5-6 minutes of
wall time per model; a re-run reproduced the shipped weights bit for bit (test accuracy 1.000
for ssm_long, 0.094 for ssm_local, chance 0.125).

Task (``course_lib.data.synthetic.long_range_batch``): sequences of length 1024; the class (one of 8, chance
12.5%) appears only among the first 128 positions (scattered copies of the class token), noise
everywhere else. Read at the last position, the evidence is >= 896 steps away.
Two ``SSMClassifier`` models of identical size, read at the last position:
- ``ssm_long``: S4D kernels as long as the input (can carry the signal ~1000 steps);
- ``ssm_local``: the same model with every kernel cut to 64 taps (cannot see far: the baseline).
Seeded: a re-run reproduces the shipped accuracies (one torch thread).

``--dense-a`` (notebook 06 §7, "training a dense A directly"): one SISO SSM with a dense,
trainable A (``course_lib.experiments.ssm.DenseSSM``, n = 16, Δ learnable from 0.01) fitted by Adam to the
kernel of a long-range task, "y_k = mean of x over lags 500..599", for 300 steps
(``fit_kernel``: the loss is the task's exact population loss for a white-noise input, 1 for the
zero output). Three initializations of A (naive random N(0, 1/n) entries; the same shifted to be
stable, max Re λ = -0.5; HiPPO-LegS) x 3 seeds x 3 learning rates: 27 runs, about a minute of
CPU. The checkpoint holds every trained SSM; the metadata holds the losses and max |λ̄|.

Checkpoint metadata follows the course's one schema (``course_lib.training``): config =
{"model", "task", "train": {"command", "seed", recipe}}, metrics = {measured figures,
"train_cpu_s" (CPU seconds of this process), "train_wall_s"}.
"""

from __future__ import annotations

import argparse
import dataclasses
import time
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib import setup
from course_lib.data.synthetic import long_range_batch
from course_lib.experiments.ssm import DenseSSM, SSMClassifier, SSMConfig, fit_kernel
from course_lib.s4 import init_ssm
from course_lib.training import accuracy, data_dir, save_checkpoint, train

LENGTH, SPAN, N_CLASSES, N_NOISE = 1024, 128, 8, 8
TASK = {
    "name": "long_range_batch",
    "length": LENGTH,
    "span": SPAN,
    "n_classes": N_CLASSES,
    "n_noise": N_NOISE,
}


@contextmanager
def timed(metrics: dict):
    """Adds train_cpu_s (CPU seconds of this process) and train_wall_s to ``metrics``."""
    cpu, wall = time.process_time(), time.perf_counter()
    yield
    metrics["train_cpu_s"] = round(time.process_time() - cpu, 1)
    metrics["train_wall_s"] = round(time.perf_counter() - wall, 1)


def test_set(n: int = 512, seed: int = 1234) -> tuple[torch.Tensor, torch.Tensor]:
    """The fixed held-out set every accuracy in notebook 06 is measured on."""
    g = torch.Generator().manual_seed(seed)
    return long_range_batch(n, LENGTH, N_CLASSES, N_NOISE, SPAN, generator=g)


@torch.no_grad()
def test_accuracy(model: torch.nn.Module, n: int = 512, batch: int = 128) -> float:
    tokens, labels = test_set(n)
    model.eval()
    logits = torch.cat([model(tokens[i : i + batch]) for i in range(0, n, batch)])
    return accuracy(logits, labels)


def train_one(name: str, window: int | None, steps: int, batch: int, lr: float, out_dir=None) -> dict:
    setup(seed=0, verbose=False)
    config = SSMConfig(
        vocab_size=N_CLASSES + N_NOISE, n_classes=N_CLASSES, d_model=32, d_state=16, n_layers=2, window=window
    )
    model = SSMClassifier(config)
    g = torch.Generator().manual_seed(0)

    def get_batch(step):
        return long_range_batch(batch, LENGTH, N_CLASSES, N_NOISE, SPAN, generator=g)

    def loss_fn(m, tokens, labels):
        return F.cross_entropy(m(tokens), labels)

    metrics = {}
    with timed(metrics):
        result = train(
            model,
            get_batch,
            loss_fn,
            steps=steps,
            lr=lr,
            warmup=20,
            desc=name,
            eval_fn=lambda: test_accuracy(model, n=128),
            eval_every=25,
        )
    print(
        f"{name}: held-out accuracy during training (step, acc): "
        + ", ".join(f"({s}, {a:.2f})" for s, a in result.evals)
    )
    acc = test_accuracy(model)
    metrics.update(
        test_accuracy=round(acc, 4),
        final_loss=round(result.final_loss, 4),
        params=sum(p.numel() for p in model.parameters()),
    )
    recipe = {
        "command": "python tools/train_ssm.py",
        "seed": 0,
        "steps": steps,
        "batch": batch,
        "lr": lr,
        "warmup": 20,
        "optimizer": "AdamW",
        "test_set": "512 sequences, seed 1234",
    }
    path = save_checkpoint(
        model,
        (out_dir or data_dir()) / f"{name}.safetensors",
        config={"model": dataclasses.asdict(config), "task": TASK, "train": recipe},
        metrics=metrics,
    )
    print(
        f"{name}: test accuracy {acc:.3f}  ({metrics['train_cpu_s']:.0f} CPU s, "
        f"{metrics['train_wall_s']:.0f} s wall, loss {result.final_loss:.3f})  -> {path}"
    )
    return metrics


DENSE = {
    "length": 1024,
    "lags": [500, 600],
    "n": 16,
    "delta": 0.01,
    "steps": 300,
    "lrs": [0.003, 0.01, 0.03],
    "seeds": [0, 1, 2],
    "inits": ["random", "stable", "hippo"],
}


def dense_target(length: int = DENSE["length"], lags=DENSE["lags"]) -> torch.Tensor:
    """K_target: y_k = the mean of x_{k-j} over lags j in [lags[0], lags[1]) -> (length,)."""
    j = torch.arange(length)
    return ((j >= lags[0]) & (j < lags[1])).double() / (lags[1] - lags[0])


def dense_init(kind: str, seed: int, n: int = DENSE["n"]):
    """A, B, C for one run: init_ssm's "random" or "hippo"; "stable" = random A - (max Re λ + 0.5) I."""
    A, B, C = init_ssm("hippo" if kind == "hippo" else "random", n, seed)
    if kind == "stable":
        A = A - (torch.linalg.eigvals(A).real.max() + 0.5) * torch.eye(n, dtype=A.dtype)
    return A, B, C


def train_dense_sweep(out_dir=None) -> dict:
    """Every init x seed x lr of DENSE, one ModuleDict of DenseSSMs -> data/ssm_dense_a.safetensors."""
    setup(seed=0, verbose=False)
    target = dense_target()
    runs, metrics = torch.nn.ModuleDict(), {"runs": {}}
    with timed(metrics):
        for kind in DENSE["inits"]:
            for seed in DENSE["seeds"]:
                for lr in DENSE["lrs"]:
                    key = f"{kind}_seed{seed}_lr{DENSE['lrs'].index(lr)}"
                    model = DenseSSM(*dense_init(kind, seed), delta=DENSE["delta"])
                    history = fit_kernel(model, target, steps=DENSE["steps"], lr=lr, record_every=50)
                    runs[key] = model
                    metrics["runs"][key] = {"init": kind, "seed": seed, "lr": lr, "history": history}
                    print(
                        f"{key:22s} loss {history[0][1]:10.4g} -> {history[-1][1]:10.4g}   "
                        f"max|λ̄| {history[0][2]:.4f} -> {history[-1][2]:.4f}",
                        flush=True,
                    )
    config = {
        "model": {"n": DENSE["n"], "delta": DENSE["delta"], "runs": list(runs)},
        "task": {"length": DENSE["length"], "lags": DENSE["lags"]},
        "train": {
            "command": "python tools/train_ssm.py --dense-a",
            "seed": 0,
            "seeds": DENSE["seeds"],
            "inits": DENSE["inits"],
            "lrs": DENSE["lrs"],
            "steps": DENSE["steps"],
            "optimizer": "Adam",
            "record_every": 50,
        },
    }
    path = save_checkpoint(
        runs, (out_dir or data_dir()) / "ssm_dense_a.safetensors", config=config, metrics=metrics
    )
    print(f"-> {path}")
    return metrics


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=150)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-2)
    parser.add_argument("--out-dir", type=Path, default=None, help="default: data/")
    parser.add_argument(
        "--dense-a", action="store_true", help="only the dense-A sweep of notebook 06 §7 (ssm_dense_a)"
    )
    args = parser.parse_args()
    start = time.perf_counter()
    if args.dense_a:
        train_dense_sweep(args.out_dir)
        print(f"total {time.perf_counter() - start:.0f} s")
        return
    for name, window in (("ssm_long", None), ("ssm_local", 64)):
        train_one(name, window, args.steps, args.batch, args.lr, args.out_dir)
    print(f"total {time.perf_counter() - start:.0f} s")


if __name__ == "__main__":
    main()
