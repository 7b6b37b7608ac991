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
import json
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.nn.functional as F

from course_lib.bert import (IS_NEXT, NOT_NEXT, Bert, BertClassifier, BertConfig, BertForPretraining,
                             mask_tokens, pair_input)
from course_lib.common import IGNORE_INDEX, right_pad
from course_lib.data.stories import LABELS, NAMES
from course_lib.pretrained import MANIFEST
from course_lib.pretrained.bert import load_bert
from course_lib.training import data_dir, load_model, train
from course_lib.viz.bert import cosine_matrix, sense_summary

__all__ = ["story_ids", "NSPPair", "nsp_pair", "nsp_example", "foreign_name", "sentence_count",
           "nsp_breakdown",
           "pretraining_batch", "classification_batch",
           "pretraining_accuracy", "CLASSIFIERS", "make_classifier", "labelled_subset",
           "finetune_classifier", "classifier_accuracy", "grammaticality_examples",
           "finetuning_task", "select_on_validation", "TASKS", "masked_word_probs",
           "sentence_positions", "load_bert_tiny", "REAL_BERT", "FILL_MASK", "BANK_SENTENCES",
           "BANK_SHARED", "fill_mask", "word_vectors", "real_model_demo"]


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


# ---------------------------------------------------------------- the real thing: bert-base
REAL_BERT = {"vocab_size": 30522, "hidden_size": 768, "num_hidden_layers": 12,
             "num_attention_heads": 12}     # bert-base-uncased: quality checks apply to it only
FILL_MASK = ("the capital of france is [MASK] .",
             "she sat on the [MASK] of the river and watched the boats .",
             "he went to the [MASK] to take some money out of his account .",
             "the children played in the [MASK] after school .",
             "i would like a cup of [MASK] , please .")
BANK_SENTENCES = {
    "river": ("we sat on the bank of the river and watched the ducks .",
              "the boat drifted slowly toward the muddy bank .",
              "fishermen lined the bank of the stream at dawn .",
              "the flood washed away part of the bank near the bridge .",
              "she walked along the grassy bank and looked at the water .",
              "the otter slid down the bank into the cold river ."),
    "money": ("i went to the bank to deposit my paycheck .",
              "the bank approved our loan for the new house .",
              "he works as a teller at the bank downtown .",
              "the bank raised its interest rates again this year .",
              "she opened a savings account at the bank .",
              "robbers broke into the bank and stole the cash ."),
}
# one sentence that does not decide the sense, after a sentence that does (the long-range case)
BANK_SHARED = ("he sat down by the bank .",
               {"river": "we spent the whole day fishing on the river .",
                "money": "we needed some cash before the shops closed ."})


def _encode(tokenizer, texts: list[str], pad_id: int):
    """Texts -> (ids (n, t), segments (n, t)) with the tokenizer's own [CLS]/[SEP] template."""
    encodings = [tokenizer.encode(text) for text in texts]
    return (right_pad([e.ids for e in encodings], pad_id),                # (n, t)
            right_pad([e.type_ids for e in encodings], 0))                 # (n, t)


@torch.no_grad()
def fill_mask(model: BertForPretraining, tokenizer, text: str, k: int = 3) -> list[tuple[str, float]]:
    """The k most probable tokens at the [MASK] of ``text`` (a ``tokenizers.Tokenizer``)."""
    ids, segments = _encode(tokenizer, [text], model.config.pad_id)        # (1, t)
    where = (ids[0] == tokenizer.token_to_id("[MASK]")).nonzero().flatten()
    if len(where) != 1:
        raise ValueError(f"fill_mask: expected one [MASK] in {text!r}, received {len(where)}")
    probs = model(ids, segments)[0][0, where[0]].softmax(-1)              # (vocab,)
    top = probs.topk(k)
    return [(tokenizer.id_to_token(int(i)), float(p)) for p, i in zip(top.values, top.indices)]


@torch.no_grad()
def word_vectors(model: BertForPretraining, tokenizer, texts: list[str], word: str) -> torch.Tensor:
    """The hidden vector of the LAST occurrence of ``word`` in each text, after each layer:
    (n_layers + 1, n, d), layer 0 = the embeddings (as ``course_lib.viz.bert.contextual_vectors``)."""
    ids, segments = _encode(tokenizer, texts, model.config.pad_id)         # (n, t)
    target = tokenizer.token_to_id(word)
    hits = [(row == (-1 if target is None else target)).nonzero().flatten() for row in ids]
    if any(len(h) == 0 for h in hits):
        raise ValueError(f"word_vectors: {word!r} is not a single token of every text")
    states = torch.stack(model.bert.hidden_states(ids, segments))         # (layers+1, n, t, d)
    return states[:, torch.arange(len(texts)), torch.stack([h[-1] for h in hits])]


def real_model_demo(folder: str | Path, k: int = 3) -> dict:
    """Notebook 04's "real thing": a BERT checkpoint folder in the course's BertForPretraining.

    Fills [MASK] in ``FILL_MASK``; scores an IsNext and a NotNext pair; compares the vectors of
    "bank" in ``BANK_SENTENCES`` (the analysis of §6: within-sense vs across-sense cosine, at
    the embeddings and after the last layer); places the "bank" of ``BANK_SHARED`` (a sentence
    that does not decide the sense) after a river or a money sentence relative to the two
    senses' mean vectors. Prints each result; asserts what must hold for bert-base-uncased
    (``REAL_BERT``) only when the folder holds that model as fetched (its manifest of checked
    digests is there). Returns the measured values.
    """
    from tokenizers import Tokenizer              # optional: needed only with real weights

    folder = Path(folder)
    hf_config = json.loads((folder / "config.json").read_text())
    real = ((folder / MANIFEST).is_file()        # fetched and SHA-256-checked, and bert-base
            and all(hf_config.get(key) == value for key, value in REAL_BERT.items()))
    model, tokenizer = load_bert(folder), Tokenizer.from_file(str(folder / "tokenizer.json"))
    n_params = sum(p.numel() for p in model.parameters())
    print(f"{folder.name}: {n_params:,} parameters in the course's BertForPretraining")
    out = {"fill": {}, "real": real}
    for text in FILL_MASK:
        out["fill"][text] = fill_mask(model, tokenizer, text, k)
        print(f"{text}\n    -> " + ", ".join(f"{w} {p:.2f}" for w, p in out["fill"][text]))
    out["nsp"] = _nsp_pairs(model, tokenizer)
    texts = [t for sense in BANK_SENTENCES for t in BANK_SENTENCES[sense]]
    senses = [sense for sense in BANK_SENTENCES for _ in BANK_SENTENCES[sense]]
    vectors = word_vectors(model, tokenizer, texts, "bank")               # (layers+1, n, d)
    out["bank"] = {layer: sense_summary(cosine_matrix(vectors[layer]), senses)
                   for layer in (0, model.config.n_layers)}
    out["bank_similarity"] = {layer: cosine_matrix(vectors[layer]) for layer in out["bank"]}
    out["senses"] = senses
    for layer, r in out["bank"].items():
        print(f"'bank' after layer {layer:2d}: within a sense {r['within']:.2f}, "
              f"across senses {r['across']:.2f}")
    out["shared"] = _shared_sentence(model, tokenizer, vectors[-1], senses)
    if real:                                      # what the published bert-base must do
        assert "paris" in [w for w, _ in out["fill"][FILL_MASK[0]]], out["fill"][FILL_MASK[0]]
        last = out["bank"][model.config.n_layers]
        assert last["within"] > last["across"], last
    return out


@torch.no_grad()
def _nsp_pairs(model, tokenizer) -> dict:
    """P(IsNext) of a pair that continues and of one that does not."""
    a = "the cat sat on the warm windowsill all afternoon ."
    pairs = {"IsNext ": "then it stretched , yawned and fell asleep in the sun .",
             "NotNext": "the stock market closed higher on friday after the report ."}
    out = {}
    for name, b in pairs.items():
        enc = tokenizer.encode(a, b)
        ids, segments = torch.tensor([enc.ids]), torch.tensor([enc.type_ids])
        out[name.strip()] = model(ids, segments)[1].softmax(-1)[0, IS_NEXT].item()
        print(f"{name} pair: P(IsNext) = {out[name.strip()]:.3f}   ({a} | {b})")
    return out


def _shared_sentence(model, tokenizer, last: torch.Tensor, senses: list[str]) -> dict:
    """cos("bank" of BANK_SHARED after each context, mean vector of each sense): last layer."""
    sentence, contexts = BANK_SHARED
    texts = [f"{context} {sentence}" for context in contexts.values()]
    shared = word_vectors(model, tokenizer, texts, "bank")[-1]            # (contexts, d)
    means = torch.stack([last[[s == sense for s in senses]].mean(0) for sense in BANK_SENTENCES])
    sim = cosine_matrix(torch.cat([shared, means]))[:len(texts), len(texts):]  # (contexts, senses)
    out = {}
    for row, context in zip(sim, contexts):
        out[context] = dict(zip(BANK_SENTENCES, row.tolist()))
        print(f"'{sentence}' after a {context} sentence: cosine to the river sense "
              f"{out[context]['river']:.2f}, to the money sense {out[context]['money']:.2f}")
    return out
