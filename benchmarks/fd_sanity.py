"""Sanity of the feature-space scores: real vs real must be near zero, noise and a single repeated
image far away (the issue's check of FD[mnist-classifier]; also KID, IS, precision, recall).

    python benchmarks/fd_sanity.py --dataset mnist --num 2000
"""

from __future__ import annotations

import argparse

import torch

from _common import write_table


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--dataset", default="mnist")
    p.add_argument("--num", type=int, default=2000)
    a = p.parse_args()
    from difflab.data import load_dataset
    from difflab.evaluate import evaluate_samples

    train = load_dataset(a.dataset, split="train").data
    g = torch.Generator().manual_seed(0)
    sets = {
        f"{a.dataset} training images (first {a.num})": train[: a.num],
        "uniform noise": torch.rand((a.num, *train.shape[1:]), generator=g),
        "one training image repeated": train[:1].repeat(a.num, 1, 1, 1),
    }
    rows, tag = [], None
    for name, x in sets.items():
        s = evaluate_samples(x, a.dataset, num_ref=a.num)
        tag = s["extractor"]
        rows.append(f"| {name} | {s[f'FD[{tag}]']:.3f} | {s[f'KID[{tag}]']:.4f} ± {s[f'KID[{tag}] se']:.4f} | "
                    f"{s[f'IS[{tag}]']:.2f} | {s[f'precision[{tag}]']:.3f} | {s[f'recall[{tag}]']:.3f} |")
        print(rows[-1], flush=True)
    lines = [f"Against the first {a.num} images of the {a.dataset} test split, in the features of the shipped "
             f"`{tag}` judge (128-d, not Inception).", "",
             f"| samples | FD[{tag}] | KID[{tag}] | IS[{tag}] | precision | recall |", "|---|---|---|---|---|---|", *rows]
    write_table(f"fd_sanity_{a.dataset}.md", f"Feature-space scores of known sets against {a.dataset}", lines)


if __name__ == "__main__":
    main()
