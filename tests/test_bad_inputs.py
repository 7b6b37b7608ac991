"""A table of bad inputs to public course_lib functions: each gives a clear ValueError.

Each row names a module and a public attribute, a call that feeds it something wrong, and a
regular expression the message must match: what was expected AND what was received (a shape,
a value, a name). A row whose module or attribute is missing FAILS: renaming or removing a
public function means updating its row here, so the table can never silently shrink.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from collections.abc import Callable

import pytest
import torch

T = torch.zeros
BOOL = torch.bool


@dataclass
class Case:
    id: str
    module: str
    name: str  # attribute of the module the call uses
    call: Callable  # call(attribute) -> must raise ValueError
    match: str  # regex: expected ... received


def _mha(cls):
    return cls(8, 2)(T(1, 3, 6))


def _mha_mask(cls):
    return cls(8, 2)(T(1, 3, 8), mask=torch.ones(4, 4, dtype=BOOL))


def _learned(cls):
    return cls(8, max_len=4)(T(1, 5, 8))


def _rope(cls):
    return cls(8, max_len=4)(T(1, 2, 6, 8), T(1, 2, 6, 8))


def _encoder_layer(cls):
    return cls(8, 2, 16)(T(1, 3, 6))


def _decoder_layer(cls):
    return cls(8, 2, 16)(T(2, 3, 8), T(1, 4, 8))


def _train(fn):
    model = torch.nn.Linear(2, 2)
    return fn(model, lambda step: (T(1, 2),), lambda m, x: m(x).sum(), steps=0, lr=1e-3)


def _checkpoint(fn):
    return fn(torch.nn.Linear(2, 2), "/nonexistent/course/model.safetensors")


def _gpt_ids(cls):
    from course_lib.gpt import GPTConfig

    model = cls(GPTConfig(vocab_size=10, max_len=8, d_model=8, n_layers=1, n_heads=2))
    return model(torch.tensor([[1, 2, 12]]))


def _gpt_long(cls):
    from course_lib.gpt import GPTConfig

    model = cls(GPTConfig(vocab_size=10, max_len=4, d_model=8, n_layers=1, n_heads=2))
    return model(torch.zeros(1, 6, dtype=torch.long))


def _ssm_classifier(cls):
    from course_lib.experiments.ssm import SSMConfig

    model = cls(SSMConfig(vocab_size=16, n_classes=4, d_model=8, d_state=4, n_layers=1))
    return model(torch.tensor([[0, 16]]))


def _tokenizer(fn):
    return fn().encode("tom met a dragon zzzq")


def _llama_ids(cls):
    from course_lib.llama import LlamaConfig

    config = LlamaConfig(vocab_size=10, max_len=8, d_model=8, n_layers=1, n_heads=2, n_kv_heads=1, d_ff=8)
    return cls(config)(torch.tensor([[1, 12]]))


def _mamba_tokens(cls):
    from course_lib.mamba import MambaConfig

    import dataclasses

    fields = {f.name for f in dataclasses.fields(MambaConfig)}
    kwargs = {
        k: v for k, v in {"vocab_size": 10, "d_model": 8, "n_layers": 1, "d_state": 4}.items() if k in fields
    }
    return cls(MambaConfig(**kwargs))(torch.full((1, 4), 99))


def _mamba_generate(cls):
    from course_lib.mamba import MambaConfig

    model = cls(MambaConfig(vocab_size=10, d_model=8, n_layers=1, d_state=4))
    return model.generate(torch.zeros(1, 3, dtype=torch.long), -1)


def _bert_ids(cls):
    from course_lib.bert import BertConfig

    model = cls(BertConfig(vocab_size=10, d_model=8, n_heads=2, n_layers=1, d_ff=16, max_len=8))
    return model(torch.tensor([[1, 2, 11]]))


def _bert_float_ids(cls):
    from course_lib.bert import BertConfig

    model = cls(BertConfig(vocab_size=10, d_model=8, n_heads=2, n_layers=1, d_ff=16, max_len=8))
    return model(torch.zeros(1, 3))


def _skipgram_ids(cls):
    from course_lib.word_vectors import SkipGramConfig

    return cls(SkipGramConfig(vocab_size=5, d_model=4))(torch.tensor([0, 7]))


def _rnn_empty_row(cls):
    from course_lib.rnn import RNNSeq2SeqConfig

    return cls(RNNSeq2SeqConfig(6, 6, d_model=4)).encode(torch.tensor([[0, 0], [1, 2]]))


def _hybrid_too_long(cls):
    from course_lib.hybrid import HybridConfig

    model = cls(HybridConfig(10, "ma", d_model=16, n_heads=2, max_len=8))
    return model(torch.zeros(1, 9, dtype=torch.long))


CASES = [
    # core
    Case(
        "setup threads",
        "course_lib",
        "setup",
        lambda f: f(threads=0, verbose=False),
        r"threads must be >= 1, got 0",
    ),
    Case(
        "check_shapes rank",
        "course_lib",
        "check_shapes",
        lambda f: f([(T(2, 3), ("b", "t", 4), "x")]),
        r"x: expected shape .*received",
    ),
    Case(
        "check_shapes width",
        "course_lib",
        "check_shapes",
        lambda f: f([(T(2, 3, 5), ("b", "t", 4), "x")]),
        r"x: expected shape .*4.*received.*5",
    ),
    Case(
        "check_shapes type",
        "course_lib",
        "check_shapes",
        lambda f: f([([1, 2], ("b",), "x")]),
        r"x: expected a torch.Tensor, received list",
    ),
    Case(
        "check_token_ids float",
        "course_lib",
        "check_token_ids",
        lambda f: f(T(2, 3)),
        r"ids: expected integer token ids of shape \(b, t\), received \(2, 3\) torch.float32",
    ),
    Case(
        "check_token_ids range",
        "course_lib",
        "check_token_ids",
        lambda f: f(torch.tensor([[0, 7]]), vocab_size=5),
        r"expected token ids in \[0, 5\), received min 0, max 7",
    ),
    Case(
        "check_token_ids rank",
        "course_lib",
        "check_token_ids",
        lambda f: f(torch.tensor([0, 1])),
        r"expected shape \(b, t\).*received \(2,\)",
    ),
    Case(
        "right_pad too long",
        "course_lib",
        "right_pad",
        lambda f: f([[1, 2, 3]], 0, length=2),
        r"expected rows of at most 2 ids, received 3",
    ),
    # word vectors and RNNs (00)
    Case(
        "SkipGram id range",
        "course_lib.word_vectors",
        "SkipGram",
        _skipgram_ids,
        r"centers: expected token ids in \[0, 5\), received min 0, max 7",
    ),
    Case(
        "skipgram_pairs window",
        "course_lib.word_vectors",
        "skipgram_pairs",
        lambda f: f([[1, 2]], 0),
        r"window must be a positive int, received 0",
    ),
    Case(
        "negative_sampling_objective k",
        "course_lib.word_vectors",
        "negative_sampling_objective",
        lambda f: f(T(2, 4), T(2, 4), T(2, 3, 5)),
        r"u_n: expected shape \(b, k, d\).*received \(2, 3, 5\)",
    ),
    Case(
        "noise_distribution negative",
        "course_lib.word_vectors",
        "noise_distribution",
        lambda f: f(torch.tensor([2.0, -1.0])),
        r"expected non-negative counts.*received min -1",
    ),
    Case(
        "nearest_neighbours id",
        "course_lib.word_vectors",
        "nearest_neighbours",
        lambda f: f(T(3, 2), 5),
        r"word_id: expected an id in \[0, 3\), received 5",
    ),
    Case(
        "analogy id",
        "course_lib.word_vectors",
        "analogy",
        lambda f: f(T(3, 2), 0, 1, 9),
        r"expected ids in \[0, 3\), received \(0, 1, 9\)",
    ),
    Case(
        "gru_cell weight width",
        "course_lib.rnn",
        "gru_cell",
        lambda f: f(T(2, 3), T(2, 4), T(12, 5), T(12, 4), T(12), T(12)),
        r"weight_ih: expected shape \(12, 3\).*received \(12, 5\)",
    ),
    Case(
        "attend mask dtype",
        "course_lib.rnn",
        "attend",
        lambda f: f(lambda q, k: k.sum(-1), T(1, 2), T(1, 3, 2), T(1, 3, 2), T(1, 3)),
        r"mask: expected a bool tensor \(b, s\), received torch.float32",
    ),
    Case(
        "attend values length",
        "course_lib.rnn",
        "attend",
        lambda f: f(torch.nn.Identity(), T(1, 2), T(1, 3, 2), T(1, 4, 2)),
        r"values: expected shape \(b, s, dv\).*received \(1, 4, 2\)",
    ),
    Case(
        "make_score unknown",
        "course_lib.rnn",
        "make_score",
        lambda f: f("general", 4),
        r"expected one of \('dot'.*received 'general'",
    ),
    Case(
        "RNNSeq2SeqConfig attention",
        "course_lib.rnn",
        "RNNSeq2SeqConfig",
        lambda f: f(4, 4, attention="luong"),
        r"expected 'none' or one of .*received 'luong'",
    ),
    Case(
        "RNNSeq2Seq empty source",
        "course_lib.rnn",
        "RNNSeq2Seq",
        _rnn_empty_row,
        r"src: expected at least one non-padding token per row, received an empty row at index 0",
    ),
    # attention (01)
    Case(
        "attention_naive qk width",
        "course_lib.attention",
        "attention_naive",
        lambda f: f(T(1, 3, 4), T(1, 5, 6), T(1, 5, 6)),
        r"expected.*received",
    ),
    Case(
        "attention_naive rank",
        "course_lib.attention",
        "attention_naive",
        lambda f: f(T(4), T(4), T(4)),
        r"q: expected shape \(\.\.\., length, width\), received",
    ),
    Case(
        "attention mask dtype",
        "course_lib.attention",
        "attention",
        lambda f: f(T(1, 3, 4), T(1, 3, 4), T(1, 3, 4), mask=torch.ones(3, 3)),
        r"mask: expected a bool tensor.*received",
    ),
    Case(
        "attention mask shape",
        "course_lib.attention",
        "attention",
        lambda f: f(T(1, 3, 4), T(1, 5, 4), T(1, 5, 4), mask=torch.ones(3, 4, dtype=BOOL)),
        r"mask: expected a shape broadcastable to .*received",
    ),
    Case(
        "attention mask and causal",
        "course_lib.attention",
        "attention",
        lambda f: f(T(1, 3, 4), T(1, 3, 4), T(1, 3, 4), mask=torch.ones(3, 3, dtype=BOOL), is_causal=True),
        r"either is_causal=True or a mask",
    ),
    Case(
        "attention_tiled block_size",
        "course_lib.attention",
        "attention_tiled",
        lambda f: f(T(1, 4, 8), T(1, 4, 8), T(1, 4, 8), block_size=0),
        r"block_size must be a positive int, got 0",
    ),
    Case(
        "causal_mask t > s",
        "course_lib.attention",
        "causal_mask",
        lambda f: f(5, 3),
        r"1 <= t <= s, got t=5, s=3",
    ),
    Case(
        "padding_mask too long",
        "course_lib.attention",
        "padding_mask",
        lambda f: f([2, 7], 5),
        r"lengths must lie in \[1, s=5\], got \[2, 7\]",
    ),
    Case(
        "split_heads indivisible",
        "course_lib.attention",
        "split_heads",
        lambda f: f(T(1, 3, 10), 4),
        r"d divisible by nh=4, received \(1, 3, 10\)",
    ),
    Case(
        "merge_heads rank",
        "course_lib.attention",
        "merge_heads",
        lambda f: f(T(3, 4, 5)),
        r"expected \(b, nh, t, dh\), received \(3, 4, 5\)",
    ),
    Case(
        "MHA d_model % heads",
        "course_lib.attention",
        "MultiHeadAttention",
        lambda c: c(10, 3),
        r"divisible by n_heads: got d_model=10, n_heads=3",
    ),
    Case(
        "MHA input width",
        "course_lib.attention",
        "MultiHeadAttention",
        _mha,
        r"x: expected shape .*8.*received.*6",
    ),
    Case(
        "MHA mask shape",
        "course_lib.attention",
        "MultiHeadAttention",
        _mha_mask,
        r"mask: expected a shape broadcastable to .*received.*\(4, 4\)",
    ),
    Case(
        "MHA load_from_torch size",
        "course_lib.attention",
        "MultiHeadAttention",
        lambda c: c(8, 2).load_from_torch(torch.nn.MultiheadAttention(8, 4, batch_first=True)),
        r"expected nn.MultiheadAttention\(8, 2\), received \(8, 4\)",
    ),
    # positional (02)
    Case(
        "sinusoidal odd d",
        "course_lib.positional",
        "sinusoidal_table",
        lambda f: f(10, 7),
        r"positive even int.*got 7",
    ),
    Case(
        "sinusoidal max_len",
        "course_lib.positional",
        "sinusoidal_table",
        lambda f: f(0, 8),
        r"max_len must be a positive int, got 0",
    ),
    Case(
        "learned past max_len",
        "course_lib.positional",
        "LearnedPositional",
        _learned,
        r"positions 0..4 exceed",
    ),
    Case("rope past max_len", "course_lib.positional", "RotaryEmbedding", _rope, r"positions up to 5 exceed"),
    Case(
        "rope_angles rank",
        "course_lib.positional",
        "rope_angles",
        lambda f: f(torch.zeros(2, 3), 8),
        r"expected positions of shape \(t,\), received",
    ),
    Case(
        "local_mask window",
        "course_lib.positional",
        "local_mask",
        lambda f: f(5, 0),
        r"window must be a positive int, got 0",
    ),
    Case(
        "PositionTaskModel encoding",
        "course_lib.experiments.positional",
        "PositionTaskModel",
        lambda c: c("spiral"),
        r"encoding must be one of .*got 'spiral'",
    ),
    # transformer (03)
    Case(
        "FeedForward activation",
        "course_lib.transformer",
        "FeedForward",
        lambda c: c(8, 16, activation="tanhh"),
        r"activation must be one of .*got 'tanhh'",
    ),
    Case(
        "EncoderLayer width",
        "course_lib.transformer",
        "EncoderLayer",
        _encoder_layer,
        r"expected shape .*8.*received.*6",
    ),
    Case(
        "DecoderLayer memory batch",
        "course_lib.transformer",
        "DecoderLayer",
        _decoder_layer,
        r"memory: expected shape \(b=2, s, d=8\).*received|memory: expected.*\(1, 4, 8\)",
    ),
    Case(
        "TransformerConfig dropout",
        "course_lib.transformer",
        "TransformerConfig",
        lambda c: c(10, 10, dropout=1.5),
        r"dropout must lie in \[0, 1\), got 1.5",
    ),
    # training
    Case("train steps", "course_lib.training", "train", _train, r"steps must be >= 1, got 0"),
    Case(
        "accuracy shapes",
        "course_lib.training",
        "accuracy",
        lambda f: f(T(2, 3, 5), torch.zeros(2, 4, dtype=torch.long)),
        r"expected logits .*",
    ),
    Case(
        "accuracy all ignored",
        "course_lib.training",
        "accuracy",
        lambda f: f(T(2, 5), torch.full((2,), -100)),
        r"every target equals ignore_index",
    ),
    Case(
        "load_checkpoint missing",
        "course_lib.training",
        "load_checkpoint",
        _checkpoint,
        r"checkpoint not found: .*model.safetensors",
    ),
    # synthetic data
    Case(
        "associative_recall pairs > keys",
        "course_lib.data.synthetic",
        "associative_recall",
        lambda f: f(2, n_pairs=20, n_keys=4),
        r"n_pairs \(20\) must be <= n_keys \(4\)",
    ),
    Case(
        "tokens_back k >= length",
        "course_lib.data.synthetic",
        "tokens_back",
        lambda f: f(2, 3, k=3),
        r"k=3 must be smaller than length=3",
    ),
    Case(
        "selective_copying data > length",
        "course_lib.data.synthetic",
        "selective_copying",
        lambda f: f(2, 4, 9),
        r"n_data \(9\) must be <= length \(4\)",
    ),
    Case(
        "induction_heads length",
        "course_lib.data.synthetic",
        "induction_heads",
        lambda f: f(2, 3),
        r"length must be >= 4, got 3",
    ),
    # viz
    Case(
        "plot_attention rank",
        "course_lib.viz",
        "plot_attention",
        lambda f: f(T(2, 3, 4)),
        r"expected weights of shape \(t, s\), received \(2, 3, 4\)",
    ),
    Case(
        "plot_attention labels",
        "course_lib.viz",
        "plot_attention",
        lambda f: f(T(3, 4), x_labels=list("ab")),
        r"expected 4 labels, received 2",
    ),
    Case(
        "plot_heads rank",
        "course_lib.viz",
        "plot_heads",
        lambda f: f(T(3, 4)),
        r"expected weights of shape \(h, t, s\), received \(3, 4\)",
    ),
    Case(
        "attention explorer empty",
        "course_lib.viz.attention",
        "attention_scores_explorer",
        lambda f: f({}),
        r"expected at least one example, received none",
    ),
    Case(
        "softmax temperature",
        "course_lib.viz.attention",
        "softmax_with_temperature",
        lambda f: f(T(3, 4), T(3, 4), temperature=0.0),
        r"temperature must be > 0, got 0",
    ),
    Case(
        "bertviz tokens",
        "course_lib.viz.bertviz",
        "prepare_attention",
        lambda f: f(T(2, 2, 4, 4), list("abc")),
        r"covers 4 positions but 3 tokens",
    ),
    # tokenizer, stories, translation (04, 05, 03)
    Case(
        "tokenizer unknown word",
        "course_lib.data.tokenizer",
        "build_tokenizer",
        _tokenizer,
        r"unknown token\(s\) .*'zzzq'",
    ),
    Case(
        "tokenizer encode type",
        "course_lib.data.tokenizer",
        "build_tokenizer",
        lambda f: f().encode(3),
        r"encode expects a str, received int",
    ),
    Case(
        "stories count",
        "course_lib.data.stories",
        "generate_stories",
        lambda f: f(-1),
        r"n_stories must be a non-negative int, got -1",
    ),
    Case(
        "translate unknown word",
        "course_lib.data.translation",
        "translate",
        lambda f: f("the red unicorn sees a bird"),
        r"unknown word\(s\) \['unicorn'\]",
    ),
    Case(
        "sample_pairs split",
        "course_lib.data.translation",
        "sample_pairs",
        lambda f: f(3, split="dev"),
        r"split must be 'train' or 'test', got 'dev'",
    ),
    # bert (04)
    Case(
        "BertConfig heads",
        "course_lib.bert",
        "BertConfig",
        lambda c: c(vocab_size=10, d_model=10, n_heads=3),
        r"d_model=10 must be divisible by n_heads=3",
    ),
    Case(
        "BertConfig vocab",
        "course_lib.bert",
        "BertConfig",
        lambda c: c(vocab_size=0),
        r"vocab_size must be a positive int, got 0",
    ),
    Case(
        "Bert unknown id",
        "course_lib.bert",
        "Bert",
        _bert_ids,
        r"ids: expected token ids in \[0, 10\), received min 1, max 11",
    ),
    Case(
        "Bert float ids",
        "course_lib.bert",
        "Bert",
        _bert_float_ids,
        r"ids: expected integer token ids of shape \(b, t\), received \(1, 3\) torch.float32",
    ),
    Case(
        "pair_input too long",
        "course_lib.bert",
        "pair_input",
        lambda f: f(list(range(3, 9)), [3, 4], 1, 2, 8),
        r"11 tokens with \[CLS\]/\[SEP\] exceed max_len=8",
    ),
    Case(
        "bert_config hidden_act",
        "course_lib.pretrained.bert",
        "bert_config",
        lambda f: f({"hidden_act": "relu"}),
        r"hidden_act='relu' is not supported by the course's BERT \(expected 'gelu'\)",
    ),
    # gpt (05)
    Case("GPT token id", "course_lib.gpt", "GPT", _gpt_ids, r"\[0, 10\).*12"),
    Case("GPT past context", "course_lib.gpt", "GPT", _gpt_long, r"sequence of 6 tokens"),
    Case(
        "top_k",
        "course_lib.gpt",
        "top_k_filter",
        lambda f: f(T(1, 5), 0),
        r"top_k must be an int >= 1, got 0",
    ),
    Case(
        "top_p",
        "course_lib.gpt",
        "top_p_filter",
        lambda f: f(T(1, 5), 1.5),
        r"top_p must lie in \(0, 1\], got 1.5",
    ),
    Case(
        "temperature",
        "course_lib.gpt",
        "apply_temperature",
        lambda f: f(T(1, 5), 0.0),
        r"temperature must be > 0.*0",
    ),
    Case(
        "encode_stories empty",
        "course_lib.experiments.gpt",
        "encode_stories",
        lambda f: f([], None),
        r"expected at least one story, received none",
    ),
    Case(
        "head_scores shape",
        "course_lib.experiments.gpt",
        "head_scores",
        lambda f: f(T(2, 1, 3, 8, 7), 4),
        r"maps: expected shape .*received \(2, 1, 3, 8, 7\)",
    ),
    Case(
        "gpt2_config field",
        "course_lib.pretrained.gpt2",
        "gpt2_config",
        lambda f: f({"add_cross_attention": True}),
        r"add_cross_attention=True is not supported",
    ),
    Case(
        "load_gpt2 no folder",
        "course_lib.pretrained.gpt2",
        "load_gpt2",
        lambda f: f("/nonexistent/gpt2"),
        r"expected /nonexistent/gpt2/config.json",
    ),
    # ssm / s4 (06)
    Case(
        "discretize_zoh delta",
        "course_lib.ssm",
        "discretize_zoh",
        lambda f: f(-torch.eye(2), torch.ones(2, 1), -0.1),
        r"delta must be > 0.*-0.1",
    ),
    Case(
        "discretize_zoh A square",
        "course_lib.ssm",
        "discretize_zoh",
        lambda f: f(T(2, 3), T(2, 1), 0.1),
        r"A: expected shape \(n, n\).*received \(2, 3\)",
    ),
    Case(
        "causal_conv kernel longer",
        "course_lib.ssm",
        "causal_conv",
        lambda f: f(T(1, 4), T(6)),
        r"kernel K \(\.\.\., 6\) is longer than the input",
    ),
    Case(
        "ssm_kernel length",
        "course_lib.ssm",
        "ssm_kernel",
        lambda f: f(torch.eye(2) * 0.5, torch.ones(2, 1), torch.ones(1, 2), 0),
        r"length must be a positive int, received 0",
    ),
    Case(
        "init_ssm kind",
        "course_lib.s4",
        "init_ssm",
        lambda f: f("legt2", 4),
        r"kind must be one of .*received 'legt2'",
    ),
    Case(
        "long_range_batch span",
        "course_lib.data.synthetic",
        "long_range_batch",
        lambda f: f(2, 16, span=40),
        r"1 <= span <= length=16, received 40",
    ),
    Case(
        "discretize_euler delta",
        "course_lib.ssm",
        "discretize_euler",
        lambda f: f(-torch.eye(2), torch.ones(2, 1), torch.tensor([0.1, 0.2])),
        r"scalar delta",
    ),
    Case(
        "SSMLayer input",
        "course_lib.s4",
        "SSMLayer",
        lambda f: f(4, 2)(T(1, 8, 3)),
        r"x: expected shape \(b, l, 4\).*received \(1, 8, 3\)",
    ),
    Case(
        "SSMClassifier token id",
        "course_lib.experiments.ssm",
        "SSMClassifier",
        _ssm_classifier,
        r"\[0, 16\).*max 16",
    ),
    Case(
        "discretization_errors delta",
        "course_lib.experiments.ssm",
        "discretization_errors",
        lambda f: f(-torch.eye(2), torch.ones(2, 1), torch.ones(2), [0.3]),
        r"divide 1.*0.3",
    ),
    # scan / mamba (07)
    Case(
        "scan shapes differ",
        "course_lib.scan",
        "scan_sequential",
        lambda f: f(T(1, 4, 2), T(1, 5, 2)),
        r"same shape \(b, l, \.\.\.\), received",
    ),
    Case(
        "scan_chunked chunk",
        "course_lib.scan",
        "scan_chunked",
        lambda f: f(T(1, 4, 2), T(1, 4, 2), chunk=0),
        r"chunk must be a positive int, got 0",
    ),
    Case(
        "discretize_selective method",
        "course_lib.scan",
        "discretize_selective",
        lambda f: f(torch.ones(1, 2, 3), -torch.ones(3, 4), T(1, 2, 4), method="rk4"),
        r"method must be one of .*got 'rk4'",
    ),
    Case(
        "MambaConfig dt range",
        "course_lib.mamba",
        "MambaConfig",
        lambda c: c(**{"vocab_size": 10, "dt_min": 0.5, "dt_max": 0.1}),
        r"0 < dt_min <= dt_max, got 0.5, 0.1",
    ),
    Case(
        "build_model arch",
        "course_lib.experiments.mamba",
        "build_model",
        lambda f: f({"arch": "rnn"}),
        r"arch must be 'mamba' or 'attention', got 'rnn'",
    ),
    Case(
        "MambaLM token ids",
        "course_lib.mamba",
        "MambaLM",
        _mamba_tokens,
        r"token ids in \[0, 10\), received min 99, max 99",
    ),
    Case(
        "MambaLM.generate n_new",
        "course_lib.mamba",
        "MambaLM",
        _mamba_generate,
        r"n_new >= 0, received prompt \(1, 3\), n_new=-1",
    ),
    Case(
        "mamba_config hidden_act",
        "course_lib.pretrained.mamba",
        "mamba_config",
        lambda f: f({"hidden_act": "gelu"}),
        r"hidden_act='gelu' is not supported by the course's MambaLM \(expected 'silu'\)",
    ),
    Case(
        "load_mamba no folder",
        "course_lib.pretrained.mamba",
        "load_mamba",
        lambda f: f("/nonexistent/mamba"),
        r"expected /nonexistent/mamba/config.json",
    ),
    # llama (08)
    Case(
        "LlamaConfig kv grouping",
        "course_lib.llama",
        "LlamaConfig",
        lambda c: c(n_heads=4, n_kv_heads=3),
        r"n_heads by n_kv_heads.*n_kv_heads=3",
    ),
    Case(
        "Llama token id",
        "course_lib.llama",
        "Llama",
        _llama_ids,
        r"ids: expected token ids in \[0, 10\), received min 1, max 12",
    ),
    Case(
        "repeat_kv shape",
        "course_lib.llama",
        "repeat_kv",
        lambda f: f(T(2, 3, 4), 2),
        r"x: expected shape \(b, nkv, s, dh\).*received \(2, 3, 4\)",
    ),
    Case(
        "document_mask float ids",
        "course_lib.llama",
        "document_mask",
        lambda f: f(T(1, 4)),
        r"doc_ids: expected integer token ids",
    ),
    Case(
        "speculative_generate batch",
        "course_lib.llama",
        "speculative_generate",
        lambda f: f(None, None, torch.zeros(2, 3, dtype=torch.long), 4),
        r"expected ids \(1, t\).*received ids \(2, 3\)",
    ),
    Case(
        "build_story_model arch",
        "course_lib.experiments.llama",
        "build_story_model",
        lambda f: f("rnn", {}),
        r"arch must be one of .*got 'rnn'",
    ),
    # rwkv / hybrid (09)
    Case(
        "wkv_parallel decay",
        "course_lib.rwkv",
        "wkv_parallel",
        lambda f: f(-torch.ones(3), torch.ones(3), T(1, 4, 3), T(1, 4, 3)),
        r"decay w must be > 0 .*received min -1",
    ),
    Case(
        "wkv_recurrent shapes",
        "course_lib.rwkv",
        "wkv_recurrent",
        lambda f: f(torch.ones(3), torch.ones(3), T(1, 4, 3), T(1, 5, 3)),
        r"v: expected shape \(b, t, d\).*received \(1, 5, 3\)",
    ),
    Case(
        "RWKVTimeMix input",
        "course_lib.rwkv",
        "RWKVTimeMix",
        lambda c: c(8)(T(1, 4, 6)),
        r"x: expected shape \(b, t, 8\).*received \(1, 4, 6\)",
    ),
    Case(
        "HybridConfig pattern",
        "course_lib.hybrid",
        "HybridConfig",
        lambda c: c(10, pattern="mx"),
        r"string of 'm' \(Mamba\) and 'a' \(attention\), got 'mx'",
    ),
    Case(
        "HybridLM max_len",
        "course_lib.hybrid",
        "HybridLM",
        _hybrid_too_long,
        r"sequence of 9 tokens exceeds max_len=8",
    ),
    Case(
        "multi_query_recall queries > pairs",
        "course_lib.data.synthetic",
        "multi_query_recall",
        lambda f: f(2, 4, 5),
        r"n_queries \(5\) <= n_pairs \(4\)",
    ),
    Case(
        "width_for no width",
        "course_lib.experiments.hybrid",
        "width_for",
        lambda f: f("a", 1000, 10, n_heads=3, widths=[4, 5]),
        r"no width in .* fits pattern 'a'",
    ),
]


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    import matplotlib.pyplot as plt

    plt.close("all")  # a plot call that raised may leave its figure open


@pytest.mark.parametrize("case", CASES, ids=[c.id for c in CASES])
def test_bad_input_gives_clear_value_error(case: Case):
    module = importlib.import_module(case.module)
    assert hasattr(module, case.name), (
        f"{case.module}.{case.name} does not exist: renamed or removed? update its row in {__name__}"
    )
    with pytest.raises(ValueError) as info:
        case.call(getattr(module, case.name))
    message = str(info.value)
    assert _re_search(case.match, message), f"{case.id}: message {message!r} does not match {case.match!r}"


def _re_search(pattern: str, text: str) -> bool:
    import re

    return re.search(pattern, text, flags=re.S) is not None


def test_the_table_has_at_least_30_rows():
    assert len(CASES) >= 30
    assert len({c.id for c in CASES}) == len(CASES), "two rows share an id"
