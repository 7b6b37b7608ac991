"""Notebook 04's experiments: pre-training and fine-tuning ``course_lib.bert`` on the story corpus.

Pre-training batches (Devlin et al. 2019, §3.1 and appendix A.1): a story is cut at a random
sentence boundary into a (the sentences before) and b (the sentences after, IsNext) or b = the
tail of another story (NotNext), packed as ``[CLS] a [SEP] b [SEP]``; then 15% of the word
positions are chosen for the masked-LM loss (80/10/10, ``course_lib.bert.mask_tokens``).

Fine-tuning: ``[CLS] text [SEP]`` -> a label, on two tasks (``finetuning_task``): the story's
setting and a grammar task. Three contenders of the same architecture (``CLASSIFIERS``):
pre-trained + fine-tuned, from scratch, a linear probe, all with the same pooling. Their
recipes (pooling, learning rate, steps) are chosen on a validation split
(``select_on_validation``), never on the test numbers that are reported.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib.bert import (IS_NEXT, NOT_NEXT, Bert, BertClassifier, BertConfig, BertForPretraining,
                             mask_tokens, pair_input)
from course_lib.common import IGNORE_INDEX, right_pad
from course_lib.data.stories import LABELS, NAMES
from course_lib.training import data_dir, load_model, train

__all__ = ["story_ids", "NSPPair", "nsp_pair", "nsp_example", "foreign_name", "sentence_count",
           "nsp_breakdown",
           "pretraining_batch", "classification_batch",
           "pretraining_accuracy", "CLASSIFIERS", "make_classifier", "labelled_subset",
           "finetune_classifier", "classifier_accuracy", "grammaticality_examples",
           "finetuning_task", "select_on_validation", "TASKS", "masked_word_probs",
           "sentence_positions", "load_bert_tiny"]


def load_bert_tiny(path: str | Path | None = None) -> tuple[BertForPretraining, dict]:
    """The shipped tiny BERT (``data/bert_tiny.safetensors``) in eval mode, with its metadata."""
    return load_model(path or data_dir() / "bert_tiny.safetensors",
                      lambda config: BertForPretraining(BertConfig(**config["model"])),
                      rebuild="python tools/train_bert.py")


def story_ids(tokenizer, sentences: list[str]) -> list[int]:
    """Token ids of consecutive sentences (strict: an unknown word raises ValueError)."""
    return [i for s in sentences for i in tokenizer.encode(s)]


@dataclass
class NSPPair:
    """One next-sentence example: ``[CLS] a [SEP] b [SEP]`` ids and segments, its label, and the
    index of the story ``b`` was taken from (a's own story for IsNext)."""
    ids: list[int]
    segments: list[int]
    label: int
    b_story: int


def nsp_pair(stories, index: int, generator: torch.Generator, tokenizer, max_len: int) -> NSPPair:
    """One next-sentence pair from story ``index`` (§3.1, Task #2 of Devlin et al., 2019).

    The story is cut at a random sentence boundary: a = the sentences before the cut;
    b = the sentences after it (IsNext, probability 1/2) or the tail of another random story
    (NotNext), as BERT pairs a segment with the next one or with a random one. Official:
    google-research/bert, create_pretraining_data.py, ``create_instances_from_document``.
    """
    story = stories[index]
    cut = int(torch.randint(1, len(story.sentences), (1,), generator=generator))
    a = story_ids(tokenizer, story.sentences[:cut])
    label = IS_NEXT if torch.rand(1, generator=generator).item() < 0.5 else NOT_NEXT
    other = index
    if label == IS_NEXT:
        b_sents = story.sentences[cut:]
    else:
        other = (index + int(torch.randint(1, len(stories), (1,), generator=generator))) % len(stories)
        start = int(torch.randint(1, len(stories[other].sentences), (1,), generator=generator))
        b_sents = stories[other].sentences[start:]
    b = story_ids(tokenizer, b_sents)[:max(1, max_len - 3 - len(a))]
    ids, segments = pair_input(a[:max_len - 4], b, tokenizer.cls_id, tokenizer.sep_id, max_len)
    return NSPPair(ids, segments, label, other)


def nsp_example(stories, index: int, generator: torch.Generator, tokenizer, max_len: int):
    """``nsp_pair`` as (ids, segments, IS_NEXT | NOT_NEXT)."""
    pair = nsp_pair(stories, index, generator, tokenizer, max_len)
    return pair.ids, pair.segments, pair.label


def pretraining_batch(stories, tokenizer, batch_size: int, generator: torch.Generator,
                      max_len: int, p_select: float = 0.15):
    """(inputs, segments, mlm_labels, nsp_labels): NSP pairs from random stories, then masked."""
    idx = torch.randint(len(stories), (batch_size,), generator=generator).tolist()
    examples = [nsp_example(stories, i, generator, tokenizer, max_len) for i in idx]
    ids = right_pad([e[0] for e in examples], tokenizer.pad_id)            # (b, t)
    segments = right_pad([e[1] for e in examples], 0)                      # (b, t)
    special = [tokenizer.token_to_id[w] for w in tokenizer.id_to_token if w.startswith("[")]
    inputs, labels = mask_tokens(ids, tokenizer.mask_id, tokenizer.vocab_size, special,
                                 generator, p_select)
    return inputs, segments, labels, torch.tensor([e[2] for e in examples])


def classification_batch(stories, tokenizer, label_names: list[str], max_len: int):
    """([CLS] story [SEP] ids (b, t), label indices (b,)) for sequence classification."""
    seqs = [pair_input(story_ids(tokenizer, s.sentences), None, tokenizer.cls_id,
                       tokenizer.sep_id, max_len)[0] for s in stories]
    unknown = sorted({s.label for s in stories} - set(label_names))
    if unknown:
        raise ValueError(f"labels {unknown} not in label_names {label_names}")
    return right_pad(seqs, tokenizer.pad_id), torch.tensor([label_names.index(s.label) for s in stories])


def grammaticality_examples(stories, tokenizer, n: int, seed: int, max_len: int):
    """A CoLA-style task: ``[CLS] sentence [SEP]`` -> 1 if two adjacent words were swapped, else 0.

    Sentences (>= 5 words) are drawn from ``stories`` in a seeded order; every second one gets
    two neighbouring, different words swapped (its final "." stays). Telling the two apart needs
    knowledge of the language's grammar, which masked-LM pre-training has and 64 labels do not
    teach. Returns (ids (n, t), labels (n,)), half of the labels 1.
    """
    sentences = [s for story in stories for s in story.sentences if len(s.split()) >= 5]
    if not 2 <= n <= len(sentences):
        raise ValueError(f"n must lie in [2, {len(sentences)}] sentences, got {n}")
    g = torch.Generator().manual_seed(seed)
    seqs, labels = [], []
    for j, i in enumerate(torch.randperm(len(sentences), generator=g)[:n].tolist()):
        words, label = sentences[i].split()[:-1], j % 2
        if label:
            spots = [p for p in range(len(words) - 1) if words[p] != words[p + 1]]
            p = spots[int(torch.randint(len(spots), (1,), generator=g))]
            words[p], words[p + 1] = words[p + 1], words[p]
        ids = tokenizer.encode(" ".join(words + [sentences[i].split()[-1]]))
        seqs.append(pair_input(ids, None, tokenizer.cls_id, tokenizer.sep_id, max_len)[0])
        labels.append(label)
    return right_pad(seqs, tokenizer.pad_id), torch.tensor(labels)


CLASSIFIERS = ("pretrained + fine-tuned", "from scratch", "linear probe (frozen)")


def make_classifier(kind: str, pretrained: BertForPretraining, n_classes: int,
                    seed: int = 0, pooling: str = "mean") -> BertClassifier:
    """One of the three contenders of the fine-tuning experiment (``CLASSIFIERS``), seeded.

    pretrained + fine-tuned: copies of the pre-trained encoder and pooler, all trained;
    from scratch: the same architecture, random weights; linear probe: the pre-trained encoder
    (and pooler) frozen, only the last linear layer trained. All three read the sequence the same
    way, ``pooling``: "mean" (average of the token vectors) or "cls" (the NSP-trained pooler).
    """
    if kind not in CLASSIFIERS:
        raise ValueError(f"kind must be one of {CLASSIFIERS}, got {kind!r}")
    torch.manual_seed(seed)
    if kind == "from scratch":
        return BertClassifier(Bert(pretrained.config), n_classes, pooling=pooling)
    return BertClassifier(copy.deepcopy(pretrained.bert), n_classes,
                          copy.deepcopy(pretrained.pooler), pooling=pooling,
                          freeze=kind == "linear probe (frozen)")


def labelled_subset(stories, n: int, seed: int = 0) -> list:
    """n stories, as many of each label, picked in a seeded random order: the few labels we have."""
    labels = sorted({s.label for s in stories})
    if n < len(labels) or n % len(labels) or n > len(stories):
        raise ValueError(f"n must be a multiple of the {len(labels)} labels in "
                         f"[{len(labels)}, {len(stories)}], got {n}")
    g = torch.Generator().manual_seed(10_000 + seed)
    per_label, picked = {label: 0 for label in labels}, []
    for i in torch.randperm(len(stories), generator=g).tolist():
        if per_label[stories[i].label] < n // len(labels):
            per_label[stories[i].label] += 1
            picked.append(stories[i])
    if len(picked) < n:
        raise ValueError(f"not enough stories of every label for n={n}: {per_label}")
    return picked


TASKS = ("setting", "grammar")


def finetuning_task(task: str, splits: dict, tokenizer, seed: int, n_labels: int, max_len: int,
                    n_eval: int = 1000) -> dict:
    """Labelled data of one fine-tuning task: {"train", "val", "test": (ids (n, t), labels (n,))}.

    "setting": ``[CLS] story [SEP]`` -> Story.label (4 classes); ``n_labels`` training stories
    (as many per class, chosen by ``seed``), all validation and test stories.
    "grammar": ``[CLS] sentence [SEP]`` -> swapped words or not (``grammaticality_examples``);
    ``n_labels`` training sentences (drawn by ``seed``), ``n_eval`` validation and test sentences.
    Validation data select the recipe; test data only report it.
    """
    if task == "setting":
        names = list(LABELS)
        make = {"train": labelled_subset(splits["train"], n_labels, seed),
                "val": splits["val"], "test": splits["test"]}
        data = {k: classification_batch(v, tokenizer, names, max_len) for k, v in make.items()}
        return dict(data, n_classes=len(names))
    if task == "grammar":
        draws = {"train": (n_labels, seed), "val": (n_eval, 98), "test": (n_eval, 99)}
        data = {k: grammaticality_examples(splits[k], tokenizer, n, s, max_len)
                for k, (n, s) in draws.items()}
        return dict(data, n_classes=2)
    raise ValueError(f"task must be one of {TASKS}, got {task!r}")


def select_on_validation(grid: list[dict]) -> dict:
    """The recipe with the highest mean validation accuracy over seeds; ties go to the earlier one.

    grid: [{"pooling": ..., "lr": ..., "steps": ..., "val": [accuracy per seed]}, ...] in the
    order of preference (cheapest first). Test accuracy is never looked at here.
    """
    if not grid or any(not r.get("val") for r in grid):
        raise ValueError("select_on_validation: expected recipes with a non-empty 'val' list each")
    means = [sum(r["val"]) / len(r["val"]) for r in grid]
    best = max(means)
    return grid[next(i for i, m in enumerate(means) if m >= best - 1e-9)]


def finetune_classifier(classifier: BertClassifier, ids: torch.Tensor, labels: torch.Tensor,
                        steps: int, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
                        progress: bool | None = None):
    """Train ``classifier`` on the labelled (ids (n, t), labels (n,)) with cross-entropy.

    Mini-batches are drawn with a seeded generator; returns ``course_lib.training``'s TrainResult.
    """
    if ids.shape[0] != labels.shape[0]:
        raise ValueError(f"ids has {ids.shape[0]} sequences but labels {labels.shape[0]}")
    g = torch.Generator().manual_seed(seed)
    n = ids.shape[0]

    def get_batch(step):
        idx = torch.randperm(n, generator=g)[:batch_size]
        return ids[idx], labels[idx]

    params = [p for p in classifier.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(params, lr=lr, weight_decay=0.01)
    return train(classifier, get_batch, lambda m, x, y: F.cross_entropy(m(x), y), steps, lr,
                 warmup=steps // 10, optimizer=opt, progress=progress, desc="fine-tune")


@torch.no_grad()
def classifier_accuracy(classifier: BertClassifier, ids: torch.Tensor, labels: torch.Tensor,
                        batch_size: int = 250) -> float:
    """Fraction of sequences whose argmax logit is the label (eval mode, in batches)."""
    classifier.eval()
    right = sum(int((classifier(ids[i:i + batch_size]).argmax(-1) == labels[i:i + batch_size]).sum())
                for i in range(0, ids.shape[0], batch_size))
    return right / ids.shape[0]


@torch.no_grad()
def pretraining_accuracy(model: BertForPretraining, stories, tokenizer, max_len: int,
                         n_batches: int = 8, batch_size: int = 64, seed: int = 1234) -> dict:
    """Masked-LM accuracy (over masked positions) and NSP accuracy on seeded batches of ``stories``."""
    model.eval()
    g = torch.Generator().manual_seed(seed)
    mlm_right = mlm_total = nsp_right = nsp_total = 0
    for _ in range(n_batches):
        inputs, segments, labels, nsp = pretraining_batch(stories, tokenizer, batch_size, g, max_len)
        mlm_logits, nsp_logits = model(inputs, segments)
        keep = labels != IGNORE_INDEX
        mlm_right += int((mlm_logits.argmax(-1)[keep] == labels[keep]).sum())
        mlm_total += int(keep.sum())
        nsp_right += int((nsp_logits.argmax(-1) == nsp).sum())
        nsp_total += len(nsp)
    return {"mlm_accuracy": mlm_right / mlm_total, "nsp_accuracy": nsp_right / nsp_total,
            "masked_positions": mlm_total}


def foreign_name(pair: NSPPair, story, tokenizer) -> bool:
    """Does b name a character that a's story does not have? (A sure sign of NotNext: after its
    first sentence a story only ever names its own two characters.)"""
    cut = pair.segments.index(1)
    return any(w in NAMES and w not in story.characters for w in tokenizer.tokens(pair.ids[cut:]))


def sentence_count(pair: NSPPair, tokenizer) -> int:
    """Sentences in a and b together (each ends with "."): an IsNext pair is one whole story."""
    return sum(w == "." for w in tokenizer.tokens(pair.ids))


@torch.no_grad()
def nsp_breakdown(model: BertForPretraining, stories, tokenizer, max_len: int,
                  n_pairs: int = 1000, seed: int = 1234, batch_size: int = 250) -> dict:
    """Next-sentence accuracy on ``n_pairs`` seeded pairs of ``stories``, split by two cues.

    An IsNext pair is a whole story, so its sentence count is one a story can have; a NotNext
    pair (the head of one story, the tail of another) often has another count. And a NotNext b
    almost always names a character a's story does not have (``foreign_name``). Groups: "IsNext",
    "NotNext, a story's sentence count", "NotNext, a count no story has". "rules": the accuracy
    of predicting NotNext from one cue alone. Returns {"n", "is_next", "accuracy", "groups":
    {name: (count, accuracy)}, "rules": {name: accuracy}}.
    """
    counts = {len(story.sentences) for story in stories}                  # e.g. {5, 6, 7}
    g = torch.Generator().manual_seed(seed)
    pairs, foreign = [], []
    for _ in range(n_pairs):
        index = int(torch.randint(len(stories), (1,), generator=g))
        pairs.append(nsp_pair(stories, index, g, tokenizer, max_len))
        foreign.append(foreign_name(pairs[-1], stories[index], tokenizer))
    ids = right_pad([p.ids for p in pairs], tokenizer.pad_id)             # (n, t)
    segments = right_pad([p.segments for p in pairs], 0)                   # (n, t)
    model.eval()
    pred = torch.cat([model(ids[k:k + batch_size], segments[k:k + batch_size])[1].argmax(-1)
                      for k in range(0, n_pairs, batch_size)])             # (n,)
    label, foreign = torch.tensor([p.label for p in pairs]), torch.tensor(foreign)
    odd = torch.tensor([sentence_count(p, tokenizer) not in counts for p in pairs])
    right, nxt = pred == label, label == NOT_NEXT
    groups = {"IsNext": ~nxt, "NotNext, a story's sentence count": nxt & ~odd,
              "NotNext, a count no story has": nxt & odd}
    rules = {"b names another character": foreign, "a count no story has": odd}
    return {"n": n_pairs, "is_next": (~nxt).float().mean().item(),
            "accuracy": right.float().mean().item(),
            "groups": {k: (int(m.sum()), right[m].float().mean().item() if m.any() else float("nan"))
                       for k, m in groups.items()},
            "rules": {k: (torch.where(cue, NOT_NEXT, IS_NEXT) == label).float().mean().item()
                      for k, cue in rules.items()}}


@torch.no_grad()
def masked_word_probs(model: BertForPretraining, items, tokenizer, left_only: bool = False,
                      batch_size: int = 256) -> tuple[torch.Tensor, torch.Tensor]:
    """The MLM's distribution at one masked word, with both sides or with the left side only.

    items: (tokens, i) pairs, ``tokens`` a story's word list and ``i`` the position to mask. The
    input is ``[CLS] tokens[:i] [MASK] tokens[i+1:] [SEP]``; with ``left_only`` everything right
    of the mask is dropped (``[CLS] tokens[:i] [MASK] [SEP]``: what a left-to-right model sees,
    at the same positions). Returns (probs (n, v), target ids (n,)).
    """
    if not items:
        raise ValueError("masked_word_probs: expected at least one (tokens, i) item, received none")
    seqs, where, targets = [], [], []
    for tokens, i in items:
        if not 0 <= i < len(tokens):
            raise ValueError(f"masked_word_probs: position {i} outside a {len(tokens)}-token text")
        ids = tokenizer.encode(" ".join(tokens))
        right = [] if left_only else ids[i + 1:]
        seqs.append([tokenizer.cls_id, *ids[:i], tokenizer.mask_id, *right, tokenizer.sep_id])
        where.append(i + 1)                                                # +1: [CLS]
        targets.append(ids[i])
    model.eval()
    ids, where = right_pad(seqs, tokenizer.pad_id), torch.tensor(where)   # (n, t), (n,)
    probs = [model(ids[k:k + batch_size])[0][torch.arange(len(ids[k:k + batch_size])),
                                             where[k:k + batch_size]].softmax(-1)
             for k in range(0, len(ids), batch_size)]                      # each (batch, v)
    return torch.cat(probs), torch.tensor(targets)


def sentence_positions(stories, first: str, offset: int, max_items: int | None = None) -> list:
    """(story tokens, position) of word ``offset`` of every sentence that starts with ``first``.

    E.g. first="so", offset=2 finds the verb of "so tom sat on the bank of the river ."
    """
    items = []
    for story in stories:
        start = 0
        for sentence in story.sentences:
            words = sentence.split()
            if words[0] == first and offset < len(words):
                items.append((story.tokens, start + offset))
            start += len(words)
    return items[:max_items]
