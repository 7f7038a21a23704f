"""The seed papers' claims, reproduced at CPU scale: one module per claim, each training (or reusing)
the small models it needs, measuring, and writing ``<name>.md`` (a table, the command, and where the
result agrees or disagrees with the paper) and ``<name>.png`` to an output directory
(``docs/results/`` by default). ``difflab reproduce NAME`` and ``benchmarks/reproduce/NAME.py`` run them.

* ``ddim-eta``: DDIM vs DDPM, η ∈ {0, 0.2, 0.5, 1} and σ̂ at S ∈ {10, 20, 50, 100, 1000} steps (Song et al. 2021, Table 1).
* ``schedules``: linear vs cosine ᾱ_t, and sample quality at equal training (Nichol & Dhariwal 2021, Sec. 3.2).
* ``objectives``: L_simple vs L_hybrid vs L_vlb, bits/dim and sample quality (Nichol & Dhariwal 2021, Sec. 3.1, Table 1).
* ``classifier-guidance``: guidance scale 0, 1, 10: FD, precision, recall, IS (Dhariwal & Nichol 2021, Table 4/Fig. 3).
* ``predictor-corrector``: PC sampling vs the predictor alone at equal network evaluations (Song et al. 2021, Table 1).
* ``likelihood``: the true bound L vs L_simple, test bits/dim and samples (Ho et al. 2020, Table 2).
* ``neighbors``: samples beside their nearest training images, a memorization rate, an overfit control (Ho et al. 2020, Figs. 11–12).
* ``respacing``: guided diffusion's section-count respacing vs uniform respacing at 25 and 50 steps (Nichol & Dhariwal 2021, Sec. 4).
* ``cascade``: a 4×4 base then an SR3 upsampler vs a single 8×8 model at equal training FLOPs (Dhariwal & Nichol 2021, Table 5).
* ``swiss-roll``: the forward and the learned reverse trajectory on the swiss roll (Sohl-Dickstein et al. 2015, Fig. 1).
* ``low-density``: score estimates in low-density regions, Langevin vs annealed Langevin (Song & Ermon 2019, Figs. 2–3).
* ``ebm-vs-diffusion``: an energy-based model against a diffusion model on 8 Gaussians at equal training time.
* ``energy-models``: an RBM on MNIST with its AIS log-likelihood, Ising denoising, products of experts vs mixtures.
"""

from __future__ import annotations

import importlib

from ..errors import DifflabError

CLAIMS = {  # name: (module, what it reproduces)
    "schedules": ("schedules", "linear vs cosine ᾱ_t and sample quality at equal training (IDDPM Sec. 3.2)"),
    "ddim-eta": ("ddim_eta", "DDIM vs DDPM, η and σ̂ against the number of steps (DDIM Table 1)"),
    "objectives": ("objectives", "L_simple vs L_hybrid vs L_vlb: bits/dim and sample quality (IDDPM Sec. 3.1)"),
    "classifier-guidance": ("classifier_guidance", "classifier guidance at scale 0, 1, 10 (ADM Sec. 4)"),
    "respacing": ("respacing", "section-count vs uniform respacing at 25 and 50 steps (IDDPM Sec. 4)"),
    "predictor-corrector": ("predictor_corrector", "PC sampling vs the predictor alone at equal evaluations (score SDE Table 1)"),
    "likelihood": ("likelihood", "the true bound L vs L_simple: test bits/dim and samples (DDPM Table 2)"),
    "neighbors": ("neighbors", "nearest training images and a memorization rate, with an overfit control (DDPM Figs. 11-12)"),
    "cascade": ("cascade", "a low-resolution base then an upsampler vs one model at equal training FLOPs (ADM Table 5)"),
    "swiss-roll": ("swiss_roll", "the swiss roll's forward and learned reverse trajectory (2015 Fig. 1)"),
    "low-density": ("low_density", "scores in low-density regions; Langevin vs annealed Langevin (NCSN Figs. 2-3)"),
    "ebm-vs-diffusion": ("ebm_vs_diffusion", "an energy-based model vs a diffusion model on 8 Gaussians, equal time"),
    "energy-models": ("energy_models", "RBM on MNIST with AIS, Ising denoising, products of experts vs mixtures"),
}

# where the project's seed documents state the claim (the papers are named in each report)
SEED_FILES = {"ddim-eta": " · seed 004", "schedules": " · seed 002", "objectives": " · seed 002",
              "classifier-guidance": " · seed 002", "respacing": " · seed 000", "neighbors": " · seed 004", "predictor-corrector": " · seed 004",
              "likelihood": " · seed 000/004", "cascade": " · seed 002"}
# the reproductions whose verdicts compare trained models: re-run on held-out data over training seeds
VERDICT_CLAIMS = ("schedules", "ddim-eta", "classifier-guidance", "neighbors", "predictor-corrector", "likelihood",
                  "objectives", "respacing", "cascade", "swiss-roll")
# (schedules first: it measures its runs at 1,000 steps before continuing them to the 4,000 the next two reuse)
# the reproductions that also run beyond digits (``--dataset``); their reports are named ``<name>-<dataset>``, stand in
# the claims table beside the digits ones, and are not part of ``--all`` (MNIST models train for hours on a CPU)
DATASETS = {"schedules": ("digits", "mnist")}
OWN_DATA = ("swiss-roll", "low-density", "ebm-vs-diffusion", "energy-models")  # toys and their own datasets


def index_names() -> list[str]:
    """The reports the claims table lists: every verdict-bearing reproduction, then their runs beyond digits."""
    return list(VERDICT_CLAIMS) + [f"{n}-{d}" for n, ds in DATASETS.items() for d in ds if d != "digits"]


def split_stem(stem: str) -> tuple[str, str]:
    """(reproduction, dataset) of a report's stem: ``schedules-mnist`` → (schedules, mnist), ``ddim-eta`` →
    (ddim-eta, digits)."""
    for name, datasets in DATASETS.items():
        for d in datasets:
            if d != "digits" and stem == f"{name}-{d}":
                return name, d
    return stem, "digits"


def command_of(stem: str) -> str:
    """The command that writes the report ``stem`` (``schedules-mnist`` → ``difflab reproduce schedules --dataset
    mnist``)."""
    name, dataset = split_stem(stem)
    return f"difflab reproduce {name}" + (f" --dataset {dataset}" if dataset != "digits" else "")


def names() -> list[str]:
    return list(CLAIMS)


def summary(name: str) -> str:
    if name not in CLAIMS:
        module(name)
    return CLAIMS[name][1]


def module(name: str):
    if name not in CLAIMS:
        raise DifflabError(f"unknown reproduction {name!r}; expected one of {', '.join(CLAIMS)} (or 'list').")
    return importlib.import_module(f".{CLAIMS[name][0]}", __name__)


def reproduce_all(out="docs/results", runs="runs/reproduce", quick: bool = False, force: bool = False,
                  command: str | None = None):
    """Every reproduction in turn, then the README's claims table (:mod:`.index`). One already written (its
    ``<name>.json`` there, not from ``--quick`` unless this is) is skipped unless ``force``; each one resumes its own
    training and measurements (``<runs>/<name>-measures.json``), so a killed ``--all`` picks up where it stopped.
    Returns the README's path."""
    import json
    import time
    from pathlib import Path

    from .index import write_index

    out, started = Path(out), time.perf_counter()
    for name in CLAIMS:
        done = out / f"{name}.json"
        if done.is_file() and not force and (quick or not json.loads(done.read_text()).get("quick")):
            print(f"[all] {name}: {done} is there; skipped (--force re-runs it)")
            continue
        if name not in VERDICT_CLAIMS and (out / f"{name}.md").is_file() and not force:
            print(f"[all] {name}: {out / f'{name}.md'} is there; skipped (--force re-runs it)")
            continue
        reproduce(name, out=out, runs=runs, quick=quick,
                  command=(command or "difflab reproduce --all").replace("--all", name))
    print(f"[all] {(time.perf_counter() - started) / 60:.1f} min")
    return write_index(out, index_names())


def check_dataset(name: str, dataset: str | None) -> str:
    """The dataset reproduction ``name`` runs on: digits unless ``dataset`` names another it supports."""
    module(name)
    if dataset is None:
        return "digits"
    supported = DATASETS.get(name, () if name in OWN_DATA else ("digits",))
    if dataset not in supported:
        where = ", ".join(supported) if supported else "its own data (no --dataset)"
        raise DifflabError(f"reproduction {name!r} runs on {where} only, not on {dataset!r}.")
    return dataset


def reproduce(name: str, out="docs/results", runs="runs/reproduce", quick: bool = False, command: str | None = None,
              dataset: str | None = None):
    """Run one reproduction (on ``dataset`` where it offers several, :data:`DATASETS`); returns the path of the
    markdown report it wrote."""
    from pathlib import Path

    from .common import Context

    mod = module(name)
    dataset = check_dataset(name, dataset)
    ctx = Context(name=name, out=Path(out), runs=Path(runs), quick=quick, dataset=dataset,
                  command=command or f"difflab reproduce {name}" + (f" --dataset {dataset}" if dataset != "digits"
                                                                    else "") + (" --quick" if quick else ""))
    return mod.main(ctx)
