"""BERT weights in the course's BertForPretraining (course_lib.pretrained.bert), proven equal to
transformers' BertForPreTraining on random-weight checkpoints written with save_pretrained.
Nothing is downloaded; transformers is a test-only dependency."""

import json

import pytest
import torch

transformers = pytest.importorskip("transformers")
tokenizers = pytest.importorskip("tokenizers")

from safetensors.torch import load_file, save_file  # noqa: E402

from course_lib.bert import BertConfig, BertForPretraining  # noqa: E402
from course_lib.data.tokenizer import build_tokenizer  # noqa: E402
from course_lib.experiments.bert import (  # noqa: E402
    BANK_SENTENCES,
    FILL_MASK,
    fill_mask,
    real_model_demo,
    word_vectors,
)
from course_lib.pretrained import find_pretrained, unavailable_line  # noqa: E402
from hf_reference import random_reference, save  # noqa: E402
from course_lib.pretrained.bert import bert_config, load_bert  # noqa: E402

CONFIGS = {
    "small": dict(
        vocab_size=101,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=40,
    ),
    "wide, odd vocab, 3 segments": dict(
        vocab_size=257,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=3,
        intermediate_size=100,
        max_position_embeddings=48,
        type_vocab_size=3,
    ),
    "deep, 8 heads, eps 1e-5": dict(
        vocab_size=64,
        hidden_size=64,
        num_hidden_layers=4,
        num_attention_heads=8,
        intermediate_size=256,
        max_position_embeddings=32,
        layer_norm_eps=1e-5,
    ),
}


def hf_bert(seed=0, **kw):
    """A BertForPreTraining with random weights, LayerNorms and biases perturbed too."""
    return random_reference(transformers.BertForPreTraining, transformers.BertConfig(**kw), seed)


def batch(vocab_size, n_segments=2, seed=1):
    """Right-padded ids (3, 17) with no [PAD] (0) inside the text, two segments, HF's mask."""
    g = torch.Generator().manual_seed(seed)
    ids = torch.randint(1, vocab_size, (3, 17), generator=g)
    ids[1, 11:] = 0
    segments = (torch.arange(17) >= 8).long().expand(3, 17).clone() * (n_segments - 1)
    return ids, segments, (ids != 0).long()


@pytest.mark.parametrize("name", list(CONFIGS))
def test_mlm_and_nsp_logits_equal_transformers(name, tmp_path):
    kw = CONFIGS[name]
    hf = hf_bert(**kw)
    ours = load_bert(save(hf, tmp_path))
    assert not ours.training and ours.config.layer_norm_eps == kw.get("layer_norm_eps", 1e-12)
    ids, segments, mask = batch(kw["vocab_size"], kw.get("type_vocab_size", 2))
    with torch.no_grad():
        theirs = hf(input_ids=ids, token_type_ids=segments, attention_mask=mask)
        mlm, nsp = ours(ids, segments)
    assert (mlm - theirs.prediction_logits).abs().max().item() <= 1e-4
    assert (nsp - theirs.seq_relationship_logits).abs().max().item() <= 1e-4
    assert theirs.prediction_logits.std() > 0.1  # not a trivially small output


@pytest.mark.parametrize("name", list(CONFIGS))
def test_greedy_unmasking_of_20_tokens_is_identical(name, tmp_path):
    """Fill 20 [MASK]s one at a time, left to right, each with the argmax of the MLM head."""
    kw = CONFIGS[name]
    hf = hf_bert(seed=2, **kw)
    ours = load_bert(save(hf, tmp_path))
    mask_id = 3
    start = torch.randint(4, kw["vocab_size"], (2, 26), generator=torch.Generator().manual_seed(3))
    start[:, 4:24] = mask_id
    runs = []
    for step in (lambda x: ours(x)[0], lambda x: hf(input_ids=x).prediction_logits):
        x = start.clone()
        with torch.no_grad():
            for i in range(4, 24):
                x[:, i] = step(x)[:, i].argmax(-1)
        runs.append(x)
    assert torch.equal(runs[0], runs[1]) and not (runs[0] == mask_id).any()


def test_config_mapping():
    c = bert_config(
        {
            "model_type": "bert",
            "vocab_size": 30522,
            "hidden_size": 768,
            "num_hidden_layers": 12,
            "num_attention_heads": 12,
            "intermediate_size": 3072,
            "max_position_embeddings": 512,
            "type_vocab_size": 2,
            "pad_token_id": 0,
            "hidden_act": "gelu",
            "layer_norm_eps": 1e-12,
            "hidden_dropout_prob": 0.1,
        }
    )
    assert c == BertConfig(
        vocab_size=30522,
        d_model=768,
        n_heads=12,
        n_layers=12,
        d_ff=3072,
        max_len=512,
        n_segments=2,
        dropout=0.1,
        pad_id=0,
        layer_norm_eps=1e-12,
    )


@pytest.mark.parametrize(
    "field, value",
    [
        ("hidden_act", "relu"),
        ("hidden_act", "gelu_new"),
        ("position_embedding_type", "relative_key"),
        ("is_decoder", True),
        ("add_cross_attention", True),
        ("tie_word_embeddings", False),
        ("model_type", "roberta"),
    ],
)
def test_unsupported_config_raises(field, value):
    with pytest.raises(ValueError, match=f"{field}={value!r} is not supported"):
        bert_config({field: value})
    with pytest.raises(ValueError, match="hidden_size=30 must be divisible by num_attention_heads=4"):
        bert_config({"hidden_size": 30, "num_attention_heads": 4})


def _rewrite(folder, change):
    path = folder / "model.safetensors"
    tensors = load_file(str(path))
    change(tensors)
    save_file(tensors, str(path))


def test_missing_key_wrong_shape_and_extra_key_raise(tmp_path):
    kw = CONFIGS["small"]
    key = "bert.encoder.layer.1.attention.self.key.weight"
    save(hf_bert(**kw), tmp_path / "missing")
    _rewrite(tmp_path / "missing", lambda t: t.pop(key))
    with pytest.raises(
        ValueError,
        match=rf"missing key '{key}' \(needed for "
        r"bert\.layers\.1\.self_attn\.qkv_proj\.weight",
    ):
        load_bert(tmp_path / "missing")
    save(hf_bert(**kw), tmp_path / "shape")
    _rewrite(tmp_path / "shape", lambda t: t.update({"cls.seq_relationship.weight": torch.zeros(3, 32)}))
    with pytest.raises(ValueError, match=r"expected shape \(2, 32\) for nsp\.weight, received \(3, 32\)"):
        load_bert(tmp_path / "shape")
    save(hf_bert(**kw), tmp_path / "extra")
    _rewrite(tmp_path / "extra", lambda t: t.update({"cls.extra.weight": torch.zeros(2)}))
    with pytest.raises(ValueError, match=r"unexpected keys .*cls\.extra\.weight"):
        load_bert(tmp_path / "extra")
    config = json.loads((tmp_path / "extra" / "config.json").read_text())
    (tmp_path / "extra" / "config.json").write_text(json.dumps(dict(config, hidden_act="relu")))
    with pytest.raises(ValueError, match="hidden_act='relu'"):
        load_bert(tmp_path / "extra")


def test_hub_layout_gamma_beta_tied_decoder_and_buffers_load(tmp_path):
    """The hub's bert-base-uncased file: LayerNorm.gamma/beta, the tied decoder stored, and
    index buffers; it loads to the same model, and an untied decoder is refused."""
    kw = CONFIGS["small"]
    hf = hf_bert(**kw)
    save(hf, tmp_path / "modern")
    save(hf, tmp_path / "hub")

    def hub_names(t):
        for key in [k for k in t if "LayerNorm" in k]:
            t[key.replace(".weight", ".gamma").replace(".bias", ".beta")] = t.pop(key)
        t["cls.predictions.decoder.weight"] = t["bert.embeddings.word_embeddings.weight"].clone()
        t["bert.embeddings.position_ids"] = torch.arange(40)[None]

    _rewrite(tmp_path / "hub", hub_names)
    a, b = load_bert(tmp_path / "modern"), load_bert(tmp_path / "hub")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    _rewrite(tmp_path / "hub", lambda t: t["cls.predictions.decoder.weight"].add_(1.0))
    with pytest.raises(ValueError, match="untied read-out"):
        load_bert(tmp_path / "hub")


def test_nothing_half_loaded_and_no_pickle(tmp_path):
    from course_lib.pretrained import assign_weights, read_hf_folder
    from course_lib.pretrained.bert import BERT_IGNORE, bert_mapping

    folder = save(hf_bert(**CONFIGS["small"]), tmp_path / "ok")
    config, tensors = read_hf_folder(folder)
    model = BertForPretraining(bert_config(config))
    before = {k: v.clone() for k, v in model.state_dict().items()}
    tensors["cls.seq_relationship.bias"] = torch.zeros(3)  # the last key checked
    with pytest.raises(ValueError, match="seq_relationship.bias"):
        assign_weights(model, tensors, bert_mapping(model.config), "test", BERT_IGNORE)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    pickled = tmp_path / "pickle"  # transformers 5 writes only safetensors: the old layout by hand
    pickled.mkdir()
    (pickled / "config.json").write_text((folder / "config.json").read_text())
    torch.save({"bert.embeddings.word_embeddings.weight": torch.zeros(2, 2)}, pickled / "pytorch_model.bin")
    with pytest.raises(ValueError, match="pickle"):
        load_bert(pickled)


# ---------------------------------------------------------------- the notebook's section
def word_level_tokenizer(folder):
    """A tokenizer.json in the bert-base-uncased layout over the course's story vocabulary:
    lower-casing, BERT's pre-tokenizer, [CLS] a [SEP] (b [SEP]) with segment ids."""
    tok = build_tokenizer()
    wordlevel = tokenizers.Tokenizer(tokenizers.models.WordLevel(tok.token_to_id, unk_token="[UNK]"))
    wordlevel.normalizer = tokenizers.normalizers.Lowercase()
    wordlevel.pre_tokenizer = tokenizers.pre_tokenizers.BertPreTokenizer()
    wordlevel.add_special_tokens(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"])
    wordlevel.post_processor = tokenizers.processors.TemplateProcessing(
        single="[CLS] $A [SEP]",
        pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", tok.cls_id), ("[SEP]", tok.sep_id)],
    )
    wordlevel.save(str(folder / "tokenizer.json"))
    return tok.vocab_size


def fake_bert_folder(root):
    """COURSE_PRETRAINED_DIR/bert-base-uncased with a tiny random BertForPreTraining."""
    folder = root / "bert-base-uncased"
    folder.mkdir(parents=True)
    vocab_size = word_level_tokenizer(folder)
    hf = hf_bert(
        seed=4,
        vocab_size=vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=64,
    )
    return save(hf, folder), hf


def test_the_real_thing_section_runs_on_a_fake_checkpoint(tmp_path, monkeypatch, capsys):
    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path / "empty"))
    assert find_pretrained("bert-base-uncased") is None  # offline: the one line
    assert "bert-base-uncased" in unavailable_line("bert-base-uncased")
    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path))
    built, hf = fake_bert_folder(tmp_path)
    folder = find_pretrained("bert-base-uncased")  # what the notebook cell does
    assert folder == built
    out = real_model_demo(folder)
    printed = capsys.readouterr().out
    assert not out["real"] and "parameters in the course's BertForPretraining" in printed
    assert set(out["fill"]) == set(FILL_MASK) and all(len(v) == 3 for v in out["fill"].values())
    assert set(out["nsp"]) == {"IsNext", "NotNext"} and all(0 < p < 1 for p in out["nsp"].values())
    assert set(out["bank"]) == {0, 2} and set(out["shared"]) == {"river", "money"}
    # the demo's numbers are the reference model's: fill-mask top tokens and the bank vectors
    tokenizer = tokenizers.Tokenizer.from_file(str(folder / "tokenizer.json"))
    model = load_bert(folder)
    text = FILL_MASK[1]
    enc = tokenizer.encode(text)
    with torch.no_grad():
        logits = hf(input_ids=torch.tensor([enc.ids])).prediction_logits[0]
    position = enc.ids.index(tokenizer.token_to_id("[MASK]"))
    top = logits[position].softmax(-1).topk(3)
    assert [w for w, _ in fill_mask(model, tokenizer, text)] == [
        tokenizer.id_to_token(int(i)) for i in top.indices
    ]
    texts = list(BANK_SENTENCES["river"][:2])
    vectors = word_vectors(model, tokenizer, texts, "bank")  # (3, 2, d)
    enc = [tokenizer.encode(t) for t in texts]
    with torch.no_grad():
        states = hf.bert(input_ids=torch.tensor([enc[0].ids]), output_hidden_states=True).hidden_states
    bank = len(enc[0].ids) - 1 - enc[0].ids[::-1].index(tokenizer.token_to_id("bank"))
    torch.testing.assert_close(vectors[:, 0], torch.stack(states)[:, 0, bank], atol=1e-5, rtol=1e-4)
    with pytest.raises(ValueError, match="one \\[MASK\\]"):
        fill_mask(model, tokenizer, "no blank here .")
    with pytest.raises(ValueError, match="not a single token"):
        word_vectors(model, tokenizer, ["the river ."], "bank")


def test_quality_checks_apply_to_the_fetched_real_model_only(tmp_path, monkeypatch):
    """With bert-base's config and the fetch manifest the demo asserts bert-base's quality: a
    random model fails it; without the manifest (not the checked download) it only reports."""
    from course_lib.experiments import bert as experiments
    from course_lib.pretrained import MANIFEST

    monkeypatch.setenv("COURSE_PRETRAINED_DIR", str(tmp_path))
    folder, _ = fake_bert_folder(tmp_path)
    config = json.loads((folder / "config.json").read_text())
    monkeypatch.setattr(experiments, "REAL_BERT", {k: config[k] for k in experiments.REAL_BERT})
    assert not real_model_demo(folder)["real"]
    (folder / MANIFEST).write_text("{}")
    with pytest.raises(AssertionError):
        real_model_demo(folder)


def test_course_lib_does_not_import_transformers():
    import subprocess
    import sys

    code = (
        "import sys, course_lib.pretrained.bert, course_lib.experiments.bert; "
        "assert 'transformers' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)
    assert BertForPretraining  # the course class the loader fills
