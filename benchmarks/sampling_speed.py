"""Sampling throughput on CPU: difflab's DDIM against diffusers' ``DDIMPipeline`` with the same U-Net, and what
difflab's malloc set-up (:mod:`difflab.malloc`) buys.

The network is the shipped ``mnist`` model's U-Net (1.1 M parameters, 28×28×1) without its class embedding, so
that diffusers' unconditional ``DDIMPipeline`` can run it: difflab's weights are copied into a ``UNet2DModel``
(:func:`difflab.formats.diffusers.unet_weights`) and the two networks are checked to compute the same function
before anything is timed. Four configurations, each timed in a process of its own (glibc's malloc settings belong
to a process), interleaved over the repetitions:

* **difflab** as it runs by default (``import difflab`` raises glibc's mmap and trim thresholds);
* **difflab, glibc default** (``DIFFLAB_MALLOC=default``);
* **diffusers** ``DDIMPipeline`` as users run it (a process that never imports difflab);
* **diffusers, thresholds raised** by glibc's own environment variables (``MALLOC_MMAP_THRESHOLD_``,
  ``MALLOC_TRIM_THRESHOLD_``), to show how much of the gap is the allocator.

Each process samples one batch of 256 from the same kind of noise at the given number of network evaluations
(DDIM, η = 0, x̂_0 clipped as the shipped model samples) after one untimed warm-up batch, and reports wall seconds
and the CPU seconds it spent in user and kernel mode (``getrusage``). Images per second = 256 / wall seconds.

    python benchmarks/sampling_speed.py             # 3 repetitions at 10 and 50 evaluations (about 12 minutes)
    python benchmarks/sampling_speed.py --quick     # 1 repetition at 2 evaluations, batch 32, writes nothing

diffusers is needed (the ``diffusers`` extra); it is imported with ``HF_HUB_OFFLINE=1``: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"

RAISED = str(1 << 30)  # the thresholds difflab.malloc sets, for the diffusers process's environment
CONFIGS = {
    "difflab": ("difflab", {}),
    "difflab, glibc default": ("difflab", {"DIFFLAB_MALLOC": "default"}),
    "diffusers DDIMPipeline": ("diffusers", {}),
    "diffusers DDIMPipeline, thresholds raised": ("diffusers", {"MALLOC_MMAP_THRESHOLD_": RAISED,
                                                                "MALLOC_TRIM_THRESHOLD_": RAISED}),
}


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------------------ the model
def write_models(folder: Path) -> dict:
    """The shipped mnist U-Net without its class embedding, as difflab weights (``difflab.safetensors`` +
    ``difflab.json``) and as a diffusers folder (``unet/``, ``scheduler/``); returns the equivalence check."""
    import torch
    from safetensors.torch import save_file

    import difflab
    from difflab.formats.diffusers import WEIGHTS, scheduler_config, unet_config, unet_weights
    from difflab.models import build_model

    run = difflab.load("mnist")
    config = json.loads(json.dumps(run.config))
    config["model"]["num_classes"] = None
    state = {k: v for k, v in run.model.state_dict().items() if not k.startswith("class_embed")}
    net = build_model(config["model"]).eval()
    net.load_state_dict(state, strict=True)
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "difflab.safetensors"))
    (folder / "difflab.json").write_text(json.dumps(config))
    (folder / "unet").mkdir()
    (folder / "scheduler").mkdir()
    save_file(unet_weights(config["model"], state), str(folder / "unet" / WEIGHTS))
    unet = {k: v for k, v in unet_config(config["model"]).items()}
    (folder / "unet" / "config.json").write_text(json.dumps(unet))
    (folder / "scheduler" / "scheduler_config.json").write_text(
        json.dumps(scheduler_config(config["diffusion"], config["sample"])))

    from diffusers import UNet2DModel
    theirs = UNet2DModel.from_pretrained(str(folder / "unet"), low_cpu_mem_usage=False).eval()
    g = torch.Generator().manual_seed(0)
    x, t = torch.randn(16, 1, 28, 28, generator=g), torch.randint(1, 1001, (16,), generator=g)
    with torch.no_grad():
        a, b = net(x, t.float()), theirs(x, t - 1).sample  # diffusers' timestep k is difflab's t = k + 1
    return {"max_difference": float((a - b).abs().max()), "max_output": float(a.abs().max()),
            "parameters": sum(p.numel() for p in net.parameters()), "step": run.step}


# ------------------------------------------------------------------------------------------------ one timing
def _usage() -> tuple[float, float]:
    u = resource.getrusage(resource.RUSAGE_SELF)
    return u.ru_utime, u.ru_stime


def child(library: str, folder: Path, nfe: int, batch: int) -> dict:
    """Sample one warm-up batch and one timed batch of ``batch`` at ``nfe`` evaluations in this process."""
    import torch

    torch.set_num_threads(os.cpu_count() or 1)
    if library == "difflab":
        from safetensors.torch import load_file

        import difflab
        from difflab.denoiser import build_denoiser
        from difflab.models import build_model

        config = json.loads((folder / "difflab.json").read_text())
        net = build_model(config["model"]).eval()
        net.load_state_dict(load_file(str(folder / "difflab.safetensors")))
        den = build_denoiser(net, config)

        def draw(n: int, seed: int):
            return difflab.sample(den, (batch, 1, 28, 28), sampler="ddim", steps=n, eta=0.0,
                                  generator=torch.Generator().manual_seed(seed))
        tuned = difflab.malloc.applied()
    else:
        from diffusers import DDIMPipeline, DDIMScheduler, UNet2DModel

        unet = UNet2DModel.from_pretrained(str(folder / "unet"), low_cpu_mem_usage=False).eval()
        scheduler = DDIMScheduler.from_pretrained(str(folder / "scheduler"))
        pipe = DDIMPipeline(unet=unet, scheduler=scheduler)
        pipe.set_progress_bar_config(disable=True)

        def draw(n: int, seed: int):
            return pipe(batch_size=batch, num_inference_steps=n, eta=0.0, output_type="np",
                        generator=torch.Generator().manual_seed(seed)).images
        tuned = "MALLOC_MMAP_THRESHOLD_" in os.environ
    with torch.no_grad():
        draw(min(nfe, 2), 0)
        u0, s0, t0 = *_usage(), time.perf_counter()
        draw(nfe, 1)
        wall = time.perf_counter() - t0
        u1, s1 = _usage()
    return {"wall": wall, "user": u1 - u0, "sys": s1 - s0, "malloc_raised": bool(tuned)}


def time_config(name: str, folder: Path, nfe: int, batch: int) -> dict:
    library, env = CONFIGS[name]
    full = {k: v for k, v in os.environ.items()
            if k not in {"DIFFLAB_MALLOC", "MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_"}} | env
    cmd = [sys.executable, __file__, "--child", library, "--folder", str(folder), "--nfe", str(nfe),
           "--batch", str(batch)]
    out = subprocess.run(cmd, env=full, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{name} at {nfe} evaluations failed:\n{out.stderr[-2000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------------------ the table
def table(results: dict, nfes: list[int], batch: int) -> list[str]:
    rows = ["| evaluations | configuration | images/s (median) | range | image-evaluations/s | CPU in kernel | "
            "difflab / this |", "|---:|---|---:|---:|---:|---:|---:|"]
    for nfe in nfes:
        ips = {name: [batch / r["wall"] for r in results[(name, nfe)]] for name in CONFIGS}
        ours = statistics.median(ips["difflab"])
        for name in CONFIGS:
            runs = results[(name, nfe)]
            med = statistics.median(ips[name])
            kernel = sum(r["sys"] for r in runs) / sum(r["sys"] + r["user"] for r in runs)
            ratio = "—" if name == "difflab" else f"**{ours / med:.2f}**" if name == "diffusers DDIMPipeline" \
                else f"{ours / med:.2f}"
            rows.append(f"| {nfe} | {name} | {med:.1f} | {min(ips[name]):.1f}–{max(ips[name]):.1f} | "
                        f"{med * nfe:.0f} | {100 * kernel:.0f}% | {ratio} |")
    return rows


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="1 repetition at 2 evaluations, batch 32; writes nothing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--child", choices=["difflab", "diffusers"], help=argparse.SUPPRESS)
    p.add_argument("--folder", type=Path, help=argparse.SUPPRESS)
    p.add_argument("--nfe", type=int, default=10, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=256, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        print(json.dumps(child(args.child, args.folder, args.nfe, args.batch)))
        return

    nfes, batch, repeats = ([2], 32, 1) if args.quick else ([10, 50], 256, args.repeats)
    start = time.perf_counter()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        check = write_models(folder)
        log(f"same function: outputs differ by at most {check['max_difference']:.2e} (outputs up to "
            f"{check['max_output']:.2f})")
        results = {(name, nfe): [] for name in CONFIGS for nfe in nfes}
        names = list(CONFIGS)
        for rep in range(repeats):
            for nfe in nfes:
                for name in names[rep % len(names):] + names[:rep % len(names)]:  # the starting row rotates
                    r = time_config(name, folder, nfe, batch)
                    results[(name, nfe)].append(r)
                    log(f"[{rep + 1}/{repeats}] {nfe:>3} evaluations  {name:<44} {batch / r['wall']:7.1f} images/s "
                        f"(kernel {100 * r['sys'] / (r['sys'] + r['user']):.0f}% of CPU, malloc raised: "
                        f"{r['malloc_raised']})")
    rows = table(results, nfes, batch)
    if args.quick:
        print("\n".join(rows))
        return
    import platform

    import diffusers
    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from _common import write_table

    lines = [
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, glibc {platform.libc_ver()[1]}, torch "
        f"{torch.__version__}, diffusers {diffusers.__version__}, Python {platform.python_version()}; 1-minute load "
        f"average {load:.1f} at the start and {os.getloadavg()[0]:.1f} at the end. Whole run: "
        f"{time.perf_counter() - start:.0f} s.",
        "",
        f"Model: the shipped `mnist` U-Net (step {check['step']}, {check['parameters']:,} parameters) without its "
        f"class embedding; the same weights in a diffusers `UNet2DModel` give outputs within "
        f"{check['max_difference']:.1e} of difflab's (outputs up to {check['max_output']:.2f}). DDIM, η = 0, x̂_0 "
        f"clipped to [−1, 1], batch {batch}, float32, all cores. Each cell: {repeats} repetitions, each one batch "
        "timed in a fresh process after one untimed warm-up batch, the configurations interleaved (the starting "
        "row rotating). 'CPU in kernel': system time / (user + system) over the repetitions (getrusage). "
        "'difflab / this' > 1 means difflab is faster; the bold ratio is the headline, each library as its users "
        "run it.",
        "",
        *rows,
    ]
    write_table("sampling_speed.md", "Sampling throughput on CPU: difflab DDIM vs diffusers DDIMPipeline, same U-Net",
                lines)


if __name__ == "__main__":
    main()
