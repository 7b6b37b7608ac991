"""Pre-train the tiny BERT of notebook 04 on the story corpus and measure fine-tuning.

    python tools/train_bert.py                 # writes data/bert_tiny.safetensors (seeded)
    python tools/train_bert.py --steps 100 --seeds 1 --out /tmp/bert_quick.safetensors  # smoke run
    python tools/train_bert.py --finetune-only  # keep the pre-trained weights, redo step 3

1. Pre-training: masked LM (15% of positions, 80/10/10) + next-sentence prediction on NSP pairs
   cut from the training stories, with course_lib.training.train (a progress bar).
2. Held-out figures: MLM and NSP accuracy on the test split.
3. Fine-tuning with few labels: the story's setting (Story.label, 4 classes) from N labelled
   training stories; pretrained+fine-tuned vs the same architecture from scratch vs a linear
   probe on frozen pretrained features, test-split accuracy, for several seeds.
4. The same three contenders on a grammar task (CoLA-style): is a sentence as the language
   writes it, or were two adjacent words swapped? N labelled sentences, 1000 test sentences.
The checkpoint carries the config and all these metrics as safetensors metadata.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path

import torch

from course_lib import setup
from course_lib.bert import BertConfig, BertForPretraining, pretraining_loss
from course_lib.bert_training import (CLASSIFIERS, classification_batch, classifier_accuracy,
                                      finetune_classifier, grammaticality_examples,
                                      labelled_subset, make_classifier, pretraining_accuracy,
                                      pretraining_batch)
from course_lib.data.stories import ANIMALS, LABELS, OBJECTS, PLACES, corpus_splits
from course_lib.data.tokenizer import build_tokenizer
from course_lib.training import data_dir, load_checkpoint, save_checkpoint, train

CONFIG = dict(d_model=64, n_heads=4, n_layers=2, d_ff=256, max_len=96, dropout=0.0)
PRETRAIN = dict(steps=3000, batch_size=32, lr=5e-3, warmup=100, seed=0)
FINETUNE = dict(n_labels=32, steps=40, lr=1e-3, probe_lr=1e-2, batch_size=32)
GRAMMAR = dict(n_labels=64, steps=60, lr=1e-3, probe_lr=1e-2, batch_size=32, n_test=1000)


def pretrain(config: BertConfig, stories, tokenizer, steps: int, batch_size: int, lr: float,
             warmup: int, seed: int) -> tuple[BertForPretraining, object]:
    """Seeded MLM + NSP pre-training; returns (model, TrainResult)."""
    torch.manual_seed(seed)
    model = BertForPretraining(config)
    g = torch.Generator().manual_seed(seed)
    probe = setting_word_accuracy(stories[-256:], tokenizer, config.max_len)
    result = train(model, lambda step: pretraining_batch(stories, tokenizer, batch_size, g,
                                                         config.max_len),
                   pretraining_loss, steps, lr, warmup=warmup, weight_decay=0.01, desc="pretrain",
                   eval_fn=lambda: probe(model), eval_every=250)
    return model, result


def setting_word_accuracy(stories, tokenizer, max_len: int):
    """eval_fn: MLM accuracy on masked places/objects/animals, words only the setting predicts.

    A model that ignores the setting scores about 1/24 on them; one that infers the setting from
    the rest of the story about 1/6. It shows when pre-training starts to use long-range context.
    """
    words = {w for table in (PLACES, OBJECTS) for ws in table.values() for w in ws}
    words |= {w for pairs in ANIMALS.values() for pair in pairs for w in pair}
    ids = torch.tensor([tokenizer.token_to_id[w] for w in sorted(words)])
    batch = pretraining_batch(stories, tokenizer, len(stories), torch.Generator().manual_seed(7),
                              max_len)
    inputs, segments, labels, _ = batch
    keep = torch.isin(labels, ids)

    def accuracy(model) -> float:
        logits = model(inputs, segments)[0]
        value = (logits.argmax(-1)[keep] == labels[keep]).float().mean().item()
        print(f"  setting-word MLM accuracy {value:.3f} ({int(keep.sum())} positions)", flush=True)
        return value

    return accuracy


def compare_finetuning(pretrained: BertForPretraining, splits, tokenizer, seed: int,
                       n_labels: int, steps: int, lr: float, probe_lr: float,
                       batch_size: int) -> dict:
    """Test accuracy of fine-tuned / from-scratch / linear-probe classifiers for one seed."""
    labels = list(LABELS)
    max_len = pretrained.config.max_len
    x, y = classification_batch(labelled_subset(splits["train"], n_labels, seed), tokenizer,
                                labels, max_len)
    x_test, y_test = classification_batch(splits["test"], tokenizer, labels, max_len)
    out = {}
    for kind in CLASSIFIERS:
        model = make_classifier(kind, pretrained, len(labels), seed)
        finetune_classifier(model, x, y, steps, probe_lr if model.frozen else lr, batch_size, seed)
        out[kind] = classifier_accuracy(model, x_test, y_test)
    return out


def compare_grammar(pretrained: BertForPretraining, splits, tokenizer, seed: int, n_labels: int,
                    steps: int, lr: float, probe_lr: float, batch_size: int, n_test: int) -> dict:
    """Test accuracy of the three contenders on the swapped-words grammar task, for one seed."""
    max_len = pretrained.config.max_len
    x, y = grammaticality_examples(splits["train"], tokenizer, n_labels, seed, max_len)
    x_test, y_test = grammaticality_examples(splits["test"], tokenizer, n_test, 99, max_len)
    out = {}
    for kind in CLASSIFIERS:
        model = make_classifier(kind, pretrained, 2, seed)
        finetune_classifier(model, x, y, steps, probe_lr if model.frozen else lr, batch_size, seed)
        out[kind] = classifier_accuracy(model, x_test, y_test)
    return out


def print_table(title: str, runs: list[dict]) -> dict:
    """Print per-seed accuracies and means; return {contender: [accuracy per seed]}."""
    table = {name: [round(r[name], 4) for r in runs] for name in runs[0]}
    print(title)
    for name, accs in table.items():
        print(f"  {name:24s} " + " ".join(f"{a:.3f}" for a in accs)
              + f"   mean {statistics.mean(accs):.3f}")
    return table


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=PRETRAIN["steps"])
    parser.add_argument("--lr", type=float, default=PRETRAIN["lr"])
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds")
    parser.add_argument("--out", type=Path, default=data_dir() / "bert_tiny.safetensors")
    parser.add_argument("--finetune-only", action="store_true",
                        help="load --out, redo only the fine-tuning table, save again")
    args = parser.parse_args(argv)

    setup(seed=0)
    tokenizer, splits = build_tokenizer(), corpus_splits(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, **CONFIG)
    if args.finetune_only:
        model = BertForPretraining(config)
        metrics = load_checkpoint(model, args.out)["metrics"]
    else:
        model, metrics = pretrain_and_measure(config, splits, tokenizer,
                                              dict(PRETRAIN, steps=args.steps, lr=args.lr))
    model.eval()
    runs = [compare_finetuning(model, splits, tokenizer, seed, **FINETUNE)
            for seed in range(args.seeds)]
    table = print_table("setting of a story (4 classes):", runs)
    metrics["finetune"] = {"hyper": FINETUNE, "test_accuracy": table}
    runs = [compare_grammar(model, splits, tokenizer, seed, **GRAMMAR) for seed in range(args.seeds)]
    table = print_table("grammar: swapped words or not (2 classes):", runs)
    metrics["finetune_grammar"] = {"hyper": GRAMMAR, "test_accuracy": table}
    path = save_checkpoint(model, args.out, config.to_dict(), metrics)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


def pretrain_and_measure(config, splits, tokenizer, hp: dict):
    """Pre-train, then measure held-out MLM / NSP accuracy; returns (model, metrics)."""
    start = time.perf_counter()
    model, result = pretrain(config, splits["train"], tokenizer, hp["steps"], hp["batch_size"],
                             hp["lr"], hp["warmup"], hp["seed"])
    seconds = time.perf_counter() - start
    held_out = pretraining_accuracy(model, splits["test"], tokenizer, config.max_len)
    print(f"pretrain: {seconds:.0f} s, final loss {result.final_loss:.3f}, test MLM accuracy "
          f"{held_out['mlm_accuracy']:.3f}, NSP accuracy {held_out['nsp_accuracy']:.3f}")
    curve = [round(sum(result.losses[i:i + 50]) / len(result.losses[i:i + 50]), 4)
             for i in range(0, len(result.losses), 50)]
    metrics = {"setting_word_accuracy": [[s, round(v, 4)] for s, v in result.evals],
               "pretrain_seconds": round(seconds, 1), "final_loss": round(result.final_loss, 4),
               "loss_curve": curve, "pretrain": hp,
               **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in held_out.items()}}
    return model, metrics


if __name__ == "__main__":
    main()
