"""Failed samples ("blobs") of the shipped models, per sampler, discretization, step count and conditioning.

A sample fails when the dataset's judge cannot name a class with confidence >= 0.5, or its mean intensity lies
outside the real training images' 0.1-99.9 percentile range (:mod:`difflab.metrics.failures`). For each shipped
model and setting, N samples are drawn with the same seeds (sample i from noise i in every setting, so settings
differ by the sampler, not by the noise), the share is given with its 95% Wilson interval, and the failed samples
of the plain command's setting are drawn to a picture.

    python benchmarks/failed_samples.py                    # both shipped models, every setting, N = 1000
    python benchmarks/failed_samples.py --models mnist --num 200 --settings ddim-50,ddim-10   # a quick look

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

#: name -> (description, Run.sample keyword arguments)
SETTINGS = {
    "ddim-50": ("DDIM 50, trailing (the plain `difflab sample` default)", {"sampler": "ddim", "steps": 50}),
    "ddim-50-leading": ("DDIM 50, leading", {"sampler": "ddim", "steps": 50, "discretization": "leading"}),
    "ddim-50-noclip": ("DDIM 50, trailing, x̂_0 not clipped", {"sampler": "ddim", "steps": 50, "clip": False}),
    "ddim-50-classes": ("DDIM 50, trailing, class-conditional (class i mod 10)",
                        {"sampler": "ddim", "steps": 50, "classes": list(range(10))}),
    "ddim-50-cfg1": ("DDIM 50, trailing, CFG w = 1 (class i mod 10)",
                     {"sampler": "ddim", "steps": 50, "classes": list(range(10)), "guidance": "cfg", "scale": 1.0}),
    "ddim-10": ("DDIM 10, trailing", {"sampler": "ddim", "steps": 10}),
    "dpmpp_2m-10": ("DPM-Solver++(2M) 10, trailing", {"sampler": "dpmpp_2m", "steps": 10}),
    "unipc-10": ("UniPC 10, trailing", {"sampler": "unipc", "steps": 10}),
    "ddpm-100": ("DDPM (ancestral) 100, trailing", {"sampler": "ddpm", "steps": 100}),
}
MODELS = ("mnist", "fashion-mnist")
BATCH = 250


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def draw(run, setting: dict, num: int) -> torch.Tensor:
    """``num`` samples in data coordinates, sample i from generator seed i (the same noise in every setting)."""
    setting = dict(setting)
    clip = setting.pop("clip", None)
    old = run.denoiser.clip_x0
    if clip is False:
        run.denoiser.clip_x0 = None
    try:
        out = []
        for start in range(0, num, BATCH):
            n = min(BATCH, num - start)
            gens = [torch.Generator().manual_seed(start + i) for i in range(n)]
            classes = setting.get("classes")
            kw = dict(setting)
            if classes:  # sample start + i gets class (start + i) mod 10, whatever the batching
                kw["classes"] = [classes[(start + i) % len(classes)] for i in range(n)]
            out.append(run.sample(n, generator=gens, **kw))
        return torch.cat(out)
    finally:
        run.denoiser.clip_x0 = old


def measure(model: str, name: str, num: int, pictures: Path | None) -> dict:
    import difflab
    from difflab.metrics.failures import failed, failed_share
    from difflab.plotting import save_image_grid

    run = difflab.load(model)
    t0 = time.perf_counter()
    x = draw(run, SETTINGS[name][1], num)
    seconds = time.perf_counter() - t0
    out = failed_share(x, model)
    out["seconds"] = seconds
    if pictures is not None:
        mask = failed(x, model)["failed"]
        bad = x[mask][:64]
        if len(bad):
            out["picture"] = save_image_grid(bad, pictures / f"failed_samples_{model}_{name}.png", nrow=16).name
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--settings", default=",".join(SETTINGS))
    p.add_argument("--num", type=int, default=1000)
    p.add_argument("--cache", type=Path, default=Path("runs/failed_samples.json"))
    args = p.parse_args()
    models, names = args.models.split(","), args.settings.split(",")
    unknown = [n for n in names if n not in SETTINGS] + [m for m in models if m not in MODELS]
    if unknown:
        raise SystemExit(f"unknown setting or model {unknown[0]!r}; settings: {', '.join(SETTINGS)}; models: "
                         f"{', '.join(MODELS)}")
    cache = json.loads(args.cache.read_text()) if args.cache.is_file() else {}
    full = args.num >= 1000 and set(names) == set(SETTINGS) and set(models) == set(MODELS)
    start = time.perf_counter()
    for model in models:
        for name in names:
            key = f"{model}/{name}/{args.num}"
            if key not in cache:
                log(f"{model}: {SETTINGS[name][0]} ...")
                cache[key] = measure(model, name, args.num, RESULTS if full and name == "ddim-50" else None)
                args.cache.parent.mkdir(parents=True, exist_ok=True)
                args.cache.write_text(json.dumps(cache, indent=1))
            r = cache[key]
            log(f"{model:>13} {name:<16} failed {100 * r['failed']:5.1f}% "
                f"[{100 * r['failed 95% low']:.1f}, {100 * r['failed 95% high']:.1f}]  unsure {r['unsure']}, "
                f"brightness {r['brightness']}  ({r['seconds']:.0f} s)")
    rows = ["| model | setting | failed | 95% interval | judge unsure | brightness out of range | seconds |",
            "|---|---|---:|---:|---:|---:|---:|"]
    for model in models:
        for name in names:
            r = cache[f"{model}/{name}/{args.num}"]
            rows.append(f"| {model} | {SETTINGS[name][0]} | {100 * r['failed']:.1f}% | {100 * r['failed 95% low']:.1f}–"
                        f"{100 * r['failed 95% high']:.1f}% | {r['unsure']} | {r['brightness']} | {r['seconds']:.0f} |")
    print("\n".join(rows))
    if full:
        lines = [f"N = {args.num} samples per cell, sample i from noise seed i in every setting; failed = judge "
                 "confidence < 0.5 or mean intensity outside the training images' 0.1–99.9 percentile range "
                 "(`difflab.metrics.failures`); 95% Wilson intervals. CPU, 2 cores; "
                 f"{(time.perf_counter() - start) / 60:.0f} min for the cells not already measured.", "", *rows]
        write_table("failed_samples.md", "Failed samples of the shipped models per sampler and setting", lines)


if __name__ == "__main__":
    main()
