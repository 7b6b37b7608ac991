"""Train notebook 08's story models and write data/llama_stories_<arch>_s<seed>.safetensors.

    python tools/train_llama.py                          # gpt + llama, seeds 0 and 1; draft, seed 0
    python tools/train_llama.py --arch llama --seed 1    # one run

Every model gets 05's recipe (course_lib.experiments.llama.RECIPE: 500 steps of 32 stories,
AdamW β₂ = 0.95, warm-up then cosine, one CPU thread, seeded), so the GPT-2-style and the
Llama-style decoder (about 128k parameters each) see the same data for the same steps. Each
checkpoint's metadata holds the validation loss, the entropy floor, the parameter count and
``train_cpu_s`` / ``train_wall_s`` in the schema of ``course_lib.training``.
"""

from __future__ import annotations

import argparse

from course_lib.experiments.llama import ARCHS, RECIPE, train_story_model

DEFAULT_RUNS = [("gpt", 0), ("llama", 0), ("gpt", 1), ("llama", 1), ("draft", 0)]


def main(argv=None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--arch", choices=sorted(ARCHS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--steps", type=int, default=RECIPE["steps"])
    parser.add_argument("--out", default=None)
    args = parser.parse_args(argv)
    runs = DEFAULT_RUNS if args.arch is None else [(args.arch, args.seed)]
    results = []
    for arch, seed in runs:
        m = train_story_model(arch, seed, steps=args.steps, out=args.out)
        print(
            f"{arch} seed {seed}: {m['params']:,} parameters, val loss {m['val_loss']:.4f} = "
            f"{m['ratio']:.3f} x the floor; {m['train_cpu_s']} s CPU, {m['train_wall_s']} s wall",
            flush=True,
        )
        results.append(m)
    return results


if __name__ == "__main__":
    main()
