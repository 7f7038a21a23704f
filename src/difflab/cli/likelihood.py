"""``difflab likelihood``: log-likelihood of held-out data: nats (toys) or bits/dim (images)."""

from __future__ import annotations

import argparse

from ._args import error, integer

NAME = "likelihood"
HELP = "log-likelihood of held-out data: nats (toys) or bits/dim (images)"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory")
    p.add_argument("--method", default="ode",
                   help="ode: the probability-flow ODE with the instantaneous change of variables; vlb: the variational "
                         "bound term by term (images on a discrete schedule; learned or fixed β̃ variance), with a plot of its terms; "
                         "on a learned schedule (formulation vdm) the continuous-time bound of Kingma et al. 2021")
    p.add_argument("--num", type=integer, default=256, help="number of test examples (default 256)")
    p.add_argument("--trace", default=None, help="exact or hutchinson (default: exact for D <= 16)")
    p.add_argument("--rtol", type=float, default=1e-5)
    p.add_argument("--atol", type=float, default=1e-5)
    p.add_argument("--batch-size", type=integer, default=256)
    p.add_argument("--seed", type=integer, default=0, help="seed for dequantization noise and Hutchinson probes")
    p.add_argument("--out", default=None,
                   help="also write the result as JSON to this file (vlb: and the plot of the terms beside it, <name>.png)")


def execute(a) -> None:
    import time

    import torch

    from ..evaluate import ode_likelihood, test_images
    from ..io import check_writable, write_json
    from ..run import load

    if a.method not in ("ode", "vlb"):
        raise error(f"unknown likelihood method {a.method!r}; expected 'ode' (probability-flow ODE) or 'vlb' (variational bound).")
    if a.num < 1 or a.batch_size < 1:
        raise error("--num and --batch-size must be positive integers.")
    if a.out:
        check_writable(a.out, "--out file")
    run = load(a.run)
    data = test_images(run, a.num)
    gen = torch.Generator().manual_seed(a.seed)
    name = run.config["data"]["name"]
    t0 = time.perf_counter()
    if a.method == "vlb" and run.config["diffusion"]["schedule"] == "learned":
        _continuous_bound(a, run, data, gen, name, t0)
        return
    if a.method == "vlb":
        _bound(a, run, data, gen, name, t0)
        return
    r = ode_likelihood(run, data, a.batch_size, rtol=a.rtol, atol=a.atol, trace=a.trace, generator=gen)
    shown, label = (r["mean"], "bits/dim") if run.kind == "image" else (-r["mean"], "NLL (nats)")
    nfe = sum(r["nfe_per_batch"]) / len(r["nfe_per_batch"])
    print(f"{label} of {len(r['values'])} test examples of {name} (probability-flow ODE, rtol {a.rtol}): "
          f"{shown:.4f} ± {r['stderr']:.4f}; {nfe:.0f} evaluations per batch; {time.perf_counter() - t0:.1f}s")
    if a.out:
        write_json(a.out, {"run": str(a.run), "method": a.method, "unit": r["unit"], "num": len(r["values"]),
                           "mean": r["mean"], "stderr": r["stderr"], "nfe_per_batch": r["nfe_per_batch"],
                           "rtol": a.rtol, "atol": a.atol})


def _continuous_bound(a, run, data, gen, name: str, t0: float) -> None:
    """``--method vlb`` on a learned schedule: the continuous-time bound of variational diffusion models."""
    import time

    from ..evaluate import continuous_bound_terms
    from ..io import write_json

    r = continuous_bound_terms(run, data, a.batch_size, gen)
    g0, g1 = (float(g.detach()) for g in run.schedule.gamma.ends())
    print(f"bits/dim of {len(r['total'])} test examples of {name} (continuous-time variational bound, learned "
          f"log-SNR from {-g0:.2f} to {-g1:.2f}): {r['mean']:.4f} ± {r['stderr']:.4f}; prior {r['prior']:.4g}, "
          f"reconstruction {r['reconstruction']:.4f}, diffusion {r['diffusion']:.4f}; {time.perf_counter() - t0:.1f}s")
    if a.out:
        write_json(a.out, {"run": str(a.run), "method": a.method, "bound": "continuous-time (VDM)", "unit": "bits/dim",
                           "num": len(r["total"]), "mean": r["mean"], "stderr": r["stderr"], "prior_bpd": r["prior"],
                           "reconstruction_bpd": r["reconstruction"], "diffusion_bpd": r["diffusion"],
                           "gamma_0": g0, "gamma_1": g1, "seed": a.seed})


def _bound(a, run, data, gen, name: str, t0: float) -> None:
    """``--method vlb``: the variational bound in bits/dim, term by term, and a plot of L_t over t."""
    import time
    from pathlib import Path

    from .. import plotting
    from ..evaluate import bound_terms
    from ..io import write_json

    r = bound_terms(run, data, a.batch_size, gen)
    terms, mean = r["terms"], r["mean"]
    learned = run.denoiser.learned_variance
    print(f"bits/dim of {len(r['total'])} test examples of {name} (variational bound, "
          f"{'learned' if learned else 'fixed β̃ (small)'} variance, T = {run.schedule.T}): {mean:.4f} ± {r['stderr']:.4f}; "
          f"L_T {r['prior']:.4g}, sum of L_1..L_(T-1) {float(terms[1:].sum()):.4f}, L_0 {float(terms[0]):.4f}; "
          f"{time.perf_counter() - t0:.1f}s")
    if a.out:
        out = Path(a.out)
        plot = out.with_name(out.stem + "_terms.png") if out.suffix == ".png" else out.with_suffix(".png")
    elif Path(a.run).is_dir():
        plot = Path(a.run) / "vlb_terms.png"
    else:  # a shipped pretrained model: not into the installed package
        plot = Path("vlb_terms.png")
    plotting.plot_vlb_terms(terms, plot, title=f"{name}: terms of the bound, total {mean:.3f} bits/dim")
    if a.out:
        write_json(a.out, {"run": str(a.run), "method": a.method, "unit": "bits/dim", "num": len(r["total"]),
                           "mean": mean, "stderr": r["stderr"], "variance": "learned" if learned else "small",
                           "T": run.schedule.T, "total_bpd": mean, "prior_bpd": r["prior"],
                           "decoder_bpd": float(terms[0]), "sum_terms_bpd": float(terms.sum()),
                           "terms_bpd": terms.tolist(), "seed": a.seed, "plot": str(plot)})
    print(f"wrote {plot}" + (f" and {a.out}" if a.out else ""))
