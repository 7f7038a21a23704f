"""Sampling time of latent diffusion against a pixel-space model of the same design (Rombach et al. 2022,
Sec. 4.1: the latent model's network runs on a 4 x 8 x 16 latent instead of the 1 x 28 x 56 canvas).

Both models are text-unets trained on mnist-pairs (benchmarks/configs/latent_text_mnist.yaml and
pixel_text_mnist.yaml); each draws ``--num`` prompted samples (the seen pairs in turn, CFG at ``--scale``,
DDIM ``--steps``), timed ``--repeats`` times on one thread after a warm-up; the latent time includes
decoding. Quality beside it: the share of samples whose halves the MNIST judge reads as the prompt asks,
and FD[mnist-classifier] of the halves.

    python benchmarks/latent_speed.py --latent runs/latent/ldm-text --pixel runs/latent/pixel-text
"""

from __future__ import annotations

import argparse
import statistics
import time

import torch

from _common import write_table
from latent_text_mnist import feature_distance, judge_pairs, sample_prompts

from difflab.data.captions import seen_pairs


def _time(fn, repeats: int) -> list[float]:
    out = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return out


def main() -> None:
    from difflab.run import load

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--latent", required=True)
    p.add_argument("--pixel", required=True)
    p.add_argument("--num", type=int, default=90)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--scale", type=float, default=3.0)
    p.add_argument("--repeats", type=int, default=3)
    a = p.parse_args()
    torch.set_num_threads(1)
    pairs = seen_pairs()[: a.num] if a.num <= 90 else seen_pairs() * (a.num // 90 + 1)
    rows = {}
    for name, path in (("latent", a.latent), ("pixel", a.pixel)):
        run = load(path)
        sample_prompts(run, pairs[:2], 1, a.scale, 2, 0)  # warm-up
        times = _time(lambda: sample_prompts(run, pairs[: a.num], 1, a.scale, a.steps, 0, batch=a.num), a.repeats)
        x, want = sample_prompts(run, pairs[: a.num], 1, a.scale, a.steps, 0, batch=a.num)
        decode = None
        if run.codec is not None:
            z = torch.randn(a.num, *run.codec.shape)
            decode = min(_time(lambda: run.codec.decode(z), a.repeats))
        shape = run.codec.shape if run.codec is not None else run.shape
        rows[name] = {"path": path, "step": run.step, "shape": "x".join(map(str, shape)),
                      "params": sum(p.numel() for p in run.model.parameters()), "min": min(times),
                      "median": statistics.median(times), "decode": decode, **judge_pairs(x, want),
                      "fd": feature_distance(x)}
    lat, pix = rows["latent"], rows["pixel"]
    lines = [f"{a.num} prompted samples per model, DDIM {a.steps} steps, classifier-free guidance w = {a.scale:g} "
             f"(two network evaluations per step, batched), one CPU thread, {a.repeats} repetitions "
             "(minimum and median wall time). Quality is of the same samples: prompt accuracy by the shipped MNIST judge "
             "on each 28x28 half, FD[mnist-classifier] of the halves against as many test canvases.", "",
             "| model | diffusion space | U-Net + text encoder parameters | training steps | sampling time min (s) | median (s) | "
             "of which decoding (s) | per sample (ms) | prompt accuracy | FD[mnist-classifier] |",
             "|---|---|---|---|---|---|---|---|---|---|"]
    for name, r in rows.items():
        dec = f"{r['decode']:.3f}" if r["decode"] is not None else "—"
        lines.append(f"| {name} (`{r['path']}`) | {r['shape']} | {r['params']:,} | {r['step']} | {r['min']:.2f} | "
                     f"{r['median']:.2f} | {dec} | {1000 * r['min'] / a.num:.1f} | {100 * r['accuracy']:.1f}% | {r['fd']:.2f} |")
    lines += ["", f"**Speed-up of the latent model: {pix['min'] / lat['min']:.1f}x** (pixel time / latent time, minima)."]
    write_table("latent_speed.md", "Latent vs pixel-space sampling time (mnist-pairs, text prompts)", lines)


if __name__ == "__main__":
    main()
