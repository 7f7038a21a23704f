"""Acceptance check of issue #2 for digits: train the preset, draw 256 DDIM-50 samples, and let a
classifier fitted to the real scikit-learn digits judge them (share labelled with confidence
>= 0.8, and the classes seen). The same classifier on held-out real digits gives the bar.

    python benchmarks/digits_quality.py [--run runs/bench-digits] [--seed 0]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import train_or_reuse, write_table  # noqa: E402


def fit_classifier():
    from sklearn.datasets import load_digits
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split

    d = load_digits()
    x, y = d.data / 16.0, d.target
    xtr, xte, ytr, yte = train_test_split(x, y, test_size=0.25, random_state=0, stratify=y)
    clf = LogisticRegression(max_iter=5000, C=1.0).fit(xtr, ytr)
    return clf, xte, yte


def judge(clf, x: np.ndarray) -> tuple[float, np.ndarray]:
    prob = clf.predict_proba(x.reshape(len(x), -1))
    confident = prob.max(1) >= 0.8
    counts = np.bincount(prob.argmax(1)[confident], minlength=10)
    return confident.mean(), counts


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--run", default="runs/bench-digits")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--num", type=int, default=256)
    a = p.parse_args()

    import difflab
    from difflab.random import generators_from_seeds
    from difflab.run import save_samples

    seconds = train_or_reuse("digits", Path(a.run), seed=a.seed)
    clf, xte, yte = fit_classifier()
    real_conf, _ = judge(clf, xte)
    run = difflab.load(a.run)
    rows = []
    for sampler, steps, kw in (("ddim", 50, {"eta": 0.0}), ("ddim", 20, {"eta": 0.0}), ("ddpm", 1000, {})):
        x = run.sample(a.num, sampler=sampler, steps=steps, generator=generators_from_seeds(range(a.num)), **kw)
        if sampler == "ddim" and steps == 50:
            save_samples(x[:100], Path(__file__).parent / "results" / "digits_ddim50.png", "image")
        conf, counts = judge(clf, x.numpy())
        ok = conf >= 0.8 and (counts > 0).all()
        rows.append(f"| {sampler} | {steps} | {conf:.3f} | {' '.join(str(c) for c in counts)} | {'pass' if ok else 'FAIL'} |")
    write_table("digits_quality.md", "digits: samples judged by a classifier fitted to the real digits", [
        f"Preset `digits`, seed {a.seed}, training time {seconds:.0f} s (nan = reused run), {a.num} samples per row.",
        "Classifier: scikit-learn LogisticRegression on the 64 pixels in [0, 1], fitted on 75% of the 1,797 real digits; "
        f"held-out accuracy {clf.score(xte, yte):.3f}; held-out real digits labelled with confidence >= 0.8: {real_conf:.3f}.",
        "Target (issue #2): >= 80% of DDIM-50 samples labelled with confidence >= 0.8, and every class present.",
        "",
        "| sampler | steps | confident (>= 0.8) | confident samples per class 0..9 | verdict |",
        "|---|---|---|---|---|",
        *rows,
        "",
        "![DDIM-50 samples](digits_ddim50.png)",
    ])


if __name__ == "__main__":
    main()
