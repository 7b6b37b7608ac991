"""Notebook 08's experiments: a Llama-style and a GPT-2-style decoder trained on the stories
with one recipe, each at its own learning rate chosen on validation data, the loaders of their
checkpoints (``tools/train_llama.py``), the KV-cache measurement and the speculative-decoding
run.

The comparison: for each architecture, every learning rate of ``LR_GRID`` is trained with the
seeds ``SELECT_SEEDS`` and the rate with the lower mean *validation* loss is chosen
(``chosen_lr``); the chosen rate is then trained with the seeds ``REPORT_SEEDS`` and the models
are compared on the *test* split, which took no part in the choice. The sweep's validation
losses ship in ``data/llama_lr_sweep.json``, the chosen models as checkpoints.

The story task and its loss are 05's (``course_lib.experiments.gpt``): "[BOS] story [EOS]"
rows, the next-token loss on every non-pad target, compared with the generator's entropy floor.
"""
from __future__ import annotations

import json
import time

import torch

from course_lib import setup
from course_lib.data.stories import corpus_splits, entropy_rate
from course_lib.data.tokenizer import build_tokenizer
from course_lib.experiments.gpt import encode_stories, evaluate_loss, random_batch
from course_lib.gpt import GPT, GPTConfig, next_token_loss
from course_lib.llama import Llama, LlamaConfig, cache_bytes
from course_lib.training import best_on_validation, data_dir, load_model, save_checkpoint, train

__all__ = ["ARCHS", "RECIPE", "LR_GRID", "SELECT_SEEDS", "REPORT_SEEDS", "build_story_model",
           "train_story_model", "checkpoint_path", "load_story_model", "sweep_path",
           "load_sweep", "chosen_lr", "measure_cache_bytes", "param_total"]

COMMAND = "python tools/train_llama.py"
# the two decoders compared (about 128k parameters each) and the small draft model
ARCHS = {
    "gpt": dict(max_len=256, d_model=64, n_layers=2, n_heads=4),               # 05's tiny GPT
    "llama": dict(max_len=256, d_model=64, n_layers=2, n_heads=4, n_kv_heads=2, d_ff=238),
    "draft": dict(max_len=256, d_model=32, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=64),
}
# 05's recipe (tools/train_gpt.py), for every model; its lr is the default (the draft's), the
# compared models get theirs from the sweep
RECIPE = dict(steps=500, batch_size=32, lr=6e-3, warmup=50, betas=(0.9, 0.95), eval_every=100,
              optimizer="AdamW", clip=1.0, threads=1)
LR_GRID = (1.5e-3, 3e-3, 6e-3, 1.2e-2)     # factors of 2 around 05's 6e-3
SELECT_SEEDS = (0, 1)                     # the sweep: choose on the mean validation loss
REPORT_SEEDS = (0, 1, 2)                  # the chosen rate: compare on the test split
TASK = {"corpus": "course_lib.data.stories.corpus_splits(seed=0)", "split_seed": 0,
        "tokenizer": "course_lib.data.tokenizer.build_tokenizer()",
        "format": "[BOS] story [EOS], right-padded with [PAD]",
        "eval": "val split (the learning-rate choice), test split (the comparison)"}


def param_total(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def build_story_model(arch: str, model_config: dict) -> torch.nn.Module:
    """``"gpt"`` -> course_lib.gpt.GPT, ``"llama"`` / ``"draft"`` -> course_lib.llama.Llama."""
    if arch not in ARCHS:
        raise ValueError(f"arch must be one of {sorted(ARCHS)}, got {arch!r}")
    return GPT(GPTConfig(**model_config)) if arch == "gpt" else Llama(LlamaConfig(**model_config))


def checkpoint_path(arch: str, seed: int = 0):
    return data_dir() / f"llama_stories_{arch}_s{seed}.safetensors"


def train_story_model(arch: str, seed: int = 0, steps: int = RECIPE["steps"],
                      lr: float = RECIPE["lr"], out=None) -> dict:
    """Train one model on the stories with RECIPE at learning rate ``lr``; write its
    checkpoint (``out``, default ``checkpoint_path``); return its metrics (validation and test
    loss, their ratios to the entropy floor, the validation history, CPU and wall seconds)."""
    setup(seed=seed, verbose=False)
    tok, splits = build_tokenizer(), corpus_splits(seed=0)
    train_ids, val_ids = encode_stories(splits["train"], tok), encode_stories(splits["val"], tok)
    test_ids = encode_stories(splits["test"], tok)
    floor = entropy_rate(splits["val"])
    model_config = dict(ARCHS[arch], vocab_size=tok.vocab_size)
    model = build_story_model(arch, model_config)
    g = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(model.parameters(), lr=lr, betas=RECIPE["betas"])
    cpu0 = time.process_time()
    result = train(model, lambda step: (random_batch(train_ids, RECIPE["batch_size"], g),),
                   lambda m, ids: next_token_loss(m(ids), ids, pad_id=tok.pad_id),
                   steps=steps, lr=lr, warmup=RECIPE["warmup"], optimizer=opt,
                   eval_fn=lambda: evaluate_loss(model, val_ids, tok.pad_id),
                   eval_every=RECIPE["eval_every"], desc=f"{arch} lr {lr:g} seed {seed}")
    cpu = time.process_time() - cpu0
    val, test = result.evals[-1][1], evaluate_loss(model, test_ids, tok.pad_id)
    test_floor = entropy_rate(splits["test"])
    config = {"arch": arch, "model": model_config, "task": TASK,
              "train": dict(RECIPE, steps=steps, lr=lr, seed=seed,
                            command=f"{COMMAND} --arch {arch} --seed {seed} --lr {lr:g}")}
    metrics = {"val_loss": round(val, 4), "entropy_floor": round(floor, 4),
               "ratio": round(val / floor, 4), "test_loss": round(test, 4),
               "test_entropy_floor": round(test_floor, 4), "test_ratio": round(test / test_floor, 4),
               "params": param_total(model),
               "val_loss_history": [[s, round(v, 4)] for s, v in result.evals],
               "train_cpu_s": round(cpu, 1), "train_wall_s": round(result.seconds, 1)}
    save_checkpoint(model, checkpoint_path(arch, seed) if out is None else out,
                    config=config, metrics=metrics)
    return metrics


def sweep_path():
    return data_dir() / "llama_lr_sweep.json"


def load_sweep(path=None) -> dict:
    """The shipped learning-rate sweep: {"grid", "select_seeds", "runs": [{"arch", "lr",
    "seed", "val_loss", "val_loss_history", "train_cpu_s"}], "chosen": {arch: lr}}."""
    path = sweep_path() if path is None else path
    if not path.exists():
        raise FileNotFoundError(f"{path} not found: rebuild it with `{COMMAND}`")
    return json.loads(path.read_text())


def chosen_lr(runs: list[dict], arch: str) -> float:
    """The learning rate of ``arch`` with the lowest mean validation loss over its seeds in
    ``runs`` (each {"arch", "lr", "seed", "val_loss"}); every rate needs the same seeds."""
    by_lr: dict[float, dict[int, float]] = {}
    for run in runs:
        if run["arch"] == arch:
            by_lr.setdefault(run["lr"], {})[run["seed"]] = run["val_loss"]
    if not by_lr:
        raise ValueError(f"no runs of arch {arch!r} (expected one of "
                         f"{sorted({r['arch'] for r in runs})})")
    seeds = {lr: sorted(losses) for lr, losses in by_lr.items()}
    if len({tuple(s) for s in seeds.values()}) != 1:
        raise ValueError(f"every learning rate of {arch!r} needs the same seeds, received {seeds}")
    return best_on_validation({lr: list(losses.values()) for lr, losses in by_lr.items()})


def load_story_model(arch: str, seed: int = 0, path=None):
    """A shipped story model (``data/llama_stories_<arch>_s<seed>.safetensors``) in eval mode,
    with its metadata {"config", "metrics"}."""
    return load_model(checkpoint_path(arch, seed) if path is None else path,
                      lambda config: build_story_model(config["arch"], config["model"]),
                      rebuild=f"{COMMAND} --arch {arch} --seed {seed}")


@torch.no_grad()
def measure_cache_bytes(model: Llama, n_tokens: int = 32, dtype=torch.float32) -> float:
    """Fill the model's KV caches with n_tokens tokens of one sequence and return the bytes per
    token the cache tensors actually hold (keys + values, every layer)."""
    model = model.to(dtype)
    caches = model.new_caches(n_tokens)
    model(torch.zeros(1, n_tokens, dtype=torch.long), caches=caches)
    model.float()
    return cache_bytes(caches) / n_tokens
