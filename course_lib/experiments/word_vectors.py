"""Notebook 00's word-vector experiment: skip-gram with negative sampling on the story corpus."""
from __future__ import annotations

import torch

from course_lib.data.stories import Story
from course_lib.data.tokenizer import WordTokenizer, build_tokenizer
from course_lib.training import TrainResult, train
from course_lib.word_vectors import (SkipGram, SkipGramConfig, negative_sampling_loss,
                                     noise_distribution, skipgram_pairs)

__all__ = ["story_pairs", "train_skipgram"]


def story_pairs(stories: list[Story], tokenizer: WordTokenizer, window: int = 4):
    """Skip-gram pairs of every story (a window spans sentences, so it sees the story's topic)
    and the token counts (vocab,)."""
    sequences = [tokenizer.encode(story.text) for story in stories]
    centers, contexts = skipgram_pairs(sequences, window)
    counts = torch.bincount(torch.tensor([i for s in sequences for i in s]),
                            minlength=tokenizer.vocab_size)
    return centers, contexts, counts


def train_skipgram(stories: list[Story], d_model: int = 32, window: int = 4, negatives: int = 5,
                   steps: int = 1500, batch_size: int = 512, lr: float = 0.01, seed: int = 0,
                   tokenizer: WordTokenizer | None = None, dtype: torch.dtype = torch.float64
                   ) -> tuple[SkipGram, WordTokenizer, torch.Tensor, TrainResult]:
    """Skip-gram + negative sampling on ``stories``: random pairs, k negatives from P_n ∝ n^0.75.

    Float64 by default: the printed neighbours are then the same on every CPU and thread count.

    Returns (model, tokenizer, counts (vocab,), the TrainResult of course_lib.training.train).
    """
    tokenizer = tokenizer or build_tokenizer()
    centers, contexts, counts = story_pairs(stories, tokenizer, window)
    noise = noise_distribution(counts.float())                               # (vocab,)
    torch.manual_seed(seed)
    model = SkipGram(SkipGramConfig(tokenizer.vocab_size, d_model)).to(dtype)
    g = torch.Generator().manual_seed(seed)

    def get_batch(step):
        pick = torch.randint(0, len(centers), (batch_size,), generator=g)     # (b,)
        neg = torch.multinomial(noise, batch_size * negatives, replacement=True,
                                generator=g).view(batch_size, negatives)      # (b, k)
        return centers[pick], contexts[pick], neg

    result = train(model, get_batch, negative_sampling_loss, steps=steps, lr=lr, clip=None,
                   desc="skip-gram")
    return model, tokenizer, counts, result
