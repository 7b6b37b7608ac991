"""Pre-train the tiny BERT of notebook 04 on the story corpus and measure fine-tuning.

    python tools/train_bert.py                 # writes data/bert_tiny.safetensors (seeded)
    python tools/train_bert.py --steps 100 --seeds 1 --out /tmp/bert_quick.safetensors  # smoke run

1. Pre-training: masked LM (15% of positions, 80/10/10) + next-sentence prediction on NSP pairs
   cut from the training stories, with course_lib.training.train (a progress bar).
2. Held-out figures: MLM and NSP accuracy on the test split.
3. Fine-tuning with few labels: the story's setting (Story.label, 4 classes) from N labelled
   training stories; pretrained+fine-tuned vs the same architecture from scratch vs a linear
   probe on frozen pretrained features, test-split accuracy, for several seeds.
The checkpoint carries the config and all these metrics as safetensors metadata.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time
from pathlib import Path

import torch

from course_lib import setup
from course_lib.bert import (Bert, BertClassifier, BertConfig, BertForPretraining,
                             classification_batch, classifier_accuracy, finetune_classifier,
                             pretraining_accuracy, pretraining_batch, pretraining_loss)
from course_lib.data.stories import LABELS, corpus_splits
from course_lib.data.tokenizer import build_tokenizer
from course_lib.training import data_dir, save_checkpoint, train

CONFIG = dict(d_model=64, n_heads=4, n_layers=2, d_ff=256, max_len=96, dropout=0.1)
PRETRAIN = dict(steps=1200, batch_size=32, lr=2e-3, warmup=100, seed=0)
FINETUNE = dict(n_labels=32, steps=60, lr=1e-3, probe_lr=1e-2, batch_size=32)


def pretrain(config: BertConfig, stories, tokenizer, steps: int, batch_size: int, lr: float,
             warmup: int, seed: int) -> tuple[BertForPretraining, object]:
    """Seeded MLM + NSP pre-training; returns (model, TrainResult)."""
    torch.manual_seed(seed)
    model = BertForPretraining(config)
    g = torch.Generator().manual_seed(seed)
    result = train(model, lambda step: pretraining_batch(stories, tokenizer, batch_size, g,
                                                         config.max_len),
                   pretraining_loss, steps, lr, warmup=warmup, weight_decay=0.01, desc="pretrain")
    return model, result


def labelled_subset(stories, n: int, seed: int):
    """n training stories picked by a seeded permutation (the few labels we can afford)."""
    g = torch.Generator().manual_seed(10_000 + seed)
    return [stories[i] for i in torch.randperm(len(stories), generator=g)[:n].tolist()]


def compare_finetuning(pretrained: BertForPretraining, splits, tokenizer, seed: int,
                       n_labels: int, steps: int, lr: float, probe_lr: float,
                       batch_size: int) -> dict:
    """Test accuracy of fine-tuned / from-scratch / linear-probe classifiers for one seed."""
    config, labels = pretrained.config, list(LABELS)
    x, y = classification_batch(labelled_subset(splits["train"], n_labels, seed), tokenizer,
                                labels, config.max_len)
    x_test, y_test = classification_batch(splits["test"], tokenizer, labels, config.max_len)
    torch.manual_seed(seed)
    models = {
        "pretrained + fine-tuned": BertClassifier(copy.deepcopy(pretrained.bert), len(labels),
                                                  copy.deepcopy(pretrained.pooler)),
        "from scratch": BertClassifier(Bert(config), len(labels)),
        "linear probe (frozen)": BertClassifier(copy.deepcopy(pretrained.bert), len(labels),
                                                pooling="mean", freeze=True),
    }
    out = {}
    for name, model in models.items():
        rate = probe_lr if model.frozen else lr
        finetune_classifier(model, x, y, steps, rate, batch_size, seed)
        out[name] = classifier_accuracy(model, x_test, y_test)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=PRETRAIN["steps"])
    parser.add_argument("--seeds", type=int, default=3, help="fine-tuning seeds")
    parser.add_argument("--out", type=Path, default=data_dir() / "bert_tiny.safetensors")
    args = parser.parse_args(argv)

    setup(seed=0)
    tokenizer, splits = build_tokenizer(), corpus_splits(0)
    config = BertConfig(vocab_size=tokenizer.vocab_size, **CONFIG)
    hp = dict(PRETRAIN, steps=args.steps)
    start = time.perf_counter()
    model, result = pretrain(config, splits["train"], tokenizer, hp["steps"], hp["batch_size"],
                             hp["lr"], hp["warmup"], hp["seed"])
    seconds = time.perf_counter() - start
    held_out = pretraining_accuracy(model, splits["test"], tokenizer, config.max_len)
    print(f"pretrain: {seconds:.0f} s, final loss {result.final_loss:.3f}, test MLM accuracy "
          f"{held_out['mlm_accuracy']:.3f}, NSP accuracy {held_out['nsp_accuracy']:.3f}")

    runs = [compare_finetuning(model, splits, tokenizer, seed, **FINETUNE)
            for seed in range(args.seeds)]
    table = {name: [r[name] for r in runs] for name in runs[0]}
    for name, accs in table.items():
        print(f"{name:24s} " + " ".join(f"{a:.3f}" for a in accs)
              + f"   mean {statistics.mean(accs):.3f}")
    metrics = {"pretrain_seconds": round(seconds, 1), "final_loss": round(result.final_loss, 4),
               "loss_curve": [round(sum(result.losses[i:i + 50]) / len(result.losses[i:i + 50]), 4)
                              for i in range(0, len(result.losses), 50)],
               **{k: (round(v, 4) if isinstance(v, float) else v) for k, v in held_out.items()},
               "finetune": {"hyper": FINETUNE, "test_accuracy": table}, "pretrain": hp}
    model.eval()
    path = save_checkpoint(model, args.out, config.to_dict(), metrics)
    print(f"wrote {path} ({path.stat().st_size / 1e6:.2f} MB)")


if __name__ == "__main__":
    main()
