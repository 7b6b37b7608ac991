# %% [markdown]
# # 04 · BERT: an encoder-only Transformer
# <!-- badges -->
#
# The Transformer of notebook 03 has an encoder that reads the source and a decoder that writes
# the target. **BERT** keeps only the encoder: *rip away the decoder, stack encoders*. Without a
# decoder there is nothing to generate, so BERT is trained by filling in blanks ("masked
# language modelling") and by telling whether two passages belong together ("next-sentence
# prediction"). What it learns are **contextual** word vectors: the same word gets a different
# vector in every sentence. Fine-tuned with a small head, one pre-trained BERT set the state of
# the art on eleven language tasks at once (Devlin et al., 2019).
#
# The name says it all: **B**idirectional (every token attends to the left *and* the right),
# **E**ncoder (the Transformer's encoder stack, no decoder), **R**epresentations (it outputs a
# vector per token, for other models to use) from **T**ransformers.
#
# Papers: Devlin, Chang, Lee & Toutanova, *BERT: Pre-training of Deep Bidirectional
# Transformers for Language Understanding* (NAACL 2019); Vaswani et al., *Attention Is All You
# Need* (2017); Peters et al., *Deep contextualized word representations* (ELMo, 2018).

# %% [markdown]
# **Learning goals.** After this notebook you can
# 1. **build** BERT from the course's encoder layers and **verify** it against PyTorch's
#    `nn.TransformerEncoderLayer`, with token + segment + position embeddings and [CLS]/[SEP],
# 2. **implement** the masked-LM corruption rule (15%; 80/10/10) and **test** its proportions
#    statistically, build next-sentence pairs (half of them IsNext, asserted) and **explain**
#    what the next-sentence head learned,
# 3. **measure** that the same word ("bank") gets different vectors in different contexts, and
#    **control** for what makes them differ; measure how much each side of a blank is used,
# 4. **compare** fine-tuning a pre-trained BERT with training from scratch and with a linear
#    probe when only a few dozen labels are available, on two tasks, and explain the results,
# 5. **visualize** the attention of the trained tiny BERT.

# %% [bootstrap]

# %%
import math
from statistics import mean

import matplotlib.pyplot as plt
import torch
from torch import nn

from course_lib import IGNORE_INDEX, right_pad, setup
from course_lib.bert import (IS_NEXT, NOT_NEXT, Bert, BertClassifier, BertConfig, BertEmbeddings,
                             BertForPretraining, MLMHead, Pooler, corrupt, mask_tokens, pair_input,
                             param_count, pretraining_loss)
from course_lib.checks.bert import (check_bert_embedding_sum, check_cls_head, check_corrupt,
                                    check_pair_input)
from course_lib.data.stories import ANIMALS, LABELS, corpus_splits
from course_lib.data.tokenizer import build_tokenizer
from course_lib.experiments.bert import (CLASSIFIERS, classifier_accuracy, finetune_classifier,
                                         finetuning_task, load_bert_tiny, make_classifier,
                                         masked_word_probs, nsp_breakdown, nsp_example, nsp_pair,
                                         pretraining_accuracy, real_model_demo, sentence_positions,
                                         story_ids)
from course_lib.pretrained import find_pretrained, unavailable_line
from course_lib.pretrained.bert import bert_mapping
from course_lib.source import show_source
from course_lib.viz import plot_heads
from course_lib.viz.attention import attention_weights_explorer
from course_lib.viz.bert import (contextual_similarity_explorer, contextual_vectors,
                                 cosine_matrix, plot_sense_similarity, sense_summary,
                                 setting_gap, setting_swapped_vectors)

device = setup(seed=0)

# %% [markdown]
# ## 1. Rip away the decoder, stack encoders
#
# BERT is $L$ encoder layers on top of an embedding layer. Each layer is exactly notebook 03's
# encoder layer (post-norm; GELU in the feed-forward network as in the paper):
#
# $$ X^{(\ell)} = \mathrm{LN}\big(Y + \mathrm{FFN}(Y)\big), \qquad
#    Y = \mathrm{LN}\big(X^{(\ell-1)} + \mathrm{MHA}(X^{(\ell-1)})\big), \qquad \ell = 1, \dots, L .$$
#
# The self-attention has **no causal mask**: position $i$ attends to every position $j$, left
# and right (only padding is masked): the stack runs its layers with a padding mask and no
# `is_causal` (each layer is notebook 03's `EncoderLayer.forward`):

# %%
show_source(Bert._run)

# %% [markdown]
# **How big is the real one?** BERT-base has $L = 12$ layers of width $d = 768$ with 12 heads,
# BERT-large $L = 24$, $d = 1024$ and 16 heads: 110M and 340M parameters (Devlin et al., 2019).
# Count them from the configs. A layer has the same $12d^2 + 13d$ parameters as a GPT-2 block
# (notebook 05): the attention projections $4d^2 + 4d$, the feed-forward network
# ($d_{ff} = 4d$) $8d^2 + 5d$, two LayerNorms $4d$. Around the stack: the token, position and
# segment tables $(V + T + S)\,d$ with their LayerNorm $2d$, and the pooler $d^2 + d$.

# %%
show_source(param_count)

# %% [markdown]
# The formula must agree with the course's own model at those sizes. Building BERT-large for
# real would allocate its 336,226,108 float32 numbers, four bytes each; on PyTorch's `meta`
# device a module has shapes but no storage, so counting its parameters costs nothing:

# %%
for name, size, paper in (("BERT-base", dict(d_model=768, n_layers=12, n_heads=12), "110M"),
                          ("BERT-large", dict(d_model=1024, n_layers=24, n_heads=16), "340M")):
    formula = param_count(size["d_model"], size["n_layers"], vocab_size=30522, max_len=512)
    with torch.device("meta"):                                       # shapes only, no memory
        real_size = BertForPretraining(BertConfig(vocab_size=30522, max_len=512,
                                                  d_ff=4 * size["d_model"], **size))
    counted = sum(p.numel() for p in [*real_size.bert.parameters(), *real_size.pooler.parameters()])
    with_heads = sum(p.numel() for p in real_size.parameters())
    assert formula == counted
    assert param_count(size["d_model"], size["n_layers"], heads=True) == with_heads
    print(f"{name}: {formula:,} parameters by the formula = {counted:,} in the course's Bert + "
          f"pooler (paper: {paper}); {with_heads:,} with the MLM and NSP heads")

# %% [markdown]
# Ours is CPU-sized. The story corpus and its word-level tokenizer come from `course_lib.data`
# (shared with notebook 05).

# %%
tokenizer = build_tokenizer()
splits = corpus_splits(seed=0)
print({name: len(stories) for name, stories in splits.items()}, "stories;",
      tokenizer.vocab_size, "tokens in the vocabulary")
print("\n".join(splits["train"][0].sentences))

config = BertConfig(vocab_size=tokenizer.vocab_size, d_model=64, n_heads=4, n_layers=2,
                    d_ff=256, max_len=96, dropout=0.0)   # tiny and briefly trained: no dropout
bert = Bert(config)
print(config)
print(f"{sum(p.numel() for p in bert.parameters()):,} parameters")

# %% [markdown]
# **Check.** The encoder stack equals PyTorch's `nn.TransformerEncoderLayer`s with the same
# weights (copied with `load_from_torch`), with padding masked the PyTorch way.

# %%
torch_layers = [nn.TransformerEncoderLayer(64, 4, 256, dropout=0.0, activation="gelu",
                                           batch_first=True).eval() for _ in range(2)]
for ours, theirs in zip(bert.layers, torch_layers):
    ours.load_from_torch(theirs)
bert.eval()

ids = right_pad([tokenizer.encode("[CLS] tom sat on the bank of the river . [SEP]"),
                 tokenizer.encode("[CLS] mia took money from the bank . [SEP]")],
                tokenizer.pad_id)                                       # (2, 11)
ours_out, _ = bert(ids)                                                 # (2, 11, 64)
x = bert.embeddings(ids)
for layer in torch_layers:
    x = layer(x, src_key_padding_mask=ids == tokenizer.pad_id)         # True = padding there
real = ids != tokenizer.pad_id
torch.testing.assert_close(ours_out[real], x[real], atol=1e-5, rtol=1e-4)
print("course_lib Bert == stack of nn.TransformerEncoderLayer ✓")

# %% [markdown]
# **Bidirectional, measured.** Change the *last* word of a sentence and look at the vector of
# the *first* word. In BERT it moves; with GPT's causal mask (notebook 05) it could not, since
# position 1 never attends to later positions.

# %%
a = torch.tensor([tokenizer.encode("[CLS] tom sat on the bank of the river . [SEP]")])
b = torch.tensor([tokenizer.encode("[CLS] tom sat on the bank of the shop . [SEP]")])  # last word
layer = bert.layers[0]
for name, causal in (("BERT, bidirectional", False), ("with a causal mask ", True)):
    out_a, _ = layer(bert.embeddings(a), is_causal=causal)               # (1, 11, 64)
    out_b, _ = layer(bert.embeddings(b), is_causal=causal)
    print(f"{name}: change of the vector of 'tom' (position 1) = {(out_a[0, 1] - out_b[0, 1]).norm():.3f}")

# %% [markdown]
# ## 2. The input: [CLS] a [SEP] b [SEP], and three embeddings summed
#
# BERT reads one text or a pair of texts. A pair is packed into one sequence: a classification
# token **[CLS]** first (its final vector summarises the whole input), then text $a$, a separator
# **[SEP]**, text $b$ and a final [SEP]. Each token's input vector is the sum of three learned
# embeddings, then LayerNorm:
#
# $$ x_i = \mathrm{LN}\big(E_{\text{token}}[w_i] + E_{\text{segment}}[s_i] + P[i]\big), \qquad
#    s_i = \begin{cases} 0 & \text{up to the first [SEP]} \\ 1 & \text{after it.} \end{cases} $$
#
# The segment embedding tells the two texts apart; the learned position table $P$ (notebook
# 02's `LearnedPositional`) gives the order. `pair_input` packs the ids and their segments,
# `BertEmbeddings` sums and normalises:

# %%
show_source(pair_input, BertEmbeddings.forward)

# %%
story = splits["train"][0]
first = story_ids(tokenizer, story.sentences[:1])
second = story_ids(tokenizer, story.sentences[1:2])
ids, segments = pair_input(first, second, tokenizer.cls_id, tokenizer.sep_id)
tokens = tokenizer.tokens(ids)
print(" ".join(f"{w}/{s}" for w, s in zip(tokens, segments)), "  (token/segment)")

emb = bert.embeddings
ids_t, seg_t = torch.tensor([ids]), torch.tensor([segments])             # (1, t)
parts = {"token  E[w_i]": emb.token_emb(ids_t)[0], "segment E[s_i]": emb.segment_emb(seg_t)[0],
         "position P[i]": emb.pos_emb.table.weight[:len(ids)]}          # each (t, d)
manual = emb.norm(sum(parts.values()))
torch.testing.assert_close(emb(ids_t, seg_t)[0], manual)
print("BertEmbeddings == LN(token + segment + position) ✓")

# %%
fig, axes = plt.subplots(1, 3, figsize=(8, 2.6), sharey=True)
for ax, (name, part) in zip(axes, parts.items()):
    ax.imshow(part.detach().T, aspect="auto", cmap="RdBu", vmin=-0.05, vmax=0.05)
    ax.set_title(name, fontsize=10)
    ax.set_xlabel("position i")
axes[0].set_ylabel("feature")
fig.suptitle("the three embeddings of one input pair (initialised, before training)")
fig.tight_layout()
plt.show()

# %% [markdown]
# The segment panel has two column patterns (segment 0, segment 1), the position panel a new
# column at every position, the token panel repeats columns for repeated words ("the", ".").

# %% [markdown]
# ## 3. Masked language modelling, exactly as in the paper
#
# A left-to-right language model cannot see the right context; a bidirectional one trained to
# predict each word would simply *see* it. BERT's answer is the cloze task: corrupt the input,
# predict the original words at the corrupted positions. The rule (Devlin et al., §3.1):
# choose **15%** of the token positions at random; of those, replace **80%** with [MASK],
# **10%** with a random word and leave **10%** unchanged. The loss is the cross-entropy over
# the chosen positions $\mathcal M$ only:
#
# $$ \mathcal L_{\text{MLM}} = -\frac{1}{|\mathcal M|} \sum_{i \in \mathcal M}
#    \log p_\theta\big(w_i \mid \tilde w_1, \dots, \tilde w_t\big). $$
#
# Why not always [MASK]? [MASK] never occurs when the model is fine-tuned or used, so the model
# must also build a good vector for *real* words: 10% random words teach it that any input word
# may be wrong, 10% unchanged ones that it may be right. Special tokens ([CLS], [SEP], [PAD])
# are never chosen.
#
# **Two deviations from the paper's code**, both in `mask_tokens`. (1) We draw *each token
# independently*: a word position is chosen with probability 15% (a Bernoulli draw), so a
# sequence has 15% chosen positions only on average and the count varies from sequence to
# sequence; Google's reference code (`create_pretraining_data.py`) picks exactly
# round(15% × length) positions of every sequence. (2) Our random word is never a special token,
# while the reference code draws it from the whole vocabulary, [CLS], [SEP] and [MASK]
# included. Neither changes the proportions tested below, which are per chosen position.
# `mask_tokens` makes the random draws and `corrupt` applies the 80/10/10 rule to them:

# %%
show_source(mask_tokens, corrupt)

# %%
special = [tokenizer.token_to_id[w] for w in tokenizer.id_to_token if w.startswith("[")]
g = torch.Generator().manual_seed(0)
clean = right_pad([pair_input(story_ids(tokenizer, s.sentences), None, tokenizer.cls_id,
                              tokenizer.sep_id)[0] for s in splits["train"][:3]],
                  tokenizer.pad_id)                                     # (3, t)
inputs, labels = mask_tokens(clean, tokenizer.mask_id, tokenizer.vocab_size, special, g)
for i in range(2):
    shown = [(f"{tokenizer.id_to_token[x]}→{tokenizer.id_to_token[y]}" if l != IGNORE_INDEX else
              tokenizer.id_to_token[x]) for x, y, l in zip(clean[i], inputs[i], labels[i])
             if x != tokenizer.pad_id]
    print(" ".join(shown), "\n")

# %% [markdown]
# **Check, statistically.** On a large sample every proportion must sit within a few standard
# errors $\sqrt{p(1-p)/n}$ of the paper's value. A random word equals the original word by
# chance with probability $1/|\text{words}|$, which moves a little mass from "random" to
# "unchanged".

# %%
big = clean.repeat(400, 1)                                             # (1200, t)
inputs, labels = mask_tokens(big, tokenizer.mask_id, tokenizer.vocab_size, special,
                             torch.Generator().manual_seed(1))
chosen = labels != IGNORE_INDEX
n_words = int((~torch.isin(big, torch.tensor(special))).sum())
n_chosen = int(chosen.sum())
p_same = 0.1 / (tokenizer.vocab_size - len(special))
as_mask = float((inputs[chosen] == tokenizer.mask_id).float().mean())
unchanged = float((inputs[chosen] == big[chosen]).float().mean())
measured = {"chosen / words": (n_chosen / n_words, 0.15, n_words),
            "[MASK] / chosen": (as_mask, 0.8, n_chosen),
            "unchanged / chosen": (unchanged, 0.1 + p_same, n_chosen)}
measured["random / chosen"] = (1 - measured["[MASK] / chosen"][0] - measured["unchanged / chosen"][0],
                               0.1 - p_same, n_chosen)
for name, (got, want, n) in measured.items():
    se = math.sqrt(want * (1 - want) / n)
    print(f"{name:20s} {got:.4f}   expected {want:.4f} ± {4 * se:.4f} (4 s.e., n={n})")
    assert abs(got - want) < 4 * se
assert not chosen[big == tokenizer.cls_id].any() and not chosen[big == tokenizer.sep_id].any()

# %% [markdown]
# ## 4. Next-sentence prediction
#
# Many tasks (question answering, entailment) are about *pairs* of texts. BERT's second
# pre-training task: given $a$ and $b$, is $b$ the continuation of $a$ (**IsNext**) or a random
# passage from elsewhere in the corpus (**NotNext**, half the time)? A linear layer on the pooled
# [CLS] vector, $\text{pooled} = \tanh(W x^{(L)}_{[\text{CLS}]} + c)$ (the final layer's vector at
# position 0), predicts it with a cross-entropy
# $\mathcal L_{\text{NSP}}$; pre-training minimises $\mathcal L_{\text{MLM}} + \mathcal L_{\text{NSP}}$.
# The two heads, the model that carries them and the loss (the masked-LM head's output matrix
# is the token embedding $E_{\text{token}}$ itself: tied weights):

# %%
show_source(MLMHead.forward, Pooler.forward, BertForPretraining.forward, pretraining_loss)

# %% [markdown]
# Our pairs cut a story at a random sentence boundary; a NotNext $b$ is the tail of another story
# (other characters, maybe another setting — the model has to notice).

# %%
g = torch.Generator().manual_seed(2)
for index in (0, 1, 2):
    ids, segments, label = nsp_example(splits["train"], index, g, tokenizer, config.max_len)
    words = tokenizer.tokens(ids)
    cut = segments.index(1)
    print(f"{'IsNext ' if label == IS_NEXT else 'NotNext'} a: {' '.join(words[1:cut - 1])}\n"
          f"        b: {' '.join(words[cut:-1])}\n")

# %% [markdown]
# **Check: the 50/50 construction.** Over many draws IsNext must be half of the pairs (within a
# few standard errors $\sqrt{p(1-p)/n}$), every IsNext $b$ must be the text that follows $a$ in
# its story, and every NotNext $b$ must come from another story:

# %%
g = torch.Generator().manual_seed(3)
n_pairs, n_next = 3000, 0
for _ in range(n_pairs):
    index = int(torch.randint(len(splits["train"]), (1,), generator=g))
    pair = nsp_pair(splits["train"], index, g, tokenizer, config.max_len)
    cut = pair.segments.index(1)
    a, b = tokenizer.decode(pair.ids[1:cut - 1]), tokenizer.decode(pair.ids[cut:-1])
    if pair.label == IS_NEXT:
        n_next += 1
        assert pair.b_story == index and splits["train"][index].text.startswith(f"{a} {b}")
    else:
        assert pair.label == NOT_NEXT and pair.b_story != index
se = math.sqrt(0.5 * 0.5 / n_pairs)
print(f"IsNext in {n_next / n_pairs:.3f} of {n_pairs} pairs: expected 0.5 ± {4 * se:.3f} (4 s.e.); "
      f"every IsNext b continues its a, every NotNext b comes from another story ✓")
assert abs(n_next / n_pairs - 0.5) < 4 * se

# %% [markdown]
# ## 5. Pre-train a tiny BERT
#
# Pre-training takes minutes, so it lives in a script that writes a small checkpoint
# (safetensors, with its configuration and measured figures as metadata):
#
# ```
# python tools/train_bert.py          # 3000 steps of MLM + NSP, batch 32; then the fine-tuning table
# ```
#
# It trains with `course_lib.training.train` (a progress bar), is seeded, and re-running it
# reproduces `data/bert_tiny.safetensors` and every number below. Here we load the result.

# %%
model, meta = load_bert_tiny()                                          # eval mode
assert meta["config"]["model"] == config.to_dict()
m, recipe = meta["metrics"], meta["config"]["train"]
print(f"pre-training: {recipe['steps']} steps x {recipe['batch_size']} pairs, "
      f"final loss {m['final_loss']:.3f}")

# %%
# NBVAL_IGNORE_OUTPUT
print(f"the script took {m['train_wall_s']:.0f} s of wall time for pre-training and the "
      f"fine-tuning sweep (1 CPU thread, shared machine)")

# %%
fig, (ax, ax2) = plt.subplots(1, 2, figsize=(9, 3))
ax.plot([50 * i for i in range(len(m["loss_curve"]))], m["loss_curve"])
ax.set_xlabel("step")
ax.set_ylabel("MLM + NSP loss (mean of 50 steps)")
ax.set_title("pre-training curve (checkpoint metadata)", fontsize=10)
steps, acc = zip(*m["setting_word_accuracy"])
ax2.plot(steps, acc, "o-")
ax2.axhline(1 / 24, color="gray", ls="--", label="setting ignored (~1/24)")
ax2.axhline(1 / 6, color="gray", ls=":", label="setting known (~1/6)")
ax2.set_xlabel("step")
ax2.set_ylabel("accuracy")
ax2.set_title("MLM accuracy on places / objects / animals", fontsize=10)
ax2.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# The right panel tracks a skill that needs long-range context: a masked place, object or animal
# can only be guessed well by first inferring the story's setting from the *other* words (each
# setting has its own places, objects and animals). Early on the model ignores
# it; later it climbs above the "setting ignored" line but stays far below "setting known": it
# uses the story's setting only a little.
#
# **Held-out accuracy.** Masked-LM accuracy = fraction of the chosen positions whose original
# word is the model's top prediction, on NSP pairs cut from the **test** stories (never seen in
# training). We recompute it here and compare with what the script measured.

# %%
held_out = pretraining_accuracy(model, splits["test"], tokenizer, config.max_len)
print(f"test MLM accuracy {held_out['mlm_accuracy']:.3f} over {held_out['masked_positions']} "
      f"masked positions; NSP accuracy {held_out['nsp_accuracy']:.3f}")
assert abs(held_out["mlm_accuracy"] - m["mlm_accuracy"]) < 1e-3

# %% [markdown]
# Many words are forced by the grammar ("to the", "went home"), others are genuine choices of
# the generator (a colour, an object) that no model can guess: the accuracy cannot reach 100%.
# Fill in a few blanks first:

# %%
opening = "[CLS] one day tom and mia went to the"
for text in (f"{opening} river . so tom sat on the [MASK] of the river . [SEP]",
             f"{opening} town . so mia took [MASK] from the bank . [SEP]",
             f"{opening} river . later mia found a red shell and [MASK] was happy . [SEP]",
             f"{opening} river . later tom found a red shell and [MASK] was happy . [SEP]",
             f"{opening} [MASK] . then tom ran to the market with a red coin . [SEP]"):
    ids = torch.tensor([tokenizer.encode(text)])
    with torch.no_grad():
        probs = model(ids)[0][0].softmax(-1)                           # (t, v)
    pos = text.split().index("[MASK]")
    top = probs[pos].topk(3)
    guesses = ", ".join(f"{tokenizer.id_to_token[i]} {p:.2f}" for p, i in zip(top.values, top.indices))
    print(f"{text[6:-6]}\n    -> {guesses}")

# %% [markdown]
# What the output shows: "bank" and "money" are forced by the words around them. But the two
# pronoun lines differ only in the name, mia or tom, and get *the same* prediction: this model
# has not learned that the pronoun follows the name. Nor does "market" tell it the setting in
# the last line. A few examples prove little either way, so measure over the test stories:
# mask one word, predict it once with the whole text and once with **the left side only**
# (`[CLS] left [MASK] [SEP]`: what a left-to-right model sees, at the same positions), and
# compare the probability of the true word (`masked_word_probs`). Five kinds of positions:
# every word of 20 stories; the verb of a "so" sentence, which only the words to its right
# decide (sat on the bank / saw a bat / took money …); the animal of "the ducks that tom saw
# near the bridge were sleepy", whose number only "were"/"was" seven words to the right tells;
# the pronoun after a name (decided on the left); and that "were"/"was" (decided on the left,
# seven words back).

# %%
test = splits["test"]
probes = {"every word (20 stories)": [(s.tokens, i) for s in test[:20] for i in range(len(s.tokens))],
          "so tom [sat] on the bank …": sentence_positions(test, "so", 2, max_items=300),
          "the [ducks] that … were …": sentence_positions(test, "the", 1, max_items=300),
          "later mia … and [she] was …": sentence_positions(test, "later", 7, max_items=300),
          "the ducks that … [were] …": sentence_positions(test, "the", 8, max_items=300)}
plural = torch.tensor([tokenizer.token_to_id[p] for pairs in ANIMALS.values() for _, p in pairs])
print(f"{'masked word':29s} {'n':>5s}   P(true word): both sides   left side only")
for name, items in probes.items():
    both, target = masked_word_probs(model, items, tokenizer)           # (n, v), (n,)
    left, _ = masked_word_probs(model, items, tokenizer, left_only=True)
    p_both, p_left = (q[torch.arange(len(target)), target].mean() for q in (both, left))
    print(f"{name:29s} {len(items):5d}   {p_both:22.2f}   {p_left:14.2f}")
    if "[ducks]" in name:                            # the number only: mass on the right form
        is_plural = torch.isin(target, plural)
        number = [torch.where(is_plural, q[:, plural].sum(-1), 1 - q[:, plural].sum(-1)).mean()
                  for q in (both, left)]
        print(f"{'  … its number (sing./plural)':29s} {len(items):5d}   {number[0]:22.2f}   "
              f"{number[1]:14.2f}")

# %% [markdown]
# So the tiny BERT does use both sides, measured: over all words, the right side raises the
# probability of the true word from 0.48 to 0.68; the verb of a "so" sentence goes from 0.03
# (left only) to 1.00 once the words after it are visible; the number of the animal, which
# only "were"/"was" on the right gives away, from 0.53 (a coin flip) to 0.86. What it has
# *not* learned are the long-range references on the left: the pronoun after a name and the
# "were"/"was" after an animal both stay at 0.50, the coin flip between two forms, with both
# sides visible. Bidirectional attention lets a model use both sides; what it uses them for is
# what its training managed to learn, here the local grammar.

# %% [markdown]
# **Next-sentence prediction, explained.** The held-out NSP accuracy above is well above chance
# (0.5) but far from perfect. Two cues give a NotNext pair away. After its first sentence a
# story only names its own two characters, so a NotNext $b$ nearly always names someone else.
# And an IsNext pair is one whole story, so it has a story's number of sentences, while the head
# of one story plus the tail of another often has a number no story has. Split the test pairs by
# the second cue, and score a rule that uses one cue alone:

# %%
nsp = nsp_breakdown(model, test, tokenizer, config.max_len)
print(f"{nsp['n']} test pairs, IsNext {nsp['is_next']:.3f}: NSP accuracy {nsp['accuracy']:.3f}")
for name, (count, acc) in nsp["groups"].items():
    print(f"  {name:35s} {count:4d} pairs: accuracy {acc:.2f}")
for name, acc in nsp["rules"].items():
    print(f"  the rule 'NotNext iff {name}': accuracy {acc:.3f}")
assert abs(nsp["accuracy"] - nsp["rules"]["a count no story has"]) < 0.03

# %% [markdown]
# The model's next-sentence prediction is a sentence counter. NotNext pairs with a count no
# story has are caught (accuracy 0.99), NotNext pairs with a story's count are all called IsNext
# (0.00), and its accuracy, 0.736 on these pairs (0.762 on the 512 pairs of the held-out figure
# above), is that of the rule that uses the count alone (0.738). The cue that would solve the
# task, a name from another story (that rule scores 0.990), needs a comparison across the two
# segments: the long-range reference this model did not learn for pronouns either (above). A
# shortcut of this kind is one reason later work questioned NSP: RoBERTa drops it and matches or
# improves BERT's downstream results (Liu et al., 2019).

# %% [markdown]
# ## 6. Contextual vs static embeddings
#
# A static embedding (word2vec, or BERT's own input table $E_{\text{token}}$) gives "bank" one
# vector: the cosine similarity of any two occurrences is 1. BERT's output vector depends on the
# sentence. The corpus knows which sense each ambiguous word has (`Story.senses`): "bank" by the
# river vs the bank with the money. We collect the vector of every "bank" in the test stories
# after each layer and compare all pairs, $\cos(u, v) = u \cdot v / (\lVert u \rVert \lVert v \rVert)$.

# %%
vectors, senses, contexts = contextual_vectors(model.bert, splits["test"], tokenizer, "bank")
print(f"{len(senses)} occurrences of 'bank': {senses.count('river')} river, "
      f"{senses.count('money')} money; e.g. '{contexts[0]}' / '{contexts[-1]}'")
static = model.bert.embeddings.token_emb.weight[tokenizer.token_to_id["bank"]]
print(f"static embedding: every occurrence is the same vector, cosine 1.0 (norm {static.norm():.2f})")
for word in ("bank", "bat", "bark"):
    v, s, _ = contextual_vectors(model.bert, splits["test"], tokenizer, word)
    rows = [sense_summary(cosine_matrix(v[layer]), s) for layer in range(config.n_layers + 1)]
    print(f"{word:5s} ({'/'.join(sorted(set(s)))}): " + "   ".join(
        f"layer {k}: within {r['within']:.2f} across {r['across']:.2f}" for k, r in enumerate(rows)))
final = sense_summary(cosine_matrix(vectors[-1]), senses)
assert final["within"] > final["across"] + 0.1

# %%
fig, axes = plt.subplots(1, 2, figsize=(9, 4))
for ax, layer in zip(axes, (0, config.n_layers)):
    s = sense_summary(cosine_matrix(vectors[layer]), senses)
    plot_sense_similarity(cosine_matrix(vectors[layer]), senses, ax=ax,
                          title=f"'bank' after layer {layer}\nwithin {s['within']:.2f}, "
                                f"across {s['across']:.2f}")
fig.tight_layout()
plt.show()

# %% [markdown]
# At layer 0 (token + segment + position embeddings) the occurrences differ only by position
# and segment; after the encoder layers, "bank" near the river and "bank" with the money have
# moved apart: the two senses form two blocks.
#
# **But what moved them apart?** In this corpus each sense has its own sentence: "so tom sat on
# the bank of the river" (river) vs "so tom took money from the bank" or "… put the money in the
# bank" (money). The split may come from the neighbouring words alone, without any sense of the
# story's setting. Control for it: keep every word of each story, change **only the setting
# word** of its first sentence ("one day tom and mia went to the *river* / *town*"), and compare
# occurrences of the same sense (`setting_swapped_vectors`, `setting_gap`). If the vector
# followed the setting, two occurrences given the same setting word would be more similar than
# two given different ones: a positive gap.

# %%
for word, settings in (("bank", ("river", "town")), ("bat", ("river", "town")),
                       ("bark", ("forest", "farm"))):
    v, s, _ = contextual_vectors(model.bert, test, tokenizer, word)
    natural = sense_summary(cosine_matrix(v[-1]), s)
    swapped, s = setting_swapped_vectors(model.bert, test, tokenizer, word, settings)
    control = setting_gap(swapped[-1], s)              # last layer, (n, 2, d)
    print(f"{word:4s}: senses apart by {natural['within'] - natural['across']:.2f} (within - across); "
          f"same sentences, setting {' / '.join(settings)}: gap {round(control['gap'], 3) + 0.0:.3f}, "
          f"the vector moves by {100 * control['shift']:.1f}% of its length")
    assert abs(control["gap"]) < 0.01 < natural["within"] - natural["across"]

# %% [markdown]
# The split by sense is a split by sentence. With the sentence held fixed, changing the setting
# word moves the vector of "bank" by 0.8% of its length, and the same-setting and
# other-setting similarities are equal to three decimals (gap 0.000, against 0.15 between the
# senses). So this tiny BERT's "bank" vector is contextual in the narrow sense: it reflects the
# neighbouring words ("sat on the … of the river" vs "took money from the …"), not the story
# around them, in line with section 5, where the setting was barely learned. Separating
# senses that share a sentence, as a large BERT must ("he sat by the bank" in a story about
# fishing or about money), needs the long-range context this model has barely learned to use.
# Explore the other ambiguous words and layers:

# %%
# NBVAL_IGNORE_OUTPUT
contextual_similarity_explorer(model.bert, splits["test"], tokenizer)

# %% [markdown]
# ## 7. Fine-tuning with few labels: does pre-training pay?
#
# The lecture's claim: pre-train once on unlabelled text, then fine-tune on a small labelled
# set, and you beat a model trained on the labels alone. Two tasks with few labels:
#
# - the **setting** of a story (`Story.label`: river, town, forest or farm) from
#   `[CLS] story [SEP]`, with only **32 labelled stories**, 8 per setting;
# - **grammar**, like CoLA in the GLUE benchmark: `[CLS] sentence [SEP]` → *as the language
#   writes it* or *two neighbouring words swapped* ("at last leo and kate **home went** .").
#   Nothing about single words gives it away (every word is a real word in a possible
#   position), so 64 labelled sentences cannot teach a fresh model the grammar, while the
#   masked-LM model has read 6000 stories of it (`grammaticality_examples`, half swapped).
#
# Three contenders, same architecture, same labelled data, and the **same pooling** (the same
# way of turning the token vectors into one sequence vector):
#
# - **pre-trained + fine-tuned**: BERT (and pooler) from the checkpoint, a new linear layer on
#   top, everything trained;
# - **from scratch**: the same `BertClassifier`, randomly initialised;
# - **linear probe**: the pre-trained BERT frozen, only the linear layer trained (how much does
#   pre-training alone already encode, linearly?).
#
# The two poolings, in `BertClassifier`:

# %%
show_source(BertClassifier.features, BertClassifier.forward)

# %% [markdown]
# Like with like also means each contender gets its best recipe, found the same way.
# `tools/train_bert.py` sweeps the pooling (the mean of the token vectors, or the [CLS] pooler
# that next-sentence prediction trained), the learning rate and the number of steps; it trains
# every recipe with three seeds (labelled set and initialisation) and keeps, per contender, the
# recipe with the best mean accuracy on the **validation** split: among the recipes of each
# pooling (so that all three can be compared with the same pooling), and over the whole grid
# (each its best recipe). Only the kept recipes are scored on the test split (500 stories;
# 1000 sentences): the test numbers choose nothing. The grid and the results, from the
# checkpoint's metadata:

# %%
ft, gr = m["finetune"], m["finetune_grammar"]
print("sweep per contender:", ft["hyper"]["sweep"], f"x {ft['hyper']['seeds']} seeds")


def show_sweep(result, title):
    """Test accuracy of the recipes chosen on validation: each pooling for all, then each its best."""
    print(title)
    tables = {f"all contenders with {p} pooling": result["same_pooling"][p] for p in ("mean", "cls")}
    tables["each contender with its best recipe"] = result
    for name, table in tables.items():
        print(f"  {name}:")
        for kind in CLASSIFIERS:
            r, test = table["selected"][kind], table["test_accuracy"][kind]
            print(f"    {kind:24s} {r['pooling']:4s} lr {r['lr']:<6g} {r['steps']:3d} steps: val "
                  f"{mean(r['val']):.3f} -> test " + " ".join(f"{a:.3f}" for a in test)
                  + f"   mean {mean(test):.3f}")
        diff = [a - b for a, b in zip(table["test_accuracy"]["pretrained + fine-tuned"],
                                      table["test_accuracy"]["from scratch"])]
        print(f"    pre-trained + fine-tuned minus from scratch: {100 * mean(diff):+.1f} points "
              f"(per seed " + ", ".join(f"{100 * d:+.1f}" for d in diff) + ")")


show_sweep(ft, f"setting of a story: {ft['hyper']['n_labels']} labelled stories, 4 classes "
              f"(chance 0.25), {len(splits['val'])} validation and {len(splits['test'])} test stories")

# %% [markdown]
# We re-run the chosen pre-trained + fine-tuned recipe for seed 0 here (the sweep is the
# script's job): the same code gives the same numbers, on validation and on test.

# %%
def rerun_seed0(result, task):
    """Train the chosen pre-trained + fine-tuned recipe for seed 0 here: (classifier, data)."""
    hyper, r = result["hyper"], result["selected"]["pretrained + fine-tuned"]
    data = finetuning_task(task, splits, tokenizer, 0, hyper["n_labels"], config.max_len,
                           hyper["n_eval"])
    classifier = make_classifier("pretrained + fine-tuned", model, data["n_classes"], 0, r["pooling"])
    finetune_classifier(classifier, *data["train"], r["steps"], r["lr"], hyper["batch_size"], seed=0)
    val, test = (classifier_accuracy(classifier, *data[k]) for k in ("val", "test"))
    print(f"{task}, seed 0, re-run here: validation {val:.3f} (sweep {r['val'][0]:.3f}), "
          f"test {test:.3f} (script {result['test_accuracy']['pretrained + fine-tuned'][0]:.3f})")
    assert abs(val - r["val"][0]) < 1e-3
    assert abs(test - result["test_accuracy"]["pretrained + fine-tuned"][0]) < 1e-3
    return classifier, data


_, data = rerun_seed0(ft, "setting")
print("labelled stories per class:", dict(zip(LABELS, torch.bincount(data["train"][1]).tolist())))

# %% [markdown]
# **What we measured, and what it supports.** An earlier version of this notebook fine-tuned
# with a single recipe (the [CLS] pooler, one learning rate, few steps), found the pre-trained
# model far below the one trained from scratch and blamed pre-training. The sweep shows that
# most of that gap was the recipe. With the [CLS] pooler, the pre-trained model's best recipe
# on validation scores 0.466 on test; with mean pooling, 0.871. The pooler
# was trained to tell whether two passages belong together, which says little about the
# setting, and 32 labelled stories are too few to retrain it (the model from scratch learns its
# pooler from the start and does well with either).
#
# With the recipe ruled out (same pooling, same sweep, chosen on validation, three seeds), the
# model from scratch is still ahead on average: by 3.7 points with mean pooling for all, by 6.3
# with each contender's best recipe, though not on every seed. So on this task pre-training
# does not pay at this scale, and it does not hurt much either. The reasons are measured above:
#
# 1. *The label is a bag-of-words property.* Every story names its setting in the first
#    sentence and uses that setting's places, objects and animals throughout. Thirty-two
#    labelled stories are enough for a randomly initialised model to learn which words point
#    to which setting.
# 2. *Our pre-training barely learned the setting.* Its setting-word accuracy (section 5) stays
#    far below what a model that infers the setting reaches, the setting word barely moves
#    "bank" (section 6), and the frozen linear probe reaches only 0.516. Masked-LM training
#    also makes words that fill the same slots similar ("went to the *town*" / "went to the
#    *river*"): exactly the words this task must tell apart.
#
# Pre-training pays when it has learned the features the task needs. So ask for something it
# *did* learn: the grammar of the language (section 5: the words around a blank).

# %%
show_sweep(gr, f"grammar: {gr['hyper']['n_labels']} labelled sentences, 2 classes (chance 0.5), "
              f"{gr['hyper']['n_eval']} validation and {gr['hyper']['n_eval']} test sentences")
_, data = rerun_seed0(gr, "grammar")
x = data["train"][0][1]
print("a swapped example:", tokenizer.decode(x[x != tokenizer.pad_id]))

# %% [markdown]
# Here pre-training pays, on every seed: the pre-trained + fine-tuned BERT beats the same
# model from scratch by 15.0 points with each contender's best recipe and by 12.6 with mean
# pooling for all, while the model from scratch stays close to chance whatever its recipe. The
# frozen linear probe gets only part of the way (0.581): the knowledge is there but not
# linearly readable from a mean vector, and fine-tuning the whole network is what unlocks it,
# the lecture's recipe. What the evidence supports: pre-training helps with what it learned
# (the local grammar), not with what it did not (the story's setting). Try
# `python tools/train_bert.py --steps 20000` (pre-training about seven times longer) and watch
# whether the setting-word accuracy, and then the first table, move.

# %% [markdown]
# ## 8. Attention of the trained BERT
#
# Every head of every layer attends in both directions. The course's explorer (works offline)
# shows one head at a time on a few test pairs:

# %%
def attention_maps(ids, segments):
    """Per-layer attention weights of one input, stacked: (layers, nh, t, t)."""
    with torch.no_grad():
        *_, weights = model(torch.tensor([ids]), torch.tensor([segments]), need_weights=True)
    return torch.stack(weights)[:, 0]


g = torch.Generator().manual_seed(5)
examples = {}
for index in range(3):
    ids, segments, label = nsp_example(splits["test"], index, g, tokenizer, config.max_len)
    ids, segments = ids[:24], segments[:24]
    words = tokenizer.tokens(ids)
    examples[f"test pair {index}"] = {"weights": attention_maps(ids, segments),
                                      "x_labels": words, "y_labels": words}
first = examples["test pair 0"]
fig = plot_heads(first["weights"][-1], first["x_labels"], first["y_labels"], ncols=4, size=3.0,
                 suptitle=f"last layer, all heads: {' '.join(first['x_labels'][:8])} …")
plt.show()

# %%
# NBVAL_IGNORE_OUTPUT
attention_weights_explorer(examples)

# %% [markdown]
# ### bertviz
# [bertviz](https://github.com/jessevig/bertviz)'s `head_view` (lines between tokens, one colour
# per head) and `model_view` (every layer × head) accept our per-layer weights directly.
# **They need internet**: their JavaScript (require.js, d3, jQuery) comes from a CDN, and
# JupyterLab runs the stored JavaScript only in a trusted notebook. Offline, the views stay
# blank — the explorer above always works.

# %%
from course_lib.viz.bertviz import OFFLINE_NOTE, head_view, model_view

short = tokenizer.encode("[CLS] so tom sat on the bank of the river . [SEP] "
                         "he saw a duck . [SEP]")
short_seg = [0] * 12 + [1] * 6
short_maps = attention_maps(short, short_seg)
print(OFFLINE_NOTE)
head_view(short_maps, tokenizer.tokens(short))

# %%
model_view(short_maps, tokenizer.tokens(short))

# %% [markdown]
# ## 9. The real thing: bert-base-uncased in our `BertForPretraining`
#
# Everything above ran a BERT small enough to train on a laptop. The same classes hold the
# published model: bert-base-uncased (Devlin et al., 2019) is this `BertForPretraining` with
# $d = 768$, $L = 12$, $n_h = 12$ (the configuration counted in section 1), a WordPiece
# vocabulary, the exact (erf) GELU and LayerNorm $\varepsilon = 10^{-12}$. Its weights fit our
# modules one to one. BERT stores $W_Q$, $W_K$, $W_V$ as three layers, which our `qkv_proj`
# holds stacked; the hub's file still uses TensorFlow's LayerNorm names (`gamma`, `beta`); and
# the masked-LM read-out is the token embedding itself, as in ours. `course_lib.pretrained.bert`
# maps every tensor, and `assign_weights` checks every key and shape before it touches the model
# (nothing is ever half-loaded). The tests build `transformers`' `BertForPreTraining` from random
# weights for several sizes and assert the same masked-LM and next-sentence logits (to float
# precision) and the same tokens when blanks are filled one by one.

# %%
show_source(bert_mapping)

# %% [markdown]
# The weights are an optional download (`python tools/fetch_pretrained.py bert-base-uncased`,
# checked by SHA-256), and so is the `tokenizers` package that reads their WordPiece
# vocabulary. Without the weights the cells below print one line and the notebook goes on. With
# them, bert-base fills the blank of real sentences, scores a pair that continues and one that
# does not, and repeats section 6's measurement on "bank" in six river and six money sentences:
# the mean cosine similarity within a sense and across senses, at the embeddings and after the
# last layer. Then it takes one sentence that does not decide the sense ("he sat down by the
# bank .") after a fishing sentence or after a sentence about cash, and compares that "bank"
# with the mean vector of each sense: the long-range context our tiny model barely used
# (section 6). For bert-base the cell asserts that "paris" is among the top guesses for "the
# capital of france is [MASK] ." and that the senses are further apart after the last layer
# than across them (within > across).

# %%
# NBVAL_IGNORE_OUTPUT
folder = find_pretrained("bert-base-uncased")
if folder is None:
    print(unavailable_line("bert-base-uncased"))
else:
    real = real_model_demo(folder)

# %%
# NBVAL_IGNORE_OUTPUT
if folder is not None:
    fig, axes = plt.subplots(1, 2, figsize=(9, 4))
    for ax, (layer, sim) in zip(axes, real["bank_similarity"].items()):
        r = real["bank"][layer]
        plot_sense_similarity(sim, real["senses"], ax=ax,
                              title=f"bert-base: 'bank' after layer {layer}\nwithin "
                                    f"{r['within']:.2f}, across {r['across']:.2f}")
    fig.tight_layout()
    plt.show()

# %% [markdown]
# ## 10. Exercises
# Each exercise has a checker that says *passed*, *what differs*, or *not implemented yet*.
# Replace `raise NotImplementedError` with your code and re-run the cell.
#
# **Exercise 1 — the 80/10/10 rule.** Given `ids (b, t)`, the chosen positions `selected`
# (bool), one uniform number `r` per position and a random word `random_ids` per position,
# return `(inputs, labels)`: at a chosen position, `r < 0.8` → `mask_id`, `0.8 ≤ r < 0.9` →
# the random word, otherwise the original word; other positions unchanged. `labels` holds the
# original id at chosen positions and `IGNORE_INDEX` (-100) elsewhere. Hint: `torch.where`.

# %%
def my_corrupt(ids, selected, r, random_ids, mask_id):
    raise NotImplementedError


check_corrupt(my_corrupt)

# %% [markdown]
# **Exercise 2 — the input of a pair.** Return `(ids, segments)` as lists for
# `[CLS] a [SEP] b [SEP]`: segment 0 for [CLS], `a` and the first [SEP]; segment 1 for `b` and
# the last [SEP].

# %%
def my_pair_input(a: list[int], b: list[int], cls_id: int, sep_id: int):
    raise NotImplementedError


check_pair_input(my_pair_input)

# %% [markdown]
# **Exercise 3 — the embedding sum.** Given the three tables `token_table (v, d)`,
# `segment_table (2, d)`, `position_table (max_len, d)` and `ids, segments (b, t)`, return
# `E_token[ids] + E_segment[segments] + P[:t]` of shape `(b, t, d)` (before the LayerNorm).

# %%
def my_embedding_sum(token_table, segment_table, position_table, ids, segments):
    raise NotImplementedError


check_bert_embedding_sum(my_embedding_sum)

# %% [markdown]
# **Exercise 4 — the [CLS] classification head.** Given the final hidden states
# `hidden (b, t, d)`, return `W_out tanh(W_pool hidden[:, 0] + b_pool) + b_out` of shape
# `(b, k)`, where `hidden[:, 0]` is the [CLS] position and the weights are stored like `nn.Linear`'s
# (`w_pool (d, d)`, `w_out (k, d)`).

# %%
def my_cls_head(hidden, w_pool, b_pool, w_out, b_out):
    raise NotImplementedError


check_cls_head(my_cls_head)

# %% [markdown]
# ## Summary
# - BERT = embeddings + a stack of bidirectional encoder layers (no decoder, no causal mask);
#   ours equals a stack of `nn.TransformerEncoderLayer` to float precision.
# - Input: `[CLS] a [SEP] b [SEP]`, each token the sum of token, segment and position
#   embeddings, then LayerNorm.
# - BERT-base and BERT-large, counted from their configs: 109,482,240 and 335,141,888
#   parameters (the paper's 110M and 340M), the formula checked against the course's own model.
# - Pre-training: masked LM (15% chosen; 80% [MASK], 10% random, 10% unchanged — proportions
#   tested) + next-sentence prediction on the pooled [CLS] vector (half of the pairs IsNext,
#   asserted). The tiny model's next-sentence head counts sentences: its accuracy is that of
#   the sentence-count rule (0.736 vs 0.738), while the names would have given 0.990.
# - The same word gets different vectors in different contexts: "bank" splits into its two
#   senses after the encoder layers (measured by cosine similarity), but in this tiny model
#   the split comes from the neighbouring words: change only the story's setting and the
#   vector barely moves (the control of section 6).
# - The masked LM uses both sides of a blank where the local grammar decides (the verb of a
#   "so" sentence: 0.03 from the left side alone, 1.00 with both), but it has not learned the
#   long-range references (pronoun after a name: 0.50).
# - Pre-train then fine-tune, measured like with like (same pooling, a sweep of learning rate
#   and steps chosen on validation, three seeds): on a grammar task (swapped words) with 64
#   labels the pre-trained + fine-tuned BERT beats the same model trained from scratch by 15.0
#   points; on the story's setting, which its short pre-training had barely learned, it does not
#   (3.7 points behind with mean pooling for all). The earlier, larger loss was the recipe (the
#   NSP-trained [CLS] pooler). Pre-training helps with what it learned.
# - The published bert-base-uncased runs in the same `BertForPretraining`
#   (`course_lib.pretrained.bert`); the tests prove its logits equal to `transformers`' on
#   random-weight checkpoints, and with the weights fetched section 9 fills blanks in real
#   sentences and measures the two senses of "bank".
# - Now in `course_lib.bert`: `BertConfig`, `BertEmbeddings`, `Bert`, `BertForPretraining`,
#   `BertClassifier`, `pair_input`, `mask_tokens`, `corrupt`, `param_count`; in
#   `course_lib.experiments.bert`: `nsp_pair`, `pretraining_batch`, `make_classifier`, `finetune_classifier`,
#   `grammaticality_examples`, `finetuning_task`, `select_on_validation`, `masked_word_probs`;
#   vectors, the setting control and figures in `course_lib.viz.bert`.
#
# **Next:** keep the decoder instead, with its causal mask, and generate text: notebook
# [05 · GPT](05_gpt.ipynb).
