"""Tests for course_lib.bert (notebook 04): inputs, masking rule, encoder, heads, checkers."""

import math

import pytest
import torch
from torch import nn

from course_lib import IGNORE_INDEX, right_pad
from course_lib.bert import (
    IS_NEXT,
    NOT_NEXT,
    Bert,
    BertClassifier,
    BertConfig,
    BertEmbeddings,
    BertForPretraining,
    corrupt,
    mask_tokens,
    pair_input,
    param_count,
    pretraining_loss,
)
from course_lib.experiments.bert import (
    CLASSIFIERS,
    classification_batch,
    finetuning_task,
    grammaticality_examples,
    labelled_subset,
    load_bert_tiny,
    make_classifier,
    masked_word_probs,
    nsp_example,
    pretraining_batch,
    select_on_validation,
    sentence_positions,
    story_ids,
)
from course_lib.checks import bert as checks

PAD, UNK, CLS, SEP, MASK = 0, 1, 2, 3, 4
SPECIAL = range(7)
V = 40


def tiny_config(**kw):
    base = dict(vocab_size=V, d_model=32, n_heads=4, n_layers=2, d_ff=64, max_len=24, dropout=0.0)
    base.update(kw)
    return BertConfig(**base)


def random_ids(b, t, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randint(7, V, (b, t), generator=g)


# ---------------------------------------------------------------- inputs and embeddings
def test_pair_input_layout():
    ids, seg = pair_input([10, 11], [20, 21, 22], CLS, SEP)
    assert ids == [CLS, 10, 11, SEP, 20, 21, 22, SEP]
    assert seg == [0, 0, 0, 0, 1, 1, 1, 1]
    ids, seg = pair_input([10], None, CLS, SEP)
    assert ids == [CLS, 10, SEP] and seg == [0, 0, 0]


def test_embeddings_are_token_plus_segment_plus_position():
    torch.manual_seed(0)
    emb = BertEmbeddings(tiny_config()).eval()
    ids = random_ids(2, 9)
    seg = (torch.arange(9) >= 4).long().expand(2, 9)
    manual = emb.token_emb.weight[ids] + emb.segment_emb.weight[seg] + emb.pos_emb.table.weight[:9]
    torch.testing.assert_close(emb(ids, seg), emb.norm(manual))


def test_bert_equals_stack_of_torch_encoder_layers():
    torch.manual_seed(0)
    config = tiny_config()
    bert = Bert(config).eval()
    ref = [
        nn.TransformerEncoderLayer(32, 4, 64, dropout=0.0, activation="gelu", batch_first=True)
        for _ in range(config.n_layers)
    ]
    for ours, theirs in zip(bert.layers, ref):
        ours.load_from_torch(theirs.eval())
    ids = random_ids(3, 11)
    ids[1, 7:] = PAD
    x = bert.embeddings(ids)
    pad = ids == PAD  # torch: True = ignore
    for layer in ref:
        x = layer(x, src_key_padding_mask=pad)
    out, _ = bert(ids)
    keep = ~pad
    torch.testing.assert_close(out[keep], x[keep], atol=1e-5, rtol=1e-4)


def test_attention_is_bidirectional_and_ignores_padding():
    torch.manual_seed(0)
    bert = Bert(tiny_config()).eval()
    ids = random_ids(1, 8)
    changed = ids.clone()
    changed[0, -1] = (changed[0, -1] + 1 - 7) % (V - 7) + 7  # edit the LAST token
    a, _ = bert(ids)
    b, _ = bert(changed)
    assert (a[0, 0] - b[0, 0]).abs().max() > 1e-4  # first position sees it
    padded = torch.cat([ids, torch.zeros(1, 5, dtype=torch.long)], dim=1)
    c, weights = bert(padded, need_weights=True)
    torch.testing.assert_close(c[:, :8], a, atol=1e-5, rtol=1e-4)
    assert len(weights) == 2 and weights[0].shape == (1, 4, 13, 13)
    assert weights[0][..., 8:].abs().max() == 0  # no weight on [PAD]


def test_mlm_head_is_tied_to_token_embedding():
    model = BertForPretraining(tiny_config())
    keys = model.state_dict().keys()
    assert [k for k in keys if "token_emb" in k] == ["bert.embeddings.token_emb.weight"]  # one matrix
    ids = random_ids(2, 6)
    mlm, nsp = model(ids)
    assert mlm.shape == (2, 6, V) and nsp.shape == (2, 2)
    mlm.sum().backward()
    assert model.bert.embeddings.token_emb.weight.grad is not None


def test_classifier_freeze_trains_only_the_head():
    bert = Bert(tiny_config())
    probe = BertClassifier(bert, 3, freeze=True)
    trainable = {n for n, p in probe.named_parameters() if p.requires_grad}
    assert trainable == {"head.weight", "head.bias"}
    logits = BertClassifier(Bert(tiny_config()), 3, pooling="mean")(random_ids(2, 5))
    assert logits.shape == (2, 3)


@pytest.mark.parametrize(
    "d, layers, heads, vocab, max_len, d_ff",
    [(32, 2, 4, 40, 24, None), (48, 3, 6, 101, 17, 80), (16, 1, 2, 7, 5, 16)],
)
def test_param_count_formula_equals_the_model(d, layers, heads, vocab, max_len, d_ff):
    config = BertConfig(
        vocab_size=vocab, d_model=d, n_heads=heads, n_layers=layers, d_ff=d_ff or 4 * d, max_len=max_len
    )
    model = BertForPretraining(config)
    encoder = sum(p.numel() for p in [*model.bert.parameters(), *model.pooler.parameters()])
    assert param_count(d, layers, vocab, max_len, d_ff=d_ff) == encoder
    assert param_count(d, layers, vocab, max_len, d_ff=d_ff, heads=True) == sum(
        p.numel() for p in model.parameters()
    )


def test_param_count_of_bert_base_and_large():
    """The paper's 110M / 340M (Devlin et al., 2019): the encoder with its pooler."""
    assert param_count(768, 12) == 109_482_240
    assert param_count(1024, 24) == 335_141_888
    with torch.device("meta"):  # the course's own model at full size, no memory
        base = BertForPretraining(
            BertConfig(vocab_size=30522, d_model=768, n_heads=12, n_layers=12, d_ff=3072, max_len=512)
        )
    assert sum(p.numel() for p in [*base.bert.parameters(), *base.pooler.parameters()]) == 109_482_240


# ---------------------------------------------------------------- masking rule (statistics)
def _bounds(p, n, z=5.0):
    half = z * math.sqrt(p * (1 - p) / n)
    return p - half, p + half


def test_mask_tokens_proportions_match_the_paper():
    g = torch.Generator().manual_seed(0)
    ids = random_ids(400, 250, seed=1)
    ids[:, 0], ids[:, -1] = CLS, SEP  # specials: never chosen
    inputs, labels = mask_tokens(ids, MASK, V, SPECIAL, g)
    selected = labels != IGNORE_INDEX
    n_words = int((ids >= 7).sum())
    lo, hi = _bounds(0.15, n_words)
    assert lo < selected.sum().item() / n_words < hi
    assert not selected[:, 0].any() and not selected[:, -1].any()
    n_sel = int(selected.sum())
    as_mask = (inputs[selected] == MASK).float().mean().item()
    unchanged = (inputs[selected] == ids[selected]).float().mean().item()
    rand = 1 - as_mask - unchanged
    n_vocab_words = V - 7  # a random word may equal
    p_same = 0.1 / n_vocab_words  # the original by chance
    for got, p in ((as_mask, 0.8), (rand, 0.1 - p_same), (unchanged, 0.1 + p_same)):
        lo, hi = _bounds(p, n_sel)
        assert lo < got < hi, (got, p)
    assert torch.equal(labels[selected], ids[selected])
    assert torch.equal(inputs[~selected], ids[~selected])  # others untouched
    assert (inputs[selected & (inputs != MASK)] >= 7).all()  # random words: no specials


def test_mask_tokens_is_seeded_and_rules_at_extremes():
    ids = random_ids(4, 30)
    a = mask_tokens(ids, MASK, V, SPECIAL, torch.Generator().manual_seed(3))
    b = mask_tokens(ids, MASK, V, SPECIAL, torch.Generator().manual_seed(3))
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    inputs, labels = mask_tokens(
        ids, MASK, V, SPECIAL, torch.Generator().manual_seed(0), p_select=1.0, p_mask=1.0, p_random=0.0
    )
    assert (inputs == MASK).all() and torch.equal(labels, ids)
    inputs, labels = mask_tokens(ids, MASK, V, SPECIAL, torch.Generator().manual_seed(0), p_select=0.0)
    assert torch.equal(inputs, ids) and (labels == IGNORE_INDEX).all()


def test_corrupt_rule():
    ids = torch.tensor([[10, 11, 12, 13]])
    selected = torch.tensor([[True, True, True, False]])
    r = torch.tensor([[0.5, 0.85, 0.95, 0.1]])
    rnd = torch.tensor([[30, 31, 32, 33]])
    inputs, labels = corrupt(ids, selected, r, rnd, MASK)
    assert inputs.tolist() == [[MASK, 31, 12, 13]]
    assert labels.tolist() == [[10, 11, 12, IGNORE_INDEX]]


# ---------------------------------------------------------------- bad input
@pytest.mark.parametrize(
    "kw, match",
    [
        (dict(p_select=1.5), "p_select"),
        (dict(p_select=-0.1), "p_select"),
        (dict(p_mask=2.0), "p_mask"),
        (dict(p_random=-1.0), "p_random"),
        (dict(p_mask=0.8, p_random=0.3), "p_mask \\+ p_random"),
    ],
)
def test_mask_tokens_rejects_bad_probabilities(kw, match):
    with pytest.raises(ValueError, match=match):
        mask_tokens(random_ids(2, 5), MASK, V, SPECIAL, torch.Generator(), **kw)


def test_bad_inputs_raise_value_error():
    model = BertForPretraining(tiny_config())
    with pytest.raises(ValueError, match="exceeds the position table"):
        model(random_ids(1, 25))
    with pytest.raises(ValueError, match=rf"ids: expected token ids in \[0, {V}\), received min 5, max {V}"):
        model(torch.tensor([[5, V]]))
    with pytest.raises(ValueError, match="received min -1"):
        mask_tokens(torch.tensor([[5, -1]]), MASK, V, SPECIAL, torch.Generator())
    with pytest.raises(ValueError, match="segments"):
        model(random_ids(1, 4), torch.tensor([[0, 1, 2, 0]]))
    with pytest.raises(ValueError, match="segments"):
        model(random_ids(1, 4), torch.zeros(1, 3, dtype=torch.long))
    with pytest.raises(ValueError, match="expected integer token ids"):
        model(torch.zeros(1, 4))
    assert model(torch.tensor([[5, 6]], dtype=torch.int16))[0].shape == (1, 2, V)  # any integer dtype
    with pytest.raises(ValueError, match="exceed max_len"):
        pair_input(list(range(10)), list(range(10)), CLS, SEP, max_len=12)
    with pytest.raises(ValueError, match="divisible"):
        tiny_config(d_model=30)
    with pytest.raises(ValueError, match="dropout"):
        tiny_config(dropout=1.0)
    with pytest.raises(ValueError, match="n_classes"):
        BertClassifier(Bert(tiny_config()), 1)


# ---------------------------------------------------------------- a tiny BERT learns
def test_tiny_bert_learns_masked_words_and_next_sentence():
    """Sentences 'k a_k b_k c_k' (the first word determines the rest); pairs (k, k+1) are IsNext."""
    _train_tiny_bert()  # one thread: tests/conftest.py


def _train_tiny_bert():
    torch.manual_seed(0)
    n = 8
    sent = {k: [7 + k, 15 + k, 23 + k, 31 + (k % 9)] for k in range(n)}
    g = torch.Generator().manual_seed(0)
    model = BertForPretraining(tiny_config(d_model=32, n_layers=1))
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)

    def batch(size=32):
        ks = torch.randint(n, (size,), generator=g).tolist()
        nxt = (torch.rand(size, generator=g) < 0.5).tolist()
        pairs = [
            pair_input(sent[k], sent[(k + 1) % n] if y else sent[(k + 3) % n], CLS, SEP)
            for k, y in zip(ks, nxt)
        ]
        ids, seg = right_pad([p[0] for p in pairs], PAD), right_pad([p[1] for p in pairs], 0)
        inputs, labels = mask_tokens(ids, MASK, V, SPECIAL, g, p_select=0.3)
        return inputs, seg, labels, torch.tensor([IS_NEXT if y else NOT_NEXT for y in nxt])

    for _ in range(250):
        loss = pretraining_loss(model, *batch())
        opt.zero_grad()
        loss.backward()
        opt.step()
    model.eval()
    inputs, seg, labels, nsp = batch(256)
    with torch.no_grad():
        mlm_logits, nsp_logits = model(inputs, seg)
    keep = labels != IGNORE_INDEX
    assert (mlm_logits.argmax(-1)[keep] == labels[keep]).float().mean() > 0.8
    assert (nsp_logits.argmax(-1) == nsp).float().mean() > 0.9


# ---------------------------------------------------------------- stories -> batches
@pytest.fixture(scope="module")
def corpus():
    from course_lib.data.stories import generate_stories
    from course_lib.data.tokenizer import build_tokenizer

    return generate_stories(40, seed=7), build_tokenizer()


def test_nsp_examples_and_pretraining_batches(corpus):
    stories, tok = corpus
    g = torch.Generator().manual_seed(0)
    labels = []
    for i in range(40):
        ids, seg, label = nsp_example(stories, i, g, tok, max_len=96)
        labels.append(label)
        words = tok.tokens(ids)
        cut = seg.index(1)
        assert words[0] == "[CLS]" and words[cut - 1] == "[SEP]" and words[-1] == "[SEP]"
        a, b = " ".join(words[1 : cut - 1]), " ".join(words[cut:-1])
        if label == IS_NEXT:  # b continues a
            assert (a + " " + b) in stories[i].text
        else:
            assert not stories[i].text.startswith(a + " " + b)
    assert 10 < labels.count(IS_NEXT) < 30
    inputs, seg, mlm, nsp = pretraining_batch(stories, tok, 8, g, max_len=96)
    assert inputs.shape == seg.shape == mlm.shape and nsp.shape == (8,)
    assert ((inputs == tok.mask_id) == ((mlm != IGNORE_INDEX) & (inputs == tok.mask_id))).all()
    x, y = classification_batch(stories[:5], tok, ["river", "town", "forest", "farm"], 96)
    assert x.shape[0] == 5 and (x[:, 0] == tok.cls_id).all()
    with pytest.raises(ValueError, match="not in label_names"):
        classification_batch(stories[:5], tok, ["river"], 96)
    with pytest.raises(ValueError, match="max_len"):
        classification_batch(stories[:5], tok, ["river", "town", "forest", "farm"], 20)
    with pytest.raises(ValueError, match="unknown token"):
        story_ids(tok, ["tom sat on the riverbank ."])


def test_nsp_pairs_are_half_is_next_and_say_where_b_comes_from(corpus):
    from course_lib.experiments.bert import nsp_pair

    stories, tok = corpus
    g = torch.Generator().manual_seed(1)
    pairs = [(i % 40, nsp_pair(stories, i % 40, g, tok, 96)) for i in range(2000)]
    share = sum(p.label == IS_NEXT for _, p in pairs) / len(pairs)
    lo, hi = _bounds(0.5, len(pairs), z=4.0)
    assert lo < share < hi
    for index, p in pairs:
        assert (p.b_story == index) == (p.label == IS_NEXT)
        cut = p.segments.index(1)
        b = tok.decode(p.ids[cut:-1])
        assert b in stories[p.b_story].text


def test_nsp_breakdown_groups_and_rules(corpus):
    from course_lib.experiments.bert import nsp_breakdown

    stories, tok = corpus
    torch.manual_seed(0)
    model = BertForPretraining(tiny_config(vocab_size=tok.vocab_size, max_len=96)).eval()
    out = nsp_breakdown(model, stories, tok, 96, n_pairs=300, seed=0, batch_size=64)
    assert sum(count for count, _ in out["groups"].values()) == 300
    assert out["groups"]["IsNext"][0] == round(300 * out["is_next"])
    # accuracy is the count-weighted mean of the groups' accuracies
    weighted = sum(c * a for c, a in out["groups"].values() if c) / 300
    assert abs(weighted - out["accuracy"]) < 1e-6
    assert out["rules"]["b names another character"] > 0.95  # the corpus makes names a sure cue
    # the count rule is right on every IsNext pair and on the odd-count NotNext pairs only
    odd = out["groups"]["NotNext, a count no story has"][0]
    assert abs(out["rules"]["a count no story has"] - (out["groups"]["IsNext"][0] + odd) / 300) < 1e-6


def test_classifier_contenders_and_subsets(corpus):
    stories, tok = corpus
    pretrained = BertForPretraining(tiny_config(vocab_size=tok.vocab_size, max_len=96))
    for kind in CLASSIFIERS:
        clf = make_classifier(kind, pretrained, 4, seed=0)
        assert clf(torch.tensor([[tok.cls_id, 10, tok.sep_id]])).shape == (1, 4)
    probe = make_classifier("linear probe (frozen)", pretrained, 4)
    assert probe.bert is not pretrained.bert and probe.frozen
    for pooling in ("mean", "cls"):  # like with like: every contender pools the same way
        assert {make_classifier(k, pretrained, 4, 0, pooling).pooling for k in CLASSIFIERS} == {pooling}
    tuned = make_classifier("pretrained + fine-tuned", pretrained, 4, pooling="cls")
    torch.testing.assert_close(tuned.pooler.dense.weight, pretrained.pooler.dense.weight)
    assert tuned.pooler.dense.weight is not pretrained.pooler.dense.weight
    with pytest.raises(ValueError, match="kind"):
        make_classifier("fine-tuned", pretrained, 4)
    few = labelled_subset(stories, 8, seed=1)
    assert few == labelled_subset(stories, 8, seed=1) and len(few) == 8
    assert sorted(s.label for s in few) == sorted(["farm", "forest", "river", "town"] * 2)
    with pytest.raises(ValueError, match="multiple"):
        labelled_subset(stories, 6)


def test_contextual_vectors_and_explorer(corpus):
    from course_lib.viz.bert import (
        contextual_similarity_explorer,
        contextual_vectors,
        cosine_matrix,
        sense_summary,
    )

    stories, tok = corpus
    bert = Bert(tiny_config(vocab_size=tok.vocab_size, max_len=96)).eval()
    words = [w for w in ("bank", "bat", "bark") if any(x[2] == w for s in stories for x in s.senses)]
    vectors, senses, contexts = contextual_vectors(bert, stories, tok, words[0])
    assert vectors.shape[:2] == (3, len(senses)) and all(words[0] in c for c in contexts)
    sim = cosine_matrix(vectors[-1])
    torch.testing.assert_close(sim.diagonal(), torch.ones(len(senses)))
    summary = sense_summary(sim, senses)
    assert set(summary) == {"within", "across"}
    with pytest.raises(ValueError, match="no occurrence"):
        contextual_vectors(bert, stories, tok, "tom")
    explorer = contextual_similarity_explorer(bert, stories, tok, words=tuple(words))
    for name, value in explorer.extreme_values():
        explorer.controls[name].value = value
        assert torch.isfinite(torch.as_tensor(explorer.data["similarity"])).all()


def test_shipped_checkpoint_loads_and_meets_the_claims():
    from course_lib.data.tokenizer import build_tokenizer
    from course_lib.training import data_dir

    path = data_dir() / "bert_tiny.safetensors"
    model, meta = load_bert_tiny()
    assert not model.training and meta["config"]["model"]["vocab_size"] == build_tokenizer().vocab_size
    assert set(meta["config"]) == {"model", "task", "train"}  # the course's one schema
    assert meta["config"]["train"]["command"] == "python tools/train_bert.py"
    assert {"train_cpu_s", "train_wall_s"} <= set(meta["metrics"])
    assert not {"pretrain_seconds", "sweep_seconds", "pretrain"} & set(meta["metrics"])
    for key in ("finetune", "finetune_grammar"):
        result = meta["metrics"][key]
        acc = result["test_accuracy"]
        assert set(acc) == set(CLASSIFIERS) and all(0 <= a <= 1 for v in acc.values() for a in v)
        for kind in CLASSIFIERS:  # the reported recipe is the one validation chose
            grid = result["grid"][kind]
            assert select_on_validation(grid) == result["selected"][kind]
            assert all(len(r["val"]) == len(acc[kind]) == 3 for r in grid)
            assert {r["pooling"] for r in grid} == {"mean", "cls"} and len(grid) >= 8
    assert meta["metrics"]["mlm_accuracy"] > 0.5
    assert path.stat().st_size < 2_000_000


# ---------------------------------------------------------------- checkers
def _wrong_corrupt(ids, selected, r, random_ids, mask_id):
    inputs = torch.where(selected, torch.full_like(ids, mask_id), ids)  # masks every selected one
    return inputs, torch.where(selected, ids, torch.full_like(ids, IGNORE_INDEX))


def test_checkers_pass_reference_and_explain_mistakes():
    assert checks.check_corrupt(lambda *a: corrupt(*a)).passed
    bad = checks.check_corrupt(_wrong_corrupt)
    assert not bad.passed and "the rule is" in bad.message
    assert checks.check_pair_input(lambda a, b, c, s: pair_input(a, b, c, s)).passed
    bad = checks.check_pair_input(lambda a, b, c, s: ([c, *a, s, *b, s], [0] * (len(a) + len(b) + 3)))
    assert not bad.passed and "item 1" in bad.message

    def ref_sum(tok, seg, pos, ids, s):
        return tok[ids] + seg[s] + pos[: ids.shape[1]]

    def no_segment(tok, seg, pos, ids, s):
        return tok[ids] + pos[: ids.shape[1]]

    def head(h, wp, bp, wo, bo):
        return torch.tanh(h[:, 0] @ wp.T + bp) @ wo.T + bo

    assert checks.check_bert_embedding_sum(ref_sum).passed
    assert not checks.check_bert_embedding_sum(no_segment).passed
    assert checks.check_cls_head(head).passed
    bad = checks.check_cls_head(lambda h, wp, bp, wo, bo: torch.tanh(h.mean(1) @ wp.T + bp) @ wo.T + bo)
    assert not bad.passed and "max abs diff" in bad.message

    def todo(*args):
        raise NotImplementedError

    for check in (
        checks.check_corrupt,
        checks.check_pair_input,
        checks.check_bert_embedding_sum,
        checks.check_cls_head,
    ):
        assert check(todo).status == "not implemented yet"


def test_grammaticality_examples_swap_half_of_the_sentences():
    from course_lib.data.stories import corpus_splits
    from course_lib.data.tokenizer import build_tokenizer

    tokenizer, stories = build_tokenizer(), corpus_splits(0)["val"]
    ids, labels = grammaticality_examples(stories, tokenizer, 40, seed=3, max_len=96)
    assert ids.shape[0] == 40 and labels.sum().item() == 20
    sentences = {s for story in stories for s in story.sentences}
    for row, label in zip(ids, labels):
        text = " ".join(
            tokenizer.id_to_token[i] for i in row.tolist() if not tokenizer.id_to_token[i].startswith("[")
        )
        assert (text in sentences) == (label.item() == 0)
    again, _ = grammaticality_examples(stories, tokenizer, 40, seed=3, max_len=96)
    assert torch.equal(ids, again)
    with pytest.raises(ValueError, match="n must lie in"):
        grammaticality_examples(stories, tokenizer, 1, seed=0, max_len=96)


# ---------------------------------------------------------------- fine-tuning protocol
def test_finetuning_task_splits_and_sizes(corpus):
    from course_lib.data.stories import generate_stories

    stories, tok = corpus
    splits = {"train": stories, "val": generate_stories(12, seed=8), "test": generate_stories(12, seed=9)}
    data = finetuning_task("setting", splits, tok, seed=0, n_labels=8, max_len=96)
    assert data["n_classes"] == 4 and data["train"][0].shape[0] == 8
    assert sorted(data["train"][1].tolist()) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert data["val"][0].shape[0] == 12 and data["test"][0].shape[0] == 12
    assert not (torch.equal(data["val"][1], data["test"][1]) and torch.equal(data["val"][0], data["test"][0]))
    gram = finetuning_task("grammar", splits, tok, seed=1, n_labels=10, max_len=96, n_eval=20)
    assert gram["n_classes"] == 2 and gram["train"][0].shape[0] == 10 and gram["val"][0].shape[0] == 20
    again = finetuning_task("grammar", splits, tok, seed=2, n_labels=10, max_len=96, n_eval=20)
    assert torch.equal(gram["test"][0], again["test"][0])  # the test set never moves
    assert not torch.equal(gram["train"][0], again["train"][0])  # the labelled set does, by seed
    with pytest.raises(ValueError, match="task must be one of"):
        finetuning_task("topic", splits, tok, 0, 8, 96)


def test_select_on_validation_uses_the_validation_mean_only():
    grid = [
        dict(pooling="mean", lr=1e-3, steps=40, val=[0.5, 0.9, 0.7], test=[0.99] * 3),
        dict(pooling="mean", lr=3e-3, steps=40, val=[0.8, 0.8, 0.8], test=[0.1] * 3),
        dict(pooling="cls", lr=3e-3, steps=40, val=[0.9, 0.7, 0.8], test=[0.2] * 3),
    ]
    assert select_on_validation(grid) is grid[1]  # best mean 0.8; the tie goes to the earlier
    grid[2]["val"] = [0.9, 0.9, 0.8]
    assert select_on_validation(grid) is grid[2]
    with pytest.raises(ValueError, match="val"):
        select_on_validation([dict(pooling="mean", val=[])])


def test_masked_word_probs_left_only_ignores_the_right_side(corpus):
    stories, tok = corpus
    torch.manual_seed(0)
    model = BertForPretraining(tiny_config(vocab_size=tok.vocab_size, max_len=96)).eval()
    items = sentence_positions(stories, "so", 2)
    assert items and all(
        t[i] in ("sat", "took", "saw", "played", "touched", "heard", "put") for t, i in items
    )
    tokens, i = items[0]
    edited = tokens[: i + 1] + ["the"] * (len(tokens) - i - 1)  # other words on the right
    both, target = masked_word_probs(model, [(tokens, i), (edited, i)], tok)
    left, _ = masked_word_probs(model, [(tokens, i), (edited, i)], tok, left_only=True)
    assert target.tolist() == [tok.token_to_id[tokens[i]]] * 2
    torch.testing.assert_close(both.sum(-1), torch.ones(2))
    torch.testing.assert_close(left[0], left[1])  # the right side is gone
    assert (both[0] - both[1]).abs().max() > 1e-4  # ...and it mattered
    ids = torch.tensor([[tok.cls_id, *tok.encode(" ".join(tokens[:i])), tok.mask_id, tok.sep_id]])
    with torch.no_grad():
        manual = model(ids)[0][0, i + 1].softmax(-1)
    torch.testing.assert_close(left[0], manual)
    with pytest.raises(ValueError, match="position"):
        masked_word_probs(model, [(tokens, len(tokens))], tok)


def test_setting_swap_control(corpus):
    from course_lib.viz.bert import setting_gap, setting_swapped_vectors

    stories, tok = corpus
    torch.manual_seed(0)
    bert = Bert(tiny_config(vocab_size=tok.vocab_size, max_len=96)).eval()
    word = next(w for w in ("bank", "bat", "bark") if sum(x[2] == w for s in stories for x in s.senses) >= 3)
    vectors, senses = setting_swapped_vectors(bert, stories, tok, word, ("river", "town"))
    assert vectors.shape[:3] == (3, len(senses), 2)
    torch.testing.assert_close(vectors[0, :, 0], vectors[0, :, 1])  # layer 0: only the word itself
    assert (vectors[-1, :, 0] - vectors[-1, :, 1]).abs().max() > 1e-6  # the encoder sees the setting
    same = setting_gap(vectors[0], senses)
    assert abs(same["gap"]) < 1e-6 and same["shift"] < 1e-6
    # a made-up word vector that is the setting direction plus noise: a clear positive gap
    g = torch.Generator().manual_seed(0)
    planted = torch.randn(len(senses), 1, 16, generator=g) * 0.1 + torch.eye(16)[:2][None] * 3
    made = setting_gap(planted, senses)
    assert made["gap"] > 0.5 and made["same setting"] > made["other setting"]
    with pytest.raises(ValueError, match="settings"):
        setting_swapped_vectors(bert, stories, tok, word, ("river", "moon"))
    with pytest.raises(ValueError, match="expected shape"):
        setting_gap(vectors[0, :, 0], senses)
