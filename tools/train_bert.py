"""Pre-train the tiny BERT of notebook 04 on the story corpus and measure fine-tuning.

    python tools/train_bert.py                 # writes data/bert_tiny.safetensors (seeded)
    python tools/train_bert.py --steps 100 --seeds 1 --out /tmp/bert_quick.safetensors  # smoke run
    python tools/train_bert.py --finetune-only  # keep the pre-trained weights, redo step 3 (sweep)
    python tools/train_bert.py --tables-only    # keep the sweep, redo only its test tables

1. Pre-training: masked LM (15% of positions, 80/10/10) + next-sentence prediction on NSP pairs
   cut from the training stories, with course_lib.training.train (a progress bar).
2. Held-out figures: MLM and NSP accuracy on the test split.
3. Fine-tuning with few labels, on two tasks: the story's setting (Story.label, 4 classes) from
   32 labelled training stories, and a grammar task (CoLA-style: is a sentence as the language
   writes it, or were two adjacent words swapped?) from 64 labelled sentences. Three contenders:
   pretrained + fine-tuned, the same architecture from scratch, a linear probe on the frozen
   pretrained encoder. Each contender gets the same small sweep (pooling x learning rate x
   steps), run for 3 seeds (labelled set and initialisation) and scored on the VALIDATION
   split; the recipe with the best mean validation accuracy (over the whole grid, and among
   the recipes of each pooling, so that all contenders can be compared with the same pooling)
   is then trained again and scored once per seed on the test split. The test numbers never
   choose anything.
The checkpoint carries the course's one metadata schema (course_lib/training.py): config =
{"model": BertConfig, "task": {...}, "train": {"command", "seed", the recipe}}, metrics = {the
held-out figures, the setting-word curve, the whole validation grid and test tables,
"train_cpu_s", "train_wall_s"} (CPU and wall seconds of this process: pre-training plus sweep).
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import time
from pathlib import Path

import torch

from course_lib import setup
from course_lib.bert import BertConfig, BertForPretraining, pretraining_loss
from course_lib.data.stories import ANIMALS, OBJECTS, PLACES, corpus_splits
from course_lib.data.tokenizer import build_tokenizer
from course_lib.experiments.bert import (
    CLASSIFIERS,
    classifier_accuracy,
    finetune_classifier,
    finetuning_task,
    load_bert_tiny,
    make_classifier,
    pretraining_accuracy,
    pretraining_batch,
    select_on_validation,
)
from course_lib.training import data_dir, save_checkpoint, train

CONFIG = dict(d_model=64, n_heads=4, n_layers=2, d_ff=256, max_len=96, dropout=0.0)
PRETRAIN = dict(steps=3000, batch_size=32, lr=5e-3, warmup=100, seed=0)
TASKS = {"setting": dict(n_labels=32, batch_size=32), "grammar": dict(n_labels=64, batch_size=32)}
N_EVAL = 1000  # validation and test sentences of the grammar task
# the sweep, the same for every contender (the frozen probe gets larger learning rates: only a
# linear layer learns); listed cheapest first, which wins ties
SWEEP = dict(pooling=("mean", "cls"), steps=(40, 120), lr=(3e-4, 1e-3, 3e-3), probe_lr=(3e-3, 1e-2, 3e-2))


def pretrain(
    config: BertConfig, stories, tokenizer, steps: int, batch_size: int, lr: float, warmup: int, seed: int
) -> tuple[BertForPretraining, object]:
    """Seeded MLM + NSP pre-training; returns (model, TrainResult)."""
    torch.manual_seed(seed)
    model = BertForPretraining(config)
    g = torch.Generator().manual_seed(seed)
    probe = setting_word_accuracy(stories[-256:], tokenizer, config.max_len)
    result = train(
        model,
        lambda step: pretraining_batch(stories, tokenizer, batch_size, g, config.max_len),
        pretraining_loss,
        steps,
        lr,
        warmup=warmup,
        weight_decay=0.01,
        desc="pretrain",
        eval_fn=lambda: probe(model),
        eval_every=250,
    )
    return model, result


def setting_word_accuracy(stories, tokenizer, max_len: int):
    """eval_fn: MLM accuracy on masked places/objects/animals, words only the setting predicts.

    A model that ignores the setting scores about 1/24 on them; one that infers the setting from
    the rest of the story about 1/6. It shows when pre-training starts to use long-range context.
    """
    words = {w for table in (PLACES, OBJECTS) for ws in table.values() for w in ws}
    words |= {w for pairs in ANIMALS.values() for pair in pairs for w in pair}
    ids = torch.tensor([tokenizer.token_to_id[w] for w in sorted(words)])
    batch = pretraining_batch(stories, tokenizer, len(stories), torch.Generator().manual_seed(7), max_len)
    inputs, segments, labels, _ = batch
    keep = torch.isin(labels, ids)

    def accuracy(model) -> float:
        logits = model(inputs, segments)[0]
        value = (logits.argmax(-1)[keep] == labels[keep]).float().mean().item()
        print(f"  setting-word MLM accuracy {value:.3f} ({int(keep.sum())} positions)", flush=True)
        return value

    return accuracy


def sweep_task(pretrained: BertForPretraining, splits, tokenizer, task: str, seeds: int) -> dict:
    """The validation sweep of the three contenders on one task: {"hyper", "grid"}.

    grid: {contender: [{"pooling", "lr", "steps", "val": [accuracy per seed]}, ...]}; no test
    accuracy is computed here.
    """
    hp, max_len = TASKS[task], pretrained.config.max_len
    data = [
        finetuning_task(task, splits, tokenizer, seed, hp["n_labels"], max_len, N_EVAL)
        for seed in range(seeds)
    ]
    out = {"hyper": dict(hp, n_eval=N_EVAL, seeds=seeds, sweep=SWEEP), "grid": {}}
    for kind in CLASSIFIERS:
        lrs = SWEEP["probe_lr"] if kind.startswith("linear probe") else SWEEP["lr"]
        out["grid"][kind] = []
        for pooling, steps, lr in itertools.product(SWEEP["pooling"], SWEEP["steps"], lrs):
            val = [
                round(
                    classifier_accuracy(
                        finetune_one(kind, pretrained, d, pooling, lr, steps, hp["batch_size"], seed),
                        *d["val"],
                    ),
                    4,
                )
                for seed, d in enumerate(data)
            ]
            out["grid"][kind].append(dict(pooling=pooling, lr=lr, steps=steps, val=val))
            print(
                f"  {task:8s} {kind:24s} {pooling:4s} lr {lr:g} steps {steps:3d}: val "
                + " ".join(f"{v:.3f}" for v in val),
                flush=True,
            )
    return out


def test_tables(pretrained: BertForPretraining, splits, tokenizer, task: str, result: dict) -> dict:
    """Test accuracy of the recipes chosen on validation, added to ``result`` (the sweep's output).

    "selected" / "test_accuracy": each contender's best recipe over the whole grid;
    "same_pooling"[p]: the best recipe among those with pooling p, for every contender alike.
    Each chosen recipe is trained again per seed (checked: the same validation accuracy as in
    the sweep) and scored once on the test split.
    """
    hp, max_len = result["hyper"], pretrained.config.max_len
    data = [
        finetuning_task(task, splits, tokenizer, seed, hp["n_labels"], max_len, hp["n_eval"])
        for seed in range(hp["seeds"])
    ]
    cache = {}

    def test_of(kind, r):
        key = (kind, r["pooling"], r["lr"], r["steps"])
        if key not in cache:
            models = [
                finetune_one(kind, pretrained, d, r["pooling"], r["lr"], r["steps"], hp["batch_size"], seed)
                for seed, d in enumerate(data)
            ]
            val = [round(classifier_accuracy(m, *d["val"]), 4) for m, d in zip(models, data)]
            assert val == r["val"], f"{key}: validation {val} differs from the sweep's {r['val']}"
            cache[key] = [round(classifier_accuracy(m, *d["test"]), 4) for m, d in zip(models, data)]
        return cache[key]

    grid = result["grid"]
    result["selected"] = {k: select_on_validation(g) for k, g in grid.items()}
    result["test_accuracy"] = {k: test_of(k, r) for k, r in result["selected"].items()}
    result["same_pooling"] = {}
    for pooling in SWEEP["pooling"]:
        chosen = {k: select_on_validation([r for r in g if r["pooling"] == pooling]) for k, g in grid.items()}
        result["same_pooling"][pooling] = {
            "selected": chosen,
            "test_accuracy": {k: test_of(k, r) for k, r in chosen.items()},
        }
    return result


def finetune_one(
    kind, pretrained, data: dict, pooling: str, lr: float, steps: int, batch_size: int, seed: int
):
    """One contender trained with one recipe on one seed's labelled set (what the notebook re-runs)."""
    model = make_classifier(kind, pretrained, data["n_classes"], seed, pooling)
    finetune_classifier(model, *data["train"], steps, lr, batch_size, seed, progress=False)
    return model


def print_table(title: str, result: dict) -> None:
    """Print each contender's chosen recipe, its validation mean and test accuracy per seed."""
    print(title)
    tables = [("best recipe", result)] + [(f"all {p} pooling", t) for p, t in result["same_pooling"].items()]
    for name, table in tables:
        for kind, test in table["test_accuracy"].items():
            r = table["selected"][kind]
            print(
                f"  {name:17s} {kind:24s} {r['pooling']:4s} lr {r['lr']:g} steps {r['steps']:3d}"
                f"  val {statistics.mean(r['val']):.3f}  test "
                + " ".join(f"{a:.3f}" for a in test)
                + f"   mean {statistics.mean(test):.3f}"
            )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=PRETRAIN["steps"])
    parser.add_argument("--lr", type=float, default=PRETRAIN["lr"])
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds")
    parser.add_argument("--out", type=Path, default=data_dir() / "bert_tiny.safetensors")
    parser.add_argument(
        "--finetune-only",
        action="store_true",
        help="load --out, redo only the fine-tuning sweep and tables, save again",
    )
    parser.add_argument(
        "--tables-only",
        action="store_true",
        help="load --out, keep its sweep, redo only the test tables, save again",
    )
    args = parser.parse_args(argv)

    setup(seed=0)
    wall, cpu = time.perf_counter(), time.process_time()
    tokenizer, splits = build_tokenizer(), corpus_splits(0)
    if args.finetune_only or args.tables_only:
        model, meta = load_bert_tiny(args.out)
        checkpoint, metrics = meta["config"], meta["metrics"]
        if not args.tables_only:
            checkpoint["train"]["finetune_seeds"] = args.seeds
        spent = (metrics.pop("train_cpu_s"), metrics.pop("train_wall_s"))  # earlier steps' time
        config = model.config
    else:
        config = BertConfig(vocab_size=tokenizer.vocab_size, **CONFIG)
        hp = dict(PRETRAIN, steps=args.steps, lr=args.lr)
        model, metrics = pretrain_and_measure(config, splits, tokenizer, hp)
        checkpoint = checkpoint_config(config, hp, args.seeds)
        spent = (0.0, 0.0)
    model.eval()
    for task, key in (("setting", "finetune"), ("grammar", "finetune_grammar")):
        result = metrics[key] if args.tables_only else sweep_task(model, splits, tokenizer, task, args.seeds)
        metrics[key] = test_tables(model, splits, tokenizer, task, result)
        print_table(f"{task}: test accuracy of the recipes chosen on validation", metrics[key])
    cpu_before = spent[0]  # None when an earlier run did not record its CPU time
    metrics["train_cpu_s"] = None if cpu_before is None else round(cpu_before + time.process_time() - cpu, 1)
    metrics["train_wall_s"] = round(spent[1] + time.perf_counter() - wall, 1)
    path = save_checkpoint(model, args.out, checkpoint, metrics)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def checkpoint_config(config: BertConfig, hp: dict, seeds: int) -> dict:
    """The checkpoint's config in the course's one schema: model, task, train."""
    return {
        "model": config.to_dict(),
        "task": {
            "corpus": "stories",
            "corpus_seed": 0,
            "tokenizer": "word-level (build_tokenizer)",
            "pretraining": "masked LM (15%; 80/10/10) + next-sentence prediction",
            "finetuning": list(TASKS),
        },
        "train": {
            "command": "python tools/train_bert.py",
            "seed": hp["seed"],
            "steps": hp["steps"],
            "batch_size": hp["batch_size"],
            "lr": hp["lr"],
            "warmup": hp["warmup"],
            "weight_decay": 0.01,
            "finetune_seeds": seeds,
        },
    }


def pretrain_and_measure(config, splits, tokenizer, hp: dict):
    """Pre-train, then measure held-out MLM / NSP accuracy; returns (model, metrics)."""
    start = time.perf_counter()
    model, result = pretrain(
        config, splits["train"], tokenizer, hp["steps"], hp["batch_size"], hp["lr"], hp["warmup"], hp["seed"]
    )
    held_out = pretraining_accuracy(model, splits["test"], tokenizer, config.max_len)
    print(
        f"pretrain: {time.perf_counter() - start:.0f} s, final loss {result.final_loss:.3f}, "
        f"test MLM accuracy {held_out['mlm_accuracy']:.3f}, NSP accuracy "
        f"{held_out['nsp_accuracy']:.3f}"
    )
    curve = [
        round(sum(result.losses[i : i + 50]) / len(result.losses[i : i + 50]), 4)
        for i in range(0, len(result.losses), 50)
    ]
    metrics = {
        "setting_word_accuracy": [[s, round(v, 4)] for s, v in result.evals],
        "final_loss": round(result.final_loss, 4),
        "loss_curve": curve,
        **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in held_out.items()},
    }
    return model, metrics


if __name__ == "__main__":
    main()
