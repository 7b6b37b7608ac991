"""Tests for course_lib.data.translation: the toy English -> Kalo pair of notebook 03."""

import random

import pytest
import torch

from course_lib import IGNORE_INDEX
from course_lib.data.translation import (
    ADJECTIVES,
    LEXICON,
    NOUNS,
    VERBS,
    TranslationData,
    _random_sentence,
    is_held_out,
    sample_pairs,
    translate,
)


def test_rules_adjective_follows_noun_verb_last_postposition():
    pair = translate("the red fox sees a small bird near the old house")
    assert pair.target == "ta vulpo ruga na birdo eta ta domo olda ce vidas"
    assert pair.alignment == (0, 2, 1, 4, 6, 5, 8, 10, 9, 7, 3)
    assert translate("A King knows the girl").target == "na rego ta knabino konas"


@pytest.mark.parametrize("seed", [0, 1])
def test_alignment_is_a_non_diagonal_permutation_of_word_translations(seed):
    pairs = sample_pairs(200, "train", seed=seed)
    assert any(p.alignment != tuple(range(len(p.alignment))) for p in pairs)
    for p in pairs:
        src, tgt = p.source.split(), p.target.split()
        assert sorted(p.alignment) == list(range(len(src))) and len(tgt) == len(src)
        assert tgt == [LEXICON[src[j]] for j in p.alignment]
        assert src[p.alignment[-1]] in VERBS  # the verb is last in Kalo
        for i, j in enumerate(p.alignment[:-1]):
            if src[j] in ADJECTIVES:  # adjective right after its noun
                assert src[p.alignment[i - 1]] in NOUNS
        assert 5 <= len(src) <= 11


def test_generation_is_deterministic_and_splits_are_disjoint():
    assert sample_pairs(50, "train", seed=3) == sample_pairs(50, "train", seed=3)
    assert sample_pairs(50, "train", seed=3) != sample_pairs(50, "train", seed=4)
    train = {p.source for p in sample_pairs(3000, "train", seed=0)}
    test = sample_pairs(300, "test", seed=0, distinct=True)
    assert len({p.source for p in test}) == 300
    assert not train & {p.source for p in test}
    assert all(is_held_out(p.source) for p in test) and not any(is_held_out(s) for s in train)


def test_held_out_fraction_is_about_ten_percent():
    rng = random.Random(0)
    fraction = sum(is_held_out(_random_sentence(rng)) for _ in range(3000)) / 3000
    assert 0.07 < fraction < 0.13


def test_batch_layout_teacher_forcing_shift_and_padding():
    data = TranslationData()
    pairs = [translate("the dog sees a cat"), translate("a big king helps the boy in the house")]
    src, tgt_in, tgt_out = data.batch(pairs)
    assert src.shape == (2, 9) and tgt_in.shape == tgt_out.shape == (2, 10)
    assert (src[0, 5:] == data.pad_id).all() and (tgt_in[:, 0] == data.bos_id).all()
    words = tgt_out[:, :-1] > data.eos_id  # shifted by one: tgt_in[i+1] = tgt_out[i]
    assert torch.equal(tgt_in[:, 1:][words], tgt_out[:, :-1][words])
    assert tgt_out[0, 5] == data.eos_id and (tgt_out[0, 6:] == IGNORE_INDEX).all()
    assert data.decode_target(tgt_out.clamp_min(0)) == [p.target for p in pairs]
    assert data.source.decode(src[1]) == pairs[1].source


def test_unknown_words_and_bad_sentences_raise_clear_errors():
    data = TranslationData()
    with pytest.raises(ValueError, match=r"unknown word\(s\) \['dragon'\]"):
        translate("the dragon sees a cat")
    with pytest.raises(ValueError, match="unknown word"):
        data.encode_source(["the cat sees a unicorn"])
    with pytest.raises(ValueError, match="expected a verb"):
        translate("the cat the dog")
    with pytest.raises(ValueError, match="expected a determiner"):
        translate("cat sees a dog")
    with pytest.raises(ValueError, match="preposition"):
        translate("the cat sees a dog sees")
    with pytest.raises(ValueError, match="split"):
        sample_pairs(3, "valid")
    with pytest.raises(ValueError, match="positive"):
        sample_pairs(0)
