"""BERT (lecture 04): Bidirectional Encoder Representations from Transformers.

Devlin, Chang, Lee & Toutanova (2019), *BERT: Pre-training of Deep Bidirectional Transformers
for Language Understanding*; official implementation: google-research/bert, ``modeling.py``
(the model), ``run_pretraining.py`` (the two heads and losses), ``create_pretraining_data.py``
(masking and sentence pairs).

"Rip away the decoder, stack encoders": a stack of ``course_lib.transformer.EncoderLayer``
with **no causal mask**, so every token sees the whole input, left and right. The input of a
sentence pair is ``[CLS] a_1 … a_n [SEP] b_1 … b_m [SEP]`` and each token's vector is the sum
(§3, Figure 2 of the paper)

    x_i = LN(E_token[w_i] + E_segment[s_i] + P[i]),     s_i = 0 up to the first [SEP], 1 after.

Two pre-training heads (§3.1):

- masked LM: predict the original word at 15% of the positions, of which 80% were replaced
  by [MASK], 10% by a random word and 10% left unchanged (``mask_tokens``);
  logits = LN(GELU(W hidden_i + c)) E_tokenᵀ + b (the read-out is the token embedding itself);
- next-sentence prediction: from the pooled [CLS] vector tanh(W hidden_[CLS] + c), is b the
  sentence that follows a (IsNext = 0) or a random one (NotNext = 1)?

Two deviations from the reference code, on purpose and stated where they matter
(``mask_tokens``): each word position is selected independently with probability 0.15 (a
Bernoulli draw per token, so 15% only on average; the reference code picks exactly
round(0.15 · length) positions per sequence), and the random replacement word is never a special
token (the reference code draws it from the whole vocabulary).

Fine-tuning puts a linear layer on the same pooled [CLS] vector (``BertClassifier``).
Token ids are (b, t) integer tensors; ``pad_id`` (0) is [PAD] and padded keys are masked out of
attention. Shapes: ``b`` batch, ``t`` length, ``d`` d_model, ``nh`` heads, ``vocab`` the
vocabulary axis. Pre-training and fine-tuning on the story corpus:
``course_lib.experiments.bert``; the published weights: ``course_lib.pretrained.bert``.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

from course_lib.common import IGNORE_INDEX, check_shapes, check_token_ids
from course_lib.positional import LearnedPositional
from course_lib.transformer import EncoderLayer

__all__ = ["BertConfig", "BertEmbeddings", "Bert", "MLMHead", "Pooler", "BertForPretraining",
           "BertClassifier", "pair_input", "mask_tokens", "corrupt", "pretraining_loss",
           "param_count", "IS_NEXT", "NOT_NEXT"]

IS_NEXT, NOT_NEXT = 0, 1


@dataclass
class BertConfig:
    """Hyper-parameters of a BERT; CPU-sized defaults. BERT-base is d_model=768, n_layers=12,
    n_heads=12, d_ff=3072, max_len=512, vocab_size=30522, layer_norm_eps=1e-12."""
    vocab_size: int
    d_model: int = 64
    n_heads: int = 4
    n_layers: int = 2
    d_ff: int = 256
    max_len: int = 128
    n_segments: int = 2
    dropout: float = 0.1
    pad_id: int = 0
    layer_norm_eps: float = 1e-5

    def __post_init__(self):
        for name in ("vocab_size", "d_model", "n_heads", "n_layers", "d_ff", "max_len", "n_segments"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"BertConfig.{name} must be a positive int, got {getattr(self, name)!r}")
        if self.d_model % self.n_heads:
            raise ValueError(f"d_model={self.d_model} must be divisible by n_heads={self.n_heads}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {self.dropout}")
        if not 0 <= self.pad_id < self.vocab_size:
            raise ValueError(f"pad_id must lie in [0, vocab_size={self.vocab_size}), got {self.pad_id}")
        if not self.layer_norm_eps > 0:
            raise ValueError(f"layer_norm_eps must be > 0, got {self.layer_norm_eps}")

    def to_dict(self) -> dict:
        return asdict(self)


class BertEmbeddings(nn.Module):
    """x = LN(E_token[ids] + E_segment[segments] + P[position]): (b, t) -> (b, t, d).

    Figure 2 of Devlin et al. (2019); official: google-research/bert, modeling.py,
    ``embedding_lookup`` and ``embedding_postprocessor``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.token_emb = nn.Embedding(config.vocab_size, config.d_model)
        self.segment_emb = nn.Embedding(config.n_segments, config.d_model)
        self.pos_emb = LearnedPositional(config.d_model, config.max_len)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.dropout = nn.Dropout(config.dropout)
        for emb in (self.token_emb, self.segment_emb):
            nn.init.normal_(emb.weight, std=0.02)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None) -> torch.Tensor:
        c = self.config
        check_token_ids(ids, c.vocab_size, "ids")
        if ids.shape[1] > c.max_len:
            raise ValueError(f"ids: sequence length {ids.shape[1]} exceeds the position table "
                             f"(max_len={c.max_len}); truncate the input")
        segments = torch.zeros_like(ids) if segments is None else segments
        check_token_ids(segments, c.n_segments, "segments")
        check_shapes([(ids, ("b", "t"), "ids"), (segments, ("b", "t"), "segments")])
        x = self.token_emb(ids.long()) + self.segment_emb(segments.long())  # (b, t, d)
        x = self.pos_emb(x)                                                # (b, t, d) + P[:t]
        return self.dropout(self.norm(x))


class Bert(nn.Module):
    """The encoder stack: embeddings, then n_layers bidirectional EncoderLayers (post-norm, GELU).

    §3 of Devlin et al. (2019); official: google-research/bert, modeling.py, ``BertModel`` and
    ``transformer_model``. (b, t) ids -> (b, t, d) hidden states."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.embeddings = BertEmbeddings(config)
        self.layers = nn.ModuleList(
            EncoderLayer(config.d_model, config.n_heads, config.d_ff, config.dropout,
                         activation="gelu", eps=config.layer_norm_eps)
            for _ in range(config.n_layers))

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None,
                need_weights: bool = False):
        """ids, segments: (b, t). Returns (hidden (b, t, d), [weights (b, nh, t, t)] or None)."""
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
    """logits_i = LN(GELU(W hidden_i + c)) E_tokenᵀ + b: (b, t, d) -> (b, t, vocab).

    The read-out matrix is the token embedding E_token itself (tied weights), passed in at the
    point of use. §3.1 (Task #1) of Devlin et al. (2019); official: google-research/bert,
    run_pretraining.py, ``get_masked_lm_output``."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.dense = nn.Linear(config.d_model, config.d_model)
        self.norm = nn.LayerNorm(config.d_model, eps=config.layer_norm_eps)
        self.bias = nn.Parameter(torch.zeros(config.vocab_size))

    def forward(self, hidden: torch.Tensor, token_emb: nn.Embedding) -> torch.Tensor:
        z = self.norm(F.gelu(self.dense(hidden)))                          # (b, t, d)
        return F.linear(z, token_emb.weight, self.bias)                    # (b, t, vocab)


class Pooler(nn.Module):
    """pooled = tanh(W hidden_[CLS] + c): from the [CLS] position's final vector, (b, t, d) -> (b, d).

    Official: google-research/bert, modeling.py, ``BertModel`` ("pooler")."""

    def __init__(self, d_model: int):
        super().__init__()
        self.dense = nn.Linear(d_model, d_model)

    def forward(self, hidden: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.dense(hidden[:, 0]))                        # (b, d)


class BertForPretraining(nn.Module):
    """Bert + masked-LM head + next-sentence head: (ids, segments) -> (mlm (b, t, vocab), nsp (b, 2)).

    §3.1 of Devlin et al. (2019); official: google-research/bert, run_pretraining.py
    (``get_masked_lm_output``, ``get_next_sentence_output``)."""

    def __init__(self, config: BertConfig):
        super().__init__()
        self.config = config
        self.bert = Bert(config)
        self.mlm = MLMHead(config)
        self.pooler = Pooler(config.d_model)
        self.nsp = nn.Linear(config.d_model, 2)

    def forward(self, ids: torch.Tensor, segments: torch.Tensor | None = None,
                need_weights: bool = False):
        hidden, weights = self.bert(ids, segments, need_weights)           # (b, t, d)
        mlm = self.mlm(hidden, self.bert.embeddings.token_emb)             # (b, t, vocab)
        nsp = self.nsp(self.pooler(hidden))                                # (b, 2)
        return (mlm, nsp, weights) if need_weights else (mlm, nsp)


def pretraining_loss(model: BertForPretraining, ids, segments, mlm_labels, nsp_labels,
                     nsp_weight: float = 1.0) -> torch.Tensor:
    """L = CE(masked positions only; IGNORE_INDEX elsewhere) + nsp_weight · CE(IsNext/NotNext).

    §3.1 and Appendix A.2 of Devlin et al. (2019): the sum of the two mean losses."""
    mlm_logits, nsp_logits = model(ids, segments)                         # (b, t, vocab), (b, 2)
    mlm = F.cross_entropy(mlm_logits.flatten(0, 1), mlm_labels.flatten(), ignore_index=IGNORE_INDEX)
    return mlm + nsp_weight * F.cross_entropy(nsp_logits, nsp_labels)


def param_count(d_model: int, n_layers: int, vocab_size: int = 30522, max_len: int = 512,
                n_segments: int = 2, d_ff: int | None = None, heads: bool = False) -> int:
    """Parameters of a BERT from its config (biases everywhere, d_ff = 4d unless given):

        (V + T + S) d + 2d  +  L (4d² + 4d + 2 d f + f + d + 4d)  +  d² + d
        (token, position, segment tables and their LayerNorm; per layer: qkv and out
        projections, FFN, 2 LayerNorms; the pooler). With f = 4d a layer is 12d² + 13d, as in
        GPT-2 (``course_lib.gpt.param_count``). This is the BERT of the paper's counts (the
        encoder with its pooler, Devlin et al., 2019, §3); ``heads=True`` adds the pre-training
        heads: the MLM transform d² + d + 2d and output bias V (its matrix is E_token), NSP 2d + 2.
    """
    d, f = d_model, 4 * d_model if d_ff is None else d_ff
    embeddings = (vocab_size + max_len + n_segments) * d + 2 * d
    layer = 4 * d * d + 4 * d + 2 * d * f + f + d + 4 * d
    total = embeddings + n_layers * layer + d * d + d
    return total + (d * d + 3 * d + vocab_size + 2 * d + 2 if heads else 0)


class BertClassifier(nn.Module):
    """A label per sequence: logits = W dropout(pool(hidden)) + c, pool = [CLS] pooler or a mean.

    ``pooling="cls"`` uses tanh(W hidden_[CLS]) as in the paper (§4.1); ``"mean"`` averages the
    non-pad tokens' final vectors. ``freeze=True`` trains only the last linear layer (a linear
    probe). Official: google-research/bert, run_classifier.py, ``create_model``.
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
    """[CLS] a [SEP] (b [SEP]) and its segments 0…0 (1…1): the BERT input of one (pair of) text(s).

    Figure 2 of Devlin et al. (2019)."""
    ids = [cls_id, *a, sep_id]
    segments = [0] * len(ids)
    if b is not None:
        ids += [*b, sep_id]
        segments += [1] * (len(b) + 1)
    if max_len is not None and len(ids) > max_len:
        raise ValueError(f"pair_input: {len(ids)} tokens with [CLS]/[SEP] exceed max_len={max_len}")
    return ids, segments


def mask_tokens(ids: torch.Tensor, mask_id: int, vocab_size: int, special_ids,
                generator: torch.Generator, p_select: float = 0.15, p_mask: float = 0.8,
                p_random: float = 0.1) -> tuple[torch.Tensor, torch.Tensor]:
    """BERT's masking rule on ids (b, t) -> (inputs (b, t), labels (b, t), IGNORE_INDEX = not scored).

    §3.1 (Task #1) and Appendix A.1 of Devlin et al. (2019); official: google-research/bert,
    create_pretraining_data.py, ``create_masked_lm_predictions``. Each non-special position is
    selected with probability p_select; a selected position becomes [MASK] with probability
    p_mask, a random non-special word with p_random, and stays unchanged otherwise
    (1 − p_mask − p_random). Labels hold the original id where selected.

    Unlike the reference code, selection is one Bernoulli draw per token (the number of
    selected positions per sequence varies, binomially, around p_select · length; the reference
    code takes exactly round(p_select · length)), and a random word is never a special token
    (the reference code draws from the whole vocabulary, [CLS], [SEP] and [MASK] included).
    """
    for name, p in (("p_select", p_select), ("p_mask", p_mask), ("p_random", p_random)):
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"{name} must be a probability in [0, 1], got {p}")
    if p_mask + p_random > 1.0 + 1e-12:
        raise ValueError(f"p_mask + p_random must be <= 1, got {p_mask} + {p_random}")
    check_token_ids(ids, vocab_size, "ids")
    special = torch.zeros(vocab_size, dtype=torch.bool)
    special[torch.as_tensor(list(special_ids), dtype=torch.long)] = True
    words = (~special).nonzero().flatten()                                 # ids allowed as random words
    if len(words) == 0:
        raise ValueError("mask_tokens: every id is special, no word to predict")
    u = torch.rand(ids.shape, generator=generator)                         # (b, t) select?
    r = torch.rand(ids.shape, generator=generator)                         # (b, t) how to corrupt
    random_ids = words[torch.randint(len(words), ids.shape, generator=generator)]  # (b, t)
    selected = (u < p_select) & ~special[ids.long()]                       # (b, t)
    return corrupt(ids, selected, r, random_ids, mask_id, p_mask, p_random)


def corrupt(ids: torch.Tensor, selected: torch.Tensor, r: torch.Tensor, random_ids: torch.Tensor,
            mask_id: int, p_mask: float = 0.8, p_random: float = 0.1):
    """The 80/10/10 rule given the draws: all (b, t) -> (inputs, labels).

    Where ``selected``: r < p_mask -> [MASK]; p_mask <= r < p_mask + p_random -> random_ids;
    otherwise unchanged. labels = ids where selected, IGNORE_INDEX elsewhere.
    """
    inputs = ids.clone()
    to_mask = selected & (r < p_mask)
    to_random = selected & (r >= p_mask) & (r < p_mask + p_random)
    inputs[to_mask] = mask_id
    inputs[to_random] = random_ids[to_random]
    labels = torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))
    return inputs, labels
