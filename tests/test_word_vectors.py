"""course_lib.word_vectors: the skip-gram likelihood, negative sampling, neighbours, analogies,
and that training on the story corpus learns the corpus's word classes."""

import pytest
import torch
import torch.nn.functional as F

from course_lib.checks.word_vectors import check_cosine_similarity, check_negative_sampling
from course_lib.data.stories import FEMALE, MALE, generate_stories
from course_lib.experiments.word_vectors import story_pairs, train_skipgram
from course_lib.word_vectors import (
    SkipGram,
    SkipGramConfig,
    analogy,
    cosine_similarity_matrix,
    nearest_neighbours,
    negative_sampling_loss,
    negative_sampling_objective,
    noise_distribution,
    skipgram_pairs,
    softmax_loss,
)


def test_skipgram_pairs_window():
    centers, contexts = skipgram_pairs([[1, 2, 3], [4, 5]], window=1)
    assert list(zip(centers.tolist(), contexts.tolist())) == [(1, 2), (2, 1), (2, 3), (3, 2), (4, 5), (5, 4)]
    centers, _ = skipgram_pairs([[0, 1, 2, 3, 4]], window=2)
    assert len(centers) == 2 * (2 * 5 - 3)  # every ordered pair at distance 1 or 2


def test_softmax_loss_is_the_likelihood():
    torch.manual_seed(0)
    model = SkipGram(SkipGramConfig(7, 3))
    torch.nn.init.normal_(model.context_emb.weight)
    c, o = torch.tensor([0, 3, 6]), torch.tensor([1, 1, 2])
    v_all, u_all = model.center_emb.weight, model.context_emb.weight
    p = torch.softmax(v_all[c] @ u_all.T, -1)  # (b, vocab): p(w | c)
    torch.testing.assert_close(softmax_loss(model, c, o), -p[torch.arange(3), o].log().mean())


def test_negative_sampling_equals_bce_and_model_loss():
    g = torch.Generator().manual_seed(1)
    v_c, u_o, u_n = (
        torch.randn(4, 5, generator=g),
        torch.randn(4, 5, generator=g),
        torch.randn(4, 3, 5, generator=g),
    )
    logits = torch.cat([(u_o * v_c).sum(-1, keepdim=True), torch.einsum("bkd,bd->bk", u_n, v_c)], 1)
    labels = torch.cat([torch.ones(4, 1), torch.zeros(4, 3)], 1)
    want = F.binary_cross_entropy_with_logits(logits, labels, reduction="sum") / 4
    torch.testing.assert_close(negative_sampling_objective(v_c, u_o, u_n), want)
    torch.manual_seed(0)
    model = SkipGram(SkipGramConfig(9, 5))
    c, o, n = torch.tensor([0, 1]), torch.tensor([2, 3]), torch.tensor([[4, 5], [6, 8]])
    torch.testing.assert_close(
        negative_sampling_loss(model, c, o, n),
        negative_sampling_objective(model.center_emb(c), model.context_emb(o), model.context_emb(n)),
    )


def test_noise_distribution_power():
    p = noise_distribution(torch.tensor([16.0, 1.0, 0.0]))
    torch.testing.assert_close(p, torch.tensor([8 / 9, 1 / 9, 0.0]))  # 16^0.75 = 8


def test_neighbours_and_analogy_on_hand_made_vectors():
    vectors = torch.tensor([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0], [-1.0, 0.0], [1.0, 1.0]])
    assert [i for i, _ in nearest_neighbours(vectors, 0, k=2)] == [1, 4]
    allowed = torch.tensor([True, False, True, True, True])
    assert nearest_neighbours(vectors, 0, k=1, allowed=allowed)[0][0] == 4
    # a = e1, b = e2, c = e3: b - a + c points exactly at word 3, not at the distractor 4
    words = torch.tensor([[1.0, 0, 0], [0, 1, 0], [0, 0, 1], [-1, 1, 1], [1, 0, 1]])
    top = analogy(words, 0, 1, 2, k=2)
    assert top[0][0] == 3 and top[0][1] == pytest.approx(1.0) and top[1][0] == 4
    torch.testing.assert_close(cosine_similarity_matrix(torch.eye(3)), torch.eye(3))


def test_training_on_stories_learns_word_classes():
    stories = generate_stories(300, seed=3)
    model, tok, counts, result = train_skipgram(stories, steps=400, batch_size=256)
    assert result.final_loss < 0.85 * sum(result.losses[:10]) / 10
    names = MALE + FEMALE
    top = nearest_neighbours(model.vectors, tok.token_to_id["tom"], k=5, allowed=counts > 0)
    assert sum(tok.id_to_token[i] in names for i, _ in top) >= 4  # names sit with names
    centers, contexts, counts2 = story_pairs(stories, tok, window=4)
    assert torch.equal(counts, counts2) and len(centers) == len(contexts)


def test_checkers_pass_reference_and_catch_mistakes():
    assert check_cosine_similarity(cosine_similarity_matrix).passed
    assert not check_cosine_similarity(lambda x: x @ x.T).passed
    assert check_negative_sampling(negative_sampling_objective).passed
    wrong = lambda v_c, u_o, u_n: -F.logsigmoid((u_o * v_c).sum(-1)).mean()  # noqa: E731
    assert check_negative_sampling(wrong).status == "failed"

    def todo(*args):
        raise NotImplementedError

    assert check_cosine_similarity(todo).status == "not implemented yet"


@pytest.mark.parametrize(
    "bad",
    [
        lambda: skipgram_pairs([[1]], 1),
        lambda: skipgram_pairs([[1, 2]], 0),
        lambda: SkipGram(SkipGramConfig(1, 4)),
    ],
)
def test_bad_inputs(bad):
    with pytest.raises(ValueError):
        bad()


def test_neighbours_explorer_callbacks():
    from course_lib.viz.word_vectors import neighbours_explorer

    vectors = torch.randn(8, 3, generator=torch.Generator().manual_seed(2))
    names = [f"w{i}" for i in range(8)]
    explorer = neighbours_explorer(vectors, names, ["w0", "w5"])
    explorer.controls["word"].value = "w5"  # fires the observer -> redraw
    explorer.controls["k"].value = 4
    want = nearest_neighbours(vectors, 5, k=4)
    assert explorer.data["ids"].tolist() == [i for i, _ in want]
    assert explorer.data["cosine"].tolist() == pytest.approx([c for _, c in want], abs=1e-6)
    with pytest.raises(ValueError, match="expected words of the vocabulary"):
        neighbours_explorer(vectors, names, ["zz"])
