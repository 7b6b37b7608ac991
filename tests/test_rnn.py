"""course_lib.rnn: the GRU cell against nn.GRUCell / nn.GRU, the score functions against their
formulas, the encoder-decoder's shapes and masking, and the shipped checkpoints' scores."""

import pytest
import torch
from torch import nn

from course_lib.checks.rnn import check_dot_attention, check_gru_cell
from course_lib.data.translation import TranslationData
from course_lib.experiments.rnn import (
    eval_pairs,
    exact_match_by_length,
    load_rnn_translation,
    recall_accuracy,
    train_recall,
)
from course_lib.rnn import (
    AdditiveScore,
    BilinearScore,
    CosineScore,
    DotScore,
    RNNSeq2Seq,
    RNNSeq2SeqConfig,
    attend,
    greedy_decode,
    gru_cell,
    make_score,
)
from course_lib.training import data_dir


def test_gru_cell_equals_torch():
    torch.manual_seed(0)
    cell, gru = nn.GRUCell(3, 6), nn.GRU(3, 6, batch_first=True)
    x, h = torch.randn(2, 5, 3), torch.randn(2, 6)
    torch.testing.assert_close(
        gru_cell(x[:, 0], h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh), cell(x[:, 0], h)
    )
    states, s = [], h
    for t in range(5):
        s = gru_cell(x[:, t], s, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
        states.append(s)
    torch.testing.assert_close(torch.stack(states, 1), gru(x, h[None])[0])


def test_scores_match_their_formulas():
    torch.manual_seed(0)
    q, k = torch.randn(2, 4), torch.randn(2, 3, 4)
    torch.testing.assert_close(DotScore()(q, k), torch.einsum("bd,bsd->bs", q, k))
    add = AdditiveScore(4, 5)
    manual = torch.tanh((q @ add.q_proj.weight.T)[:, None] + k @ add.k_proj.weight.T) @ add.w.weight[0]
    torch.testing.assert_close(add(q, k), manual)
    bil = BilinearScore(4)
    torch.testing.assert_close(bil(q, k), torch.einsum("bd,de,bse->bs", q, bil.W.weight, k))
    cos = CosineScore(init_scale=2.0)
    unit = lambda x: x / x.norm(dim=-1, keepdim=True)  # noqa: E731
    torch.testing.assert_close(cos(q, k), 2.0 * torch.einsum("bd,bsd->bs", unit(q), unit(k)))


def test_attend_masks_and_sums_values():
    torch.manual_seed(1)
    q, k, v = torch.randn(2, 4), torch.randn(2, 3, 4), torch.randn(2, 3, 5)
    mask = torch.tensor([[True, True, True], [True, False, False]])
    context, w = attend(DotScore(), q, k, v, mask)
    torch.testing.assert_close(w.sum(-1), torch.ones(2))
    assert (w[1, 1:] == 0).all()
    torch.testing.assert_close(context[1], v[1, 0])  # one key left
    torch.testing.assert_close(context[0], torch.softmax(k[0] @ q[0], 0) @ v[0])


def test_seq2seq_shapes_padding_and_decode():
    torch.manual_seed(0)
    for attention in ("none", "additive", "dot"):
        model = RNNSeq2Seq(RNNSeq2SeqConfig(12, 10, d_model=8, attention=attention, max_len=5))
        src = torch.tensor([[7, 8, 9, 0], [7, 8, 9, 10]])
        logits, w = model(src, torch.tensor([[5, 7, 8], [5, 9, 9]]))
        assert logits.shape == (2, 3, 10) and w.shape == (2, 3, 4)
        assert (w[0, :, 3] == 0).all()  # padding never read
        if attention == "none":
            assert (w[0, :, 2] == 1).all() and (w[1, :, 3] == 1).all()  # the last real token
        # padding must not change the encoding of the shorter sentence
        alone, _ = model(src[:1, :3], torch.tensor([[5, 7, 8]]))
        torch.testing.assert_close(alone, logits[:1])
        tokens, weights = greedy_decode(model, src)
        assert tokens.shape[0] == 2 and tokens.shape[1] <= 5 and weights.shape[:2] == tokens.shape


def test_make_score_names():
    assert isinstance(make_score("bilinear", 4), BilinearScore)
    with pytest.raises(ValueError, match="expected one of"):
        make_score("general", 4)
    with pytest.raises(ValueError, match="expected 'none' or one of"):
        RNNSeq2SeqConfig(3, 3, attention="luong")


def test_recall_learns_with_a_product_score():
    acc = recall_accuracy(
        train_recall("dot", seed=0, steps=120, n_pairs=6, n_keys=12), n=500, n_pairs=6, n_keys=12
    )
    assert acc > 0.8  # chance 1/12


@pytest.mark.skipif(
    not (data_dir() / "rnn_translation_additive.safetensors").exists(),
    reason="data/rnn_translation_*.safetensors not built (python tools/train_rnn.py)",
)
def test_shipped_checkpoints_rescore_as_stored():
    data, (test, val) = TranslationData(), eval_pairs()
    assert not {p.source for p in test} & {p.source for p in val}  # disjoint
    scores = {}
    for name in ("none", "additive"):
        model, meta = load_rnn_translation(name)
        by_length = exact_match_by_length(model, data, test)
        stored = meta["metrics"]["runs"]["0"]["test_by_length"]
        assert {str(n): list(v) for n, v in by_length.items()} == stored
        assert meta["config"]["train"]["command"] == "python tools/train_rnn.py"
        assert "train_cpu_s" in meta["metrics"] and "train_wall_s" in meta["metrics"]
        scores[name] = by_length
    hits = {name: sum(h for h, _ in s.values()) for name, s in scores.items()}
    assert hits["additive"] > hits["none"]  # attention helps
    assert scores["additive"][11][0] / scores["additive"][11][1] > 0.95


def test_checkers():
    assert check_gru_cell(
        lambda x, h, cell: gru_cell(x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    ).passed
    assert check_gru_cell(lambda x, h, cell: h).status == "failed"
    assert check_dot_attention(lambda q, k, v, m: attend(DotScore(), q, k, v, m)).passed
    assert check_dot_attention(lambda q, k, v, m: attend(DotScore(), q, k, v)).status == "failed"


def test_alignment_explorer_callbacks():
    from course_lib.viz.rnn import alignment_examples, alignment_explorer

    torch.manual_seed(0)
    data = TranslationData()
    model = RNNSeq2Seq(
        RNNSeq2SeqConfig(
            data.source.vocab_size, data.target.vocab_size, d_model=8, bos_id=data.bos_id, eos_id=data.eos_id
        )
    )
    pairs = eval_pairs(n_test=3, n_val=1)[0]
    examples = alignment_examples(model, data, pairs)
    explorer = alignment_explorer(examples)
    last = pairs[-1].source
    explorer.controls["sentence"].value = last
    ex = examples[last]
    assert ex["weights"].shape[1] == len(last.split())
    torch.testing.assert_close(torch.as_tensor(explorer.data["weights"]), ex["weights"])
    assert explorer.data["hits"].tolist() == (ex["weights"].argmax(-1) == ex["gold"]).float().tolist()
