"""The shipped models as a user meets them: what the plain `difflab sample NAME` draws, judged.

For each shipped model the command itself runs (in this process, default seed): ``difflab sample NAME --num N --out
x.npz``, with no sampler, step or start option, so the setting recorded with the model is what is measured. Scores:

* FD in the dataset judge's features of the N samples against the first N test images, with its 95% bootstrap
  interval and the real-vs-real floor at the same N (N training images against the same reference);
* the failed-sample share (the judge's confidence < 0.5, or a mean intensity outside the real images' 0.1–99.9
  percentiles; :mod:`difflab.metrics.failures`), with its 95% Wilson interval;
* for a class-conditional model, ``difflab sample NAME --class k --num M`` for every class k: the share the judge
  names as the class asked for, per class and overall;
* images per second of the plain command (wall clock, sampling only).

The targets of the shipped models (the time-to-quality issue): failed samples ≤ 1%; FD within 2× of the floor.
Each model's scores are kept in ``--cache`` under its weights' SHA-256, so a re-exported model is measured again and
an interrupted run continues.

    python benchmarks/shipped_models.py                                   # every shipped model, N = 10,000
    python benchmarks/shipped_models.py --models mnist-fast --num 2000    # a quicker look at one
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402


def plain_sample(name: str, num: int, extra: list[str] | None = None) -> tuple[torch.Tensor, float]:
    """``difflab sample NAME --num num [extra]`` into a scratch .npz: the samples and the command's seconds."""
    from difflab.cli.main import main

    with tempfile.TemporaryDirectory() as scratch:
        out = Path(scratch) / "x.npz"
        t0 = time.perf_counter()
        if main(["sample", name, "--num", str(num), "--out", str(out), *(extra or [])]) not in (0, None):
            raise SystemExit(f"difflab sample {name} failed")
        seconds = time.perf_counter() - t0
        return torch.from_numpy(np.load(out)["samples"]), seconds


def measure(name: str, num: int, per_class: int) -> dict:
    from difflab import pretrained
    from difflab.evaluate import evaluate_samples
    from difflab.metrics.classifiers import judge
    from difflab.metrics.failures import wilson_interval
    from difflab.run import load

    from difflab.samplers import info

    run = load(name)
    dataset, s = run.config["data"]["name"], run.config["sample"]
    x, seconds = plain_sample(name, num)
    scores = {k: v for k, v in evaluate_samples(x, dataset, "fd,failed", num_ref=num, clip=True).items()
              if isinstance(v, (int, float))}
    out = {"setting": {k: s.get(k) for k in ("sampler", "steps", "gaussian_start", "discretization")},
           "nfe": info(s["sampler"])["nfe_per_step"] * s["steps"], "images_per_second": num / seconds,
           "scores": scores, "num": num,
           "sha256": json.loads((pretrained.model_dir(name) / pretrained.META).read_text())["sha256"]}
    classes = run.config["model"].get("num_classes")
    if classes:
        right = []
        for k in range(classes):
            xk, _ = plain_sample(name, per_class, ["--class", str(k)])
            pred, _ = judge(xk, dataset)
            right.append(int((pred == k).sum()))
        lo, hi = wilson_interval(classes * per_class - sum(right), classes * per_class)
        out["class_accuracy"] = {"per_class": [r / per_class for r in right], "all": sum(right) / (classes * per_class),
                                 "95% low": 1 - hi, "95% high": 1 - lo, "per_class_num": per_class}
    return out


def table(results: dict) -> list[str]:
    lines = ["Each model drew with the plain `difflab sample NAME --num N` (seed 0, the setting recorded with the "
             "model); scores in the dataset judge's features against the first N test images. Floor: N real "
             "training images against the same reference. Failed: judge confidence < 0.5 or a brightness no real "
             "image has (95% Wilson interval). Class accuracy: `difflab sample NAME --class k` for every class, the "
             "share the judge names as the class asked for. CPU, 2 cores, one process at a time.", "",
             "| model | plain setting | NFE | N | FD [95%] | floor | FD / floor | failed [95%] | class accuracy [95%] | "
             "images/s |", "|---|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    verdicts = []
    for name, r in results.items():
        sc = r["scores"]
        fd = next(k for k in sc if k.startswith("FD[") and k.endswith("]"))
        fr = next(k for k in sc if k.startswith("failed[") and k.endswith("]"))
        st = r["setting"]
        setting = f"{st['sampler']} {st['steps']}" + (f", Gaussian start σ̃ = {st['gaussian_start']:g}"
                                                       if st.get("gaussian_start") else "")
        ca = r.get("class_accuracy")
        acc = "–" if ca is None else (f"{100 * ca['all']:.1f}% [{100 * ca['95% low']:.1f}, {100 * ca['95% high']:.1f}] "
                                      f"({ca['per_class_num']} per class)")
        floor = sc[f"{fd} floor"]
        lines.append(f"| {name} | {setting} | {r['nfe']} | {r['num']} | {sc[fd]:.2f} [{sc[fd + ' 95% low']:.2f}, "
                     f"{sc[fd + ' 95% high']:.2f}] | {floor:.2f} ± {sc[fd + ' floor sd']:.2f} | {sc[fd] / floor:.1f} | "
                     f"{100 * sc[fr]:.1f}% [{100 * sc[fr + ' 95% low']:.1f}, {100 * sc[fr + ' 95% high']:.1f}] | {acc} | "
                     f"{r['images_per_second']:.0f} |")
        fail_ok = sc[fr + " 95% high"] <= 0.01
        fail_no = sc[fr + " 95% low"] > 0.01
        fd_ok = sc[fd + " 95% high"] <= 2 * floor
        fd_no = sc[fd + " 95% low"] > 2 * floor
        word = lambda ok, no: "met" if ok else "not met" if no else "not resolved"  # noqa: E731
        verdicts.append(f"* {name}: failed ≤ 1%: {word(fail_ok, fail_no)}; FD within 2× the floor: "
                        f"{word(fd_ok, fd_no)} ({sc[fd] / floor:.1f}×).")
        if ca is not None:
            verdicts[-1] += " Per-class accuracy: " + ", ".join(f"{k}: {100 * v:.0f}%"
                                                               for k, v in enumerate(ca["per_class"])) + "."
    return lines + ["", "Targets (met when the whole 95% interval is on the right side):", "", *verdicts]


def main() -> None:
    from difflab import pretrained

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--models", default=",".join(pretrained.names()), help="comma-separated shipped model names")
    p.add_argument("--num", type=int, default=10000, help="samples per model (and test images as the reference)")
    p.add_argument("--per-class", type=int, default=1000, help="samples per class for the class accuracy")
    p.add_argument("--cache", default="runs/shipped_models.json")
    a = p.parse_args()
    torch.set_num_threads(2)
    cache_path = Path(a.cache)
    cache = json.loads(cache_path.read_text()) if cache_path.exists() else {}
    results = {}
    for name in a.models.split(","):
        sha = json.loads((pretrained.model_dir(name) / pretrained.META).read_text())["sha256"]
        key = f"{name}/{sha}/{a.num}/{a.per_class}"
        if key not in cache:
            cache[key] = measure(name, a.num, a.per_class)
            from difflab.io import write_json
            write_json(cache_path, cache)
        results[name] = cache[key]
    write_table("shipped_models.md", "The shipped models with the plain command", table(results))


if __name__ == "__main__":
    main()
