# %% [markdown]
# # 00 · Word vectors and RNNs: the road to attention
# <!-- badges -->
#
# Before a network can read a sentence it needs numbers for words. This notebook starts there:
# one-hot codes, then dense **word vectors** learned from which words keep company (word2vec's
# skip-gram, trained here on the course's story corpus in seconds). A word vector is *static*:
# "bank" gets one vector whether it is a river bank or a money bank. Then sentences: a
# **recurrent** encoder-decoder (GRU) squeezes a whole source sentence into one state vector and
# translates from it; we measure how that **bottleneck** hurts as sentences grow, and how
# **attention** (Bahdanau et al.) removes it. Notebook 01 takes attention from there.
#
# Papers: Mikolov et al., *Efficient Estimation of Word Representations in Vector Space* and
# *Distributed Representations of Words and Phrases and their Compositionality* (2013);
# Cho et al., *Learning Phrase Representations using RNN Encoder-Decoder* (2014);
# Bahdanau, Cho & Bengio, *Neural Machine Translation by Jointly Learning to Align and
# Translate* (2015); Luong, Pham & Manning, *Effective Approaches to Attention-based NMT* (2015).

# %% [markdown]
# **Learning goals.** After this notebook you can
# 1. **explain** why one-hot codes carry no similarity and dense vectors do,
# 2. **derive** the skip-gram likelihood and its negative-sampling objective, and **train** it,
# 3. **measure** nearest neighbours and analogies, and say what a static vector cannot do,
# 4. **implement** a GRU cell and **verify** it against `nn.GRUCell`,
# 5. **compare** an RNN encoder-decoder with and without attention against sentence length, and
#    score functions (dot, additive, bilinear, cosine) on one task.

# %% [bootstrap]

# %%
import matplotlib.pyplot as plt
import torch
import torch.nn.functional as F
from torch import nn

from course_lib import setup
from course_lib.checks.rnn import check_dot_attention, check_gru_cell
from course_lib.checks.word_vectors import check_cosine_similarity, check_negative_sampling
from course_lib.data.stories import corpus_splits
from course_lib.data.tokenizer import build_tokenizer
from course_lib.data.translation import TranslationData
from course_lib.experiments.rnn import (eval_pairs, exact_match_by_length, load_rnn_translation,
                                        recall_accuracy, train_recall)
from course_lib.experiments.word_vectors import train_skipgram
from course_lib.rnn import (SCORES, AdditiveScore, BilinearScore, CosineScore, DotScore,
                            RNNSeq2Seq, attend, gru_cell)
from course_lib.source import show_source
from course_lib.viz.rnn import (alignment_examples, alignment_explorer, plot_accuracy_by_length,
                               plot_alignment)
from course_lib.viz.word_vectors import neighbours_explorer, plot_similarity
from course_lib.word_vectors import (SkipGram, SkipGramConfig, analogy, cosine_similarity_matrix,
                                     nearest_neighbours, negative_sampling_objective,
                                     noise_distribution, skipgram_pairs, softmax_loss)

device = setup(seed=0)

# %% [markdown]
# ## 1. One-hot codes know nothing about meaning
#
# The simplest code gives word number $i$ of a vocabulary of size $|V|$ the vector $e_i$: a 1 at
# position $i$, zeros elsewhere. Every pair of different words is then orthogonal,
#
# $$ \cos(e_i, e_j) = \frac{e_i \cdot e_j}{\lVert e_i\rVert\,\lVert e_j\rVert} = 0 \quad (i \ne j), $$
#
# so "frog" is exactly as far from "fish" as from "coin", and the vector is as long as the
# vocabulary. Our story corpus (the one 04 and 05 use) has this vocabulary:

# %%
stories = corpus_splits()["train"][:2000]
words = ["frog", "fish", "shell", "coin", "key", "tom", "mia", "red", "blue", "happy", "sad"]
tokenizer = build_tokenizer()                                        # words <-> ids
one_hot = F.one_hot(torch.tensor([tokenizer.token_to_id[w] for w in words]),
                    tokenizer.vocab_size).float()                    # (11, vocab)
print(f"vocabulary: {tokenizer.vocab_size} tokens (7 special); one-hot vectors {tuple(one_hot.shape)}")
print(f"largest cosine between two different words: "
      f"{(cosine_similarity_matrix(one_hot) - torch.eye(len(words))).max().item():.1f}")

# %% [markdown]
# ## 2. You shall know a word by the company it keeps
#
# The **distributional hypothesis** (Harris 1954; Firth 1957): words that occur in similar
# contexts have similar meanings. **Skip-gram** (Mikolov et al., 2013) turns it into a
# likelihood. Give each word two dense vectors, $v_w$ when it is the centre and $u_w$ when it
# is a neighbour, and ask every word $w_t$ of a text to predict the words within $a$ positions:
#
# $$ L = \prod_{t} \prod_{-a \le j \le a,\ j \ne 0} p(w_{t+j} \mid w_t), \qquad
#    p(o \mid c) = \frac{\exp(u_o^\top v_c)}{\sum_{w \in V} \exp(u_w^\top v_c)} .$$
#
# Training minimises $-\log L$ averaged over the (centre, context) pairs of the corpus:

# %%
show_source(skipgram_pairs, SkipGram.forward, softmax_loss)

# %% [markdown]
# **Check.** The cross-entropy is the likelihood above, term by term: for one pair,
# $-\log p(o\mid c) = \log\sum_w \exp(u_w^\top v_c) - u_o^\top v_c$.

# %%
torch.manual_seed(0)
toy = SkipGram(SkipGramConfig(vocab_size=10, d_model=4))
nn.init.normal_(toy.context_emb.weight)                         # word2vec starts u at zero
centers, contexts = skipgram_pairs([[1, 2, 3, 4], [5, 6, 7]], window=2)
print(f"pairs of [1 2 3 4] and [5 6 7] with window 2: {len(centers)}; first five "
      f"{list(zip(centers[:5].tolist(), contexts[:5].tolist()))}")
v_all, u_all = toy.center_emb.weight, toy.context_emb.weight   # (vocab, d) each: v_w and u_w
by_hand = torch.stack([torch.logsumexp(u_all @ v_all[c], 0) - u_all[o] @ v_all[c]
                       for c, o in zip(centers, contexts)])
torch.testing.assert_close(softmax_loss(toy, centers, contexts), by_hand.mean())
print("softmax_loss == mean of  log Σ_w exp(u_w·v_c) - u_o·v_c  (assert_close)")

# %% [markdown]
# ### Negative sampling
# The softmax sums over the whole vocabulary for every pair: fine for our few hundred words,
# far too slow for vocabularies of millions of words and phrases, like those of the vectors
# word2vec was released with.
# **Negative sampling** replaces it by a yes/no question: is $o$ a real neighbour of $c$, or one
# of $k$ words $n_1 \dots n_k$ drawn from a noise distribution $P_n(w) \propto \text{count}(w)^{3/4}$?
#
# $$ \log \sigma(u_o^\top v_c) + \sum_{i=1}^{k} \log \sigma(-u_{n_i}^\top v_c) $$
#
# (Mikolov et al., 2013b, eq. 4). The power $3/4$ samples rare words more often than their count.

# %%
show_source(negative_sampling_objective, noise_distribution)

# %% [markdown]
# **Check (a second method).** The objective is a logistic regression: label 1 for the real
# neighbour, label 0 for each negative, so it equals PyTorch's binary cross-entropy with logits
# (summed over the $1 + k$ questions of a pair).

# %%
g = torch.Generator().manual_seed(1)
v_c, u_o = torch.randn(6, 4, generator=g), torch.randn(6, 4, generator=g)      # (b, d)
u_n = torch.randn(6, 5, 4, generator=g)                                         # (b, k, d)
logits = torch.cat([(u_o * v_c).sum(-1, keepdim=True),
                    (u_n @ v_c.unsqueeze(-1)).squeeze(-1)], 1)                  # (b, 1 + k)
labels = torch.cat([torch.ones(6, 1), torch.zeros(6, 5)], 1)
bce = F.binary_cross_entropy_with_logits(logits, labels, reduction="none").sum(-1).mean()
torch.testing.assert_close(negative_sampling_objective(v_c, u_o, u_n), bce)
print("negative_sampling_objective == binary cross-entropy of 1 positive + 5 negatives (assert_close)")

# %% [markdown]
# ## 3. Train it on the stories
# Every story is one sequence, window $a = 4$ (so a word sees the neighbouring sentence too),
# $k = 5$ negatives, 32-dimensional vectors, AdamW, 1,500 batches of 512 pairs.

# %%
model, tokenizer, counts, result = train_skipgram(stories, d_model=32, window=4, negatives=5,
                                                  steps=1500, batch_size=512)
vectors, seen = model.vectors, counts > 0                      # (vocab, 32); words in the corpus
n_tokens = int(counts.sum())
print(f"{len(stories)} stories, {n_tokens:,} tokens, {int(seen.sum())} distinct words; "
      f"loss {sum(result.losses[:20]) / 20:.2f} (first 20 steps) -> {result.final_loss:.2f}")


def neighbours(word, k=6):
    top = nearest_neighbours(vectors, tokenizer.token_to_id[word], k, allowed=seen)
    return ", ".join(f"{tokenizer.id_to_token[i]} {s:.2f}" for i, s in top)


for word in ("frog", "coin", "tom", "red", "happy", "duck"):
    print(f"{word:>6}: {neighbours(word)}")

# %% [markdown]
# These are the lecture's GloVe "frog" list in miniature. Words of one **role** cluster (names
# with names, colours with colours, feelings with feelings), and within a role the **topic**
# shows: the neighbours of *coin* are mostly the other things one finds in town (letter, hat,
# ticket, map), those of *frog* mostly things found at the river (shell, feather, pebble, net).
# Nothing told the model either: it only saw which words occur near which. (All the cosines are
# high because the vectors share one common direction; the order is what carries meaning.) The
# figure puts the one-hot codes and the learned vectors side by side.

# %%
dense = vectors[[tokenizer.token_to_id[w] for w in words]]         # (11, 32)
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
plot_similarity(one_hot, words, ax=axes[0], title="one-hot: every pair orthogonal")
im = plot_similarity(dense, words, ax=axes[1], title="skip-gram vectors: cosine similarity")
fig.colorbar(im, ax=axes, shrink=0.8)
plt.show()

# %% [markdown]
# **Explore.** Pick a word; the bars are its nearest neighbours. Try the places (*river*,
# *town*), the animals, the pronouns, and the ambiguous words *bank*, *bat*, *bark*.

# %%
# NBVAL_IGNORE_OUTPUT
neighbours_explorer(vectors, tokenizer.id_to_token,
                    ["frog", "coin", "river", "town", "duck", "he", "bank", "bat", "bark", "money"],
                    allowed=seen)

# %% [markdown]
# ### Analogies, measured
# "a is to b as c is to ?" is answered by the word closest to $v_b - v_a + v_c$ (Mikolov et al.,
# 2013c). The corpus supports a few such relations (gender of pronouns, plural, an animal's
# setting); for each we print the **rank** of the expected answer among every word of the corpus
# (1 = the model's top answer), not only when it works.

# %%
def answer_rank(a, b, c, expected):
    ids = [tokenizer.token_to_id[w] for w in (a, b, c)]
    ranked = [i for i, _ in analogy(vectors, *ids, k=tokenizer.vocab_size, allowed=seen)]
    return ranked.index(tokenizer.token_to_id[expected]) + 1, tokenizer.id_to_token[ranked[0]]


for a, b, c, expected in [("tom", "he", "mia", "she"), ("he", "him", "she", "her"),
                          ("duck", "ducks", "fox", "foxes"), ("duck", "river", "cow", "farm"),
                          ("river", "water", "town", "market")]:
    rank, top = answer_rank(a, b, c, expected)
    print(f"{a} : {b} :: {c} : ?   expected {expected!r}: rank {rank:>3} of {int(seen.sum()) - 3}"
          f"   (top answer {top!r})")

# %% [markdown]
# Gender (*he*/*she*, *him*/*her*) and an animal's setting come out first; the plural is close
# (rank 5); "the typical place of a setting" is not in the vectors (rank 29): an analogy holds
# only where the corpus repeats the relation often enough, which is why each is measured.
#
# ## 4. One vector per word, whatever the context
#
# In the stories, "bank" is a river bank in river stories and a money bank in town and farm
# stories (`course_lib.data.stories.AMBIGUOUS`). A word vector is a table lookup, so both
# senses get the *same* vector: it can only be a blend of the two.

# %%
bank = tokenizer.token_to_id["bank"]
river_story = next(s for s in stories if ("bank", "river") in [(w, m) for *_, w, m in s.senses])
town_story = next(s for s in stories if ("bank", "money") in [(w, m) for *_, w, m in s.senses])
ids_r, ids_t = tokenizer.encode(river_story.text), tokenizer.encode(town_story.text)
v_river = model.center_emb(torch.tensor(ids_r))[ids_r.index(bank)]
v_money = model.center_emb(torch.tensor(ids_t))[ids_t.index(bank)]
assert torch.equal(v_river, v_money)
print(f"'bank' in a {river_story.label} story and in a {town_story.label} story: the same vector")
sims = cosine_similarity_matrix(vectors)[bank]
for w in ("river", "water", "sat", "money", "took", "put"):
    print(f"  cos(bank, {w:>5}) = {sims[tokenizer.token_to_id[w]]:.2f}")
print(f"nearest: {neighbours('bank', 8)}")

# %% [markdown]
# Its neighbours mix both senses: the words of "sat on the bank of the river" and those of
# "took money from the bank". What we want is a vector *of the word in its sentence*: a
# **contextual embedding**. ELMo (Peters et al., 2018) took it from the states of a
# bidirectional LSTM language model; BERT (notebook 04) from a Transformer encoder, where the
# two senses of "bank" indeed land apart. The recurrent networks come next.
#
# ## 5. The GRU cell
#
# A recurrent network reads $x_1, x_2, \dots$ one at a time and keeps a state $h_t = f(x_t,
# h_{t-1})$. The plain update $h_t = \tanh(W x_t + U h_{t-1})$ multiplies the gradient by $U$ at
# every step, so it vanishes (or explodes) over long spans. The **gated recurrent unit** (Cho et
# al., 2014) lets the network decide, per feature, how much of the old state to keep:
#
# $$ r = \sigma(W_{ir} x + b_{ir} + W_{hr} h + b_{hr}), \qquad
#    z = \sigma(W_{iz} x + b_{iz} + W_{hz} h + b_{hz}), $$
# $$ n = \tanh\big(W_{in} x + b_{in} + r \odot (W_{hn} h + b_{hn})\big), \qquad
#    h' = (1 - z) \odot n + z \odot h . $$
#
# The reset gate $r$ chooses how much of the past enters the candidate $n$; the update gate $z$
# interpolates: $z = 1$ copies the state unchanged, a path along which gradients survive. (The
# LSTM of Hochreiter & Schmidhuber, 1997, does the same with a separate cell state and three gates.)

# %%
show_source(gru_cell)

# %% [markdown]
# **Check** against PyTorch's `nn.GRUCell` (same weights), and a whole sequence against `nn.GRU`.

# %%
torch.manual_seed(0)
cell = nn.GRUCell(5, 8)
x_seq, h = torch.randn(3, 7, 5), torch.zeros(3, 8)                  # (b, t, d_in), (b, d)
torch.testing.assert_close(gru_cell(x_seq[:, 0], h, cell.weight_ih, cell.weight_hh, cell.bias_ih,
                                    cell.bias_hh), cell(x_seq[:, 0], h))
gru = nn.GRU(5, 8, batch_first=True)
states = []
for t in range(x_seq.shape[1]):
    h = gru_cell(x_seq[:, t], h, gru.weight_ih_l0, gru.weight_hh_l0, gru.bias_ih_l0, gru.bias_hh_l0)
    states.append(h)
torch.testing.assert_close(torch.stack(states, 1), gru(x_seq)[0])
print("gru_cell == nn.GRUCell, and 7 gru_cell steps == nn.GRU over the sequence (assert_close)")

# %% [markdown]
# ## 6. An RNN encoder-decoder, and its bottleneck
#
# Translation with two RNNs (Cho et al., 2014; Sutskever et al., 2014): the **encoder** reads the
# source $x_1 \dots x_s$ into states $h_1 \dots h_s$; the **decoder** starts from the last one
# and writes the target word by word, each step fed the previous word $y_{i-1}$ and a context
# vector $c_i$:
#
# $$ s_i = \text{GRU}([y_{i-1}; c_i],\ s_{i-1}), \qquad
#    p(y_i \mid y_{<i}, x) = \text{softmax}\big(W_o [s_i; c_i] + b_o\big). $$
#
# **Without attention** $c_i = h_s$ for every $i$: the whole sentence must fit in one
# $d$-dimensional vector, the **bottleneck**. **With attention** (Bahdanau et al., 2015) each step
# computes its own context from *all* encoder states, with the previous decoder state as the query:
#
# $$ e_{ij} = w^\top \tanh(W_q s_{i-1} + W_k h_j), \qquad
#    \alpha_{ij} = \frac{\exp e_{ij}}{\sum_{j'} \exp e_{ij'}}, \qquad c_i = \sum_j \alpha_{ij} h_j .$$
#
# Everything else is shared, so the two models differ only in where $c_i$ comes from.

# %%
show_source(RNNSeq2Seq.encode, RNNSeq2Seq.step, AdditiveScore.forward, attend)

# %% [markdown]
# The task is notebook 03's toy translation, English to "Kalo": the verb moves to the end,
# adjectives follow their noun, prepositions become postpositions (`course_lib.data.translation`).
# `tools/train_rnn.py` trained both models with the same recipe (width 64, the same training
# batches, 1,500 steps, three seeds each) and kept, per run, the weights with the best exact
# match on *validation* sentences; it ships seed 0 of each. Here we load them and score the
# 1,000 held-out **test** sentences again, live, by source length.

# %%
data = TranslationData()
test, _ = eval_pairs()
models, metas, by_length = {}, {}, {}
for name in ("none", "additive"):
    models[name], metas[name] = load_rnn_translation(name)
    by_length[name] = exact_match_by_length(models[name], data, test)
    stored = metas[name]["metrics"]["runs"]["0"]["test_by_length"]       # what train_rnn.py measured
    assert all(abs(h - stored[str(n)][0]) <= 1 for n, (h, _) in by_length[name].items())
train_cfg = metas["none"]["config"]["train"]
print(f"{len(test)} held-out test sentences, {sum(len(p.source.split()) == 11 for p in test)} of them "
      f"with 11 words")
print(f"recipe: d_model {metas['none']['config']['model']['d_model']}, {train_cfg['steps']} steps "
      f"of {train_cfg['batch_size']} sentences, lr {train_cfg['lr']}, seeds {train_cfg['seeds']}")
print("length:      " + " ".join(f"{n:>5}" for n in by_length["none"]))
print("sentences:   " + " ".join(f"{c:>5}" for _, c in by_length["none"].values()))
for name, rows in by_length.items():
    print(f"{'no attention' if name == 'none' else 'attention':12s} "
          + " ".join(f"{h / c:5.2f}" for h, c in rows.values())
          + f"   all {sum(h for h, _ in rows.values()) / len(test):.3f}  (seed 0, live)")

# %%
curves, summary = {}, []
for name, meta in metas.items():
    runs = meta["metrics"]["runs"]
    curves["no attention" if name == "none" else "attention"] = {
        int(n): [runs[s]["test_by_length"][n][0] / runs[s]["test_by_length"][n][1] for s in runs]
        for n in runs["0"]["test_by_length"]}
    for s, run in runs.items():
        total = sum(h for h, _ in run["test_by_length"].values())
        summary.append(f"{name:>8} seed {s}: val {run['val_exact_match']:.3f} (step "
                       f"{run['best_step']}), test {total / len(test):.3f}")
print("\n".join(summary))
plot_accuracy_by_length(curves)
plt.title("exact match vs length (3 seeds each)")
plt.show()

# %% [markdown]
# Up to 9 words the model without attention is nearly exact (0.97 or better for seed 0); at 10
# and 11 words it falls (0.92 and 0.54), and over the three seeds its whole-test exact match is
# 0.955 to 0.981. With attention it is 1.000 for every seed and every length, and it got there
# sooner: its best validation score came at the first evaluation (step 250), while the model
# without attention was still improving at step 1500. Same width, same steps, same batches: the
# only difference is that the attention decoder can go back to each source word instead of
# reading the whole sentence out of one 64-dimensional state.
#
# ### The alignment map
# The attention weights $\alpha_{ij}$ say which source word the decoder looked at while writing
# target word $i$. The red crosses are the gold alignment (`Pair.alignment`): Kalo puts the verb
# last and the adjective after its noun, so a good map leaves the diagonal exactly there.

# %%
attn = models["additive"]
examples = alignment_examples(attn, data, test[:200])
hits = sum(int((ex["weights"].argmax(-1) == ex["gold"]).sum()) for ex in examples.values())
total = sum(int((ex["gold"] >= 0).sum()) for ex in examples.values())
print(f"argmax of the attention on the gold source word: {hits} of {total} written words "
      f"({hits / total:.1%}) in the first 200 test sentences")
long_one = next(p for p in test if len(p.source.split()) == 11)
ex = alignment_examples(attn, data, [long_one])[long_one.source]
print(f"{long_one.source}  ->  {' '.join(ex['y_labels'])}")
plot_alignment(ex)
plt.show()

# %% [markdown]
# **Explore** the alignment of other test sentences (short and long, with and without an adjective).

# %%
# NBVAL_IGNORE_OUTPUT
alignment_explorer(dict(list(examples.items())[:25]))

# %% [markdown]
# ## 7. Score functions beyond the dot product
#
# Bahdanau's score is a small MLP. Luong et al. (2015) compared simpler ones; with query $q$ and
# key $k$:
#
# | score | $\text{score}(q, k)$ | parameters |
# |---|---|---|
# | dot | $q^\top k$ | none |
# | additive | $w^\top \tanh(W_q q + W_k k)$ | $W_q, W_k, w$ |
# | bilinear ("general") | $q^\top W k$ | $W$ |
# | cosine | $\beta \cos(q, k)$ | the scale $\beta$ |
#
# A cosine lies in $[-1, 1]$, too flat for a softmax to pick one key, hence the learned scale
# (the "key strength" of Graves et al., 2014).

# %%
show_source(DotScore.forward, BilinearScore.forward, CosineScore.forward)

# %% [markdown]
# **Compared on one task, same budget.** Associative recall (`course_lib.data.synthetic`): 12
# key-value pairs, then a query key; the answer is the value stored with it. One attention read
# does it: query = the query key's embedding, keys = the stored keys', values = the stored
# values'. Each score function gets the same model, 60 training steps of 128 sequences, the same
# learning rate and three seeds; accuracy on 2,000 fresh sequences (chance 1/24).

# %%
recall_acc = {}
for kind in SCORES:
    recall_acc[kind] = [recall_accuracy(train_recall(kind, seed=s, steps=60, n_pairs=12, n_keys=24,
                                                     batch_size=128, lr=3e-3),
                                        n=2000, n_pairs=12, n_keys=24) for s in range(3)]
    print(f"{kind:>9}: accuracy {', '.join(f'{a:.2f}' for a in recall_acc[kind])}   "
          f"(mean {sum(recall_acc[kind]) / 3:.2f})")

# %% [markdown]
# Recall is a *matching* problem: the right key is the one equal to the query. Dot, bilinear and
# cosine scores compare $q$ and $k$ through a product, which is what matching needs (means 0.86,
# 0.91, 0.92); the additive score adds $W_q q$ and $W_k k$ before the $\tanh$ and must build the
# comparison out of the nonlinearity, so at this budget it is far behind (mean 0.20). A budget
# this small measures how *fast* each score learns; given enough steps the additive score can
# learn matching too (try `steps=120` in the cell above).
# The dot product also wins on speed: all the scores of a sequence are one matrix product, which
# is why the Transformer (notebooks 01 and 03) uses it, scaled by $1/\sqrt{d_k}$.
#
# ## 8. Exercises
# Each exercise has a checker that says *passed*, *what differs*, or *not implemented yet*.
# Replace `raise NotImplementedError` with your code and re-run the cell.
#
# **Exercise 1 — cosine similarity.** Given `vectors (n, d)`, return the `(n, n)` matrix of
# $\cos(x_i, x_j)$. Hint: normalise the rows first.

# %%
def my_cosine_similarity(vectors: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


check_cosine_similarity(my_cosine_similarity)

# %% [markdown]
# **Exercise 2 — the negative-sampling objective.** Given centre vectors `v_c (b, d)`, their
# context vectors `u_o (b, d)` and negatives `u_n (b, k, d)`, return the mean over the batch of
# $-[\log\sigma(u_o^\top v_c) + \sum_i \log\sigma(-u_{n_i}^\top v_c)]$. Hint: `F.logsigmoid`.

# %%
def my_negative_sampling(v_c: torch.Tensor, u_o: torch.Tensor, u_n: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


check_negative_sampling(my_negative_sampling)

# %% [markdown]
# **Exercise 3 — a GRU step.** Compute $h'$ from `x (b, d_in)`, `h (b, d)` and the weights of an
# `nn.GRUCell` (`cell.weight_ih (3d, d_in)`, `cell.weight_hh (3d, d)`, `cell.bias_ih`,
# `cell.bias_hh`, each stacked as reset, update, new), without calling `cell` itself.

# %%
def my_gru_cell(x: torch.Tensor, h: torch.Tensor, cell: nn.GRUCell) -> torch.Tensor:
    raise NotImplementedError


check_gru_cell(my_gru_cell)

# %% [markdown]
# **Exercise 4 — one attention read.** Given a query `q (b, d)`, `keys (b, s, d)`,
# `values (b, s, dv)` and a bool `mask (b, s)` (True = a real word), return the context
# `(b, dv)` and the weights `(b, s)` of dot-product attention over the unmasked keys.

# %%
def my_dot_attention(q, keys, values, mask):
    raise NotImplementedError


check_dot_attention(my_dot_attention)

# %% [markdown]
# ## Summary
# - One-hot codes make all words orthogonal; skip-gram learns dense vectors from co-occurrence
#   (`course_lib.word_vectors`: the likelihood, negative sampling, neighbours, analogies).
# - A word vector is static: "bank" has one vector for both senses, which is why contextual
#   embeddings (ELMo's LSTMs, then BERT in 04) were needed.
# - The GRU cell (`course_lib.rnn.gru_cell`) equals `nn.GRUCell`; an RNN encoder-decoder that
#   reads a sentence into one state loses exact match as sentences grow, and attention over the
#   encoder states removes that bottleneck (measured above, three seeds each).
# - Score functions: dot, additive, bilinear, cosine (`course_lib.rnn`); on recall the product-
#   based ones learn fastest.
#
# Next, **01 · Attention**: the dot-product score scaled by $\sqrt{d_k}$, queries, keys and values
# as projections, masks and multiple heads — and no recurrence at all.
