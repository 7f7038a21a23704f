"""Training formulations on MNIST at equal training compute, sized for a 2-core CPU: DDPM-ε (today's preset),
v-prediction with zero terminal SNR, EDM, flow matching, flow matching with minibatch OT pairing, and flow
matching + reflow, each scored by FD in the MNIST judge's features on 5,000 samples at 5, 10 and 50 network
evaluations (NFE) with its best sampler, beside the real-vs-real floor at the same N.

The protocol (the formulations issue's, scaled to what this CPU trains in hours):

* every variant trains the same U-Net (the mnist preset's, at ``--width`` base channels; 16 by default: 0.28M
  parameters, 2.5x faster than the preset's 32) for the same ``--steps`` at the preset's batch of 128, from the
  same seed; reflow adds its pairs and steps to the flow teacher's (the method's cost, stated in the table);
* at each budget the sampler is chosen on a selection draw (``--select`` samples, seed 999) and scored on 5,000
  other samples (seed 0) against the first 5,000 test images: FD with its bootstrap interval, the floor (5,000
  training images against the same reference), the failed-sample share;
* today's preset is also sampled from the data's Gaussian at σ̃ = 5 (the shipped mnist model's default start), so
  the table tells what a formulation changes from what a better start of sampling buys;
* the headline, the best variant at 10 NFE against today's preset (both ways of sampling it), is retrained from two
  more seeds and scored at the headline budgets, so the verdict on "at most half of today's FD" rests on a
  t-interval over three training seeds, not on one draw;
* seconds per training step and image-evaluations per second are measured side by side in one process at the end
  (the units' own wall clock is kept in the ledger, but it counts whatever else ran on the machine).

Each unit of work (a training run, a reflow, a selection, a score) is kept in ``RUNS/ledger.json`` once done, so the
command resumes where it stopped: ``--max-minutes`` ends an invocation between units (training units stop inside,
at a checkpoint, and continue on the next call). Run it alone.

    python benchmarks/formulations_mnist.py --max-minutes 120      # repeat until it writes the table
    python benchmarks/formulations_mnist.py --quick                # a minute: the plumbing, nothing measured
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
from formulations import SAMPLERS, T_CRIT_95, _variants, samples_at, train_variant  # noqa: E402

REFLOW = "flow + reflow"
PRESET = "ddpm-eps"


def variants(width: int) -> dict:
    """The formulations issue's variants, and a variational diffusion model (its learned schedule is the one whose
    bound the table reports beside the others'), on the mnist preset's U-Net at ``width`` base channels."""
    model = {"model": {"base_channels": width, "groups": min(32, width)}}
    chosen = {**_variants("mnist"), "vdm (learned schedule)": ("mnist-vdm", {})}
    return {name: (preset, {**override, **model}) for name, (preset, override) in chosen.items()}


def slug(name: str, seed: int) -> str:
    return f"{name.split(' (')[0].replace(' + ', '_').replace(', ', '_').replace(' ', '_')}-{seed}"


class Ledger:
    """What is done, in ``RUNS/ledger.json`` (written atomically after every unit)."""

    def __init__(self, runs: Path, settings: dict):
        self.path = runs / "ledger.json"
        self.data = json.loads(self.path.read_text()) if self.path.exists() else {"settings": settings}
        self.data["settings"] = {**settings, **self.data["settings"]}  # a setting added since: its default
        if self.data["settings"] != settings:
            raise SystemExit(f"{runs} holds a run with other settings ({self.data['settings']}); give another --runs "
                             "or the same options.")

    def get(self, *keys):
        d = self.data
        for k in keys:
            d = d.get(k) if isinstance(d, dict) else None
        return d

    def put(self, value, *keys) -> None:
        from difflab.io import write_json

        d = self.data
        for k in keys[:-1]:
            d = d.setdefault(k, {})
        d[keys[-1]] = value
        write_json(self.path, self.data)


class Budget:
    def __init__(self, minutes: float | None):
        self.end = None if minutes is None else time.monotonic() + 60 * minutes

    def left(self) -> float | None:
        return None if self.end is None else (self.end - time.monotonic()) / 60

    def out(self) -> bool:
        return self.end is not None and self.left() <= 0.5


def train_unit(book: Ledger, runs: Path, name: str, seed: int, a, budget: Budget) -> bool:
    """Train (or continue) one variant's run; True once it has all its steps."""
    key = slug(name, seed)
    if book.get("trained", key):
        return True
    if budget.out():
        return False
    t0 = time.perf_counter()
    if name == REFLOW:
        if not train_unit(book, runs, "flow", seed, a, budget):
            return False
        from difflab.training.reflow import reflow

        out = runs / key
        resume = (out / "config.json").exists()
        reflow(None if resume else runs / slug("flow", seed), out, pairs=None if resume else a.pairs,
               steps=a.reflow_steps, resume=resume, progress=True, max_minutes=budget.left(), log=lambda *_: None)
        done = (out / "straightness.json").exists()
    else:
        done = train_variant(variants(a.width)[name], runs / key, a.steps, seed, None, budget.left()) is not None
    minutes = (book.get("minutes", key) or 0.0) + (time.perf_counter() - t0) / 60
    book.put(minutes, "minutes", key)
    if done:
        book.put(True, "trained", key)
    print(f"{key}: {'trained' if done else 'paused'} after {minutes:.1f} min of training", flush=True)
    return done


def fd_of(x: torch.Tensor, num_ref: int, noise: bool) -> dict:
    from difflab.evaluate import evaluate_samples

    return evaluate_samples(x, "mnist", "fd,failed" if noise else "fd", num_ref=num_ref, clip=True, noise=noise)


def fd_key(scores: dict, suffix: str = "") -> float:
    return next(v for k, v in scores.items() if k.startswith("FD[") and k.endswith("]" + suffix))


def best_sampler(run, nfe: int, num: int, seed: int = 999, **options) -> tuple[str, dict]:
    """The deterministic sampler with the lowest FD at ``nfe`` evaluations on a selection draw of ``num`` samples
    (``seed`` 999: a draw the scores never see), and the FD of each one tried; ``options`` go to every sampler."""
    tried = {}
    for sampler in SAMPLERS:
        x = samples_at(run, sampler, nfe, num, seed, **options)
        if x is not None:
            tried[sampler] = round(fd_key(fd_of(x, num, noise=False)), 3)
    return min(tried, key=tried.get), tried


def select_unit(book: Ledger, runs: Path, name: str, nfe: int, a, budget: Budget) -> str | None:
    """The sampler that scores best on the selection draw (seed 999) for the seed-0 model at ``nfe``."""
    chosen = book.get("sampler", name, str(nfe))
    if chosen or budget.out():
        return chosen
    import difflab

    chosen, tried = best_sampler(difflab.load(runs / slug(name, 0)), nfe, a.select)
    book.put(tried, "selection", name, str(nfe))
    book.put(chosen, "sampler", name, str(nfe))
    print(f"{name} at {nfe} NFE: {chosen} ({tried})", flush=True)
    return chosen


def score_unit(book: Ledger, runs: Path, name: str, seed: int, nfe: int, a, budget: Budget) -> bool:
    key = slug(name, seed)
    if book.get("scores", key, str(nfe)):
        return True
    sampler = select_unit(book, runs, name, nfe, a, budget)
    if sampler is None or budget.out():
        return False
    import difflab

    run = difflab.load(runs / key)
    t0 = time.perf_counter()
    x = samples_at(run, sampler, nfe, a.num, 0)
    seconds = time.perf_counter() - t0
    scores = fd_of(x, a.num, noise=True)
    scores = {k: v for k, v in scores.items() if isinstance(v, (int, float))}
    book.put({**scores, "sampler": sampler, "sample_seconds": seconds}, "scores", key, str(nfe))
    print(f"{key} at {nfe} NFE with {sampler}: FD {fd_key(scores):.2f} ({seconds:.0f} s of sampling)", flush=True)
    return True


def bits_unit(book: Ledger, runs: Path, name: str, a, budget: Budget) -> bool:
    """Bits/dim of the first ``--nll-num`` MNIST test images under the seed-0 model: by the probability-flow ODE
    (every variant has one; Hutchinson's trace, rtol 1e-5) and by the variational bound where the model has one (the
    discrete bound of a T-step schedule; the continuous-time bound of a learned one)."""
    key = slug(name, 0)
    if book.get("bits", key):
        return True
    if budget.out():
        return False
    import difflab
    from difflab.errors import DifflabError
    from difflab.evaluate import bound_terms, continuous_bound_terms, ode_likelihood, test_images

    run = difflab.load(runs / key)
    data = test_images(run, a.nll_num)
    out = {"num": len(data)}
    t0 = time.perf_counter()
    r = ode_likelihood(run, data, 128, trace="hutchinson", generator=torch.Generator().manual_seed(0))
    out.update(ode=r["mean"], ode_stderr=r["stderr"], ode_nfe=sum(r["nfe_per_batch"]) / len(r["nfe_per_batch"]),
               ode_seconds=time.perf_counter() - t0)
    t0 = time.perf_counter()
    gen = torch.Generator().manual_seed(0)
    try:
        if run.config["diffusion"]["schedule"] == "learned":
            r, out["bound"] = continuous_bound_terms(run, data, 128, gen), "continuous-time (VDM)"
        else:
            r, out["bound"] = bound_terms(run, data, 128, gen), f"discrete, T = {run.schedule.T}"
        out.update(vlb=r["mean"], vlb_stderr=r["stderr"], vlb_seconds=time.perf_counter() - t0)
    except DifflabError as e:  # no bound on this schedule (EDM's σ range, the flow path): the ODE's only
        out["no_bound"] = str(e)
    book.put(out, "bits", key)
    print(f"{key}: {out}", flush=True)
    return True


#: today's preset sampled from the data's Gaussian at σ̃ = 5 (the shipped mnist model's default start)
STARTED = "ddpm-eps, Gaussian start σ̃ = 5"
GAUSSIAN_START = 5.0


def gaussian_start_unit(book: Ledger, runs: Path, seed: int, nfe: int, a, budget: Budget) -> bool:
    """Today's preset sampled from the data's Gaussian at σ̃ = 5 instead of pure noise, the start the shipped mnist
    model uses by default: the row that tells what the formulations change from what a better start of sampling buys
    (the first steps from ᾱ_T ≈ 2e-9 are where an ε-model's errors are amplified most). Its sampler is chosen on the
    seed-0 model's selection draw like every row's; each seed's run gets the Gaussian of its training images."""
    import subprocess

    from difflab.data_gaussian import FILE

    key = slug(STARTED, seed)
    if book.get("scores", key, str(nfe)):
        return True
    if budget.out():
        return False
    import difflab

    for s in sorted({0, seed}):
        if not (runs / slug(PRESET, s) / FILE).exists():
            subprocess.run([sys.executable, "-m", "difflab", "fit-gaussian", str(runs / slug(PRESET, s))], check=True)
    sampler = book.get("sampler", STARTED, str(nfe))
    if sampler is None:
        sampler, tried = best_sampler(difflab.load(runs / slug(PRESET, 0)), nfe, a.select,
                                      gaussian_start=GAUSSIAN_START)
        book.put(tried, "selection", STARTED, str(nfe))
        book.put(sampler, "sampler", STARTED, str(nfe))
    x = samples_at(difflab.load(runs / slug(PRESET, seed)), sampler, nfe, a.num, 0, gaussian_start=GAUSSIAN_START)
    scores = {k: v for k, v in fd_of(x, a.num, noise=True).items() if isinstance(v, (int, float))}
    book.put({**scores, "sampler": sampler}, "scores", key, str(nfe))
    print(f"{key} at {nfe} NFE with {sampler}: FD {fd_key(scores):.2f}", flush=True)
    return True


#: steps each variant trains, twice over, for the side-by-side timing of a training step
TIMING_STEPS = 60


def timing_unit(book: Ledger, names: list[str], a, budget: Budget) -> bool:
    """Seconds per training step of every variant, measured side by side in this one process: each trains
    ``TIMING_STEPS`` steps from scratch in a scratch directory, in two interleaved rounds, and the faster round
    counts; the rate is read between the first and the last logged step, so setup and the first step are left out.
    (The training units' wall-clock minutes are what the machine gave them, with whatever else ran beside them.)"""
    import csv
    import shutil
    import tempfile

    from difflab.config import resolve
    from difflab.training.diffusion import train

    if book.get("step_seconds"):
        return True
    if budget.out():
        return False
    timed = [n for n in names if n != REFLOW]  # reflow trains flow's network on flow's loss: flow's rate
    rates: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as scratch:
        for rnd in range(2):
            for n in timed:
                out = Path(scratch) / f"{slug(n, 0)}-{rnd}"
                preset, override = variants(a.width)[n]
                cfg = resolve({"preset": preset, **override, "seed": 0,
                               "train": {"steps": TIMING_STEPS, "save_every": TIMING_STEPS, "sample_every": 0,
                                         "log_every": 10}})
                train(cfg, out, progress=False, log=lambda *_: None)
                rows = list(csv.DictReader((out / "log.csv").open()))
                first, last = rows[0], rows[-1]
                rate = (float(last["seconds"]) - float(first["seconds"])) / (int(last["step"]) - int(first["step"]))
                rates[n] = min(rates.get(n, math.inf), rate)
                shutil.rmtree(out)
    book.put({n: round(v, 4) for n, v in rates.items()}, "step_seconds")
    print(f"seconds per training step, side by side: {rates}", flush=True)
    return True


def sampling_unit(book: Ledger, runs: Path, names: list[str], a, budget: Budget) -> bool:
    """Image-evaluations per second of every seed-0 model with its 10-NFE sampler, measured side by side in this
    one process (``--select`` images, two interleaved rounds, the faster counts): the score units' own sampling
    times are wall clock, with whatever else ran beside them."""
    if book.get("sample_rate"):
        return True
    if budget.out():
        return False
    import difflab

    rates: dict[str, float] = {}
    for _ in range(2):
        for n in names:
            run, sampler = difflab.load(runs / slug(n, 0)), book.get("sampler", n, "10")
            t0 = time.perf_counter()
            samples_at(run, sampler, 10, a.select, 0)
            rates[n] = max(rates.get(n, 0.0), 10 * a.select / (time.perf_counter() - t0))
    book.put({n: round(v, 1) for n, v in rates.items()}, "sample_rate")
    print(f"image-evaluations per second at 10 NFE, side by side: {rates}", flush=True)
    return True


def headline(book: Ledger, names: list[str], nfe: int = 10) -> str | None:
    """The variant with the lowest seed-0 FD at ``nfe`` (None until every variant is scored there)."""
    fds = {n: book.get("scores", slug(n, 0), str(nfe)) for n in names}
    if any(v is None for v in fds.values()):
        return None
    return min(fds, key=lambda n: fd_key(fds[n]))


def t_interval(values: list[float]) -> tuple[float, float, float]:
    v = torch.tensor(values, dtype=torch.float64)
    m = float(v.mean())
    if len(v) < 2:
        return m, float("nan"), float("nan")
    half = T_CRIT_95.get(len(v), 1.96) * float(v.std()) / math.sqrt(len(v))
    return m, m - half, m + half


def table(book: Ledger, names: list[str], a, best: str) -> None:
    s = book.data["settings"]
    any_score = book.get("scores", slug(PRESET, 0), "10")
    fd_name = next(k for k in any_score if k.startswith("FD[") and k.endswith("]"))
    floor, floor_sd = any_score[f"{fd_name} floor"], any_score[f"{fd_name} floor sd"]
    rates = book.get("step_seconds")
    lines = [f"MNIST, the mnist preset's U-Net at {s['width']} base channels for every variant, {s['steps']} training "
             f"steps of batch 128 from seed 0; reflow starts from the flow teacher and adds {s['pairs']} pairs "
             f"(drawn with the teacher's sampler) and {s['reflow_steps']} steps (pairs drawn by 50 Euler steps, DDIM on the "
             "flow path). Each row's sampler was chosen on "
             f"{s['select']} samples of a separate draw; the row's scores are {s['num']} other samples against the "
             f"first {s['num']} MNIST test images. {fd_name} with its 95% bootstrap interval; failed: the judge's "
             "confidence < 0.5 or the mean intensity outside the data's 0.1–99.9 percentiles (Wilson interval). "
             f"Floor: {s['num']} training images against the same reference, {floor:.2f} ± {floor_sd:.2f} (sd). "
             "CPU, 2 cores (one process at a time). Seconds per training step: every variant trained "
             f"{TIMING_STEPS} steps side by side in one process, the faster of two interleaved rounds; training "
             "minutes are the run's steps at that rate (reflow: its own steps added; drawing its pairs, sampling "
             "with the teacher, is not counted). Image-evaluations per second: each seed-0 model drew "
             f"{s['select']} images with its 10-NFE sampler, side by side in one process, the faster of two rounds "
             "(every variant has the same network: the rates differ by the samplers' own arithmetic).", "",
             f"| variant | NFE | sampler | {fd_name} [95%] | failed [95%] | s per training step | training min | "
             "image-evaluations/s at 10 NFE |",
             "|---|---:|---|---:|---:|---:|---:|---:|",
             f"| real training images (floor) | – | – | {floor:.2f} ± {floor_sd:.2f} | – | – | – | – |"]
    for nfe in s["nfe"]:
        for n in [*names, STARTED]:
            r = book.get("scores", slug(n, 0), str(nfe))
            rate = rates["flow" if n == REFLOW else PRESET if n == STARTED else n]
            train_min = (s["steps"] + (s["reflow_steps"] if n == REFLOW else 0)) * rate / 60
            fr = next(k for k in r if k.startswith("failed[") and k.endswith("]"))
            sample_rate = book.get("sample_rate", n)
            lines.append(f"| {n} | {nfe} | {r['sampler']} | {fd_key(r):.2f} [{fd_key(r, ' 95% low'):.2f}, "
                         f"{fd_key(r, ' 95% high'):.2f}] | {100 * r[fr]:.1f}% [{100 * r[fr + ' 95% low']:.1f}, "
                         f"{100 * r[fr + ' 95% high']:.1f}] | {rate:.3f} | {train_min:.0f} | "
                         f"{'–' if sample_rate is None else f'{sample_rate:.0f}'} |")
    lines += ["", f"## Headline: {best} against today's preset ({PRESET}), {len(s['seeds'])} training seeds", "",
              f"Today's preset twice: sampled from pure noise as every variant is, and from the data's Gaussian at "
              f"σ̃ = {GAUSSIAN_START:g} (its 10-NFE sampler chosen on the seed-0 model), the stricter comparison.", "",
              "| variant | NFE | FD per seed | mean [95% t-interval over seeds] |", "|---|---:|---|---:|"]
    verdicts = []
    for nfe in s["headline_nfe"]:
        stats = {}
        for n in dict.fromkeys([PRESET, STARTED, best]):
            fds = [fd_key(book.get("scores", slug(n, seed), str(nfe))) for seed in s["seeds"]]
            stats[n] = t_interval(fds)
            lines.append(f"| {n} | {nfe} | {', '.join(f'{v:.2f}' for v in fds)} | {stats[n][0]:.2f} "
                         f"[{stats[n][1]:.2f}, {stats[n][2]:.2f}] |")
        for base in [PRESET, STARTED] if best != PRESET else []:
            (pm, plo, phi), (bm, blo, bhi) = stats[base], stats[best]
            met = bhi <= 0.5 * plo
            verdicts.append(f"* {nfe} NFE: {best} / {base} = {bm / pm:.2f} (the intervals' extremes: "
                            f"{max(blo, 0) / phi:.2f} to {bhi / max(plo, 1e-9):.2f}); \"at most half\": "
                            f"{'met' if met else ('not met' if blo > 0.5 * phi else 'not resolved')} "
                            "(met when the best's upper bound is at most half the other's lower bound).")
    lines += ["", *verdicts, "", f"## Bits/dim of the first {s['nll_num']} MNIST test images (seed-0 models)", "",
              "Dequantized in the 8-bit convention (256 levels). The probability-flow ODE gives every model a "
              "likelihood (Song et al. 2021, Eq. 39; Hutchinson's trace estimator, rtol 1e-5); the variational bound "
              "exists where the schedule has one. ± one standard error over the images.", "",
              "| variant | ODE bits/dim | evaluations per batch | bound | bound bits/dim |", "|---|---:|---:|---|---:|"]
    for n in names:
        b = book.get("bits", slug(n, 0))
        bound = (f"{b['bound']} | {b['vlb']:.3f} ± {b['vlb_stderr']:.3f}" if "vlb" in b else "none | –")
        lines.append(f"| {n} | {b['ode']:.3f} ± {b['ode_stderr']:.3f} | {b['ode_nfe']:.0f} | {bound} |")
    title = "Training formulations on MNIST at equal training compute, per NFE budget"
    if a.quick:  # the plumbing only: nothing measured, nothing written to benchmarks/results
        print("\n".join([title, *lines]))
    else:
        write_table("formulations_mnist.md", title, lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/formulations_mnist", help="where the runs and the ledger live")
    p.add_argument("--width", type=int, default=16, help="base channels of the mnist preset's U-Net for every variant")
    p.add_argument("--steps", type=int, default=2000, help="training steps of every variant (batch 128)")
    p.add_argument("--num", type=int, default=5000, help="samples scored per model and budget")
    p.add_argument("--select", type=int, default=500, help="samples of the selection draw that picks each sampler")
    p.add_argument("--nfe", default="5,10,50", help="network-evaluation budgets")
    p.add_argument("--headline-nfe", default="5,10", help="budgets at which the headline's extra seeds are scored")
    p.add_argument("--pairs", type=int, default=10000, help="reflow's (noise, sample) pairs from the flow teacher")
    p.add_argument("--reflow-steps", type=int, default=1000)
    p.add_argument("--nll-num", type=int, default=128, help="test images whose bits/dim each seed-0 model reports")
    p.add_argument("--max-minutes", type=float, default=None, help="stop this invocation after about this long")
    p.add_argument("--quick", action="store_true", help="tiny settings into runs/formulations_mnist_quick")
    a = p.parse_args()
    if a.quick:
        a.runs, a.width, a.steps, a.num, a.select, a.pairs, a.reflow_steps, a.nll_num = \
            "runs/formulations_mnist_quick", 8, 4, 300, 300, 64, 2, 8
    torch.set_num_threads(2)
    seeds = [0, 1, 2]
    settings = {"width": a.width, "steps": a.steps, "num": a.num, "select": a.select, "pairs": a.pairs,
                "reflow_steps": a.reflow_steps, "nfe": [int(v) for v in a.nfe.split(",")],
                "headline_nfe": [int(v) for v in a.headline_nfe.split(",")], "seeds": seeds, "nll_num": a.nll_num}
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    book = Ledger(runs, settings)
    budget = Budget(a.max_minutes)
    names = [*variants(a.width), REFLOW]

    def stopped() -> None:
        print(f"stopped at --max-minutes; run the same command again to continue ({book.path})")

    for name in names:  # every variant from seed 0, then each scored at the headline budget first
        if not train_unit(book, runs, name, 0, a, budget):
            return stopped()
    for nfe in [10, *[n for n in settings["nfe"] if n != 10]]:
        for name in names:
            if not score_unit(book, runs, name, 0, nfe, a, budget):
                return stopped()
    for name in names:
        if not bits_unit(book, runs, name, a, budget):
            return stopped()
    for nfe in settings["nfe"]:
        if not gaussian_start_unit(book, runs, 0, nfe, a, budget):
            return stopped()
    if not timing_unit(book, names, a, budget) or not sampling_unit(book, runs, names, a, budget):
        return stopped()
    best = headline(book, names)
    for seed in seeds[1:]:
        for name in dict.fromkeys([PRESET, best]):
            if not train_unit(book, runs, name, seed, a, budget):
                return stopped()
            for nfe in settings["headline_nfe"]:
                if not score_unit(book, runs, name, seed, nfe, a, budget):
                    return stopped()
        for nfe in settings["headline_nfe"]:
            if not gaussian_start_unit(book, runs, seed, nfe, a, budget):
                return stopped()
    table(book, names, a, best)


if __name__ == "__main__":
    main()
