"""Few-step generation on MNIST, sized for a 2-core CPU: FD in the MNIST judge's features against network evaluations
(1, 2, 4, 8, 16, 50) for the teacher with its best fixed discretization, the teacher with tuned time steps,
progressive distillation, consistency distillation, consistency training and reflow, with images per second for each.

The models share the formulations benchmark's scale (``benchmarks/formulations_mnist.py``: the mnist preset's U-Net
at 16 base channels, 2,000 steps of batch 128) and reuse its runs where they exist:

* the teacher is its EDM model (``edm-0``); consistency distillation distils it (``--cd-steps``), starting from its
  weights; the teacher's rows choose the sampler on a selection draw, its tuned rows run ``difflab tune-steps``;
* progressive distillation needs an unconditional model on a discrete schedule: the mnist preset without classes,
  trained here for the same steps, then halved from 64 DDIM steps down to 1 (``--pd-steps`` per round); it
  is scored too, the teacher the PD rows are held to;
* consistency training is the ``mnist-ct`` preset at the same size and steps;
* reflow is the formulations benchmark's ``flow + reflow`` model.

Each row is scored on ``--num`` samples against the first ``--num`` MNIST test images: FD with its bootstrap interval
and the floor. Units are kept in ``RUNS/ledger.json``; ``--max-minutes`` stops between them (training inside), and
the same command continues. Run it alone (the images/s column is wall clock).

    python benchmarks/few_step.py --max-minutes 120     # repeat until it writes benchmarks/results/few_step.md
    python benchmarks/few_step.py --quick               # the plumbing on tiny models, nothing measured
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import torch

os.environ.setdefault("HF_HUB_OFFLINE", "1")
sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402
from formulations import train_variant  # noqa: E402
from formulations_mnist import Budget, Ledger, best_sampler, fd_key, fd_of  # noqa: E402

NFES = (1, 2, 4, 8, 16, 50)
PD_FROM = 64
#: the issue's targets: a distilled model at ``nfe`` evaluations within ``factor`` × the teacher's FD at 50
TARGETS = ((4, 1.5), (1, 3.0))
TEACHER = "teacher (EDM), best fixed discretization"
PD_TEACHER = "teacher of PD (DDPM-ε, unconditional), best fixed discretization"
PD, CD = "progressive distillation (from 64 DDIM steps)", "consistency distillation (from the EDM teacher)"
CT, REFLOW = "consistency training (mnist-ct)", "flow + reflow"
#: each few-step row and the teacher its targets are measured against: its own teacher where it has one; consistency
#: training has none and reflow's flow teacher is another benchmark's, so those two are held to the EDM teacher
STUDENTS = {PD: PD_TEACHER, CD: TEACHER, CT: TEACHER, REFLOW: TEACHER}


def model_override(width: int) -> dict:
    return {"model": {"base_channels": width, "groups": min(32, width)}}


def trained(book: Ledger, key: str, work, budget: Budget) -> bool:
    """Run ``work(minutes_left) -> done`` unless the ledger says ``key`` is done; record its minutes."""
    if book.get("trained", key):
        return True
    if budget.out():
        return False
    t0 = time.perf_counter()
    done = work(budget.left())
    book.put((book.get("minutes", key) or 0.0) + (time.perf_counter() - t0) / 60, "minutes", key)
    if done:
        book.put(True, "trained", key)
    print(f"{key}: {'done' if done else 'paused'} ({book.get('minutes', key):.1f} min)", flush=True)
    return done


def train_models(book: Ledger, a, budget: Budget) -> bool:
    from difflab import checkpoint
    from difflab.training.consistency_distill import consistency_distill
    from difflab.training.distill import distill

    runs, teacher = Path(a.runs), Path(a.teacher_runs) / "edm-0"
    if not (teacher / "config.json").exists():
        raise SystemExit(f"the EDM teacher {teacher} is missing: run benchmarks/formulations_mnist.py first (or give "
                         "--teacher-runs).")

    def pd_teacher(left):
        return train_variant(("mnist", {**model_override(a.width), "model": {**model_override(a.width)["model"],
                                                                               "num_classes": None}}),
                             runs / "ddpm-uncond", a.steps, 0, None, left) is not None

    def pd(left):
        last = distill(runs / "ddpm-uncond", runs / "pd", to=1, from_steps=PD_FROM, steps=a.pd_steps,
                       resume=(runs / "pd").exists(), progress=True, max_minutes=left, log=lambda *_: None)
        return last.name == "round-1" and checkpoint.list_checkpoints(last) and \
            int(checkpoint.latest_valid(last).name.split("-")[-1]) >= a.pd_steps

    def cd(left):
        out = runs / "cd"
        resume = (out / "config.json").exists()
        consistency_distill(teacher, out, steps=a.cd_steps, resume=resume, progress=True, max_minutes=left,
                            log=lambda *_: None)
        return int(checkpoint.latest_valid(out).name.split("-")[-1]) >= a.cd_steps

    def ct(left):
        return train_variant(("mnist-ct", model_override(a.width)), runs / "ct", a.steps, 0, None, left) is not None

    return all(trained(book, key, work, budget) for key, work in
               (("ddpm-uncond", pd_teacher), ("pd", pd), ("cd", cd), ("ct", ct)))


def rows(a) -> list[tuple[str, Path, str, int]]:
    """(row, run, sampler or 'select' or 'tuned', NFE) for every score of the table."""
    runs, teacher, reflow = Path(a.runs), Path(a.teacher_runs) / "edm-0", Path(a.teacher_runs) / "flow_reflow-0"
    out = []
    for nfe in NFES:
        out.append((TEACHER, teacher, "select", nfe))
        out.append((PD_TEACHER, runs / "ddpm-uncond", "select", nfe))
        if nfe in a.tuned_nfe:
            out.append(("teacher (EDM), tuned steps", teacher, "tuned", nfe))
        if nfe <= PD_FROM // 2:
            out.append((PD, runs / "pd" / f"round-{nfe}", "ddim", nfe))
        if nfe <= 8:
            out.append((CD, runs / "cd", "consistency", nfe))
            out.append((CT, runs / "ct", "consistency", nfe))
        out.append((REFLOW, reflow, "select", nfe))
    return out


def reused_score(a, run_dir: Path, nfe: int) -> dict | None:
    """The formulations benchmark's score of ``run_dir`` at ``nfe``, when it has one made as this benchmark would make
    it (a sampler chosen on the same selection draw, the same number of samples from the same seed): None otherwise."""
    import json

    path = Path(a.teacher_runs) / "ledger.json"
    if not path.exists():
        return None
    other = json.loads(path.read_text())
    same = all(other.get("settings", {}).get(k) == getattr(a, k) for k in ("width", "num", "select"))
    score = other.get("scores", {}).get(run_dir.name, {}).get(str(nfe))
    return score if same and score else None


def score(book: Ledger, a, row: str, run_dir: Path, how: str, nfe: int, budget: Budget) -> bool:
    key = f"{row} @ {nfe}"
    if book.get("scores", key):
        return True
    if budget.out() or not (run_dir / "config.json").exists():
        return False
    import difflab

    reused = reused_score(a, run_dir, nfe) if how == "select" else None
    if reused is not None:  # the formulations benchmark scored this very run the same way already
        book.put(reused["sampler"], "sampler", key)
        book.put({**reused, "reused_from": str(Path(a.teacher_runs) / "ledger.json")}, "scores", key)
        print(f"{key}: {reused['sampler']}, FD {fd_key(reused):.2f} (the formulations benchmark's score)", flush=True)
        return True
    run = difflab.load(run_dir)
    options = {}
    if how == "select":  # the best deterministic sampler on a selection draw (seed 999) the score never sees
        sampler, tried = best_sampler(run, nfe, a.select)
        book.put(tried, "selection", key)
    elif how == "tuned":
        from difflab import tuning

        sampler = book.get("sampler", f"{TEACHER} @ {nfe}")
        if sampler is None:
            return False
        tuned = tuning.tune(run.denoiser, run.shape, sampler, nfe, num=a.tune_num, max_evaluations=a.tune_evals)
        options["timesteps"] = tuned.times
        book.put(tuned.to_json(), "tuned", key)
    else:
        sampler = how
    from difflab.samplers import info

    steps = nfe // info(sampler)["nfe_per_step"]
    t0 = time.perf_counter()
    x = run.sample(a.num, sampler=sampler, steps=steps, generator=torch.Generator().manual_seed(0), **options)
    seconds = time.perf_counter() - t0
    scores = {k: v for k, v in fd_of(x, a.num, noise=True).items() if isinstance(v, (int, float))}
    book.put(sampler, "sampler", key)
    book.put({**scores, "sampler": sampler, "sample_seconds": seconds}, "scores", key)
    print(f"{key}: {sampler}, FD {fd_key(scores):.2f} ({seconds:.0f} s)", flush=True)
    return True


def verdicts(book: Ledger) -> list[str]:
    """The targets, each few-step row against its teacher at 50 evaluations (:data:`STUDENTS`) and against the EDM
    teacher (the strictest common reference): met when the row's
    upper 95% bound is within the factor of the teacher's lower bound, not met when its lower bound is beyond the
    factor of the teacher's upper bound, not resolved between (one training seed per model: the intervals are the
    samples', not the seeds')."""
    out = []
    for nfe, factor in TARGETS:
        for student, own in STUDENTS.items():
            for teacher_row in dict.fromkeys([own, TEACHER]):  # its own teacher, and the EDM teacher as well
                r, teacher = book.get("scores", f"{student} @ {nfe}"), book.get("scores", f"{teacher_row} @ 50")
                if r is None or teacher is None:
                    continue
                met = fd_key(r, " 95% high") <= factor * fd_key(teacher, " 95% low")
                beyond = fd_key(r, " 95% low") > factor * fd_key(teacher, " 95% high")
                out.append(f"* {nfe} evaluations, {student}: FD {fd_key(r):.2f} = {fd_key(r) / fd_key(teacher):.2f} "
                           f"× {teacher_row.split(', best')[0]} at 50 ({fd_key(teacher):.2f}); target ≤ {factor:g}×: "
                           f"{'met' if met else 'not met' if beyond else 'not resolved'}.")
    return out or ["* no few-step row and its teacher at 50 evaluations are scored yet."]


def table(book: Ledger, a) -> None:
    names = sorted(dict.fromkeys(r for r, *_ in rows(a)), key=lambda r: (not r.startswith("teacher"), r))
    first = next(iter(book.get("scores").values()))
    fd_name = next(k for k in first if k.startswith("FD[") and k.endswith("]"))
    floor, floor_sd = first[f"{fd_name} floor"], first[f"{fd_name} floor sd"]
    head = "| model | " + " | ".join(f"{n} NFE" for n in NFES) + " | images/s at 1–4 NFE |"
    lines = [f"MNIST; the U-Net of benchmarks/formulations_mnist.py (width {a.width}, {a.steps} training steps); "
             f"{fd_name} [95% bootstrap interval] of {a.num} samples against the first {a.num} test images; floor "
             f"({a.num} training images): {floor:.2f} ± {floor_sd:.2f}. Progressive distillation: {a.pd_steps} steps per "
             f"round; consistency distillation: {a.cd_steps} steps. CPU, 2 cores.", "", head,
             "|---|" + "---:|" * (len(NFES) + 1)]
    for name in names:
        cells, speed = [], []
        for nfe in NFES:
            r = book.get("scores", f"{name} @ {nfe}")
            cells.append("–" if r is None else f"{fd_key(r):.2f} [{fd_key(r, ' 95% low'):.1f}, {fd_key(r, ' 95% high'):.1f}]")
            if r is not None and nfe <= 4:
                speed.append(f"{a.num / r['sample_seconds']:.0f}")
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {' / '.join(speed) or '–'} |")
    lines += ["", *verdicts(book)]
    title = "Few-step generation on MNIST: FD against network evaluations"
    if a.quick:
        print("\n".join([title, *lines]))
    else:
        write_table("few_step.md", title, lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--runs", default="runs/few_step")
    p.add_argument("--teacher-runs", default="runs/formulations_mnist", help="the formulations benchmark's runs")
    p.add_argument("--width", type=int, default=16)
    p.add_argument("--steps", type=int, default=2000, help="training steps of the PD teacher and of consistency training")
    p.add_argument("--pd-steps", type=int, default=500, help="training steps per progressive-distillation round")
    p.add_argument("--cd-steps", type=int, default=2000, help="consistency-distillation steps")
    p.add_argument("--num", type=int, default=5000)
    p.add_argument("--select", type=int, default=500)
    p.add_argument("--tuned-nfe", default="4,8,16", help="budgets at which the teacher's steps are tuned")
    p.add_argument("--tune-num", type=int, default=64, help="noise draws the tuning fits")
    p.add_argument("--tune-evals", type=int, default=100, help="sampler runs the tuning may make")
    p.add_argument("--max-minutes", type=float, default=None)
    p.add_argument("--quick", action="store_true", help="tiny settings in runs/few_step_quick on the formulations "
                                                        "benchmark's quick runs")
    a = p.parse_args()
    if a.quick:
        a.runs, a.teacher_runs, a.width, a.steps, a.pd_steps, a.cd_steps = \
            "runs/few_step_quick", "runs/formulations_mnist_quick", 8, 4, 2, 4
        a.num, a.select, a.tune_num, a.tune_evals = 300, 300, 4, 3
    a.tuned_nfe = [int(v) for v in str(a.tuned_nfe).split(",")]
    torch.set_num_threads(2)
    runs = Path(a.runs)
    runs.mkdir(parents=True, exist_ok=True)
    settings = {k: getattr(a, k) for k in ("width", "steps", "pd_steps", "cd_steps", "num", "select", "tuned_nfe",
                                           "tune_num", "tune_evals")}
    book, budget = Ledger(runs, settings), Budget(a.max_minutes)
    if not train_models(book, a, budget):
        print(f"stopped at --max-minutes; run the same command again to continue ({book.path})")
        return
    for row, run_dir, how, nfe in sorted(rows(a), key=lambda r: r[3]):
        if not score(book, a, row, run_dir, how, nfe, budget):
            if budget.out():
                print(f"stopped at --max-minutes; run the same command again to continue ({book.path})")
                return
            print(f"skipped {row} @ {nfe}: its run {run_dir} is missing or its sampler not chosen yet")
    table(book, a)


if __name__ == "__main__":
    main()
