# %% [markdown]
# # 04 · BERT: an encoder-only Transformer
# <!-- badges -->
#
# The Transformer of notebook 03 has an encoder that reads the source and a decoder that writes
# the target. **BERT** keeps only the encoder: *rip away the decoder, stack encoders*. Without a
# decoder there is nothing to generate, so BERT is trained by filling in blanks ("masked
# language modelling") and by telling whether two passages belong together ("next-sentence
# prediction"). What it learns are **contextual** word vectors: the same word gets a different
# vector in every sentence. Fine-tuned with a small head, one pre-trained BERT became the best
# model on eleven language tasks at once in 2018, often from few labelled examples.
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
#    statistically, and build next-sentence pairs,
# 3. **measure** that the same word ("bank") gets different vectors in different contexts,
# 4. **compare** fine-tuning a pre-trained BERT with training from scratch and with a linear
#    probe when only a few dozen labels are available, on two tasks, and explain the results,
# 5. **visualize** the attention of the trained tiny BERT.

# %% [bootstrap]

# %%
import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from course_lib import setup
from course_lib.bert import (IS_NEXT, Bert, BertConfig, BertForPretraining, mask_tokens,
                             pad_batch, pair_input)
from course_lib.bert_training import (classification_batch, classifier_accuracy,
                                      finetune_classifier, grammaticality_examples,
                                      labelled_subset, make_classifier,
                                      nsp_example, pretraining_accuracy, story_ids)
from course_lib.checks.bert import (check_bert_embedding_sum, check_cls_head, check_corrupt,
                                    check_pair_input)
from course_lib.data.stories import LABELS, corpus_splits
from course_lib.data.tokenizer import build_tokenizer
from course_lib.training import data_dir, load_checkpoint
from course_lib.viz import plot_attention, plot_heads
from course_lib.viz.attention import attention_weights_explorer
from course_lib.viz.bert import (contextual_similarity_explorer, contextual_vectors,
                                 cosine_matrix, plot_sense_similarity, sense_summary)

device = setup(seed=0)

# %% [markdown]
# ## 1. Rip away the decoder, stack encoders
#
# BERT is $L$ encoder layers on top of an embedding layer. Each layer is exactly notebook 03's
# encoder layer (post-norm; GELU in the feed-forward network as in the paper):
#
# $$ X^{(\ell)} = \mathrm{LN}\big(Y + \mathrm{FFN}(Y)\big), \qquad Y = \mathrm{LN}\big(X^{(\ell-1)} + \mathrm{MHA}(X^{(\ell-1)})\big), \qquad \ell = 1, \dots, L .$$
#
# The self-attention has **no causal mask**: position $i$ attends to every position $j$, left
# and right (only padding is masked). BERT-base has $L = 12$, $d = 768$, 12 heads (110 M
# parameters); ours is CPU-sized. The story corpus and its word-level tokenizer come from
# `course_lib.data` (shared with notebook 05).

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

ids = pad_batch([tokenizer.encode("[CLS] tom sat on the bank of the river . [SEP]"),
                 tokenizer.encode("[CLS] mia took money from the bank . [SEP]")])  # (2, 11)
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
    ha, _ = layer(bert.embeddings(a), is_causal=causal)                  # (1, 11, 64)
    hb, _ = layer(bert.embeddings(b), is_causal=causal)
    print(f"{name}: change of the vector of 'tom' (position 1) = {(ha[0, 1] - hb[0, 1]).norm():.3f}")

# %% [markdown]
# ## 2. The input: [CLS] a [SEP] b [SEP], and three embeddings summed
#
# BERT reads one text or a pair of texts. A pair is packed into one sequence: a classification
# token **[CLS]** first (its final vector summarises the whole input), then text $a$, a separator
# **[SEP]**, text $b$ and a final [SEP]. Each token's input vector is the sum of three learned
# embeddings, then LayerNorm:
#
# $$ x_i = \mathrm{LN}\big(E_{\text{token}}[w_i] + E_{\text{segment}}[s_i] + P[i]\big), \qquad s_i = \begin{cases} 0 & \text{up to the first [SEP]} \\ 1 & \text{after it.} \end{cases} $$
#
# The segment embedding tells the two texts apart; the learned position table $P$ (notebook
# 02's `LearnedPositional`) gives the order.

# %%
story = splits["train"][0]
first = story_ids(tokenizer, story.sentences[:1])
second = story_ids(tokenizer, story.sentences[1:2])
ids, segments = pair_input(first, second, tokenizer.cls_id, tokenizer.sep_id)
tokens = tokenizer.tokens(ids)
print(" ".join(f"{w}/{s}" for w, s in zip(tokens, segments)), "  (token/segment)")

emb = bert.embeddings
ids_t, seg_t = torch.tensor([ids]), torch.tensor([segments])             # (1, t)
parts = {"token  E[w_i]": emb.token(ids_t)[0], "segment E[s_i]": emb.segment(seg_t)[0],
         "position P[i]": emb.position.table.weight[:len(ids)]}          # each (t, d)
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
# $$ \mathcal L_{\text{MLM}} = -\frac{1}{|\mathcal M|} \sum_{i \in \mathcal M} \log p_\theta\big(w_i \mid \tilde w_1, \dots, \tilde w_t\big). $$
#
# Why not always [MASK]? [MASK] never occurs when the model is fine-tuned or used, so the model
# must also build a good vector for *real* words: 10% random words teach it that any input word
# may be wrong, 10% unchanged ones that it may be right. Special tokens ([CLS], [SEP], [PAD])
# are never chosen.

# %%
special = [tokenizer.token_to_id[w] for w in tokenizer.id_to_token if w.startswith("[")]
g = torch.Generator().manual_seed(0)
clean = pad_batch([pair_input(story_ids(tokenizer, s.sentences), None, tokenizer.cls_id,
                              tokenizer.sep_id)[0] for s in splits["train"][:3]])  # (3, t)
inputs, labels = mask_tokens(clean, tokenizer.mask_id, tokenizer.vocab_size, special, g)
for i in range(2):
    shown = [(f"{tokenizer.id_to_token[x]}→{tokenizer.id_to_token[y]}" if l != -100 else
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
chosen = labels != -100
n_words = int((~torch.isin(big, torch.tensor(special))).sum())
n_chosen = int(chosen.sum())
p_same = 0.1 / (tokenizer.vocab_size - len(special))
measured = {"chosen / words": (n_chosen / n_words, 0.15, n_words),
            "[MASK] / chosen": (float((inputs[chosen] == tokenizer.mask_id).float().mean()), 0.8, n_chosen),
            "unchanged / chosen": (float((inputs[chosen] == big[chosen]).float().mean()), 0.1 + p_same, n_chosen)}
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
# [CLS] vector, $\text{pooled} = \tanh(W h_{[\text{CLS}]} + c)$, predicts it with a cross-entropy
# $\mathcal L_{\text{NSP}}$; pre-training minimises $\mathcal L_{\text{MLM}} + \mathcal L_{\text{NSP}}$.
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
model = BertForPretraining(config)
meta = load_checkpoint(model, data_dir() / "bert_tiny.safetensors")
model.eval()
assert meta["config"] == config.to_dict()
m = meta["metrics"]
print(f"pre-training: {m['pretrain']['steps']} steps x {m['pretrain']['batch_size']} pairs, "
      f"final loss {m['final_loss']:.3f}")

# %%
# NBVAL_IGNORE_OUTPUT
print(f"the script took {m['pretrain_seconds']:.0f} s (1 CPU thread, shared machine)")

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
# it; later it starts to use the whole story.
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
# Where context decides, BERT uses both sides. Fill in the blanks:

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
static = model.bert.embeddings.token.weight[tokenizer.token_to_id["bank"]]
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
# moved apart: the two senses form two blocks. Explore the other ambiguous words and layers:

# %%
# NBVAL_IGNORE_OUTPUT
contextual_similarity_explorer(model.bert, splits["test"], tokenizer)

# %% [markdown]
# ## 7. Fine-tuning with few labels: does pre-training pay?
#
# The lecture's claim: pre-train once on unlabelled text, then fine-tune on a small labelled
# set, and you beat a model trained on the labels alone. Task: the **setting** of a story
# (`Story.label`: river, town, forest or farm) from `[CLS] story [SEP]`, with only **32
# labelled stories**. Three contenders, same architecture, same 32 stories, test accuracy on
# the 500 test stories:
#
# - **pre-trained + fine-tuned**: BERT + pooler from the checkpoint, a new linear layer on the
#   pooled [CLS] vector, everything trained;
# - **from scratch**: the same `BertClassifier`, randomly initialised;
# - **linear probe**: the pre-trained BERT frozen; only a linear layer on its mean token vector
#   is trained (how much does pre-training alone already encode?).
#
# `tools/train_bert.py` runs each with three seeds (different labelled sets and initialisations):

# %%
ft = m["finetune"]
print(f"{ft['hyper']['n_labels']} labelled stories, {ft['hyper']['steps']} steps, 4 classes; "
      f"test accuracy per seed and mean")
for name, accs in ft["test_accuracy"].items():
    print(f"  {name:25s} " + "  ".join(f"{a:.3f}" for a in accs) + f"   mean {sum(accs) / len(accs):.3f}")
means = {k: sum(v) / len(v) for k, v in ft["test_accuracy"].items()}
gap = means["pretrained + fine-tuned"] - means["from scratch"]
print(f"pre-trained + fine-tuned minus from scratch: {100 * gap:+.1f} accuracy points")

# %% [markdown]
# We re-run the first seed of the pre-trained + fine-tuned column here (the full table is the
# script's job): the same code gives the same number. The labelled set has 8 stories per setting.

# %%
hyper = ft["hyper"]
labelled = labelled_subset(splits["train"], hyper["n_labels"], seed=0)
x_train, y_train = classification_batch(labelled, tokenizer, list(LABELS), config.max_len)
x_test, y_test = classification_batch(splits["test"], tokenizer, list(LABELS), config.max_len)
print("labelled stories per class:", {c: int((y_train == k).sum()) for k, c in enumerate(LABELS)})
print("input:", tokenizer.decode(x_train[0], skip_special=False)[:90], "…")

classifier = make_classifier("pretrained + fine-tuned", model, len(LABELS), seed=0)
finetune_classifier(classifier, x_train, y_train, hyper["steps"], hyper["lr"],
                    hyper["batch_size"], seed=0)
accuracy = classifier_accuracy(classifier, x_test, y_test)
print(f"pre-trained + fine-tuned, seed 0: test accuracy {accuracy:.3f}")
assert abs(accuracy - ft["test_accuracy"]["pretrained + fine-tuned"][0]) < 1e-6

# %% [markdown]
# **What we measured, and why.** On this task the lecture's claim does **not** hold: the model
# trained from scratch on 32 stories clearly beats the pre-trained one, and the linear probe is
# not far above chance (1 in 4). Two reasons, both visible above:
#
# 1. *The label is a bag-of-words property.* Every story names its setting in the first
#    sentence and uses that setting's places, objects and animals throughout. Thirty-two
#    labelled stories are enough for a randomly initialised model to learn which words point
#    to which setting.
# 2. *Our pre-training never learned the setting.* Its setting-word accuracy (section 5) stays
#    far below what a model that infers the setting reaches. Worse, masked-LM training makes
#    words that fill the same slots similar ("went to the *town*" / "went to the *river*"):
#    exactly the words this task must tell apart.
#
# Pre-training pays when it has learned the features the task needs. So ask for something it
# *did* learn: the grammar of the language.
#
# ### 7b. A task pre-training knows: is this sentence grammatical?
# Like CoLA in the GLUE benchmark: `[CLS] sentence [SEP]` → *as the language writes it* or *two
# neighbouring words swapped* ("at last leo and kate **home went** ."). Nothing about single
# words gives it away — every word is a real word in a possible position — so 64 labelled
# sentences cannot teach a fresh model the grammar, while the masked-LM model has read 6000
# stories of it. `course_lib.bert_training.grammaticality_examples` makes the data (half of the
# sentences swapped); the same three contenders, 3 seeds, 1000 test sentences:

# %%
gr = m["finetune_grammar"]
print(f"{gr['hyper']['n_labels']} labelled sentences, {gr['hyper']['steps']} steps, 2 classes; "
      f"test accuracy per seed and mean (chance 0.5)")
for name, accs in gr["test_accuracy"].items():
    print(f"  {name:25s} " + "  ".join(f"{a:.3f}" for a in accs) + f"   mean {sum(accs) / len(accs):.3f}")
means = {k: sum(v) / len(v) for k, v in gr["test_accuracy"].items()}
gap = means["pretrained + fine-tuned"] - means["from scratch"]
print(f"pre-trained + fine-tuned minus from scratch: {100 * gap:+.1f} accuracy points")
assert gap >= 0.10

# %% [markdown]
# Re-run here for seed 0 (the same code gives the same number as the script):

# %%
hyper = gr["hyper"]
x_train, y_train = grammaticality_examples(splits["train"], tokenizer, hyper["n_labels"], 0,
                                           config.max_len)
x_test, y_test = grammaticality_examples(splits["test"], tokenizer, hyper["n_test"], 99,
                                         config.max_len)
print("a swapped example:", tokenizer.decode(x_train[1][x_train[1] != tokenizer.pad_id]))
classifier = make_classifier("pretrained + fine-tuned", model, 2, seed=0)
finetune_classifier(classifier, x_train, y_train, hyper["steps"], hyper["lr"],
                    hyper["batch_size"], seed=0)
accuracy = classifier_accuracy(classifier, x_test, y_test)
print(f"pre-trained + fine-tuned, seed 0: test accuracy {accuracy:.3f}")
assert abs(accuracy - gr["test_accuracy"]["pretrained + fine-tuned"][0]) < 1e-6

# %% [markdown]
# Pre-trained + fine-tuned wins by about 15 points; the frozen linear probe barely beats chance,
# so the knowledge is there but not linearly readable from a mean vector: fine-tuning the whole
# network is what unlocks it — the lecture's recipe. Two measured lessons: pre-training helps
# with what it learned (grammar), not with what it did not (the story's topic). Try
# `python tools/train_bert.py --steps 20000` (about seven times the CPU time) and watch whether
# the setting-word accuracy, and then the first table, move.

# %% [markdown]
# ## 8. Attention of the trained BERT
#
# Every head of every layer attends in both directions. The course's explorer (works offline)
# shows one head at a time on a few test pairs:

# %%
def attention_maps(ids, segments):
    """Per-layer attention weights of one input, stacked: (layers, h, t, t)."""
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
# ## 9. Exercises
# Each exercise has a checker that says *passed*, *what differs*, or *not implemented yet*.
# Replace `raise NotImplementedError` with your code and re-run the cell.
#
# **Exercise 1 — the 80/10/10 rule.** Given `ids (b, t)`, the chosen positions `selected`
# (bool), one uniform number `r` per position and a random word `random_ids` per position,
# return `(inputs, labels)`: at a chosen position, `r < 0.8` → `mask_id`, `0.8 ≤ r < 0.9` →
# the random word, otherwise the original word; other positions unchanged. `labels` holds the
# original id at chosen positions and `-100` elsewhere. Hint: `torch.where`.

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
# `hidden (b, t, d)`, return `W_out tanh(W_pool h_[CLS] + b_pool) + b_out` of shape `(b, k)`,
# where `h_[CLS]` is position 0 and the weights are stored like `nn.Linear`'s
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
# - Pre-training: masked LM (15% chosen; 80% [MASK], 10% random, 10% unchanged — proportions
#   tested) + next-sentence prediction on the pooled [CLS] vector.
# - The same word gets different vectors in different contexts: "bank" splits into its two
#   senses after the encoder layers (measured by cosine similarity).
# - Pre-train then fine-tune, measured: on a grammar task (swapped words) with 64 labels the
#   pre-trained + fine-tuned BERT beats the same model trained from scratch by about 15 points
#   (three seeds); on the story's setting, which its short pre-training had not learned, it
#   loses. Pre-training helps with what it learned.
# - Now in `course_lib.bert`: `BertConfig`, `BertEmbeddings`, `Bert`, `BertForPretraining`,
#   `BertClassifier`, `pair_input`, `mask_tokens`, `corrupt`; in `course_lib.bert_training`:
#   `nsp_example`, `pretraining_batch`, `make_classifier`, `finetune_classifier`,
#   `grammaticality_examples`; figures in
#   `course_lib.viz.bert`.
#
# **Next:** keep the decoder instead, with its causal mask, and generate text: notebook
# [05 · GPT](05_gpt.ipynb).
