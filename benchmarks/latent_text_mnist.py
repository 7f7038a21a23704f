"""Prompted samples of a text-conditioned model on mnist-pairs, judged half by half.

For each sample of the prompt "a <a> on the left and a <b> on the right", the shipped MNIST judge
(``difflab.metrics.classifiers``, trained on real MNIST only) classifies the left and the right 28 x 28
half; a sample is correct when both halves are the digits asked for, in their places. Reported for the
90 pairs seen in training and the 10 held out of it ((a + 2b) mod 10 = 0), at each CFG scale, with
FD[mnist-classifier] of the samples' halves against the halves of as many test canvases. Grids: one seen
pair per row and every held-out pair, 8 seeds each.

    python benchmarks/latent_text_mnist.py runs/latent/ldm-text --scales 0,3 --per-seen 3 --per-held-out 20
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import torch

from difflab.data.captions import caption, held_out_pairs, seen_pairs

DOCS = Path(__file__).resolve().parent.parent / "docs" / "results"


def sample_prompts(run, pairs: list[tuple[int, int]], per_pair: int, scale: float, steps: int, seed: int,
                   batch: int = 100) -> tuple[torch.Tensor, torch.Tensor]:
    """``per_pair`` samples of each pair's caption (sample i seeded by (seed, i)); returns (images, pairs)."""
    from difflab.random import generators_from_seeds

    want = torch.tensor([p for p in pairs for _ in range(per_pair)])
    prompts = [caption(a, b) for a, b in want.tolist()]
    chunks = []
    for lo in range(0, len(prompts), batch):
        hi = min(lo + batch, len(prompts))
        gens = generators_from_seeds([seed * 1_000_003 + i for i in range(lo, hi)])
        chunks.append(run.sample(hi - lo, steps=steps, generator=gens, prompts=prompts[lo:hi],
                                 guidance="cfg" if scale else None, scale=scale))
    return torch.cat(chunks), want


def judge_pairs(images: torch.Tensor, want: torch.Tensor) -> dict:
    """Share of samples whose left and right halves the MNIST judge reads as the digits asked for."""
    from difflab.metrics.classifiers import judge

    left, _ = judge(images[..., :28].contiguous(), "mnist")
    right, _ = judge(images[..., 28:].contiguous(), "mnist")
    ok_l, ok_r = left == want[:, 0], right == want[:, 1]
    return {"accuracy": float((ok_l & ok_r).float().mean()), "left": float(ok_l.float().mean()),
            "right": float(ok_r.float().mean()), "num": int(want.shape[0])}


def feature_distance(images: torch.Tensor, seed: int = 0) -> float:
    """FD[mnist-classifier] between the 28 x 28 halves of ``images`` and of as many mnist-pairs test canvases."""
    from difflab.data import load_dataset
    from difflab.evaluate import JudgeFeatures
    from difflab.metrics.frechet import frechet_distance_of
    from difflab.evaluate import cells

    test = load_dataset("mnist-pairs", split="test", num=images.shape[0], seed=seed).data
    feats = JudgeFeatures("mnist")
    return float(frechet_distance_of(feats(cells(test))[0], feats(cells(images))[0]))


def grid_pairs() -> list[tuple[int, int]]:
    """One seen pair per left digit: (a, the first b after a that is not held out)."""
    seen = set(seen_pairs())
    return [next((a, (a + k) % 10) for k in range(1, 11) if (a, (a + k) % 10) in seen) for a in range(10)]


def main() -> None:
    from difflab.plotting import save_image_grid
    from difflab.run import load

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run")
    p.add_argument("--scales", default="0,3")
    p.add_argument("--per-seen", type=int, default=3, help="samples per seen pair (90 pairs)")
    p.add_argument("--per-held-out", type=int, default=20, help="samples per held-out pair (10 pairs)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--name", default="latent_text_mnist")
    a = p.parse_args()
    torch.set_num_threads(1)
    run = load(a.run)
    results = {"run": a.run, "step": run.step, "sampler": f"{run.config['sample']['sampler']}, {a.steps} steps", "rows": []}
    for scale in [float(s) for s in a.scales.split(",")]:
        t0 = time.perf_counter()
        for split, pairs, per in (("seen", seen_pairs(), a.per_seen), ("held-out", held_out_pairs(), a.per_held_out)):
            x, want = sample_prompts(run, pairs, per, scale, a.steps, a.seed)
            row = {"scale": scale, "pairs": split, **judge_pairs(x, want)}
            if split == "seen":
                row["FD[mnist-classifier]"] = feature_distance(x)
            results["rows"].append(row)
            print(json.dumps(row))
        results.setdefault("seconds", {})[str(scale)] = time.perf_counter() - t0
        for split, pairs in (("seen", grid_pairs()), ("held_out", held_out_pairs())):
            x, _ = sample_prompts(run, pairs, 8, scale, a.steps, a.seed + 1)
            save_image_grid(x, DOCS / f"{a.name}_{split}_w{scale:g}.png", nrow=8)
    from difflab.io import write_json
    write_json(DOCS / f"{a.name}.json", results)


if __name__ == "__main__":
    main()
