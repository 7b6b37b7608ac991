"""Tests for course_lib.transformer (notebook 03): layers and stacks vs PyTorch, the encoder-decoder
model, teacher forcing, greedy decoding with a KV cache, bad input, checkers and figures."""

import matplotlib
import pytest
import torch
from torch import nn

from course_lib.checks import transformer as checks
from course_lib import IGNORE_INDEX
from course_lib.data.translation import TranslationData, sample_pairs, translate
from course_lib.experiments.transformer import (
    exact_match,
    head_distance,
    head_features,
    head_identity_share,
    load_translation_model,
)
from course_lib.training import train
from course_lib.transformer import (
    Decoder,
    DecoderLayer,
    Encoder,
    EncoderLayer,
    Transformer,
    TransformerConfig,
    beam_search,
    greedy_decode,
    teacher_forcing_loss,
)

matplotlib.use("Agg")
D, NH, FF = 32, 4, 64


def tiny_model(seed=0, **kw):
    torch.manual_seed(seed)
    base = dict(d_model=D, n_heads=NH, d_ff=FF, max_len=12)
    base.update(kw)
    return Transformer(TransformerConfig(20, 24, **base)).eval()


def random_src(b=3, s=7, seed=0, high=20):
    return torch.randint(7, high, (b, s), generator=torch.Generator().manual_seed(seed))


# ---------------------------------------------------------------- layers vs PyTorch
def test_ffn_is_one_mlp_shared_by_all_positions_after_the_heads_merge():
    layer = EncoderLayer(D, NH, FF).eval()
    z = torch.randn(2, 5, D, generator=torch.Generator().manual_seed(0))  # (b, t, d)
    with torch.no_grad():
        whole = layer.ffn(z)
        one_by_one = torch.stack([layer.ffn(z[:, i]) for i in range(5)], dim=1)
    torch.testing.assert_close(whole, one_by_one)  # position-wise: same MLP
    assert layer.ffn.linear1.weight.shape == (FF, D)  # reads all d = nh * dh features


@pytest.mark.parametrize("norm_first", [False, True])
def test_encoder_layer_matches_torch_with_padding(norm_first):
    torch.manual_seed(0)
    ref = nn.TransformerEncoderLayer(D, NH, FF, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    ours = EncoderLayer(D, NH, FF, norm_first=norm_first).load_from_torch(ref).eval()
    x = torch.randn(3, 6, D)
    lengths = torch.tensor([6, 4, 2])
    keep = torch.arange(6)[None] < lengths[:, None]  # (b, s) True = real
    with torch.no_grad():
        torch.testing.assert_close(ours(x)[0], ref(x))
        want = ref(x, src_key_padding_mask=~keep)
        got = ours(x, mask=keep[:, None, None, :])[0]
    torch.testing.assert_close(got[keep], want[keep])  # padded rows: unspecified


@pytest.mark.parametrize("norm_first", [False, True])
def test_decoder_layer_matches_torch_with_causal_and_padding_masks(norm_first):
    torch.manual_seed(1)
    ref = nn.TransformerDecoderLayer(D, NH, FF, dropout=0.0, batch_first=True, norm_first=norm_first).eval()
    ours = DecoderLayer(D, NH, FF, norm_first=norm_first).load_from_torch(ref).eval()
    x, memory = torch.randn(2, 5, D), torch.randn(2, 7, D)
    tgt_keep = torch.arange(5)[None] < torch.tensor([5, 3])[:, None]  # (b, t)
    mem_keep = torch.arange(7)[None] < torch.tensor([4, 7])[:, None]  # (b, s)
    causal = torch.ones(5, 5, dtype=torch.bool).triu(1)  # torch: True = blocked
    with torch.no_grad():
        want = ref(
            x, memory, tgt_mask=causal, tgt_key_padding_mask=~tgt_keep, memory_key_padding_mask=~mem_keep
        )
        got, (w_self, w_cross) = ours(
            x,
            memory,
            memory_mask=mem_keep[:, None, None, :],
            self_mask=tgt_keep[:, None, None, :],
            need_weights=True,
        )
    torch.testing.assert_close(got[tgt_keep], want[tgt_keep])
    assert w_self[0].triu(1).abs().max() == 0 and w_cross[0, :, :, 4:].abs().max() == 0


def test_encoder_stack_matches_torch_transformer_encoder():
    torch.manual_seed(2)
    layer = nn.TransformerEncoderLayer(D, NH, FF, dropout=0.0, batch_first=True)
    ref = nn.TransformerEncoder(layer, num_layers=3, enable_nested_tensor=False).eval()
    ours = Encoder(3, D, NH, FF).eval()
    for mine, theirs in zip(ours.layers, ref.layers):
        mine.load_from_torch(theirs)
    x = torch.randn(2, 6, D)
    with torch.no_grad():
        out, weights = ours(x, need_weights=True)
        torch.testing.assert_close(out, ref(x))
    assert len(weights) == 3 and weights[0].shape == (2, NH, 6, 6)


# ---------------------------------------------------------------- the encoder-decoder model
def test_forward_shapes_and_attention_maps():
    model = tiny_model()
    src, tgt = random_src(2, 7), random_src(2, 5, seed=1, high=24)
    logits, w = model(src, tgt, need_weights=True)
    assert logits.shape == (2, 5, 24)
    assert w["encoder"][0].shape == (2, NH, 7, 7) and w["decoder"][1].shape == (2, NH, 5, 5)
    assert w["cross"][1].shape == (2, NH, 5, 7)
    torch.testing.assert_close(w["cross"][0].sum(-1), torch.ones(2, NH, 5))
    assert model(src, tgt)[1] is None


def test_decoder_is_causal_and_source_padding_is_ignored():
    model = tiny_model()
    src, tgt = random_src(1, 6), random_src(1, 6, seed=2, high=24)
    with torch.no_grad():
        base = model(src, tgt)[0]
        changed = tgt.clone()
        changed[0, 4:] = 7  # change the future only
        torch.testing.assert_close(model(src, changed)[0][:, :4], base[:, :4])
        padded = torch.cat([src, torch.zeros(1, 3, dtype=torch.long)], 1)  # 3 [PAD] at the end
        torch.testing.assert_close(model(padded, tgt)[0], base, atol=1e-5, rtol=1e-4)


def test_greedy_decode_with_cache_equals_without_and_matches_teacher_forcing():
    model = tiny_model()
    src = random_src(3, 7)
    a = greedy_decode(model, src, max_new_tokens=8, need_weights=True)
    b = greedy_decode(model, src, max_new_tokens=8, use_cache=False, need_weights=True)
    assert torch.equal(a.tokens, b.tokens) and a.tokens.shape[0] == 3
    torch.testing.assert_close(a.cross, b.cross)
    assert a.cross.shape[:3] == (2, 3, NH) and a.cross.shape[3:] == (a.tokens.shape[1], 7)
    prefix = torch.cat([torch.full((3, 1), 5), a.tokens[:, :-1]], 1)
    with torch.no_grad():
        logits, _ = model(src, prefix)
    # every generated word is the argmax of the teacher-forced logits (until [EOS])
    alive = torch.cat([torch.ones(3, 1, dtype=torch.bool), (a.tokens[:, :-1] != 6).cummin(1).values], 1)
    assert torch.equal(logits.argmax(-1)[alive], a.tokens[alive])


def sequence_log_prob(model, src, tokens):
    """Σ log p(y_i | y_<i, x) of tokens (n,) under teacher forcing: a second way to score a beam."""
    tgt_in = torch.cat([torch.tensor([5]), tokens[:-1]])[None]
    with torch.no_grad():
        logp = model(src, tgt_in)[0][0].log_softmax(-1)  # (n, v)
    return logp[torch.arange(len(tokens)), tokens].sum().item()


def test_beam_search_of_width_one_is_greedy_and_scores_are_log_probs():
    model = tiny_model()
    for seed in range(3):
        src = random_src(1, 6, seed=seed)
        greedy = greedy_decode(model, src).tokens[0]
        tokens, score = beam_search(model, src, beam_size=1)
        assert torch.equal(tokens, greedy[: len(tokens)])
        wide, wide_score = beam_search(model, src, beam_size=4)
        assert abs(sequence_log_prob(model, src, wide) - wide_score) < 1e-4
        assert abs(sequence_log_prob(model, src, tokens) - score) < 1e-4
    with pytest.raises(ValueError, match=r"expected src of shape \(1, s\)"):
        beam_search(model, random_src(2, 6))
    with pytest.raises(ValueError, match="beam_size"):
        beam_search(model, random_src(1, 6), beam_size=0)


def test_short_training_learns_translation():
    torch.manual_seed(0)
    data = TranslationData()
    model = Transformer(
        TransformerConfig(
            data.source.vocab_size, data.target.vocab_size, d_model=32, n_heads=4, d_ff=64, max_len=16
        )
    )
    test = data.batch(sample_pairs(200, "test", distinct=True))
    result = train(
        model,
        lambda s: data.batch(sample_pairs(32, "train", seed=s)),
        teacher_forcing_loss,
        steps=120,
        lr=5e-3,
        warmup=20,
        optimizer=torch.optim.Adam(model.parameters(), lr=5e-3, betas=(0.9, 0.98)),
    )
    with torch.no_grad():
        logits, _ = model(test[0], test[1])
    keep = test[2] != IGNORE_INDEX
    token_acc = (logits.argmax(-1)[keep] == test[2][keep]).float().mean().item()
    assert result.final_loss < result.losses[0] / 3 and token_acc > 0.6


def test_shipped_checkpoint_translates_held_out_sentences():
    data = TranslationData()
    model, meta = load_translation_model()
    task = meta["config"]["task"]
    held_out = sample_pairs(task["held_out_sentences"], "test", seed=task["held_out_seed"], distinct=True)
    score, predictions = exact_match(model, data, held_out)
    assert score >= 0.95 and abs(score - meta["metrics"]["exact_match"]) < 1e-6
    assert set(meta["metrics"]) == {"exact_match", "final_loss", "train_cpu_s", "train_wall_s"}
    assert meta["metrics"]["train_cpu_s"] > 0 and meta["config"]["train"]["threads"] == 1  # quoted by 03
    assert meta["config"]["train"]["command"] == "python tools/train_translation.py"
    assert predictions[0].split()[-1] in translate(sample_pairs(1, "test")[0].source).target.split()


# ---------------------------------------------------------------- bad input
def test_mismatched_encoder_decoder_widths_raise():
    decoder = Decoder(2, 64, 4)
    with pytest.raises(ValueError, match="encoder and decoder widths differ"):
        decoder(torch.randn(1, 3, 64), torch.randn(1, 5, 32))
    with pytest.raises(ValueError, match="memory"):
        DecoderLayer(64, 4)(torch.randn(1, 3, 64), torch.randn(1, 5, 48))


def test_sequence_longer_than_positional_table_raises():
    model = tiny_model()  # max_len=12
    with pytest.raises(ValueError, match="exceed the positional table of max_len=12"):
        model(random_src(1, 13), random_src(1, 3, high=24))
    with pytest.raises(ValueError, match="tgt: positions up to 12"):
        model(random_src(1, 5), random_src(1, 13, high=24))
    with pytest.raises(ValueError, match="max_new_tokens"):
        greedy_decode(model, random_src(1, 5), max_new_tokens=13)


def test_bad_ids_config_and_unknown_words_raise():
    model = tiny_model()
    with pytest.raises(ValueError, match=r"src: expected token ids in \[0, 20\)"):
        model(torch.full((1, 3), 25), random_src(1, 3, high=24))
    with pytest.raises(ValueError, match="src: expected integer token ids"):
        model(torch.randn(1, 3), random_src(1, 3, high=24))
    with pytest.raises(ValueError, match="divisible by n_heads"):
        TransformerConfig(10, 10, d_model=30, n_heads=4)
    with pytest.raises(ValueError, match="outside the target vocabulary"):
        TransformerConfig(10, 4)
    with pytest.raises(ValueError, match=r"unknown word\(s\) \['dragon'\]"):
        TranslationData().encode_source(["the dragon sees a cat"])


# ---------------------------------------------------------------- checkers
@pytest.mark.parametrize(
    "check, reference",
    [
        (checks.check_decoder_mask, checks.reference_decoder_mask),
        (checks.check_encoder_layer, checks.reference_encoder_layer),
        (checks.check_greedy_step, checks.reference_greedy_step),
    ],
)
def test_checkers_pass_reference_and_report_todo(check, reference):
    assert check(reference).passed

    def todo(*args):
        raise NotImplementedError

    assert check(todo).status == "not implemented yet"


def test_checkers_explain_wrong_answers():
    def only_causal(lengths, t):
        return torch.ones(len(lengths), 1, t, t, dtype=torch.bool).tril()

    def no_residual(x, layer, mask):
        return layer.norm2(layer.ffn(layer.norm1(layer.self_attn(x, mask=mask)[0])))

    def first_position(model, src, prefix):
        return model(src, prefix)[0][:, 0].argmax(-1)

    result = checks.check_decoder_mask(only_causal)
    assert result.status == "failed" and "entries differ" in result.message
    assert "max abs diff" in checks.check_encoder_layer(no_residual).message
    assert checks.check_greedy_step(first_position).status == "failed"


# ---------------------------------------------------------------- figures
def test_decoding_explorer_and_alignment_plot_at_extremes():
    import matplotlib.pyplot as plt

    from course_lib.viz.transformer import (
        decoding_explorer,
        encoder_decoder_view,
        plot_alignment,
        translate_with_weights,
    )

    data = TranslationData()
    model = Transformer(
        TransformerConfig(
            data.source.vocab_size, data.target.vocab_size, d_model=32, n_heads=2, d_ff=32, max_len=16
        )
    ).eval()
    sentences = ["the red fox sees a bird", "a king knows the girl in the old house"]
    golds = [translate(s).alignment for s in sentences]
    explorer = decoding_explorer(model, data, sentences, golds)
    for name, value in explorer.extreme_values():
        explorer.controls[name].value = value
        assert all(torch.isfinite(torch.as_tensor(v)).all() for v in explorer.data.values())
        assert abs(explorer.data["current"].sum() - 1) < 1e-4
    run = translate_with_weights(model, data, sentences[0])
    fig, ax = plt.subplots()
    plot_alignment(run["cross"][0, 0], run["src_tokens"], run["out_tokens"], golds[0], ax=ax)
    plt.close(fig)
    with pytest.raises(ValueError, match="expected weights of shape"):
        plot_alignment(run["cross"][0, 0], run["src_tokens"][:-1], run["out_tokens"])
    with pytest.raises(ValueError, match="at least one sentence"):
        decoding_explorer(model, data, [])
    encoder_decoder_view(run)  # renders HTML, no error


# ---------------------------------------------------------------- why several heads (03)
def test_head_measurements_on_known_maps():
    one_hot = torch.eye(4, dtype=torch.float64)[None, None].repeat(1, 2, 1, 1)  # (1, 2, 4, 4)
    uniform = torch.full((1, 2, 4, 4), 0.25, dtype=torch.float64)
    rows = torch.ones(1, 4, dtype=torch.bool)
    assert head_features(one_hot, rows)["entropy"].abs().max() < 1e-12  # 0 bits
    torch.testing.assert_close(
        head_features(uniform, rows)["entropy"], torch.full((1, 2), 2.0, dtype=torch.float64)
    )  # log2(4)
    shifted = torch.roll(torch.eye(4, dtype=torch.float64), 1, dims=1)  # key i + 1 (mod 4)
    assert head_features(shifted[None, None], rows)["offset"].item() == pytest.approx(0.0)
    assert head_distance(one_hot, rows) == pytest.approx(0.0)  # identical heads
    both = torch.stack([torch.eye(4), shifted.float()]).double()[None]  # (1, 2, 4, 4)
    assert head_distance(both, rows) == pytest.approx(1.0)  # disjoint heads
    half = rows.clone()
    half[0, 2:] = False  # padding rows
    assert head_features(uniform, half)["entropy"][0, 0].item() == pytest.approx(2.0)


def test_head_identity_share_separates_distinct_from_interchangeable_heads():
    g = torch.Generator().manual_seed(0)
    noise = torch.randn(200, 4, generator=g, dtype=torch.float64)
    distinct = noise * 0.1 + torch.tensor([0.0, 1.0, 2.0, 3.0], dtype=torch.float64)
    share = head_identity_share(distinct, n_shuffles=50)
    assert share["real"] > 0.9 and share["shuffled_max"] < 0.1
    same = head_identity_share(noise, n_shuffles=50)
    assert same["real"] < 0.05 and same["shuffled_mean"] < 0.05
    assert head_identity_share(distinct, n_shuffles=50) == share  # seeded
