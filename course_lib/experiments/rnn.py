"""Notebook 00's RNN experiments: the encoder-decoder on the toy translation, with and without
attention, scored by exact match against sentence length; and score functions compared on
associative recall."""
from __future__ import annotations

from collections import defaultdict

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.common import IGNORE_INDEX, check_token_ids
from course_lib.data.synthetic import associative_recall
from course_lib.data.translation import Pair, TranslationData, sample_pairs
from course_lib.rnn import RNNSeq2Seq, RNNSeq2SeqConfig, attend, greedy_decode, make_score
from course_lib.training import data_dir, load_model, train

__all__ = ["translation_loss", "build_translation_model", "train_translation", "eval_pairs",
           "exact_match_by_length", "load_rnn_translation", "RecallModel", "recall_loss",
           "train_recall", "recall_accuracy", "CHECKPOINT", "RECIPE"]

CHECKPOINT = "rnn_translation.safetensors"
RECIPE = dict(steps=1500, batch_size=64, lr=3e-3, warmup=50, d_model=64, eval_every=250)


def translation_loss(model: RNNSeq2Seq, src, tgt_in, tgt_out) -> torch.Tensor:
    """Teacher-forcing cross-entropy over the target tokens, padding (IGNORE_INDEX) skipped."""
    logits, _ = model(src, tgt_in)                                            # (b, t, vocab)
    return F.cross_entropy(logits.flatten(0, 1), tgt_out.flatten(), ignore_index=IGNORE_INDEX)


def build_translation_model(data: TranslationData, attention: str, d_model: int = 64,
                            seed: int = 0) -> RNNSeq2Seq:
    torch.manual_seed(seed)
    return RNNSeq2Seq(RNNSeq2SeqConfig(data.source.vocab_size, data.target.vocab_size, d_model,
                                       attention, data.pad_id, data.bos_id, data.eos_id))


def eval_pairs(n_test: int = 1000, n_val: int = 500) -> tuple[list[Pair], list[Pair]]:
    """Held-out sentences (never trained on): the test set (seed 0) and a validation set
    (seed 1) with every test sentence removed, so selecting on it never sees the test set."""
    test = sample_pairs(n_test, "test", seed=0, distinct=True)
    seen = {p.source for p in test}
    val = [p for p in sample_pairs(3 * n_val, "test", seed=1, distinct=True) if p.source not in seen]
    return test, val[:n_val]


def exact_match_by_length(model: RNNSeq2Seq, data: TranslationData, pairs: list[Pair],
                          batch_size: int = 500) -> dict[int, tuple[int, int]]:
    """{source length in words: (exactly translated, sentences)} by greedy decoding."""
    out = defaultdict(lambda: [0, 0])
    for i in range(0, len(pairs), batch_size):
        chunk = pairs[i:i + batch_size]
        tokens, _ = greedy_decode(model, data.encode_source([p.source for p in chunk]))
        for pred, pair in zip(data.decode_target(tokens), chunk):
            row = out[len(pair.source.split())]
            row[0] += pred == pair.target
            row[1] += 1
    return {n: (hits, total) for n, (hits, total) in sorted(out.items())}


def _overall(by_length: dict[int, tuple[int, int]]) -> float:
    return sum(h for h, _ in by_length.values()) / sum(n for _, n in by_length.values())


def train_translation(attention: str, seed: int = 0, steps: int = RECIPE["steps"],
                      val: list[Pair] | None = None, data: TranslationData | None = None):
    """Train one model with RECIPE (Adam, warm-up then cosine, teacher forcing on freshly
    sampled training sentences). Every ``eval_every`` steps the validation exact match is
    measured and the best weights are kept (selection on validation only).
    Returns (model with the selected weights, {"val_curve", "best_step", "val_exact_match"})."""
    data = data or TranslationData()
    r = RECIPE
    model = build_translation_model(data, attention, r["d_model"], seed)
    best = {"score": -1.0, "step": 0, "state": None}
    curve = []

    def evaluate():
        score = _overall(exact_match_by_length(model, data, val)) if val else 0.0
        step = (len(curve) + 1) * r["eval_every"]
        curve.append((min(step, steps), round(score, 4)))
        if score > best["score"]:
            best.update(score=score, step=min(step, steps),
                        state={k: v.clone() for k, v in model.state_dict().items()})
        return score

    def get_batch(step):
        return data.batch(sample_pairs(r["batch_size"], "train", seed=seed * 100_000 + step))

    result = train(model, get_batch, translation_loss, steps=steps, lr=r["lr"], warmup=r["warmup"],
                   eval_fn=evaluate, eval_every=r["eval_every"], desc=f"rnn {attention}")
    model.load_state_dict(best["state"])
    return model.eval(), {"val_curve": curve, "best_step": best["step"],
                          "val_exact_match": round(best["score"], 4),
                          "final_loss": round(result.final_loss, 4)}


def load_rnn_translation(attention: str, path=None):
    """The shipped seed-0 model of tools/train_rnn.py for ``attention`` ("none" or "additive")
    -> (model, {"config", "metrics"}); the metrics hold every seed's scores."""
    path = path or data_dir() / CHECKPOINT.replace(".safetensors", f"_{attention}.safetensors")
    return load_model(path, lambda cfg: RNNSeq2Seq(RNNSeq2SeqConfig(**cfg["model"])),
                      rebuild="python tools/train_rnn.py")


class RecallModel(nn.Module):
    """Associative recall with one attention read: the query key k* is compared with every
    key k_j by ``score``; the answer is read from the attended value embedding."""

    def __init__(self, vocab_size: int, n_values: int, score: str, d_model: int = 32):
        super().__init__()
        self.vocab_size = vocab_size
        self.token_emb = nn.Embedding(vocab_size, d_model)
        self.q_proj = nn.Linear(d_model, d_model, bias=False)
        self.k_proj = nn.Linear(d_model, d_model, bias=False)
        self.score = make_score(score, d_model)
        self.out_proj = nn.Linear(d_model, n_values)

    def forward(self, inputs: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """inputs (b, 2p+2) = k1 v1 .. kp vp QUERY k* -> value logits (b, n_values), α (b, p)."""
        check_token_ids(inputs, self.vocab_size, "inputs")
        x = self.token_emb(inputs)                                            # (b, 2p+2, d)
        keys, values, query = x[:, 0:-2:2], x[:, 1:-2:2], x[:, -1]            # (b, p, d) x2, (b, d)
        context, weights = attend(self.score, self.q_proj(query), self.k_proj(keys), values)
        return self.out_proj(context), weights


def recall_loss(model: RecallModel, inputs, answers) -> torch.Tensor:
    logits, _ = model(inputs)
    return F.cross_entropy(logits, answers)


def _recall_batch(batch: int, n_pairs: int, n_keys: int, seed: int):
    inputs, targets = associative_recall(batch, n_pairs, n_keys, n_keys, seed=seed)
    return inputs, targets[:, -1] - n_keys                                    # answers in [0, n_values)


def train_recall(score: str, seed: int = 0, steps: int = 300, n_pairs: int = 8, n_keys: int = 16,
                 batch_size: int = 128, lr: float = 3e-3, d_model: int = 32,
                 dtype: torch.dtype = torch.float64) -> RecallModel:
    """One RecallModel trained on fresh associative-recall batches (same budget for any score);
    float64 so that the accuracies are the same on every CPU and thread count."""
    torch.manual_seed(seed)
    model = RecallModel(2 * n_keys + 1, n_keys, score, d_model).to(dtype)
    train(model, lambda step: _recall_batch(batch_size, n_pairs, n_keys, 10_000 * seed + step),
          recall_loss, steps=steps, lr=lr, desc=f"recall {score}")
    return model


@torch.no_grad()
def recall_accuracy(model: RecallModel, n: int = 2000, n_pairs: int = 8, n_keys: int = 16,
                    seed: int = 123_456) -> float:
    """Accuracy on n fresh sequences (a seed no training batch uses)."""
    inputs, answers = _recall_batch(n, n_pairs, n_keys, seed)
    logits, _ = model(inputs)
    return (logits.argmax(-1) == answers).float().mean().item()
