"""The story corpus (course_lib.data.stories) and its word tokenizer."""

import math
from collections import Counter, defaultdict

import pytest
import torch

from course_lib.data.stories import (
    AMBIGUOUS,
    END,
    LABELS,
    SPLIT_SIZES,
    Story,
    _Process,
    _story_program,
    corpus_splits,
    entropy_rate,
    generate_stories,
    story_nll,
    vocabulary,
)
from course_lib.data.tokenizer import SPECIALS, WordTokenizer, build_tokenizer


def test_generate_is_deterministic_and_well_formed():
    a, b = generate_stories(50, seed=3), generate_stories(50, seed=3)
    assert [s.text for s in a] == [s.text for s in b]
    assert [s.text for s in a] != [s.text for s in generate_stories(50, seed=4)]
    for story in a:
        assert isinstance(story, Story) and story.label in LABELS
        assert all(s.endswith(" .") for s in story.sentences)
        assert story.text == story.text.lower()
        assert story.label in story.sentences[0].split()  # the setting is named up front


def test_senses_point_at_ambiguous_words():
    stories = generate_stories(300, seed=1)
    seen = defaultdict(set)
    for story in stories:
        for i, j, word, sense in story.senses:
            assert story.sentences[i].split()[j] == word
            assert sense in AMBIGUOUS[word]
            seen[word].add(sense)
    assert all(seen[w] == set(senses) for w, senses in AMBIGUOUS.items())  # every sense occurs


def test_labels_are_balanced_and_not_at_a_fixed_position():
    stories = generate_stories(400, seed=2)
    counts = Counter(s.label for s in stories)
    assert set(counts) == set(LABELS) and min(counts.values()) > 60
    positions = {s.tokens.index(s.label) for s in stories}
    assert len(positions) >= 3


def test_references_and_agreement():
    for story in generate_stories(200, seed=5):
        a, b = story.characters
        names = {
            w for w in story.tokens if w in ("tom sam ben max leo jack anna mia lily emma zoe kate").split()
        }
        assert names == {a, b}  # only the two characters recur
        for sent in story.sentences:
            w = sent.split()
            if w[0] == "the":
                assert w[-3] == ("were" if w[1].endswith("s") or w[1] == "mice" else "was")


def test_splits_sizes_and_reuse():
    splits = corpus_splits()
    assert {k: len(v) for k, v in splits.items()} == SPLIT_SIZES
    assert corpus_splits()["val"][0].text == splits["val"][0].text
    assert splits["train"][0].text != splits["val"][0].text


def test_story_nll_matches_the_sampled_choices():
    import random

    p = _Process(rng=random.Random(7))
    story = _story_program(p)
    nll = story_nll(story)
    assert len(nll) == len(story.tokens) + 1 and p.out[-1] == END
    assert nll == pytest.approx(p.nll)
    assert all(x >= 0 for x in nll) and nll[-1] == 0.0  # [EOS] is forced


def test_entropy_rate_is_a_floor_for_an_ngram_model():
    """A smoothed trigram model fitted on train text cannot beat the generator on val."""
    splits = corpus_splits()
    h = entropy_rate(splits["val"])
    assert 0.3 < h < 2.0 and h == pytest.approx(entropy_rate())
    counts, context = Counter(), Counter()
    vocab = len(vocabulary()) + 2
    for s in splits["train"]:
        toks = ["<s>", "<s>"] + s.tokens + [END]
        for i in range(2, len(toks)):
            counts[tuple(toks[i - 2 : i + 1])] += 1
            context[tuple(toks[i - 2 : i])] += 1
    total, n = 0.0, 0
    for s in splits["val"][:200]:
        toks = ["<s>", "<s>"] + s.tokens + [END]
        for i in range(2, len(toks)):
            p = (counts[tuple(toks[i - 2 : i + 1])] + 0.01) / (context[tuple(toks[i - 2 : i])] + 0.01 * vocab)
            total, n = total - math.log(p), n + 1
    assert total / n > entropy_rate(splits["val"][:200])


def test_story_nll_rejects_impossible_text():
    with pytest.raises(ValueError, match="probability 0"):
        story_nll("one day tom and tom went to the river .")
    with pytest.raises(ValueError, match="probability 0"):
        story_nll("one day tom and mia")
    with pytest.raises(ValueError, match="n_stories"):
        generate_stories(-1)
    with pytest.raises(ValueError, match="split"):
        entropy_rate(split="dev")


def test_tokenizer_round_trip_and_specials():
    tok = build_tokenizer()
    assert [tok.token_to_id[s] for s in SPECIALS] == list(range(7))
    assert tok.token_to_id["[PAD]"] == 0 and tok.vocab_size == len(vocabulary()) + 7
    story = corpus_splits()["test"][0]
    ids = tok.encode("[BOS] " + story.text + " [EOS]")
    assert ids[0] == tok.bos_id and ids[-1] == tok.eos_id
    assert tok.decode(ids, skip_special=True) == story.text
    assert tok.decode(torch.tensor(ids)) == "[BOS] " + story.text + " [EOS]"
    assert WordTokenizer.from_stories(corpus_splits()["train"]).id_to_token == tok.id_to_token


def test_tokenizer_bad_input():
    tok = build_tokenizer()
    with pytest.raises(ValueError, match="unknown token.*zebra"):
        tok.encode("tom saw a zebra")
    assert tok.encode("tom saw a zebra", strict=False)[-1] == tok.unk_id
    with pytest.raises(ValueError, match="outside the vocabulary"):
        tok.decode([tok.vocab_size])
    with pytest.raises(ValueError, match="expects a str"):
        tok.encode(["tom"])


def test_the_documented_example_is_a_possible_story():
    import course_lib.data.stories as stories

    lines = [l.split("<-")[0].strip() for l in stories.__doc__.split("\n") if "<-" in l]
    nll = story_nll(" ".join(lines))
    assert len(lines) == 6 and all(x >= 0 for x in nll)
    assert sum(nll) > 0 and nll[-1] == 0.0
