"""Quality per CPU-hour: MNIST trained for 30 and 60 minutes of wall clock on this machine by (a) difflab's recipe
and (b) the recipe users copy from diffusers' `train_unconditional.py` example, then scored the same way.

(a) **difflab**: `difflab train mnist` (the shipped preset: U-Net of 1.1 M parameters, cosine schedule, ε, AdamW
    5e-4 with 500 warm-up steps, batch 128, EMA 0.999, label dropout 0.1; post-hoc EMA snapshots kept beside it)
    with `--max-minutes`, then
    `difflab fit-gaussian`; sampled unconditionally (null label) with the model's recorded setting at 50 evaluations
    (DDPM 50 from the Gaussian start σ̃ = 5) and with UniPC 10 from the Gaussian start at 10.
(a') **difflab, best recipe**: the formulations benchmark's best at equal compute
    (``benchmarks/results/formulations_mnist.md``): `difflab train mnist-flow` with `diffusion: {ot_pairing: true}`
    (flow matching with minibatch OT pairing, the same U-Net, optimizer and batch), sampled from pure noise with
    that benchmark's choices, DPM-Solver++(2M) 10 and Heun 25 (50 evaluations). This is the headline's difflab row.
(b) **diffusers**: a `UNet2DModel` of the same size and layout (:func:`difflab.formats.diffusers.unet_config`,
    unconditional), `DDPMScheduler(num_train_timesteps=1000)` (linear β, ε), AdamW(1e-4, betas (0.95, 0.999),
    weight decay 1e-6), a cosine learning rate with 500 warm-up steps over the steps the 60 minutes allow (measured
    on the first steps), gradient clipping at 1, `EMAModel(inv_gamma=1, power=3/4, decay=0.9999)`, batch 16 (the
    example's defaults), images in [−1, 1]; sampled with `DDIMPipeline` at 10 and 50 steps, η = 0.

Two ablations at 10 evaluations separate training from sampling: the preset's network with plain DDIM (trailing
steps, no Gaussian start), and diffusers' network, saved as a diffusers folder that difflab loads, drawn with the
preset's own sampler (UniPC 10 from the Gaussian start): the fair comparison of the two training recipes.

Both train on the same 60,000 MNIST training images, one process at a time, with the wall clock measured around
the whole training call (data loading and checkpoints included). Every stage is kept in ``--runs`` and resumes, so
the benchmark can span sessions: ``--stage train`` trains up to the next time point, ``--stage eval`` scores what is
trained, ``--stage table`` writes the table from what is scored.

Scores: FD in the MNIST judge's features of ``--num`` samples (≥ 5,000) against as many test images, with the
bootstrap interval and the real-vs-real floor at the same N, and the failed-sample share
(:mod:`difflab.metrics.failures`).

    python benchmarks/time_to_quality.py --stage train       # the next 30 minutes of each recipe
    python benchmarks/time_to_quality.py --stage eval        # score every trained time point not yet scored
    python benchmarks/time_to_quality.py --stage table       # results/time_to_quality.md
    python benchmarks/time_to_quality.py --quick             # 0.5 minute per recipe, 200 samples: a smoke test
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

import torch

os.environ["HF_HUB_OFFLINE"] = "1"
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402

POINTS = (30, 60)  # minutes of training wall clock at which each recipe is scored
POSTHOC = {"posthoc_ema": [0.05, 0.1], "posthoc_every": 250}
#: difflab's recipes: the config trained, and at each budget the sampler, its steps and the Gaussian start σ̃ (0: none)
DIFFLAB = {
    "difflab": {"label": "difflab, mnist preset (ε)", "config": {"preset": "mnist", "train": POSTHOC},
                "sample": {10: ("unipc", 10, 5.0), 50: ("ddpm", 50, 5.0)}},
    # the formulations benchmark's best (benchmarks/results/formulations_mnist.md), with its samplers there
    "difflab-flow": {"label": "difflab, flow + OT pairing",
                     "config": {"preset": "mnist-flow", "diffusion": {"ot_pairing": True}, "train": POSTHOC},
                     "sample": {10: ("dpmpp_2m", 10, 0.0), 50: ("heun", 25, 0.0)}},
}
RECIPES = (*DIFFLAB, "diffusers")
BEST = "difflab-flow"  # the headline's difflab recipe


# ---------------------------------------------------------------------------------------------------- ledger
def ledger(runs: Path) -> dict:
    path = runs / "ledger.json"
    return json.loads(path.read_text()) if path.exists() else {}


def save_ledger(runs: Path, data: dict) -> None:
    from difflab.io import write_json
    write_json(runs / "ledger.json", data)


# ---------------------------------------------------------------------------------------------------- (a) difflab
def train_difflab(runs: Path, recipe: str, minutes: float, point: int) -> dict:
    """Train ``recipe`` for ``minutes`` more (resuming), and keep its EMA weights as the model at ``point``."""
    from difflab import pretrained
    from difflab.config import resolve
    from difflab.training.diffusion import train

    run = runs / recipe
    t0 = time.perf_counter()
    # post-hoc EMA snapshots (1.5% of the step time, benchmarks/results/posthoc_ema.md) keep the EMA length open
    train(resolve(DIFFLAB[recipe]["config"]), run, resume=run.exists(), max_minutes=minutes, steps=10**6, progress=True)
    wall = time.perf_counter() - t0
    out = runs / f"{recipe}-{point}min"
    if out.exists():
        import shutil
        shutil.rmtree(out)
    pretrained.export(run, out, notes=f"time_to_quality: {point} minutes")
    step = json.loads((out / "model.json").read_text())["step"]
    return {"wall": wall, "step": step}


def fit_gaussian(model_dir: Path) -> None:
    """`difflab fit-gaussian` for the model in ``model_dir``: the training images' Gaussian the sampling starts from."""
    from difflab.data import load_dataset
    from difflab.data_gaussian import FILE, RANK, DataGaussian
    from difflab.run import load

    if not (model_dir / FILE).exists():
        run = load(model_dir)
        data = load_dataset("mnist", split="train").data
        DataGaussian.fit(run.normalization.to_model(data), rank=RANK).save(model_dir / FILE)


def sampler_label(recipe: str, nfe: int) -> str:
    if recipe not in DIFFLAB:
        return f"DDIMPipeline {nfe}"
    name, steps, start = DIFFLAB[recipe]["sample"][nfe]
    return f"{name} {steps}" + (" from the Gaussian start" if start else "")


def difflab_samples(model_dir: Path, setting: tuple[str, int, float], num: int) -> torch.Tensor:
    """``num`` samples of the model in ``model_dir`` (a difflab model or a diffusers folder) with ``setting`` =
    (sampler, steps, Gaussian start σ̃ or 0), fitting the data's Gaussian first where the setting starts from it."""
    from difflab.random import per_sample_generators
    from difflab.run import load

    sampler, steps, start = setting
    if start:
        fit_gaussian(model_dir)
    run = load(model_dir)
    out = []
    for lo in range(0, num, 500):
        n = min(500, num - lo)
        out.append(run.sample(n, generator=per_sample_generators(0, lo, n, num), gaussian_start=start,
                              sampler=sampler, steps=steps))
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------- (b) diffusers
def _diffusers_parts():
    from difflab.config import resolve
    from difflab.formats.diffusers import unet_config

    model = dict(resolve("mnist")["model"])
    model["num_classes"] = None
    config = {k: v for k, v in unet_config(model).items() if not k.startswith("_")}
    return config


def train_diffusers(runs: Path, minutes: float, point: int, total_minutes: float) -> dict:
    """The example's loop for ``minutes`` more, resumable: weights, EMA, optimizer, scheduler and generators are
    kept as safetensors + JSON in ``runs/diffusers``; the EMA weights at ``point`` go to ``runs/diffusers-<point>min``."""
    from diffusers import DDPMScheduler, UNet2DModel
    from diffusers.optimization import get_cosine_schedule_with_warmup
    from diffusers.training_utils import EMAModel
    from safetensors.torch import load_file, save_file

    from difflab.data import load_dataset
    from difflab.io import atomic_path, write_json
    from difflab.training.state import flatten_optimizer, unflatten_optimizer

    run = runs / "diffusers"
    run.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(0)
    unet = UNet2DModel(**_diffusers_parts())
    scheduler = DDPMScheduler(num_train_timesteps=1000)
    opt = torch.optim.AdamW(unet.parameters(), lr=1e-4, betas=(0.95, 0.999), weight_decay=1e-6, eps=1e-8)
    ema = EMAModel(unet.parameters(), decay=0.9999, use_ema_warmup=True, inv_gamma=1.0, power=3 / 4)
    x_all = load_dataset("mnist", split="train").data * 2 - 1  # [0, 1] -> [-1, 1], as Normalize([0.5], [0.5])
    gen = torch.Generator().manual_seed(0)
    state_path = run / "state.json"
    t_start = time.perf_counter()
    if state_path.exists():
        state = json.loads(state_path.read_text())
        tensors = load_file(str(run / "state.safetensors"))
        unet.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("model.")})
        for p, k in zip(ema.shadow_params, sorted((k for k in tensors if k.startswith("ema.")), key=lambda k: int(k[4:]))):
            p.copy_(tensors[k])
        ema.optimization_step = state["ema_step"]
        opt.load_state_dict(unflatten_optimizer(tensors, state["param_groups"]))
        gen.set_state(tensors["rng"])
        step, total_steps = state["step"], state["total_steps"]
    else:
        step, total_steps = 0, None
    batch = 16
    if total_steps is None:  # the cosine schedule's length: the steps the whole budget allows, from 20 timed steps
        t0 = time.perf_counter()
        probe = UNet2DModel(**_diffusers_parts())
        popt = torch.optim.AdamW(probe.parameters(), lr=1e-4)
        for _ in range(20):
            x = x_all[:batch]
            loss = torch.nn.functional.mse_loss(probe(x, torch.zeros(batch, dtype=torch.long)).sample, x)
            loss.backward()
            popt.step()
            popt.zero_grad()
        total_steps = int(total_minutes * 60 / ((time.perf_counter() - t0) / 20))
        del probe, popt
    lr_sched = get_cosine_schedule_with_warmup(opt, num_warmup_steps=500, num_training_steps=total_steps)
    import warnings
    with warnings.catch_warnings():  # fast-forwarding the schedule to the resumed step
        warnings.simplefilter("ignore", UserWarning)
        for _ in range(step):
            lr_sched.step()
    unet.train()
    deadline = time.perf_counter() + 60 * minutes - (time.perf_counter() - t_start)
    from tqdm import tqdm
    bar = tqdm(desc="diffusers recipe", unit="step", initial=step)
    perm, pos = torch.randperm(len(x_all), generator=gen), 0
    while time.perf_counter() < deadline:
        if pos + batch > len(perm):
            perm, pos = torch.randperm(len(x_all), generator=gen), 0
        clean = x_all[perm[pos:pos + batch]]
        pos += batch
        noise = torch.randn(clean.shape, generator=gen)
        timesteps = torch.randint(0, 1000, (batch,), generator=gen)
        noisy = scheduler.add_noise(clean, noise, timesteps)
        loss = torch.nn.functional.mse_loss(unet(noisy, timesteps).sample, noise)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(unet.parameters(), 1.0)
        opt.step()
        lr_sched.step()
        ema.step(unet.parameters())
        opt.zero_grad(set_to_none=True)
        step += 1
        bar.update(1)
        if step % 100 == 0:
            bar.set_postfix(loss=f"{loss.item():.4f}")
    bar.close()
    opt_tensors, groups = flatten_optimizer(opt)
    tensors = {**{f"model.{k}": v for k, v in unet.state_dict().items()},
               **{f"ema.{i}": p.detach().clone() for i, p in enumerate(ema.shadow_params)}, **opt_tensors,
               "rng": gen.get_state()}
    with atomic_path(run / "state.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in tensors.items()}, str(tmp))
    write_json(state_path, {"step": step, "total_steps": total_steps, "ema_step": ema.optimization_step,
                            "param_groups": groups})
    out = runs / f"diffusers-{point}min"
    out.mkdir(exist_ok=True)
    ema.copy_to(unet.parameters())
    with atomic_path(out / "unet.safetensors") as tmp:
        save_file({k: v.contiguous() for k, v in unet.state_dict().items()}, str(tmp))
    write_json(out / "info.json", {"step": step, "total_steps": total_steps})
    return {"wall": time.perf_counter() - t_start, "step": step, "total_steps": total_steps}


def diffusers_folder(runs: Path, point: int) -> Path:
    """diffusers' EMA network at ``point`` saved as a diffusers pipeline folder (`DDIMPipeline.save_pretrained`), which
    difflab loads like its own models: the fair row samples diffusers' training with difflab's sampler."""
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel
    from safetensors.torch import load_file

    out = runs / f"diffusers-{point}min" / "pipeline"
    if not (out / "model_index.json").exists():
        unet = UNet2DModel(**_diffusers_parts())
        unet.load_state_dict(load_file(str(runs / f"diffusers-{point}min" / "unet.safetensors")))
        scheduler = DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=1000).config)
        DDIMPipeline(unet=unet, scheduler=scheduler).save_pretrained(str(out), safe_serialization=True)
    return out


def diffusers_samples(runs: Path, point: int, nfe: int, num: int) -> torch.Tensor:
    from diffusers import DDIMPipeline, DDIMScheduler, DDPMScheduler, UNet2DModel
    from safetensors.torch import load_file

    unet = UNet2DModel(**_diffusers_parts())
    unet.load_state_dict(load_file(str(runs / f"diffusers-{point}min" / "unet.safetensors")))
    pipe = DDIMPipeline(unet=unet.eval(), scheduler=DDIMScheduler.from_config(DDPMScheduler(num_train_timesteps=1000).config))
    pipe.set_progress_bar_config(disable=True)
    out = []
    from tqdm import tqdm
    for lo in tqdm(range(0, num, 500), desc=f"diffusers DDIM {nfe}"):
        n = min(500, num - lo)
        with torch.no_grad():
            images = pipe(batch_size=n, num_inference_steps=nfe, eta=0.0, output_type="np",
                          generator=torch.Generator().manual_seed(lo)).images
        out.append(torch.from_numpy(images).permute(0, 3, 1, 2).float())
    return torch.cat(out)


# ---------------------------------------------------------------------------------------------------- stages
def stage_train(runs: Path, minutes_per_point: dict, book: dict) -> None:
    for recipe in RECIPES:
        done = book.setdefault(recipe, {"minutes": 0.0, "points": {}})
        point = next((p for p in POINTS if str(p) not in done["points"]), None)
        if point is None:
            print(f"{recipe}: every time point is trained")
            continue
        more = minutes_per_point[point] - done["minutes"]
        print(f"== {recipe}: training {more:.1f} more minutes, to the {point}-minute point ==", flush=True)
        if recipe in DIFFLAB:
            r = train_difflab(runs, recipe, more, point)
        else:
            r = train_diffusers(runs, more, point, minutes_per_point[POINTS[-1]])
        done["minutes"] += r["wall"] / 60
        done["points"][str(point)] = {"minutes": done["minutes"], "step": r["step"],
                                      "images": r["step"] * (128 if recipe in DIFFLAB else 16)}
        save_ledger(runs, book)


def stage_eval(runs: Path, num: int, book: dict) -> None:
    from difflab.evaluate import evaluate_samples

    for nfe in (10, 50):  # the cheap budget first, for both recipes
        for recipe in RECIPES:
            for point, info in book.get(recipe, {}).get("points", {}).items():
                key = f"nfe{nfe}"
                if key in info:
                    continue
                t0 = time.perf_counter()
                if recipe in DIFFLAB:
                    x = difflab_samples(runs / f"{recipe}-{point}min", DIFFLAB[recipe]["sample"][nfe], num)
                else:
                    x = diffusers_samples(runs, int(point), nfe, num)
                seconds = time.perf_counter() - t0
                s = evaluate_samples(x.clamp(0, 1), "mnist", "fd,failed", num_ref=num)
                info[key] = {k: s[k] for k in s if k.startswith(("FD", "failed"))} | {
                    "sample_seconds": seconds, "num": num}
                save_ledger(runs, book)
                print(recipe, point, key, info[key], flush=True)
    # the ablations at 10 evaluations: the preset's network with plain DDIM (difflab's training without its sampler),
    # and diffusers' network with the preset's sampler (diffusers' training with difflab's sampler: the fair row)
    ablations = [("difflab", "ddim10_plain", lambda p: difflab_samples(runs / f"difflab-{p}min", ("ddim", 10, 0.0), num)),
                 ("diffusers", "difflab_sampler10",
                  lambda p: difflab_samples(diffusers_folder(runs, p), DIFFLAB["difflab"]["sample"][10], num))]
    for recipe, key, draw in ablations:
        for point, info in book.get(recipe, {}).get("points", {}).items():
            if key not in info:
                t0 = time.perf_counter()
                x = draw(int(point))
                seconds = time.perf_counter() - t0
                s = evaluate_samples(x.clamp(0, 1), "mnist", "fd,failed", num_ref=num)
                info[key] = {k: s[k] for k in s if k.startswith(("FD", "failed"))} | {
                    "sample_seconds": seconds, "num": num}
                save_ledger(runs, book)
                print(recipe, point, key, info[key], flush=True)


def ablation_lines(book: dict, recipe: str, key: str, other: str, compare) -> list[str]:
    """One line per time point for the ablation ``key`` of ``recipe``, with ``compare(its FD, other's 10-NFE FD)``."""
    fd, failed, out = "FD[mnist-classifier]", "failed[mnist-classifier]", []
    for point in POINTS:
        s = book.get(recipe, {}).get("points", {}).get(str(point), {}).get(key)
        o = book.get(other, {}).get("points", {}).get(str(point), {}).get("nfe10")
        if s is not None:
            out.append(f"* {point} min: FD {s[fd]:.2f} [{s[fd + ' 95% low']:.2f}, {s[fd + ' 95% high']:.2f}], "
                       f"{100 * s[failed]:.1f}% failed" + (compare(s[fd], o[fd]) if o else ""))
    return out


def stage_table(runs: Path, book: dict, quick: bool) -> None:
    fd = "FD[mnist-classifier]"
    failed = "failed[mnist-classifier]"
    lines = ["MNIST, one process at a time on this 2-core CPU. Minutes: training wall clock, measured around the "
             "whole training call. FD in the MNIST judge's features of N samples against N test images [95% "
             "bootstrap interval]; floor: FD of N real training images against the same test images (mean ± sd "
             "over 10 draws). Failed: judge confidence < 0.5 or a brightness no real image has.", "",
             "| recipe | minutes | steps | images seen | NFE | sampler | N | FD | floor | failed | sampling s |",
             "|---|---:|---:|---:|---:|---|---:|---:|---:|---:|---:|"]
    ratios = []
    for point in POINTS:
        for nfe in (10, 50):
            row = {}
            for recipe in RECIPES:
                info = book.get(recipe, {}).get("points", {}).get(str(point), {})
                s = info.get(f"nfe{nfe}")
                sampler, label = sampler_label(recipe, nfe), DIFFLAB.get(recipe, {}).get("label", recipe)
                if s is None:
                    trained = f"{info['minutes']:.1f} | {info['step']:,} | {info['images']:,}" if info else \
                        f"{point} (not trained yet) | – | –"
                    lines.append(f"| {label} | {trained} | {nfe} | {sampler} | – | not scored yet | – | – | – |")
                    continue
                row[recipe] = s[fd]
                lines.append(f"| {label} | {info['minutes']:.1f} | {info['step']:,} | {info['images']:,} | {nfe} | "
                             f"{sampler} | {s['num']:,} | {s[fd]:.2f} [{s[fd + ' 95% low']:.2f}, "
                             f"{s[fd + ' 95% high']:.2f}] | {s.get(fd + ' floor', float('nan')):.2f} ± "
                             f"{s.get(fd + ' floor sd', float('nan')):.2f} | {100 * s[failed]:.1f}% | "
                             f"{s['sample_seconds']:.0f} |")
            for recipe in DIFFLAB:
                if recipe in row and "diffusers" in row:
                    ratios.append((point, nfe, recipe, row[recipe] / row["diffusers"]))
    lines += ["", f"Target: difflab's FD at equal wall clock at most half of diffusers' (ratio ≤ 0.5); the headline is "
              f"difflab's best recipe ({DIFFLAB[BEST]['label']}), the preset's row shows where it stood before."]
    for point, nfe, recipe, r in ratios:
        lines.append(f"* {point} min, {nfe} evaluations: {DIFFLAB[recipe]['label']} / diffusers FD = {r:.2f} "
                     f"({'met' if r <= 0.5 else 'not met'}){' (headline)' if recipe == BEST else ''}")
    if not ratios:
        lines.append("* no time point is scored for both recipes yet.")
    lines += ["", "Ablation, the sampler: the mnist preset's network drawn with plain DDIM 10 (trailing steps, no Gaussian "
              "start), beside diffusers' DDIMPipeline 10 (leading steps):"]
    lines += ablation_lines(book, "difflab", "ddim10_plain", "diffusers", lambda s, o: f"; ratio to diffusers {s / o:.2f}")
    lines += ["", f"The fair row, the training recipes at equal sampler: diffusers' network (saved as a diffusers "
              f"folder, which difflab loads) drawn with the preset's {sampler_label('difflab', 10)}, beside the "
              "preset's network with the same sampler:"]
    lines += ablation_lines(book, "diffusers", "difflab_sampler10", "difflab",
                            lambda s, o: f"; the preset's network / this = {o / s:.2f}")
    if not quick:
        write_table("time_to_quality.md", "Quality per CPU-hour: difflab's recipe against diffusers' example", lines)
    else:
        print("\n".join(lines))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", default="runs/time_to_quality")
    p.add_argument("--stage", default="all", choices=["train", "eval", "table", "all"])
    p.add_argument("--num", type=int, default=5000)
    p.add_argument("--quick", action="store_true", help="0.5 and 1 minute, 200 samples, into --runs/quick; writes no table")
    a = p.parse_args()
    runs = Path(a.runs) / ("quick" if a.quick else "")
    minutes = {POINTS[0]: 0.5, POINTS[1]: 1.0} if a.quick else {p: float(p) for p in POINTS}
    num = 200 if a.quick else a.num
    runs.mkdir(parents=True, exist_ok=True)
    book = ledger(runs)
    if a.stage in ("train", "all"):
        stage_train(runs, minutes, book)
    if a.stage in ("eval", "all"):
        stage_eval(runs, num, book)
    if a.stage in ("table", "all"):
        stage_table(runs, book, a.quick)


if __name__ == "__main__":
    main()
