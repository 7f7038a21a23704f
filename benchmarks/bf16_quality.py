"""bfloat16 autocast on a CPU with native bf16: what it buys in training time, and what it costs in quality.

The formulations benchmark's best recipe (``benchmarks/results/formulations_mnist.md``: flow matching with minibatch OT
pairing on the mnist preset's U-Net at 16 base channels, 2,000 steps of batch 128) is trained again with
``train.precision: bf16`` from the same three seeds, and scored exactly as that benchmark scored its fp32 runs: the
same sampler at 10 evaluations (its fp32 choice), 5,000 samples from the same seed against the first 5,000 test
images, FD in the MNIST judge's features. The fp32 scores are read from that benchmark's ledger (``--fp32-runs``),
so the comparison is bf16 against fp32 over three training seeds each: the difference of the means with a 95%
t-interval (two degrees of freedom, the conservative choice for 3 against 3).

Seconds per training step are measured side by side in this one process: fp32 and bf16 each train 60 steps from
scratch, at 16 base channels and at the shipped model's 32, in two interleaved rounds; the faster round counts.

    python benchmarks/bf16_quality.py --max-minutes 60     # repeat until it writes results/bf16_quality.md
    python benchmarks/bf16_quality.py --quick              # the plumbing on tiny models, nothing written
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402
from formulations import T_CRIT_95, samples_at, train_variant  # noqa: E402
from formulations_mnist import Budget, Ledger, fd_key, fd_of, slug, t_interval, variants  # noqa: E402

RECIPE = "flow + OT pairing"
NFE = 10
SEEDS = (0, 1, 2)
TIMING_STEPS = 60
WIDTHS = (16, 32)


def recipe(width: int, precision: str) -> tuple[str, dict]:
    preset, override = variants(width)[RECIPE]
    return preset, {**override, "train": {**override.get("train", {}), "precision": precision}}


def train_unit(book: Ledger, runs: Path, seed: int, a, budget: Budget) -> bool:
    key = f"bf16-{seed}"
    if book.get("trained", key):
        return True
    if budget.out():
        return False
    t0 = time.perf_counter()
    done = train_variant(recipe(a.width, "bf16"), runs / key, a.steps, seed, None, budget.left()) is not None
    book.put((book.get("minutes", key) or 0.0) + (time.perf_counter() - t0) / 60, "minutes", key)
    if done:
        book.put(True, "trained", key)
    print(f"{key}: {'trained' if done else 'paused'} ({book.get('minutes', key):.1f} min)", flush=True)
    return done


def score_unit(book: Ledger, runs: Path, seed: int, sampler: str, a, budget: Budget) -> bool:
    key = f"bf16-{seed}"
    if book.get("scores", key):
        return True
    if budget.out():
        return False
    import difflab

    run = difflab.load(runs / key)
    if run.config["train"].get("precision") != "bf16":
        raise SystemExit(f"{runs / key} was not trained with bf16 autocast ({run.config['train'].get('precision')}).")
    x = samples_at(run, sampler, NFE, a.num, 0)
    scores = {k: v for k, v in fd_of(x, a.num, noise=True).items() if isinstance(v, (int, float))}
    book.put({**scores, "sampler": sampler}, "scores", key)
    print(f"{key} at {NFE} NFE with {sampler}: FD {fd_key(scores):.2f}", flush=True)
    return True


def timing_unit(book: Ledger, a, budget: Budget) -> bool:
    """Seconds per training step of fp32 and bf16 at each width, side by side, the faster of two rounds; the rate is
    read between the first and the last logged step, so set-up and the first step are left out."""
    import csv
    import shutil
    import tempfile

    from difflab.config import resolve
    from difflab.training.diffusion import train

    if book.get("step_seconds") or budget.out():
        return bool(book.get("step_seconds"))
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for rnd in range(2):
            for width in a.widths:
                for precision in ("fp32", "bf16"):
                    preset, override = recipe(width, precision)
                    out = Path(scratch) / f"{width}-{precision}-{rnd}"
                    cfg = resolve({"preset": preset, **override, "seed": 0,
                                   "train": {**override["train"], "steps": a.timing_steps,
                                             "save_every": a.timing_steps, "sample_every": 0, "log_every": 10}})
                    train(cfg, out, progress=False, log=lambda *_: None)
                    rows = list(csv.DictReader((out / "log.csv").open()))
                    rate = ((float(rows[-1]["seconds"]) - float(rows[0]["seconds"]))
                            / (int(rows[-1]["step"]) - int(rows[0]["step"])))
                    key = f"{width}/{precision}"
                    rates[key] = min(rates.get(key, math.inf), rate)
                    shutil.rmtree(out)
    book.put({k: round(v, 4) for k, v in rates.items()}, "step_seconds")
    print(f"seconds per training step, side by side: {rates}", flush=True)
    return True


def fp32_score(fp32: dict, seed: int) -> dict | None:
    return fp32.get("scores", {}).get(slug(RECIPE, seed), {}).get(str(NFE))


def table(book: Ledger, fp32: dict, a) -> list[str]:
    s = book.data["settings"]
    fp = [fp32_score(fp32, seed) for seed in SEEDS]
    bf = [book.get("scores", f"bf16-{seed}") for seed in SEEDS]
    fd_name = next(k for k in fp[0] if k.startswith("FD[") and k.endswith("]"))
    fr = next(k for k in fp[0] if k.startswith("failed[") and k.endswith("]"))
    floor, floor_sd = fp[0][f"{fd_name} floor"], fp[0][f"{fd_name} floor sd"]
    fp_fd, bf_fd = [fd_key(r) for r in fp], [fd_key(r) for r in bf]
    diff = sum(bf_fd) / len(bf_fd) - sum(fp_fd) / len(fp_fd)
    var = lambda v: float(torch.tensor(v, dtype=torch.float64).var())  # noqa: E731
    half = T_CRIT_95[len(SEEDS)] * math.sqrt(var(fp_fd) / len(fp_fd) + var(bf_fd) / len(bf_fd))
    rates = book.get("step_seconds")
    lines = [f"MNIST, {RECIPE} (the formulations benchmark's best) on the mnist preset's U-Net at {s['width']} base "
             f"channels, {s['steps']} steps of batch 128, training seeds {', '.join(map(str, SEEDS))}; each model drew "
             f"{s['num']} samples with {bf[0]['sampler']} at {NFE} evaluations (the sampler the fp32 runs were scored "
             f"with), scored against the first {s['num']} MNIST test images. {fd_name} with its 95% bootstrap "
             f"interval; floor (real training images, same N and reference) {floor:.2f} ± {floor_sd:.2f}. fp32 rows: "
             f"the formulations benchmark's runs ({a.fp32_runs}). CPU, 2 cores, native bf16 (AVX512-BF16), one "
             "process at a time.", "",
             f"| precision | seed | {fd_name} [95%] | failed |", "|---|---:|---:|---:|",
             f"| real training images (floor) | – | {floor:.2f} ± {floor_sd:.2f} | – |"]
    for name, rs in (("fp32", fp), ("bf16 autocast", bf)):
        for seed, r in zip(SEEDS, rs):
            lines.append(f"| {name} | {seed} | {fd_key(r):.2f} [{fd_key(r, ' 95% low'):.2f}, "
                         f"{fd_key(r, ' 95% high'):.2f}] | {100 * r[fr]:.1f}% |")
    for name, v in (("fp32", fp_fd), ("bf16 autocast", bf_fd)):
        m, lo, hi = t_interval(v)
        lines.append(f"| {name}, mean over seeds [95% t] | – | {m:.2f} [{lo:.2f}, {hi:.2f}] | – |")
    lines += ["", f"bf16 − fp32, difference of the seed means: {diff:+.2f} [{diff - half:+.2f}, {diff + half:+.2f}] "
              f"(95%, t with {len(SEEDS) - 1} degrees of freedom), {100 * diff / (sum(fp_fd) / len(fp_fd)):+.1f}% of "
              "fp32's FD.", "", "Seconds per training step, side by side in one process (the faster of two rounds, "
              f"{s['timing_steps']} steps from scratch each):", "",
              "| base channels | fp32 s/step | bf16 s/step | speed-up |", "|---:|---:|---:|---:|"]
    for width in s["widths"]:
        f, b = rates[f"{width}/fp32"], rates[f"{width}/bf16"]
        lines.append(f"| {width} | {f:.3f} | {b:.3f} | {f / b:.2f}× |")
    return lines


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/bf16_quality", help="where the bf16 runs and the ledger live")
    p.add_argument("--fp32-runs", default="runs/formulations_mnist",
                   help="the formulations benchmark's runs, whose fp32 scores of the same recipe are compared")
    p.add_argument("--max-minutes", type=float, default=None, help="stop this invocation after about this long")
    p.add_argument("--quick", action="store_true", help="tiny settings into runs/bf16_quality_quick, nothing written")
    a = p.parse_args()
    a.width, a.steps, a.num, a.timing_steps, a.widths = 16, 2000, 5000, TIMING_STEPS, list(WIDTHS)
    if a.quick:
        a.runs, a.steps, a.num, a.timing_steps, a.widths = "runs/bf16_quality_quick", 4, 300, 12, [8]
    torch.set_num_threads(2)
    fp32 = None
    if not a.quick:
        path = Path(a.fp32_runs) / "ledger.json"
        if not path.is_file():
            raise SystemExit(f"{path} is missing: run benchmarks/formulations_mnist.py first (or give --fp32-runs).")
        fp32 = json.loads(path.read_text())
        s = fp32["settings"]
        if (s["width"], s["steps"], s["num"]) != (a.width, a.steps, a.num):
            raise SystemExit(f"{a.fp32_runs} was trained or scored at other settings ({s}).")
        sampler = fp32.get("sampler", {}).get(RECIPE, {}).get(str(NFE))
        if sampler is None or any(fp32_score(fp32, seed) is None for seed in SEEDS):
            raise SystemExit(f"{a.fp32_runs} lacks the fp32 scores of {RECIPE} at {NFE} NFE for seeds {SEEDS}: run "
                             "benchmarks/formulations_mnist.py first.")
    else:
        sampler = "dpmpp_2m"
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    book = Ledger(runs, {"width": a.width, "steps": a.steps, "num": a.num, "timing_steps": a.timing_steps,
                         "widths": a.widths})
    budget = Budget(a.max_minutes)
    seeds = SEEDS[:1] if a.quick else SEEDS
    done = (all(train_unit(book, runs, seed, a, budget) and score_unit(book, runs, seed, sampler, a, budget)
                for seed in seeds) and timing_unit(book, a, budget))
    if not done:
        print(f"stopped at --max-minutes; run the same command again to continue ({book.path})")
    elif a.quick:
        print("quick run: plumbing only", book.get("scores"), book.get("step_seconds"))
    else:
        write_table("bf16_quality.md", "bfloat16 autocast against fp32: training time and sample quality, MNIST",
                    table(book, fp32, a))


if __name__ == "__main__":
    main()
