"""Training formulations at equal training compute, judged against the real-vs-real floor, per network-evaluation
budget: DDPM-ε (today's preset), v-prediction with zero terminal SNR, EDM, flow matching, flow matching with
minibatch OT pairing, and flow matching + reflow.

Every variant trains the same MLP for the same steps and batch on the same data, from three training seeds. At
each budget of network evaluations (NFE) every variant is sampled with the deterministic samplers that fit it,
the best one chosen on a separate selection draw, then scored on evaluation draws that the choice never saw. The
score on 8gaussians is the share of samples within 0.3 of a mode centre (3 component stds; real points: 98.9%),
and the cubic-kernel MMD² to fresh real data; each is reported beside real data's own (the floor), as the mean
over training seeds with a 95% t-interval over them (each training seed's value the mean of its evaluation draws).

    python benchmarks/formulations.py                     # 8gaussians, CPU, about 25 minutes on 2 cores
    python benchmarks/formulations.py --dataset mnist --steps 20000 --num 5000 --draws 2 --nfe 5,10,50
                                                          # the formulations issue's MNIST protocol at the preset's
                                                          # size: hours of GPU; --max-minutes, rerun

On a 2-core CPU, ``benchmarks/formulations_mnist.py`` runs the MNIST protocol at a size that trains in hours, in
resumable units (and adds bits/dim).

Reflow's row is not at equal compute: it adds the pairs' sampling and its own steps to the flow teacher's, as the
method does (Liu et al. 2023); the table says how many.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402

def _variants(base: str) -> dict:
    """The variants on one dataset: a preset and the overrides that make it the formulation (same network, data)."""
    return {
        "ddpm-eps": (base, {}),
        "v, zero terminal SNR": (base, {"diffusion": {"parameterization": "v", "schedule_params": {"zero_terminal_snr": True}}}),
        "edm": (f"{base}-edm", {}),
        "flow": (f"{base}-flow", {}),
        "flow + OT pairing": (f"{base}-flow", {"diffusion": {"ot_pairing": True}}),
    }


#: deterministic samplers tried at each budget (NFE per step 1, heun 2)
SAMPLERS = ("ddim", "dpmpp_2m", "unipc", "heun")
T_CRIT_95 = {2: 12.706, 3: 4.303, 4: 3.182, 5: 2.776}


def near_and_mmd(x: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    from difflab.data.toys import GAUSSIANS8_CENTRES
    from difflab.metrics.kid import mmd2_unbiased

    d = torch.cdist(x.double(), GAUSSIANS8_CENTRES.double()).min(1).values
    return float((d < 0.3).double().mean()), mmd2_unbiased(x.double(), real.double())


class Toy:
    """8gaussians: the share within 0.3 of a mode centre (higher is better) and MMD² to fresh real points."""

    dataset, num_train, higher_is_better = "8gaussians", 4000, True
    columns = ("within 0.3 of a centre", "MMD² (cubic kernel) to real")
    digits = (3, 5)

    def __init__(self, num: int, draws: int):
        from difflab.data import load_dataset

        self.real = [load_dataset("8gaussians", num=num, seed=5000 + d).data for d in range(draws + 1)]
        self.floor = [near_and_mmd(load_dataset("8gaussians", num=num, seed=7000 + d).data, self.real[d])
                      for d in range(draws)]

    def score(self, x: torch.Tensor, draw: int) -> tuple[float, ...]:
        return near_and_mmd(x, self.real[draw])


class Mnist:
    """MNIST: the Fréchet distance in the MNIST judge's features to the first N test images (lower is better); the
    floor is N training images against the same reference."""

    dataset, num_train, higher_is_better = "mnist", None, False
    columns = ("FD[mnist judge] to N test images",)
    digits = (2,)

    def __init__(self, num: int, draws: int):
        from difflab.data import load_dataset

        self.num = num
        self.floor = [self.score(load_dataset("mnist", split="train", num=num, seed=7000 + d).data, d)
                      for d in range(draws)]

    def score(self, x: torch.Tensor, draw: int) -> tuple[float, ...]:
        from difflab.evaluate import evaluate_samples

        r = evaluate_samples(x, "mnist", metrics="fd", num_ref=self.num, clip=True)
        return (next(v for k, v in r.items() if k.startswith("FD")),)


PROTOCOLS = {"8gaussians": Toy, "mnist": Mnist}


def t_interval(values: list[float], digits: int = 3) -> str:
    v = torch.tensor(values, dtype=torch.float64)
    if len(v) < 2:
        return f"{float(v.mean()):.{digits}f}"
    half = T_CRIT_95.get(len(v), 1.96) * float(v.std()) / math.sqrt(len(v))
    return f"{float(v.mean()):.{digits}f} ± {half:.{digits}f}"


def train_variant(variant: tuple, out: Path, steps: int, seed: int, num: int | None,
                  max_minutes: float | None = None) -> Path | None:
    """Train (or continue, or reuse) one run; None while it has not reached ``steps`` (``max_minutes`` ran out)."""
    import json

    from difflab import checkpoint
    from difflab.config import resolve
    from difflab.training.diffusion import train

    preset, override = variant
    cfg = resolve({"preset": preset, **override, "data": {"num": num},
                   "train": {**override.get("train", {}), "steps": steps, "save_every": max(1, steps // 10),
                             "sample_every": 0, "log_every": max(1, steps // 10)}, "seed": seed})
    resume = out.exists() and bool(checkpoint.list_checkpoints(out))
    if resume:
        done = json.loads((checkpoint.latest_valid(out) / "state.json").read_text())["step"]
        if done >= steps:
            return out
    train(None if resume else cfg, out, steps=steps, resume=resume, progress=True, max_minutes=max_minutes,
          log=lambda *_: None)
    done = json.loads((checkpoint.latest_valid(out) / "state.json").read_text())["step"]
    return out if done >= steps else None


def samples_at(run, sampler: str, nfe: int, num: int, seed: int, **options):
    """``num`` samples with ``nfe`` network evaluations (None when the sampler cannot spend exactly that many);
    ``options`` go to the sampler."""
    from difflab import samplers
    from difflab.errors import DifflabError

    per_step = samplers.info(sampler)["nfe_per_step"]
    steps = nfe // per_step if nfe % per_step == 0 else 0
    if steps < samplers.info(sampler)["min_steps"]:
        return None
    try:
        return run.sample(num, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(seed), **options)
    except DifflabError:  # e.g. a multistep solver after zero terminal SNR's first DDIM step, with too few left
        return None


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", default="runs/formulations", help="where the runs are trained (reused if there)")
    p.add_argument("--steps", type=int, default=5000, help="training steps of every variant (batch 512)")
    p.add_argument("--seeds", type=int, default=3, help="training seeds per variant")
    p.add_argument("--num", type=int, default=2000, help="samples per evaluation draw")
    p.add_argument("--draws", type=int, default=5, help="evaluation draws per trained model")
    p.add_argument("--nfe", default="2,5,10,50")
    p.add_argument("--reflow-steps", type=int, default=2000)
    p.add_argument("--pairs", type=int, default=8000)
    p.add_argument("--dataset", default="8gaussians", choices=sorted(PROTOCOLS),
                   help="8gaussians (CPU, minutes) or mnist (the formulations issue's protocol: a GPU job; e.g. "
                        "--steps 20000 --num 5000 --draws 2 --nfe 5,10,50)")
    p.add_argument("--max-minutes", type=float, default=None,
                   help="stop training after this long (per run); run the same command again to continue")
    a = p.parse_args()

    import difflab
    from difflab.training.reflow import reflow

    if not torch.cuda.is_available():
        torch.set_num_threads(2)
    protocol = PROTOCOLS[a.dataset]
    variants = _variants(a.dataset)
    budgets = [int(v) for v in a.nfe.split(",")]
    root = Path(a.out) / a.dataset
    t0 = time.perf_counter()
    runs: dict[str, list[Path]] = {}
    for name, variant in variants.items():
        runs[name] = [train_variant(variant, root / f"{name.replace(' ', '_').replace(',', '')}-{s}", a.steps, s,
                                    protocol.num_train, a.max_minutes) for s in range(a.seeds)]
        print(f"trained {name}: {time.perf_counter() - t0:.0f}s", flush=True)
    if any(path is None for paths in runs.values() for path in paths):
        print("some runs have not reached --steps; run the same command again to continue them")
        return
    runs["flow + reflow"] = []
    for s, teacher in enumerate(runs["flow"]):
        out = root / f"flow_reflow-{s}"
        if not (out / "straightness.json").exists():
            reflow(teacher, out, pairs=a.pairs, steps=a.reflow_steps, resume=out.exists() and (out / "config.json").exists(),
                   progress=True, log=lambda *_: None)
        runs["flow + reflow"].append(out)
    print(f"reflowed: {time.perf_counter() - t0:.0f}s", flush=True)

    judge = protocol(a.num, a.draws)
    rows = ["| real data (floor) | – | – | " + " | ".join(t_interval([f[i] for f in judge.floor], d)
                                                          for i, d in enumerate(judge.digits)) + " |"]
    sign = 1 if protocol.higher_is_better else -1
    for nfe in budgets:
        for name, paths in runs.items():
            loaded = [difflab.load(path) for path in paths]
            # the sampler: the best first score on a selection draw (seed 999) that the evaluation never sees
            tried = {}
            for sampler in SAMPLERS:
                x = [samples_at(run, sampler, nfe, a.num, 999) for run in loaded]
                if x[0] is not None:
                    tried[sampler] = sign * sum(judge.score(xi, a.draws if a.dataset == "8gaussians" else 0)[0]
                                                for xi in x) / len(x)
            if not tried:
                continue
            best = max(tried, key=tried.get)
            per_seed = []
            for run in loaded:
                scores = [judge.score(samples_at(run, best, nfe, a.num, d), d) for d in range(a.draws)]
                per_seed.append([sum(s[i] for s in scores) / a.draws for i in range(len(judge.columns))])
            rows.append(f"| {name} | {nfe} | {best} | " + " | ".join(t_interval([v[i] for v in per_seed], d)
                                                                     for i, d in enumerate(judge.digits)) + " |")
        print(f"evaluated NFE {nfe}: {time.perf_counter() - t0:.0f}s", flush=True)
    device = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU, 2 cores"
    lines = [f"{a.dataset}, each preset's network, {a.steps} training steps for every variant (the preset's batch), "
             f"{a.seeds} training seeds; reflow adds {a.pairs} pairs from the flow teacher and {a.reflow_steps} steps. "
             f"{a.num} samples per draw, {a.draws} evaluation draws per model; the sampler of each row was chosen on a "
             "separate selection draw. Intervals: 95% t-intervals over the training seeds (the floor's over its "
             f"draws). {device}; total {(time.perf_counter() - t0) / 60:.0f} min.", "",
             "| variant | NFE | best sampler | " + " | ".join(judge.columns) + " |",
             "|---|---|---|" + "---|" * len(judge.columns), *rows]
    name = "formulations.md" if a.dataset == "8gaussians" else f"formulations_{a.dataset}.md"
    write_table(name, f"Training formulations on {a.dataset} at equal training steps, per NFE budget", lines)


if __name__ == "__main__":
    main()
