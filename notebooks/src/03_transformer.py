# %% [markdown]
# # 03 · The encoder-decoder Transformer
# <!-- badges -->
#
# The Transformer was invented for **translation**: read a sentence in one language, write it in
# another. Its encoder reads the whole source sentence with self-attention; its decoder writes the
# translation one word at a time, looking back at what it has written (masked self-attention) and
# across at the source (cross-attention). No recurrence anywhere: every layer is attention plus a
# small feed-forward network, wrapped in residual connections and LayerNorm. In this notebook we
# assemble it from the attention of notebook 01 and the positions of notebook 02, check every layer
# against PyTorch, train it on a toy language pair in seconds, and watch where it looks.
#
# Papers: Vaswani et al., *Attention Is All You Need* (2017); Bahdanau, Cho & Bengio, *Neural
# Machine Translation by Jointly Learning to Align and Translate* (2015). Companion read:
# Rush, *The Annotated Transformer* (2018).

# %% [markdown]
# **Learning goals.** After this notebook you can
# 1. **build** an encoder layer and a decoder layer from attention, a feed-forward network,
#    residual connections and LayerNorm, and **verify** them against `nn.TransformerEncoderLayer` /
#    `nn.TransformerDecoderLayer`,
# 2. **explain** the three attentions of the model: encoder self-attention, masked decoder
#    self-attention, and cross-attention,
# 3. **train** a tiny translation model with Adam, warm-up and teacher forcing,
# 4. **decode** greedily (final Linear → softmax → argmax → word), with a KV cache,
# 5. **visualize** cross-attention as a word alignment when the word order differs.

# %% [bootstrap]

# %%
import copy
import math

import matplotlib.pyplot as plt
import torch
from torch import nn

from course_lib import setup
from course_lib.attention import causal_mask
from course_lib.checks.transformer import check_decoder_mask, check_encoder_layer, check_greedy_step
from course_lib.data.translation import TranslationData, sample_pairs, translate
from course_lib.experiments.transformer import (exact_match, head_distance, head_features,
                                                head_identity_share, load_translation_model)
from course_lib.source import show_source
from course_lib.training import lr_schedule, train
from course_lib.transformer import (DecoderLayer, Encoder, EncoderLayer, FeedForward, Transformer,
                                    TransformerConfig, beam_search, greedy_decode,
                                    teacher_forcing_loss)
from course_lib.viz import plot_heads
from course_lib.viz.bertviz import OFFLINE_NOTE
from course_lib.viz.transformer import (decoding_explorer, encoder_decoder_view, plot_alignment,
                                        translate_with_weights)

device = setup(seed=0)

# %% [markdown]
# ## 1. A toy language pair whose word order differs
#
# Real translation data is large: the original Transformer was trained on the WMT 2014
# English–German data, "about 4.5 million sentence pairs" with a shared byte-pair vocabulary of
# about 37000 tokens, for 12 hours on 8 GPUs (Vaswani et al., 2017, §5.1–5.2). We want a task a
# CPU learns in seconds but that still needs everything the Transformer has.
# `course_lib.data.translation` generates sentences of a small
# English fragment and their translation into **Kalo**, an invented language with one word per
# English word but a different order:
#
# | rule | English | Kalo |
# |---|---|---|
# | adjective after the noun | the **red fox** | ta **vulpo ruga** |
# | verb at the end (subject–object–verb) | the fox **sees** a bird | ta vulpo na birdo **vidas** |
# | postpositions | **in** the house | ta domo **en** |
#
# Each pair carries its true *alignment*: Kalo word $i$ translates English word `alignment[i]`.
# Sentences are split into train and held-out by a hash of the English sentence, so the test
# sentences are never seen in training.

# %%
data = TranslationData()
for pair in sample_pairs(3, "train", seed=1):
    print(f"EN  {pair.source}\nKA  {pair.target}\n    alignment {pair.alignment}\n")
print(f"vocabularies: {data.source.vocab_size} English, {data.target.vocab_size} Kalo tokens "
      f"(incl. 7 special tokens such as [PAD]={data.pad_id}, [BOS]={data.bos_id}, [EOS]={data.eos_id})")

# %%
example = translate("the red fox sees a small bird near the old house")
gold = torch.zeros(len(example.alignment), len(example.alignment))
gold[torch.arange(len(example.alignment)), torch.tensor(example.alignment)] = 1.0
fig, ax = plt.subplots(figsize=(5.5, 4.2))
plot_alignment(gold, example.source.split(), example.target.split(), ax=ax,
               title="true alignment: far from the diagonal")
plt.show()

# %% [markdown]
# A model that copies position by position would fail: the verb must wait until the end, each
# adjective must wait for its noun. Translating needs to *look up* the right source word at each
# step, which is what cross-attention will do.
#
# ## 2. The encoder layer
#
# One encoder layer maps $X \in \mathbb{R}^{s \times d}$ to a sequence of the same shape in two
# sub-layers, each wrapped in a residual connection and LayerNorm ("post-norm", as in the paper):
#
# $$ Z = \text{LayerNorm}\big(X + \text{MultiHead}(X, X, X)\big), \qquad
#    Y = \text{LayerNorm}\big(Z + \text{FFN}(Z)\big), \qquad
#    \text{FFN}(z) = W_2\,\text{ReLU}(W_1 z + b_1) + b_2 .$$
#
# The FFN is **position-wise**: the same two-layer MLP applied to every position separately
# ($d \to d_{ff} \to d$, with $d_{ff} = 4d$ in the paper). Attention mixes information *across*
# positions; the FFN transforms each position. The residual path lets the signal and the
# gradient pass straight through a deep stack.
#
# **The lecture's slide is loose here.** It speaks of "independent feed-forward nets for each
# head". There is no FFN per head: the heads' outputs are concatenated and mixed by $W_O$ into one
# $d$-wide vector per position, and *one* MLP, shared by all positions, reads that whole vector.
# "Independent" holds across *positions* (each position goes through the MLP on its own), not
# across heads. The cell below asserts both facts.
#
# `course_lib.transformer.EncoderLayer` names its parts `self_attn`, `ffn`, `norm1`, `norm2`,
# exactly like PyTorch, so we can copy PyTorch's weights in and demand the same numbers,
# including a **padding mask** (shorter sentences padded with `[PAD]` must not be attended to).
# Here are the FFN and the layer (`norm_first=True` is the pre-norm variant of notebook 05;
# the paper's post-norm is the `else` branch):

# %%
show_source(FeedForward.forward, EncoderLayer.forward)

# %%
torch.manual_seed(0)
d_model, n_heads, d_ff = 32, 4, 64
torch_encoder_layer = nn.TransformerEncoderLayer(d_model, n_heads, d_ff, dropout=0.0,
                                                 batch_first=True).eval()
encoder_layer = EncoderLayer(d_model, n_heads, d_ff).load_from_torch(torch_encoder_layer).eval()

x = torch.randn(2, 6, d_model)                                    # (b, s, d)
keep = torch.tensor([[True] * 6, [True] * 4 + [False] * 2])       # (b, s) second sentence padded
with torch.no_grad():
    ours, _ = encoder_layer(x, mask=keep[:, None, None, :])       # course_lib: True = may attend
    theirs = torch_encoder_layer(x, src_key_padding_mask=~keep)   # PyTorch: True = ignore
torch.testing.assert_close(ours[keep], theirs[keep])               # padded rows are never used
print("EncoderLayer == nn.TransformerEncoderLayer (with a padding mask):", tuple(ours.shape))

with torch.no_grad():                                              # the FFN is position-wise:
    one_at_a_time = torch.stack([encoder_layer.ffn(x[:, i]) for i in range(6)], dim=1)
    torch.testing.assert_close(encoder_layer.ffn(x), one_at_a_time)  # one MLP, every position
print("FFN: one MLP for all positions, weights", tuple(encoder_layer.ffn.linear1.weight.shape),
      "reading all d =", d_model, "features of the merged heads (none per head)")

# %% [markdown]
# ## 3. The decoder layer
#
# The decoder layer has three sub-layers. Its input is the translation *so far*, $Y$, and the
# encoder output $M$ (the "memory"):
#
# $$ \begin{aligned}
#  A &= \text{LayerNorm}\big(Y + \text{MultiHead}(Y, Y, Y;\ \text{causal mask})\big)
#    && \text{masked self-attention}\\
#  C &= \text{LayerNorm}\big(A + \text{MultiHead}(A, M, M)\big)
#    && \text{cross-attention: } Q \text{ from the decoder, } K, V \text{ from the encoder}\\
#  \text{out} &= \text{LayerNorm}\big(C + \text{FFN}(C)\big)
# \end{aligned} $$
#
# The **causal mask** blocks the future: position $i$ may attend to positions $j \le i$ only, so
# the prediction of word $i+1$ can never peek at word $i+1$ itself. In a batch, padded target
# positions are masked as well (exercise 1). The layer, its three sub-layers in the post-norm
# `else` branch:

# %%
show_source(DecoderLayer.forward)

# %% [markdown]
# Check against PyTorch with every mask at once:

# %%
print(causal_mask(5).int())                                        # row i: which j position i sees

torch.manual_seed(1)
torch_decoder_layer = nn.TransformerDecoderLayer(d_model, n_heads, d_ff, dropout=0.0,
                                                 batch_first=True).eval()
decoder_layer = DecoderLayer(d_model, n_heads, d_ff).load_from_torch(torch_decoder_layer).eval()
y = torch.randn(2, 5, d_model)                                     # (b, t, d) target so far
memory = torch.randn(2, 6, d_model)                    # (b, s, d) stands in for the encoder output
tgt_keep = torch.tensor([[True] * 5, [True] * 3 + [False] * 2])    # (b, t)
with torch.no_grad():
    ours, (w_self, w_cross) = decoder_layer(y, memory, memory_mask=keep[:, None, None, :],
                                            self_mask=tgt_keep[:, None, None, :], need_weights=True)
    theirs = torch_decoder_layer(y, memory, tgt_mask=~causal_mask(5),
                                 tgt_key_padding_mask=~tgt_keep, memory_key_padding_mask=~keep)
torch.testing.assert_close(ours[tgt_keep], theirs[tgt_keep])
assert w_self.triu(1).abs().max() == 0 and w_cross[1, :, :, 4:].abs().max() == 0
print("DecoderLayer == nn.TransformerDecoderLayer; self-attention", tuple(w_self.shape),
      "cross-attention", tuple(w_cross.shape))

# %% [markdown]
# Note the shapes: self-attention maps are $t \times t$ (target to target), cross-attention maps
# are $t \times s$ (each target position reads the 6 source positions).
#
# ## 4. The whole model: stacks, embeddings, and the final Linear → softmax → argmax
#
# The encoder is $N$ encoder layers, the decoder $N$ decoder layers; every decoder layer
# cross-attends to the *last* encoder layer's output. Around them:
# - **input**: token embedding × $\sqrt{d}$ plus the sinusoidal positions of notebook 02
#   (attention alone ignores order, and here order is the whole point). **A deviation from the
#   paper:** Vaswani et al. share one weight matrix between the source embedding, the target
#   embedding and the final Linear (Vaswani et al., 2017, §3.4), over one joint BPE vocabulary.
#   Ours are *untied*: `src_token_emb`, `tgt_token_emb` and `vocab_proj` are three separate matrices,
#   since our two languages have separate vocabularies (the cell below prints what tying the
#   target side would save);
# - **output**: a final Linear layer maps each decoder output vector $o_i$ to one score per target
#   word, softmax turns the scores into probabilities, and argmax picks an **index**:
#
# $$ p(y_i \mid y_{<i}, x) = \text{softmax}(W_{out} o_i + b_{out}), \qquad
#    \hat y_i = \arg\max_w\ p(w \mid y_{<i}, x). $$
#
# `embed` is the input side, `decode` ends in the final Linear (`vocab_proj`, the scores
# before the softmax):

# %%
show_source(Transformer.embed, Transformer.decode)

# %% [markdown]
# "Which word is associated with this index?" The target vocabulary answers: `id_to_token[index]`.
# A stack of our layers equals PyTorch's `nn.TransformerEncoder` too:

# %%
torch.manual_seed(2)
torch_encoder = nn.TransformerEncoder(nn.TransformerEncoderLayer(d_model, n_heads, d_ff, 0.0,
                                                                 batch_first=True),
                                      num_layers=2, enable_nested_tensor=False).eval()
encoder = Encoder(2, d_model, n_heads, d_ff).eval()
for ours_layer, torch_layer in zip(encoder.layers, torch_encoder.layers):
    ours_layer.load_from_torch(torch_layer)
with torch.no_grad():
    torch.testing.assert_close(encoder(x)[0], torch_encoder(x))
print("Encoder (2 layers) == nn.TransformerEncoder")

# %%
config = TransformerConfig(data.source.vocab_size, data.target.vocab_size, d_model=64, n_heads=4,
                           n_encoder_layers=2, n_decoder_layers=2, d_ff=128, max_len=16,
                           pad_id=data.pad_id, bos_id=data.bos_id, eos_id=data.eos_id)
torch.manual_seed(0)
model = Transformer(config)
print(config)
print(f"{sum(p.numel() for p in model.parameters()):,} parameters; tying tgt_token_emb to the final "
      f"Linear (as the paper does) would save {model.tgt_token_emb.weight.numel():,}")

src, tgt_in, tgt_out = data.batch([example])                       # (1, s), (1, t), (1, t)
with torch.no_grad():
    logits, _ = model(src, tgt_in)                                 # (1, t, vocab): one score per word
probs = logits.softmax(-1)                                         # (1, t, vocab)
torch.testing.assert_close(probs.sum(-1), torch.ones(1, tgt_in.shape[1]))
top = probs[0, 0].topk(3)
print("untrained model, first word:",
      [(int(i), data.target.id_to_token[int(i)], round(float(p), 3)) for p, i in zip(*top)])

# %% [markdown]
# Untrained, the probability is spread thin over all 41 words (the best guess gets under 10%,
# and it is wrong: the first Kalo word here is "ta"). Training will concentrate it on the right word.
#
# ## 5. Training: teacher forcing, Adam and warm-up
#
# The loss is the cross-entropy of each next word given the source and the *true* previous
# words, $\mathcal L = -\sum_i \log p(y_i \mid y_{<i}, x)$. Feeding the true prefix (not the
# model's own guesses) is **teacher forcing**; with the causal mask all $t$ predictions of a
# sentence are one parallel pass: the decoder input is `[BOS] y_1 … y_n`, the target is
# `y_1 … y_n [EOS]` (`tgt_in` and `tgt_out` of `TranslationData.batch`).

# %%
show_source(teacher_forcing_loss)

# %% [markdown]
# The paper trains with Adam ($\beta_2 = 0.98$) and a learning rate that **warms up** linearly
# and then decays, $\text{lr} \propto d^{-0.5}\min(\text{step}^{-0.5}, \text{step}\cdot\text{warmup}^{-1.5})$.
# Early on Adam's variance estimates are based on few gradients and post-norm Transformers can
# diverge at full learning rate; warm-up avoids it. `course_lib.training.train` uses linear
# warm-up then cosine decay:

# %%
show_source(lr_schedule)

# %%
steps, warmup = 400, 50
paper = [min((s + 1) ** -0.5, (s + 1) * warmup ** -1.5) for s in range(steps)]
fig, ax = plt.subplots(figsize=(5.5, 2.6))
ax.plot([lr_schedule(s, steps, warmup) for s in range(steps)], label="course_lib: warm-up + cosine")
ax.plot([p / max(paper) for p in paper], label="paper: warm-up + 1/√step")
ax.set_xlabel("step")
ax.set_ylabel("lr / peak lr")
ax.legend(fontsize=8)
fig.tight_layout()
plt.show()

# %% [markdown]
# Here is the training loop for 40 steps (the full run is a script, below). Each batch holds
# 64 freshly generated training sentences:

# %%
optimizer = torch.optim.Adam(model.parameters(), lr=5e-3, betas=(0.9, 0.98), eps=1e-9)


def get_batch(step):
    return data.batch(sample_pairs(64, "train", seed=step))        # src, tgt_in, tgt_out


brief = train(model, get_batch, teacher_forcing_loss, steps=40, lr=5e-3, warmup=20,
              optimizer=optimizer, desc="translation")
# after 40 steps the loss lies within 1.25-1.27 depending on the CPU's kernels and thread
# count (training amplifies float differences), so we print a bound, not its digits
assert brief.losses[-1] < 1.5 < brief.losses[0] / 2
print(f"loss: step 1 {brief.losses[0]:.2f} -> step 40 below 1.5 "
      f"(uniform guessing: ln 41 = {math.log(41):.2f})")

# %% [markdown]
# The full recipe (same model, same loop, 400 steps) lives in `tools/train_translation.py`:
#
#     python tools/train_translation.py
#
# It writes `data/translation_transformer.safetensors` with its measured figures in the
# metadata: the training time of its run (printed below: CPU seconds on one thread, and the
# wall-clock time, which depends on what else the machine runs) and the held-out score (the
# script is seeded: re-running it rebuilds the same weights). We load that checkpoint and
# measure the score ourselves. *Exact match* is strict: a translation counts only if every word
# and the order are right.

# %%
trained, meta = load_translation_model()
assert meta["config"]["model"] == config.to_dict()                 # the model built above
held_out = sample_pairs(1000, "test", seed=0, distinct=True)
score, predictions = exact_match(trained, data, held_out)
m, recipe = meta["metrics"], meta["config"]["train"]
print(f"shipped checkpoint: {recipe['command']}: {recipe['steps']} steps, batch "
      f"{recipe['batch_size']}, lr {recipe['lr']}, warm-up {recipe['warmup']}, seed {recipe['seed']}")
print(f"the script trained it in {m['train_cpu_s']} s of CPU time on {recipe['threads']} thread "
      f"({m['train_wall_s']} s wall clock) and measured {m['exact_match']:.1%} exact match")
print(f"held-out exact match: {score:.1%} of {len(held_out)} sentences never seen in training")
n_seen = recipe["steps"] * recipe["batch_size"]
print(f"training saw {n_seen:,} sentence pairs ({recipe['steps']} steps x {recipe['batch_size']}), "
      f"{4.5e6 / n_seen:.0f}x fewer than the 4.5 million of WMT 2014 En-De")
assert score >= 0.95 and abs(score - m["exact_match"]) < 1e-6
for pair, predicted in list(zip(held_out, predictions))[:3]:
    print(f"EN {pair.source}\n   -> {predicted}   {'✓' if predicted == pair.target else '✗'}")

# %% [markdown]
# ## 6. Greedy decoding, one word at a time
#
# At inference there is no true prefix. Start from `[BOS]`, run the decoder, take the argmax word,
# append it, repeat until `[EOS]`. The encoder runs **once**; the decoder runs once per word. At
# step $i$ the keys and values of positions $< i$ in the decoder's self-attention are the same as
# at step $i-1$, so `greedy_decode` keeps them in a **KV cache** per layer and feeds only the
# newest word: same result, less work (the cross-attention keys/values come from the fixed encoder
# memory):

# %%
show_source(greedy_decode)

# %% [markdown]
# Watch the model translate a sentence of our choosing, step by step:

# %%
sentence = "the happy girl finds a green bird under the old tree"
src = data.encode_source([sentence])                               # (1, s)
memory, memory_mask, _ = trained.encode(src)                       # (1, s, d), run once
prefix = torch.tensor([[data.bos_id]])
with torch.no_grad():
    for step in range(len(sentence.split()) + 1):
        logits, _, _ = trained.decode(prefix, memory, memory_mask)  # (1, i+1, vocab)
        p = logits[0, -1].softmax(-1)                               # (v,) next-word distribution
        index = int(p.argmax())
        print(f"step {step:2d}: index {index:2d} -> {data.target.id_to_token[index]:10s} p={p[index]:.2f}")
        prefix = torch.cat([prefix, torch.tensor([[index]])], dim=1)
        if index == data.eos_id:
            break
cached = greedy_decode(trained, src)
assert torch.equal(cached.tokens[0], prefix[0, 1:])                 # KV cache: same words
assert torch.equal(cached.tokens, greedy_decode(trained, src, use_cache=False).tokens)
print("model :", data.decode_target(cached.tokens)[0])
print("rules :", translate(sentence).target)

# %% [markdown]
# Words outside the toy vocabulary are refused with a clear message rather than silently
# replaced:

# %%
try:
    data.encode_source(["the dragon sees a cat"])
except ValueError as error:
    print("ValueError:", error)

# %% [markdown]
# ### Beam search: search errors or model errors?
# Greedy decoding commits to the best word at each step, but the most probable *sentence*,
# $\arg\max_y \sum_i \log p(y_i \mid y_{<i}, x)$, may start with a less probable word. **Beam
# search** keeps the $k$ best prefixes at every step (`course_lib.transformer.beam_search`;
# $k = 1$ is greedy). Does it repair the greedy translations that were wrong? For each one, we also
# score the *true* translation under the model: if the model prefers its wrong output, no search
# can help (a **model error**); if it prefers the true one, greedy simply missed it (a **search error**).

# %%
show_source(beam_search)

# %% [markdown]
# One comparison needs care. When beam search returns the true translation itself, its score
# and the teacher-forced score are the log-probability of the *same* sentence computed two ways
# (word by word, and in one pass): equal up to float rounding, which differs between CPUs. So we
# compare the *sentences* there, and compare scores only between two *different* sentences, whose
# log-probabilities the cell asserts are far apart (more than $10^{-3}$; float noise is about
# $10^{-6}$).

# %%
wrong = [pair for pair, predicted in zip(held_out, predictions) if predicted != pair.target]
repaired, gaps = 0, []
for pair in wrong:
    src = data.encode_source([pair.source])                        # (1, s)
    tokens, beam_score = beam_search(trained, src, beam_size=4)
    if data.decode_target(tokens[None])[0] == pair.target:         # beam found the true sentence
        repaired += 1
        continue
    _, tgt_in, tgt_out = data.batch([pair])
    with torch.no_grad():
        logp = trained(src, tgt_in)[0].log_softmax(-1)             # (1, t, vocab)
    true_score = logp.gather(-1, tgt_out[..., None]).sum().item()  # log p(true translation)
    gaps.append(beam_score - true_score)                           # > 0: model prefers its output
closest = min(abs(gap) for gap in gaps)
assert closest > 1e-3                                              # clearly separated, never noise
model_errors = sum(gap > 0 for gap in gaps)
print(f"greedy got {len(wrong)} of {len(held_out)} wrong; beam search (k=4) finds the true "
      f"translation for {repaired}; of the other {len(gaps)}, the model itself "
      f"prefers its wrong translation to the true one in {model_errors} (closest log-probability "
      f"gap {closest:.2f})")

# %% [markdown]
# ## 7. See it: cross-attention is a learned alignment
#
# Cross-attention row $i$ says which source words the decoder reads while producing target word
# $i$. Below: the last decoder layer's cross-attention (mean over heads) for two held-out sentences,
# with the true alignment as red squares. The model was never told the alignment; it found it
# because reading the right English word is the easiest way to predict the next Kalo word.

# %%
runs = [translate_with_weights(trained, data, pair.source) for pair in held_out[:2]]
fig, axes = plt.subplots(1, 2, figsize=(10, 4.3))
for ax, run, pair in zip(axes, runs, held_out[:2]):
    plot_alignment(run["cross"][-1].mean(0), run["src_tokens"], run["out_tokens"], pair.alignment,
                   ax=ax, title="decoder layer 2, mean of heads")
fig.tight_layout()
plt.show()

# %% [markdown]
# How often does the most-attended source word equal the true one? Measured on 300 held-out
# sentences (teacher-forced, so every row belongs to a correct prefix), per layer and head:

# %%
pairs = sample_pairs(300, "test", seed=1, distinct=True)
src, tgt_in, _ = data.batch(pairs)
# float64 for the argmax counts: the closest top-two attention weights of a row are only ~10x
# the float32 differences between CPU kernels; in float64 those differences are ~1e-15
trained64 = copy.deepcopy(trained).double()
with torch.no_grad():
    _, weights = trained64(src, tgt_in, need_weights=True)
cross = torch.stack(weights["cross"])                               # (layers, b, nh, t, s)
gold_rows = [(b, i, j) for b, pair in enumerate(pairs) for i, j in enumerate(pair.alignment)]
b_idx, i_idx, j_idx = (torch.tensor(c) for c in zip(*gold_rows))
for layer in range(cross.shape[0]):
    picks = cross[layer].argmax(-1)[b_idx, :, i_idx]                # (words, nh) attended source word
    per_head = (picks == j_idx[:, None]).float().mean(0)
    mean_head = (cross[layer].mean(1).argmax(-1)[b_idx, i_idx] == j_idx).float().mean()
    print(f"decoder layer {layer + 1}: heads {[round(float(a), 2) for a in per_head]}, "
          f"mean of heads {float(mean_head):.2f}")
chance = sum(len(p.alignment) / len(p.source.split()) for p in pairs) / len(gold_rows)
print(f"chance (a random source word): {chance:.2f}")

# %% [markdown]
# The first decoder layer is still building up *where* it is in the Kalo sentence; the second
# layer's cross-attention points at the true source word most of the time, far above chance.
# Each head of the last layer, for one sentence:

# %%
fig = plot_heads(runs[0]["cross"][-1], runs[0]["src_tokens"], runs[0]["out_tokens"], ncols=4,
                 size=2.6, suptitle="decoder layer 2: cross-attention per head")
plt.show()

# %% [markdown]
# ### Why several heads? Measure that they attend differently
#
# Multi-head attention is only worth its heads if they do different things. Two measurements
# on the 300 held-out sentences above, for every attention layer of the trained model:
# - **distance**: for the same query, how much attention mass two heads of one layer put in
#   different places, the total-variation distance $\tfrac12\lVert a_h - a_{h'}\rVert_1$ averaged
#   over head pairs ($0$: identical maps, $1$: disjoint);
# - **head identity**: each head's mean row entropy (in bits: $0$ = one key, $\log_2 s$ = uniform)
#   in each sentence. If the heads were interchangeable, knowing *which* head a number comes
#   from would not help predict it. $\eta^2$ is the share of the variance explained by the head
#   label; the baseline shuffles the head labels within every sentence (200 times) and keeps
#   the largest $\eta^2$ it finds.

# %%
show_source(head_features, head_distance, head_identity_share)

# %%
queries = {"encoder": src != data.pad_id, "decoder": tgt_in != data.pad_id,
           "cross": tgt_in != data.pad_id}
print(f"{'attention':>15} | {'mean entropy per head (bits)':>30} | TV distance | "
      f"eta² heads | eta² shuffled (max)")
head_share = {}
for kind in ("encoder", "decoder", "cross"):
    for layer, w in enumerate(weights[kind]):                       # (b, nh, t, s) float64
        entropy = head_features(w, queries[kind])["entropy"]         # (b, nh)
        share = head_share[kind, layer] = head_identity_share(entropy, n_shuffles=200, seed=0)
        per_head = " ".join(f"{e:5.2f}" for e in entropy.mean(0).tolist())
        print(f"{kind + ' ' + str(layer + 1):>15} | {per_head:>30} | "
              f"{head_distance(w, queries[kind]):11.2f} | {share['real']:10.3f} | "
              f"{share['shuffled_max']:.3f}")
assert all(share["real"] > share["shuffled_max"] for share in head_share.values())

# %% [markdown]
# In every layer the head label explains more of the entropy than any of the 200 shuffles
# (asserted), so each head has a consistent behaviour of its own. The clearest case is the
# first cross-attention layer (row "cross 1"): the rows of its fourth head carry about half
# the entropy of the other three heads' rows (it reads far fewer source words per query), and
# the head label explains most of the variance there. The distance column says the same per
# query: two heads of one layer put a large share of their attention on different keys, most
# of all in the first encoder and decoder layers, where every head points at a single key
# (entropies near zero) but each head at a different one. Several heads let one layer look in
# several places at once; that is the point of running them in parallel, and of concatenating
# them before $W_O$.

# %% [markdown]
# **Explorer.** Step through the decoding of a few held-out sentences: the bar chart shows which
# source words the word being produced reads (the true source word in red), the map below grows
# row by row. Try layer 1 against layer 2, and single heads against their mean.

# %%
# NBVAL_IGNORE_OUTPUT
explorer = decoding_explorer(trained, data, [p.source for p in held_out[:4]],
                             [p.alignment for p in held_out[:4]])
explorer

# %% [markdown]
# ### bertviz
# bertviz's head view has three tabs for an encoder-decoder model: **encoder** self-attention,
# **decoder** (masked) self-attention and **cross**-attention, drawn as lines between tokens.
# It needs internet: its JavaScript comes from a CDN, and JupyterLab runs the stored JavaScript
# only in a trusted notebook. The explorer above works offline.

# %%
print(OFFLINE_NOTE)
encoder_decoder_view(runs[0])

# %% [markdown]
# ## 8. Exercises
# Each exercise has a checker that says *passed*, *what differs*, or *not implemented yet*.
# Replace `raise NotImplementedError` with your code and re-run the cell.
#
# **Exercise 1 — the decoder mask.** A batch of target sentences with `lengths (b,)`, padded to
# length `t`. Return a boolean `(b, 1, t, t)` mask, `True` where query `i` may attend to key `j`:
# `j <= i` (causal) **and** `j < lengths[b]` (not padding). Hint: combine `causal_mask` with a
# comparison against `torch.arange(t)`, and let broadcasting do the rest.

# %%
def my_decoder_mask(lengths: torch.Tensor, t: int) -> torch.Tensor:
    raise NotImplementedError


check_decoder_mask(my_decoder_mask)

# %% [markdown]
# **Exercise 2 — one encoder layer.** Given `x (b, t, d)`, an `EncoderLayer` and a mask, compute the
# post-norm layer from its parts: `layer.self_attn(x, mask=mask)` returns `(out, weights)`, then
# `layer.norm1`, `layer.ffn`, `layer.norm2`. (Do not call `layer(x)` itself.)

# %%
def my_encoder_layer(x: torch.Tensor, layer: EncoderLayer, mask=None) -> torch.Tensor:
    raise NotImplementedError


check_encoder_layer(my_encoder_layer)

# %% [markdown]
# **Exercise 3 — one greedy decoding step.** Given a `Transformer`, the source ids `src (b, s)` and
# the target prefix so far `prefix (b, t)` (starting with `[BOS]`), return the `(b,)` ids of the
# next word: the argmax of the output distribution at the *last* position. `model(src, prefix)`
# returns `(logits, weights)`.

# %%
def my_greedy_step(model: Transformer, src: torch.Tensor, prefix: torch.Tensor) -> torch.Tensor:
    raise NotImplementedError


check_greedy_step(my_greedy_step)

# %% [markdown]
# ## Summary
# - An **encoder layer** is self-attention + a position-wise FFN, each with a residual connection
#   and LayerNorm; a **decoder layer** adds masked self-attention and cross-attention to the
#   encoder memory. Ours equal `nn.TransformerEncoderLayer` / `nn.TransformerDecoderLayer` (and
#   `nn.TransformerEncoder`) to float precision, with padding and causal masks.
# - The output is a final Linear → softmax → argmax: an index into the target vocabulary.
# - Teacher forcing + the causal mask train all positions in one pass; Adam with warm-up trains
#   the toy translator to 98.1% exact match on unseen sentences in a 400-step run of well under
#   a minute of CPU time (the checkpoint records the figure, printed in §5).
# - The embeddings are untied (three token matrices; the paper ties them), and the FFN is one
#   position-wise MLP after the heads merge, not a net per head as the slide puts it.
# - Greedy decoding produces one word per step; a KV cache avoids recomputing past keys/values.
#   Beam search repairs only the few *search* errors: most remaining mistakes are the model's own.
# - Cross-attention learns the word alignment (the verb read last, adjectives after their noun)
#   without ever being told it; and the heads of each layer attend differently, each in a
#   consistent way of its own (measured against shuffled head labels).
# - Now in `course_lib.transformer`: `EncoderLayer`, `DecoderLayer`, `Encoder`, `Decoder`,
#   `TransformerConfig`, `Transformer`, `teacher_forcing_loss`, `greedy_decode`, `beam_search`;
#   the data in `course_lib.data.translation`; the experiment (loader, exact match, head
#   measurements) in `course_lib.experiments.transformer`.
#
# **Next:** keep only the encoder, stack it, and pre-train it by filling in blanks: notebook
# [04 · BERT](04_bert.ipynb).
