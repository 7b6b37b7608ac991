"""BERT (lecture 04): Bidirectional Encoder Representations from Transformers.

"Rip away the decoder, stack encoders": a stack of ``course_lib.transformer.EncoderLayer``
with **no causal mask**, so every token sees the whole input, left and right. The input of a
sentence pair is ``[CLS] a_1 … a_n [SEP] b_1 … b_m [SEP]`` and each token's vector is the sum

    x_i = E_token[w_i] + E_segment[s_i] + P[i],     s_i = 0 up to the first [SEP], 1 after,

followed by LayerNorm. Two pre-training heads (Devlin et al. 2019):

- masked LM: predict the original word at 15% of the positions, of which 80% were replaced
  by [MASK], 10% by a random word and 10% left unchanged (``mask_tokens``);
  logits = LN(GELU(W h_i)) E_tokenᵀ + b (decoder tied to the token embedding);
- next-sentence prediction: from the pooled [CLS] vector tanh(W h_[CLS]), is b the sentence
  that follows a (IsNext = 0) or a random one (NotNext = 1)?

Fine-tuning puts a linear layer on the same pooled [CLS] vector (``BertClassifier``).
Token ids are (b, t) long tensors; 0 is [PAD] and padded keys are masked out of attention.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib import ShapeError
from course_lib.attention import padding_mask
from course_lib.positional import LearnedPositional
from course_lib.transformer import EncoderLayer

__all__ = ["BertConfig", "BertEmbeddings", "Bert", "BertForPretraining", "BertClassifier",
           "pair_input", "pad_batch", "mask_tokens", "corrupt", "pretraining_loss", "IS_NEXT", "NOT_NEXT",
           "story_ids", "nsp_example", "pretraining_batch", "classification_batch",
           "finetune_classifier", "classifier_accuracy", "pretraining_accuracy",
           "CLASSIFIERS", "make_classifier", "labelled_subset"]

IS_NEXT, NOT_NEXT = 0, 1


@dataclass
class BertConfig:
    """Hyper-parameters of a (tiny, CPU-sized) BERT. BERT-base is d_model=768, 12 layers, 12 heads."""
    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    max_len: int = 128
    n_segments: int = 2
    dropout: float = 0.1
    pad_id: int = 0

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len", "n_segments"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"BertConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")

    def to_dict(self) -> dict:
        return asdict(self)


def _check_ids(ids: torch.Tensor, high: int, name: str) -> None:
    """ids must be a (b, t) integer tensor with values in [0, high)."""
    if not isinstance(ids, torch.Tensor) or ids.dtype not in (torch.long, torch.int32, torch.int64):
        kind = ids.dtype if isinstance(ids, torch.Tensor) else type(ids).__name__
        raise ValueError(f"{name}: expected an integer tensor of shape (b, t), received {kind}")
    if ids.dim() != 2:
        raise ShapeError(f"{name}: expected shape (b, t), received {tuple(ids.shape)}")
    if ids.numel() and (int(ids.min()) < 0 or int(ids.max()) >= high):
        raise ValueError(f"{name}: expected values in [0, {high}), received values in "
                         f"[{int(ids.min())}, {int(ids.max())}] (unknown id)")


class BertEmbeddings(nn.Module):
    """x = LayerNorm(E_token[ids] + E_segment[segments] + P[position]): (b, t) -> (b, t, d)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.token = nn.Embedding(config.vocab_size, config.d_model)
        self.segment = nn.Embedding(config.n_segments, config.d_model)
        self.position = LearnedPositional(config.d_model, config.max_len)
        self.norm = nn.LayerNorm(config.d_model)
        self.dropout = nn.Dropout(config.dropout)
        for emb in (self.token, self.segment):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        _check_ids(ids, c.vocab_size, "ids")
        if ids.shape[1] > c.max_len:
            raise ValueError(f"ids: sequence length {ids.shape[1]} exceeds the position table "
                             f"(max_len={c.max_len}); truncate the input")
        if segments is None:
            segments = torch.zeros_like(ids)
        _check_ids(segments, c.n_segments, "segments")
        if segments.shape != ids.shape:
            raise ShapeError(f"segments: expected shape {tuple(ids.shape)} like ids, "
                             f"received {tuple(segments.shape)}")
        x = self.token(ids) + self.segment(segments)                       # (b, t, d)
        x = self.position(x)                                               # (b, t, d) + P[:t]
        return self.dropout(self.norm(x))


class Bert(nn.Module):
    """The encoder stack: embeddings, then n_layers bidirectional EncoderLayers (post-norm, GELU)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(
            EncoderLayer(config.d_model, config.n_heads, config.d_ff, config.dropout,
                         activation="gelu") for _ in range(config.n_layers))

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None,
                need_weights: bool = False):
        """ids, segments: (b, t). Returns (hidden (b, t, d), [weights (b, h, t, t)] or None)."""
        states, weights = self._run(ids, segments, need_weights)
        return states[-1], (weights if need_weights else None)

    @torch.no_grad()
    def hidden_states(self, ids: torch.Tensor, segments: torch.Tensor | None = None):
        """[embeddings, after layer 1, …, after layer L]: n_layers + 1 tensors (b, t, d)."""
        return self._run(ids, segments, False)[0]

    def _run(self, ids, segments, need_weights):
        x = self.embeddings(ids, segments)                                 # (b, t, d)
        keep = ids != self.config.pad_id                                   # (b, t)
        mask = None if bool(keep.all()) else keep[:, None, None, :]        # (b, 1, 1, t) keys
        states, weights = [x], []
        for layer in self.layers:                                          # no causal mask
            x, w = layer(x, mask=mask, need_weights=need_weights)          # (b, t, d)
            states.append(x)
            weights.append(w)
        return states, weights


class MLMHead(nn.Module):
    """logits_i = LN(GELU(W h_i + c)) E_tokenᵀ + b: (b, t, d) -> (b, t, v), decoder tied to E_token."""

    def __init__(self, config: BertConfig, token_embedding: nn.Embedding):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.norm = nn.LayerNorm(config.d_model)
        self.token_embedding = [token_embedding]      # a list: shared weight, not a second copy
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        z = self.norm(F.gelu(self.dense(hidden)))                          # (b, t, d)
        return z @ self.token_embedding[0].weight.T + self.bias            # (b, t, v)


class Pooler(nn.Module):
    """pooled = tanh(W h_[CLS] + c): the [CLS] position's final vector, (b, t, d) -> (b, d)."""

    def __init__(self, d_model: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))                        # (b, d)


class BertForPretraining(nn.Module):
    """Bert + masked-LM head + next-sentence head: (ids, segments) -> (mlm (b, t, v), nsp (b, 2))."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = Bert(config)
        self.mlm = MLMHead(config, self.bert.embeddings.token)
        self.pooler = Pooler(config.d_model)
        self.nsp = nn.Linear(config.d_model, 2)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None,
                need_weights: bool = False):
        hidden, weights = self.bert(ids, segments, need_weights)           # (b, t, d)
        out = (self.mlm(hidden), self.nsp(self.pooler(hidden)))            # (b, t, v), (b, 2)
        return (*out, weights) if need_weights else out


def pretraining_loss(model: BertForPretraining, ids, segments, mlm_labels, nsp_labels,
                     nsp_weight: float = 1.0) -> torch.Tensor:
    """L = CE(masked positions only; labels -100 elsewhere) + nsp_weight · CE(IsNext/NotNext)."""
    mlm_logits, nsp_logits = model(ids, segments)
    mlm = F.cross_entropy(mlm_logits.flatten(0, 1), mlm_labels.flatten(), ignore_index=-100)
    return mlm + nsp_weight * F.cross_entropy(nsp_logits, nsp_labels)


class BertClassifier(nn.Module):
    """A label per sequence: logits = W dropout(pool(h)) + c, pool = the [CLS] pooler (or a mean).

    ``pooling="cls"`` uses tanh(W h_[CLS]) as in the paper; ``"mean"`` averages the non-pad
    tokens' final vectors. ``freeze=True`` trains only the last linear layer (a linear probe).
    """

    def __init__(self, bert: Bert, n_classes: int, pooler: Pooler | None = None,
                 pooling: str = "cls", freeze: bool = False):
        super().__init__()
        if pooling not in ("cls", "mean"):
            raise ValueError(f"pooling must be 'cls' or 'mean', got {pooling!r}")
        if n_classes < 2:
            raise ValueError(f"n_classes must be >= 2, got {n_classes}")
        d = bert.config.d_model
        self.bert, self.pooling = bert, pooling
        self.pooler = pooler if pooler is not None else Pooler(d)
        self.dropout = nn.Dropout(bert.config.dropout)
        self.head = nn.Linear(d, n_classes)
        self.frozen = freeze
        if freeze:
            for p in list(self.bert.parameters()) + list(self.pooler.parameters()):
                p.requires_grad_(False)

    def features(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        """The pooled sequence vector (b, d)."""
        if self.frozen:
            self.bert.eval()                          # frozen features: no dropout noise
        hidden, _ = self.bert(ids, segments)                               # (b, t, d)
        if self.pooling == "cls":
            return self.pooler(hidden)                                     # (b, d)
        keep = (ids != self.bert.config.pad_id).float()[..., None]         # (b, t, 1)
        return (hidden * keep).sum(1) / keep.sum(1)                        # (b, d)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        return self.head(self.dropout(self.features(ids, segments)))       # (b, n_classes)


def pair_input(a: list[int], b: list[int] | None, cls_id: int, sep_id: int,
               max_len: int | None = None) -> tuple[list[int], list[int]]:
    """[CLS] a [SEP] (b [SEP]) and its segments 0…0 (1…1): the BERT input of one (pair of) text(s)."""
    ids = [cls_id, *a, sep_id]
    segments = [0] * len(ids)
    if b is not None:
        ids += [*b, sep_id]
        segments += [1] * (len(b) + 1)
    if max_len is not None and len(ids) > max_len:
        raise ValueError(f"pair_input: {len(ids)} tokens with [CLS]/[SEP] exceed max_len={max_len}")
    return ids, segments


def pad_batch(seqs: list[list[int]], pad_id: int = 0, length: int | None = None) -> torch.Tensor:
    """Right-pad lists of ids to one (b, t) long tensor (t = longest, or ``length``)."""
    if not seqs:
        raise ValueError("pad_batch: expected at least one sequence, received none")
    t = max(len(s) for s in seqs) if length is None else length
    if any(len(s) > t for s in seqs):
        raise ValueError(f"pad_batch: a sequence of {max(len(s) for s in seqs)} tokens exceeds length={t}")
    out = torch.full((len(seqs), t), pad_id, dtype=torch.long)
    for i, s in enumerate(seqs):
        out[i, :len(s)] = torch.tensor(s, dtype=torch.long)
    return out


def mask_tokens(ids: torch.Tensor, mask_id: int, vocab_size: int, special_ids,
                generator: torch.Generator, p_select: float = 0.15, p_mask: float = 0.8,
                p_random: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking rule on ids (b, t) -> (inputs (b, t), labels (b, t), -100 = not scored).

    Each non-special position is selected with probability p_select; a selected position
    becomes [MASK] with probability p_mask, a random non-special word with p_random, and stays
    unchanged otherwise (1 − p_mask − p_random). Labels hold the original id where selected.
    """
    for name, p in (("p_select", p_select), ("p_mask", p_mask), ("p_random", p_random)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    if p_mask + p_random > 1.0 + 1e-12:
        raise ValueError(f"p_mask + p_random must be <= 1, got {p_mask} + {p_random}")
    _check_ids(ids, vocab_size, "ids")
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[torch.as_tensor(list(special_ids), dtype=torch.long)] = True
    words = (~special).nonzero().flatten()                                 # ids allowed as random words
    if len(words) == 0:
        raise ValueError("mask_tokens: every id is special, no word to predict")
    u = torch.rand(ids.shape, generator=generator)                         # (b, t) select?
    r = torch.rand(ids.shape, generator=generator)                         # (b, t) how to corrupt
    random_ids = words[torch.randint(len(words), ids.shape, generator=generator)]  # (b, t)
    selected = (u < p_select) & ~special[ids]                              # (b, t)
    return corrupt(ids, selected, r, random_ids, mask_id, p_mask, p_random)


def corrupt(ids: torch.Tensor, selected: torch.Tensor, r: torch.Tensor, random_ids: torch.Tensor,
            mask_id: int, p_mask: float = 0.8, p_random: float = 0.1):
    """The 80/10/10 rule given the draws: all (b, t) -> (inputs, labels).

    Where ``selected``: r < p_mask -> [MASK]; p_mask <= r < p_mask + p_random -> random_ids;
    otherwise unchanged. labels = ids where selected, -100 elsewhere.
    """
    inputs = ids.clone()
    to_mask = selected & (r < p_mask)
    to_random = selected & (r >= p_mask) & (r < p_mask + p_random)
    inputs[to_mask] = mask_id
    inputs[to_random] = random_ids[to_random]
    labels = torch.where(selected, ids, torch.full_like(ids, -100))
    return inputs, labels


# ------------------------------------------------------------------ stories -> BERT batches
def story_ids(tokenizer, sentences: list[str]) -> list[int]:
    """Token ids of consecutive sentences (strict: an unknown word raises ValueError)."""
    return [i for s in sentences for i in tokenizer.encode(s)]


def nsp_example(stories, index: int, generator: torch.Generator, tokenizer, max_len: int):
    """One next-sentence pair from story ``index``: (ids, segments, IS_NEXT | NOT_NEXT).

    The story is cut at a random sentence boundary: a = the sentences before the cut;
    b = the sentences after it (IsNext, probability 1/2) or the tail of another random story
    (NotNext), as BERT pairs a segment with the next one or with a random one.
    """
    story = stories[index]
    cut = int(torch.randint(1, len(story.sentences), (1,), generator=generator))
    a = story_ids(tokenizer, story.sentences[:cut])
    label = IS_NEXT if torch.rand(1, generator=generator).item() < 0.5 else NOT_NEXT
    if label == IS_NEXT:
        b_sents = story.sentences[cut:]
    else:
        other = (index + int(torch.randint(1, len(stories), (1,), generator=generator))) % len(stories)
        start = int(torch.randint(1, len(stories[other].sentences), (1,), generator=generator))
        b_sents = stories[other].sentences[start:]
    b = story_ids(tokenizer, b_sents)[:max(1, max_len - 3 - len(a))]
    ids, segments = pair_input(a[:max_len - 4], b, tokenizer.cls_id, tokenizer.sep_id, max_len)
    return ids, segments, label


def pretraining_batch(stories, tokenizer, batch_size: int, generator: torch.Generator,
                      max_len: int, p_select: float = 0.15):
    """(inputs, segments, mlm_labels, nsp_labels): NSP pairs from random stories, then masked."""
    idx = torch.randint(len(stories), (batch_size,), generator=generator).tolist()
    examples = [nsp_example(stories, i, generator, tokenizer, max_len) for i in idx]
    ids = pad_batch([e[0] for e in examples], tokenizer.pad_id)            # (b, t)
    segments = pad_batch([e[1] for e in examples], 0)                      # (b, t)
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
    return pad_batch(seqs, tokenizer.pad_id), torch.tensor([label_names.index(s.label) for s in stories])


CLASSIFIERS = ("pretrained + fine-tuned", "from scratch", "linear probe (frozen)")


def make_classifier(kind: str, pretrained: BertForPretraining, n_classes: int,
                    seed: int = 0) -> BertClassifier:
    """One of the three contenders of the fine-tuning experiment (``CLASSIFIERS``), seeded.

    pretrained + fine-tuned: copies of the pre-trained encoder and pooler, all trained;
    from scratch: the same architecture, random weights; linear probe: the pre-trained encoder
    frozen, a linear layer on the mean token vector.
    """
    import copy

    if kind not in CLASSIFIERS:
        raise ValueError(f"kind must be one of {CLASSIFIERS}, got {kind!r}")
    torch.manual_seed(seed)
    if kind == "from scratch":
        return BertClassifier(Bert(pretrained.config), n_classes)
    bert = copy.deepcopy(pretrained.bert)
    if kind == "linear probe (frozen)":
        return BertClassifier(bert, n_classes, pooling="mean", freeze=True)
    return BertClassifier(bert, n_classes, copy.deepcopy(pretrained.pooler))


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


def finetune_classifier(classifier: BertClassifier, ids: torch.Tensor, labels: torch.Tensor,
                        steps: int, lr: float = 1e-3, batch_size: int = 32, seed: int = 0,
                        progress: bool | None = None):
    """Train ``classifier`` on the labelled (ids (n, t), labels (n,)) with cross-entropy.

    Mini-batches are drawn with a seeded generator; returns ``course_lib.training``'s TrainResult.
    """
    from course_lib.training import train

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
        keep = labels != -100
        mlm_right += int((mlm_logits.argmax(-1)[keep] == labels[keep]).sum())
        mlm_total += int(keep.sum())
        nsp_right += int((nsp_logits.argmax(-1) == nsp).sum())
        nsp_total += len(nsp)
    return {"mlm_accuracy": mlm_right / mlm_total, "nsp_accuracy": nsp_right / nsp_total,
            "masked_positions": mlm_total}
