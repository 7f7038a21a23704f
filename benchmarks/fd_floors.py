"""Real-vs-real floors: the Fréchet distance two disjoint sets of N *real* images get in each dataset's judge features
(difflab.metrics.intervals.real_floor), for digits, MNIST and Fashion-MNIST at N = 300, 1,000, 5,000 and 10,000
(digits: 300 and 450, all its held-out images); and the floor `difflab eval` and the reproductions print beside a
model's FD: N training images against the first N held-out test images (difflab.evaluate.real_floor).

A model's FD at N samples is read against the floor at the same N and extractor: a difference between two models is
worth reading only beyond the floor's spread (the verdict rule, difflab.metrics.intervals.verdict). The pool is each
dataset's training split (60,000 for MNIST and Fashion-MNIST; digits' 1,347 training images allow N = 300 and 450
only, since the floor needs 2N distinct images). Each cell: `--repeats` fresh pairs of disjoint subsets.

    python benchmarks/fd_floors.py [--repeats 50]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).parent))
from _common import write_table  # noqa: E402

SIZES = {"digits": (300, 450, 1000), "mnist": (300, 1000, 5000, 10000), "fashion-mnist": (300, 1000, 5000, 10000)}
DATASETS = ("digits", "mnist", "fashion-mnist")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeats", type=int, default=50)
    p.add_argument("--datasets", default=",".join(DATASETS))
    a = p.parse_args()
    from difflab.data import load_dataset
    from difflab.evaluate import JudgeFeatures, feature_extractor, split_size
    from difflab.evaluate import real_floor as heldout_floor
    from difflab.metrics.intervals import real_floor

    rows = ["| dataset | judge | pool | N | FD floor mean | sd | 95 % range of repeats | train vs held-out test: mean | sd "
            "| repeats | seconds |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    for name in a.datasets.split(","):
        t0 = time.monotonic()
        pool = load_dataset(name, split="train").data
        extractor = JudgeFeatures(name)
        feats, _ = extractor(pool)
        print(f"{name}: {feats.shape[0]} images featurised in {time.monotonic() - t0:.1f} s", flush=True)
        held_extractor, key = feature_extractor(name)
        for n in SIZES[name]:
            if 2 * n > feats.shape[0]:
                rows.append(f"| {name} | {extractor.name} | {feats.shape[0]} | {n} | n/a: needs {2 * n} images | | | | "
                            "| | |")
                continue
            t1 = time.monotonic()
            floor = real_floor(feats, n, a.repeats, torch.Generator().manual_seed(n))
            lo, hi = floor.range()
            held = heldout_floor(name, held_extractor, n, key=key, repeats=a.repeats, seed=n) \
                if n <= split_size(name, "test") else None
            held_cells = f"{held.mean:.3f} | {held.sd:.3f}" if held else "n/a: test split smaller | "
            rows.append(f"| {name} | {extractor.name} | {feats.shape[0]} | {n} | {floor.mean:.3f} | {floor.sd:.3f} | "
                        f"{lo:.3f} – {hi:.3f} | {held_cells} | {a.repeats} | {time.monotonic() - t1:.1f} |")
            print(rows[-1], flush=True)
    lines = [
        "FD between two disjoint random subsets of N real training images, in the dataset's judge features (128-d), "
        f"{a.repeats} repeats per cell (seeded by N). Read a model's FD at N against the floor at the same N: the floor "
        "is the score a perfect model would get; differences between models smaller than about two floor sds are not "
        "resolved (difflab.metrics.intervals.verdict). The train-vs-held-out columns are the floor `difflab eval` and the "
        "reproductions print: N training images (redrawn each repeat) against the first N test images, which stay "
        "fixed, so its sd is smaller and its mean a little larger (train and test differ slightly).", "", *rows, "",
        "The floor falls roughly as 1/N (the FD estimator's bias from finite samples), so comparing FDs measured at "
        "different N compares mostly their N.",
    ]
    write_table("fd_floors.md", "Real-vs-real FD floors per dataset and N", lines)


if __name__ == "__main__":
    main()
