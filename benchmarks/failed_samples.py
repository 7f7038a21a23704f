"""Failed samples ("blobs") and FD of the shipped models, per sampler, discretization, step count, conditioning
and start (from the data Gaussian or not): where the failures come from, and which setting the plain command uses.

A sample fails when the dataset's judge cannot name a class with confidence >= 0.5, or its mean intensity lies
outside the real training images' 0.1-99.9 percentile range (:mod:`difflab.metrics.failures`). For each shipped
model and setting, N samples are drawn with the same seeds (sample i from noise i in every setting, so settings
differ by the sampler, not by the noise); the share comes with its 95% Wilson interval, the FD in the judge's
features with its bootstrap interval and the real-vs-real floor at the same N. Diagnosis rows (mnist) swap the
network for the training set's exact denoiser above a noise level, to show where the failures are decided.

    python benchmarks/failed_samples.py                    # both shipped models, N = 1000 (about 45 minutes)
    python benchmarks/failed_samples.py --models mnist --num 200 --settings ddim-50,ddim-10-g5   # a quick look

Measurements are kept in ``--cache`` (JSON, one entry per model and setting) so an interrupted run resumes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import RESULTS, write_table  # noqa: E402

#: name -> (description, network evaluations, Run.sample keyword arguments); gaussian_start 0 = off (the models as
#: shipped before the data Gaussian); "oracle_above" swaps the network for the training set's exact denoiser above
#: that σ̃ (a diagnosis: where are the failures decided?)
OFF, ON = {"gaussian_start": 0}, {"gaussian_start": 5.0}
SETTINGS = {
    "ddim-50": ("DDIM 50, trailing (the plain command's setting until now)", 50, {"sampler": "ddim", "steps": 50, **OFF}),
    "ddim-50-leading": ("DDIM 50, leading", 50, {"sampler": "ddim", "steps": 50, "discretization": "leading", **OFF}),
    "ddim-50-karras": ("DDIM 50, karras (from σ̃ = 80)", 50,
                       {"sampler": "ddim", "steps": 50, "discretization": "karras", **OFF}),
    "ddim-50-noclip": ("DDIM 50, trailing, x̂_0 not clipped", 50, {"sampler": "ddim", "steps": 50, "clip": False, **OFF}),
    "ddim-50-classes": ("DDIM 50, class-conditional (class i mod 10)", 50,
                        {"sampler": "ddim", "steps": 50, "classes": list(range(10)), **OFF}),
    "ddim-50-cfg1": ("DDIM 50, CFG w = 1 (class i mod 10)", 100,
                     {"sampler": "ddim", "steps": 50, "classes": list(range(10)), "guidance": "cfg", "scale": 1.0, **OFF}),
    "ddim-50-oracle20": ("DDIM 50, the training set's exact denoiser above σ̃ = 20", 50,
                         {"sampler": "ddim", "steps": 50, "oracle_above": 20.0, **OFF}),
    "ddim-50-oracle5": ("DDIM 50, the training set's exact denoiser above σ̃ = 5", 50,
                        {"sampler": "ddim", "steps": 50, "oracle_above": 5.0, **OFF}),
    "ddim-10": ("DDIM 10, trailing", 10, {"sampler": "ddim", "steps": 10, **OFF}),
    "dpmpp_2m-10": ("DPM-Solver++(2M) 10, trailing", 10, {"sampler": "dpmpp_2m", "steps": 10, **OFF}),
    "dpmpp_2m-10-karras": ("DPM-Solver++(2M) 10, karras", 10,
                           {"sampler": "dpmpp_2m", "steps": 10, "discretization": "karras", **OFF}),
    "unipc-10": ("UniPC 10, trailing", 10, {"sampler": "unipc", "steps": 10, **OFF}),
    "heun-10": ("Heun 10, trailing", 19, {"sampler": "heun", "steps": 10, **OFF}),
    "ddpm-100": ("DDPM (ancestral) 100, trailing", 100, {"sampler": "ddpm", "steps": 100, **OFF}),
    # the data Gaussian carries the noise down to σ̃ = 5, the network samples below it (difflab.data_gaussian)
    "ddim-10-g5": ("DDIM 10 from the Gaussian start σ̃ = 5", 10, {"sampler": "ddim", "steps": 10, **ON}),
    "dpmpp_2m-10-g5": ("DPM-Solver++(2M) 10 from the Gaussian start", 10, {"sampler": "dpmpp_2m", "steps": 10, **ON}),
    "unipc-10-g5": ("UniPC 10 from the Gaussian start", 10, {"sampler": "unipc", "steps": 10, **ON}),
    "heun-10-g5": ("Heun 10 from the Gaussian start", 19, {"sampler": "heun", "steps": 10, **ON}),
    "ddim-20-g5": ("DDIM 20 from the Gaussian start", 20, {"sampler": "ddim", "steps": 20, **ON}),
    "ddim-50-g5": ("DDIM 50 from the Gaussian start", 50, {"sampler": "ddim", "steps": 50, **ON}),
    "ddpm-25-g5": ("DDPM (ancestral) 25 from the Gaussian start", 25, {"sampler": "ddpm", "steps": 25, **ON}),
    "ddpm-50-g5": ("DDPM (ancestral) 50 from the Gaussian start", 50, {"sampler": "ddpm", "steps": 50, **ON}),
    "ddpm-100-g5": ("DDPM (ancestral) 100 from the Gaussian start", 100, {"sampler": "ddpm", "steps": 100, **ON}),
}
#: measured for every shipped model; the others diagnose the mnist model's failures
CANDIDATES = ("ddim-50", "ddim-10", "dpmpp_2m-10", "unipc-10", "heun-10", "ddpm-100", "ddim-10-g5", "dpmpp_2m-10-g5",
              "unipc-10-g5", "heun-10-g5", "ddim-20-g5", "ddim-50-g5", "ddpm-25-g5", "ddpm-50-g5", "ddpm-100-g5")
DIAGNOSIS = tuple(n for n in SETTINGS if n not in CANDIDATES)
MODELS = ("mnist", "fashion-mnist")
BATCH = 250


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


class OracleAbove:
    """The run's denoiser, with the training set's exact denoiser (an empirical mixture: the posterior mean over
    every training image) in its place wherever σ̃ = σ/α exceeds ``threshold``."""

    def __init__(self, run, threshold: float):
        from difflab.data import load_dataset
        from difflab.toy import GaussianMixture

        d = run.config["data"]
        train = run.normalization.to_model(load_dataset(d["name"], root=d["root"], split="train").data)
        self.mix = GaussianMixture(train.flatten(1).double(), 1e-3)
        self.model, self.threshold, self.schedule = run.denoiser, threshold, run.denoiser.schedule
        self.clip_x0, self.inner = run.denoiser.clip_x0, run.denoiser

    def __call__(self, x, t):
        from difflab.denoiser import Prediction

        tt = torch.as_tensor(t, dtype=torch.float64).reshape(-1)[:1]
        a, s = float(self.schedule.alpha(tt)[0]), float(self.schedule.sigma(tt)[0])
        if s / a <= self.threshold:
            return self.model(x, t)
        b = x.shape[0]
        x0 = self.mix.posterior_mean(x.flatten(1), torch.full((b,), a, dtype=torch.float64),
                                     torch.full((b,), s, dtype=torch.float64)).to(x.dtype).reshape(x.shape)
        return Prediction(eps=(x - a * x0) / s, x0=x0)


def draw(run, setting: dict, num: int) -> torch.Tensor:
    """``num`` samples in data coordinates, sample i from generator seed i (the same noise in every setting)."""
    import difflab

    kw = dict(setting)
    clip, oracle = kw.pop("clip", None), kw.pop("oracle_above", None)
    old = run.denoiser.clip_x0
    if clip is False:
        run.denoiser.clip_x0 = None
    try:
        out = []
        for start in range(0, num, BATCH):
            n = min(BATCH, num - start)
            gens = [torch.Generator().manual_seed(start + i) for i in range(n)]
            one = dict(kw)
            if "classes" in one:  # sample start + i gets class (start + i) mod 10, whatever the batching
                one["classes"] = [kw["classes"][(start + i) % len(kw["classes"])] for i in range(n)]
            if oracle is not None:
                one.pop("gaussian_start")
                x = difflab.sample(OracleAbove(run, oracle), (n, *run.shape), generator=gens, **one)
                out.append(run.normalization.to_data(x))
            else:
                out.append(run.sample(n, generator=gens, **one))
        return torch.cat(out)
    finally:
        run.denoiser.clip_x0 = old


def measure(model: str, name: str, num: int) -> tuple[dict, torch.Tensor]:
    import difflab
    from difflab.evaluate import evaluate_samples
    from difflab.metrics.failures import failed_share

    run = difflab.load(model)
    t0 = time.perf_counter()
    x = draw(run, SETTINGS[name][2], num)
    seconds = time.perf_counter() - t0
    out = failed_share(x, model)
    fd = evaluate_samples(x, model, "fd", num_ref=num)
    tag = fd["extractor"]
    out.update({"seconds": seconds, "fd": fd[f"FD[{tag}]"], "fd low": fd[f"FD[{tag}] 95% low"],
                "fd high": fd[f"FD[{tag}] 95% high"], "floor": fd.get(f"FD[{tag}] floor"),
                "floor sd": fd.get(f"FD[{tag}] floor sd")})
    return out, x


def _fd(r: dict) -> str:
    return f"{r['fd']:.2f} [{r['fd low']:.2f}, {r['fd high']:.2f}]" if "fd" in r else "not measured"


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--settings", default=None, help="comma-separated (default: the candidates for every model, and the "
                   "diagnosis for mnist)")
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--cache", type=Path, default=Path("runs/failed_samples.json"))
    args = p.parse_args()
    models = args.models.split(",")
    plan = {m: (args.settings.split(",") if args.settings else
                list(CANDIDATES) + (list(DIAGNOSIS) if m == "mnist" else [])) for m in models}
    unknown = [n for names in plan.values() for n in names if n not in SETTINGS] + [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown setting or model {unknown[0]!r}; settings: {', '.join(SETTINGS)}; models: "
                         f"{', '.join(MODELS)}")
    cache = json.loads(args.cache.read_text()) if args.cache.is_file() else {}
    full = args.num >= 1000 and not args.settings and set(models) == set(MODELS)
    start = time.perf_counter()
    for model in models:
        for name in plan[model]:
            key = f"{model}/{name}/{args.num}"
            if key not in cache or ("fd" not in cache[key] and name in CANDIDATES):  # diagnosis rows may lack FD
                log(f"{model}: {SETTINGS[name][0]} ...")
                cache[key], x = measure(model, name, args.num)
                if full and name in ("ddim-50", "ddim-10-g5", "ddim-50-g5"):
                    from difflab.plotting import save_image_grid
                    save_image_grid(x[:64], RESULTS / f"failed_samples_{model}_{name}.png", nrow=16)
                args.cache.parent.mkdir(parents=True, exist_ok=True)
                args.cache.write_text(json.dumps(cache, indent=1))
            r = cache[key]
            log(f"{model:>13} {name:<18} failed {100 * r['failed']:5.1f}% [{100 * r['failed 95% low']:.1f}, "
                f"{100 * r['failed 95% high']:.1f}]  FD {_fd(r)}  ({r['seconds']:.0f} s)")
    rows = ["| model | setting | NFE | failed | 95% interval | unsure / brightness | FD[judge] | 95% interval | "
            "seconds |", "|---|---|---:|---:|---:|---:|---:|---:|---:|"]
    floors = {}
    for model in models:
        from difflab.data import load_dataset
        from difflab.metrics.failures import failed_share

        real = failed_share(load_dataset(model, split="test").data[:args.num], model)
        rows.append(f"| {model} | real test images (the first {args.num}): the criterion's own floor | – | "
                    f"{100 * real['failed']:.1f}% | {100 * real['failed 95% low']:.1f}–{100 * real['failed 95% high']:.1f}% | "
                    f"{real['unsure']} / {real['brightness']} | – | – | – |")
        for name in plan[model]:
            r = cache[f"{model}/{name}/{args.num}"]
            if "fd" in r:
                floors[model] = (r["floor"], r["floor sd"])
            fd = f"{r['fd']:.2f} | {r['fd low']:.2f}–{r['fd high']:.2f}" if "fd" in r else "– | –"
            rows.append(f"| {model} | {SETTINGS[name][0]} | {SETTINGS[name][1]} | {100 * r['failed']:.1f}% | "
                        f"{100 * r['failed 95% low']:.1f}–{100 * r['failed 95% high']:.1f}% | {r['unsure']} / "
                        f"{r['brightness']} | {fd} | {r['seconds']:.0f} |")
    chosen = [""]
    for model in models:
        measured = [(cache[f"{model}/{n}/{args.num}"], n) for n in plan[model] if n in CANDIDATES
                    and "fd" in cache[f"{model}/{n}/{args.num}"]]
        if not measured:
            continue
        best = min(measured, key=lambda rn: rn[0]["fd"])
        # the default: the fewest failures among the settings whose FD lies inside the best FD's interval
        pick = min((rn for rn in measured if rn[0]["fd"] <= best[0]["fd high"]),
                   key=lambda rn: (rn[0]["failed"], SETTINGS[rn[1]][1]))
        chosen.append("")
        chosen.append(f"**{model}**: lowest FD {best[0]['fd']:.2f} [{best[0]['fd low']:.2f}, {best[0]['fd high']:.2f}] "
                      f"with {SETTINGS[best[1]][0]}; of the settings whose FD lies inside that interval, the fewest "
                      f"failures: **{SETTINGS[pick[1]][0]}** ({SETTINGS[pick[1]][1]} evaluations, FD {pick[0]['fd']:.2f}, "
                      f"{100 * pick[0]['failed']:.1f}% failed), the plain `difflab sample {model}` default (its config's "
                      "`sample` section). Lowest FD within a budget: " + "; ".join(
                          f"≤ {budget} evaluations: {SETTINGS[n][0]}, FD {r['fd']:.2f}, {100 * r['failed']:.1f}% failed"
                          for budget in (10, 20, 50) for r, n in [min(((r, n) for r, n in measured
                                                                     if SETTINGS[n][1] <= budget),
                                                                    key=lambda rn: rn[0]["fd"])]) + ".")
    print("\n".join(rows + chosen))
    rows += chosen
    if full:
        floor = "; ".join(f"{m} {f:.2f} ± {sd:.2f}" for m, (f, sd) in floors.items())
        lines = [f"N = {args.num} samples per row, sample i from noise seed i in every row (rows differ by the sampler, "
                 "not by the noise). Failed = the judge's confidence < 0.5 (unsure) or a mean intensity outside the "
                 "training images' 0.1–99.9 percentile range (brightness), `difflab.metrics.failures`, with 95% Wilson "
                 f"intervals. FD in the judge's features against the first {args.num} test images, 95% bootstrap "
                 f"interval; the real-vs-real floor at this N (as many training images against the same test images): "
                 f"{floor}. CPU, 2 cores; {(time.perf_counter() - start) / 60:.0f} min for the rows not already "
                 "measured.", "", *rows]
        write_table("failed_samples.md", "Failed samples and FD of the shipped models per sampler and start", lines)


if __name__ == "__main__":
    main()
