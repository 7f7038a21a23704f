"""Editing with the shipped MNIST model (difflab.tasks), judged by the shipped held-out MNIST classifier.

The shipped ``mnist`` model is class-conditional; every task here runs it at its null label, i.e. as the
unconditional model that label dropout trained. The judge (``difflab.metrics.classifiers.load_judge("mnist")``)
was trained on its own and never used to train or steer the model. Sections (``--sections``, default all):

  inpaint     the first ``--num`` MNIST test digits with the right or the bottom half hidden, completed by
              replacement (Song et al. 2021, App. I.2) and by RePaint (Lugmayr et al. 2022); share of completions
              the judge gives the original class (and, for reference, of the half-blank inputs and the originals)
  sdedit      SDEdit (Meng et al. 2022) at a sweep of t0: RMS distance to the guide and the judge's agreement
  sr          SR3 (``--sr-run``, preset mnist-sr: 14x14 -> 28x28) vs bicubic upsampling, PSNR on the test digits;
              ILVR (Choi et al. 2021) with the unconditional model beside them
  interp      DDPM-style interpolation grid over λ x t (Ho et al. 2020, Fig. 8) and DDIM slerp interpolation
  denoise     denoising at several noise levels from the matching step (Sohl-Dickstein et al. 2015, Fig. 5)
  trajectory  x_t and x̂_0 along an ancestral run (PNG + GIF), and samples sharing x_t (Ho et al. 2020, Figs. 6, 10)

Numbers go to ``docs/results/editing_mnist.json`` (merged section by section) and the page
``docs/results/editing_mnist.md`` is rendered from it with the notes below, pictures beside it.

    python benchmarks/editing_mnist.py                      # everything (about an hour on one busy CPU core)
    python benchmarks/editing_mnist.py --sections sr --num 200
    python benchmarks/editing_mnist.py --render-only        # rewrite the page from the JSON
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "docs" / "results"
SECTIONS = ("inpaint", "sdedit", "sr", "interp", "denoise", "trajectory")


def _gen(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _accuracy(images: torch.Tensor, labels: torch.Tensor) -> float:
    from difflab.metrics.classifiers import judge
    return float((judge(images, "mnist")[0] == labels).float().mean())


def _batches(fn, x: torch.Tensor, size: int, *rest):
    """fn over chunks of x (and of the tensors in rest), concatenated; chunk i gets seed i."""
    return torch.cat([fn(x[i:i + size], *(r[i:i + size] for r in rest), seed=i) for i in range(0, x.shape[0], size)])


def section_inpaint(run, x, y, a) -> dict:
    from difflab.plotting import save_image_grid
    from difflab.tasks import inpaint

    norm, res = run.normalization, {"originals": _accuracy(x, y)}
    methods = {"replacement": dict(method="replacement", sampler="ddpm", steps=a.steps),
               "repaint": dict(method="repaint", sampler="ddpm", steps=a.steps, jump=a.jump, repeats=a.repeats)}
    show = 10
    for mask_name in ("right", "bottom"):
        mask = inpaint.preset_mask(mask_name, run.shape)
        res[f"{mask_name}/masked input"] = _accuracy(x * mask, y)
        rows = [x[:show], x[:show] * mask + (1 - mask) * 0.5]
        for name, options in methods.items():
            t0 = time.perf_counter()

            def fill(chunk, seed):
                out = inpaint.inpaint(run.denoiser, norm.to_model(chunk), mask, generator=_gen(seed), **options)
                return inpaint.paste(norm.to_data(out), chunk, mask)

            out = _batches(fill, x, a.batch)
            assert torch.equal(out * mask, x * mask)  # the known half, exactly
            res[f"{mask_name}/{name}"] = _accuracy(out, y)
            res[f"{mask_name}/{name}/seconds"] = time.perf_counter() - t0
            rows.append(out[:show])
            print(f"inpaint {mask_name} {name}: {res[f'{mask_name}/{name}']:.3f} ({time.perf_counter() - t0:.0f}s)", flush=True)
        save_image_grid(torch.cat(rows), OUT / f"editing_inpaint_{mask_name}.png", nrow=show)
    return res


def section_sdedit(run, x, y, a) -> dict:
    from difflab.plotting import save_image_grid
    from difflab.tasks.sdedit import sdedit

    norm, res, rows, show = run.normalization, {}, [x[:10]], 10
    for t0 in a.t0:
        out = _batches(lambda c, seed: norm.to_data(sdedit(run.denoiser, norm.to_model(c), t0, steps=a.steps,
                                                           generator=_gen(seed))), x, a.batch)
        rms = (out - x).pow(2).flatten(1).mean(1).sqrt()
        res[str(t0)] = {"rms": float(rms.mean()), "rms_se": float(rms.std() / len(rms) ** 0.5), "judge_same": _accuracy(out, y)}
        rows.append(out[:show])
        print(f"sdedit t0={t0}: rms {res[str(t0)]['rms']:.4f}, same class {res[str(t0)]['judge_same']:.3f}", flush=True)
    save_image_grid(torch.cat(rows), OUT / "editing_sdedit.png", nrow=show)
    return res


def section_sr(run, x, y, a) -> dict:
    import difflab
    from difflab.plotting import save_image_grid
    from difflab.tasks import superres
    from difflab.tasks.ilvr import block_upsample, ilvr

    res = {}
    low = superres.low_res(x, 2)
    bicubic = superres.upsample(low, 2).clamp(0, 1)
    res["bicubic"] = float(superres.psnr(bicubic, x).mean())
    rows = [x[:10], block_upsample(low[:10], 2), bicubic[:10]]
    sr = difflab.load(a.sr_run)
    res["sr3_step"] = sr.step
    res["bicubic_judge"] = _accuracy(bicubic, y)
    # from pure noise with SR3's Algorithm 2 (ancestral), the same with deterministic DDIM, and from the noised
    # bicubic image (CCDF, Chung et al. 2022)
    for key, sampler, start in (("sr3", "ddpm", 1.0), ("sr3_ddim", "ddim", 1.0), (f"sr3_start{a.sr_start}", "ddpm", a.sr_start)):
        t0 = time.perf_counter()
        out = _batches(lambda c, seed: superres.sr3(sr, c, sampler=sampler, steps=a.steps, generator=_gen(seed),
                                                    start=start), low, a.batch)
        p = superres.psnr(out, x)
        res[key], res[f"{key}_se"], res[f"{key}_seconds"] = float(p.mean()), float(p.std() / len(p) ** 0.5), time.perf_counter() - t0
        res[f"{key}_judge"] = _accuracy(out, y)
        rows.append(out[:10])
    norm = run.normalization
    out = _batches(lambda c, seed: norm.to_data(ilvr(run.denoiser, norm.to_model(c), 2, sampler="ddpm", steps=a.steps,
                                                     generator=_gen(seed))), low, a.batch)
    res["ilvr"], res["ilvr_judge"] = float(superres.psnr(out, x).mean()), _accuracy(out, y)
    rows.append(out[:10])
    save_image_grid(torch.cat(rows), OUT / "editing_superres.png", nrow=10)
    res["sr_start"] = a.sr_start
    print(f"sr: {res}", flush=True)
    return res


def section_interp(run, x, y, a) -> dict:
    from difflab.plotting import plot_process_images
    from difflab.tasks import interpolate

    norm = run.normalization
    i, j = 0, int(torch.nonzero(y != y[0])[0])  # two test digits of different classes
    lams = interpolate.lambda_grid(9)
    fractions = [0.1, 0.3, 0.5, 0.7, 0.9]
    rows = []
    for f in fractions:
        t = round(f * run.schedule.T)
        out = interpolate.ddpm_interpolate(run.denoiser, norm.to_model(x[i:i + 1]), norm.to_model(x[j:j + 1]), lams, t,
                                           sampler="ddpm", steps=a.steps, seed=0)
        rows.append([x[i]] + list(norm.to_data(out[:, 0])) + [x[j]])
    labels = ["x₀"] + [f"λ={v:.2f}" for v in lams] + ["x₀′"]
    plot_process_images(rows, [f"t={f:.1f}T" for f in fractions], labels, OUT / "editing_interp_ddpm.png",
                        title=f"DDPM interpolation (Ho et al. 2020, Fig. 8): test digits {int(y[i])} and {int(y[j])}")
    out = interpolate.ddim_interpolate(run.denoiser, norm.to_model(x[i:i + 4]), norm.to_model(x[j:j + 4]), lams,
                                       steps=a.steps, fixed_point_iters=2)
    data = norm.to_data(out)
    rows = [[x[i + b]] + list(data[:, b]) + [x[j + b]] for b in range(4)]
    plot_process_images(rows, None, labels, OUT / "editing_interp_ddim.png",
                        title="DDIM inversion + slerp of x_T (Song et al. 2021, Sec. 5.3)")
    err = [float((data[0] - x[i:i + 4]).pow(2).mean().sqrt()), float((data[-1] - x[j:j + 4]).pow(2).mean().sqrt())]
    return {"pair": [int(i), int(j)], "ddim_endpoint_rms": err}


def section_denoise(run, x, y, a) -> dict:
    from difflab.plotting import plot_process_images
    from difflab.tasks.denoise import data_to_model_std, denoise, matching_step

    norm, res, show = run.normalization, {}, 4
    rows = [[x[b]] for b in range(show)]
    for k, s in enumerate(a.noise):
        noisy = x + s * torch.randn(x.shape, generator=_gen(100 + k))
        std = data_to_model_std(s, norm.scale)
        out = _batches(lambda c, seed: norm.to_data(denoise(run.denoiser, norm.to_model(c), std, steps=a.steps,
                                                            generator=_gen(seed))), noisy, a.batch)
        res[str(s)] = {"t": matching_step(run.schedule, std), "rms_noisy": float((noisy - x).pow(2).mean().sqrt()),
                       "rms_denoised": float((out - x).pow(2).mean().sqrt()), "judge_noisy": _accuracy(noisy.clamp(0, 1), y),
                       "judge_denoised": _accuracy(out, y)}
        for b in range(show):
            rows[b] += [noisy[b].clamp(0, 1), out[b]]
        print(f"denoise σ={s}: {res[str(s)]}", flush=True)
    cols = ["clean"] + [f"{w} σ={s}" for s in a.noise for w in ("noisy", "denoised")]
    plot_process_images(rows, None, cols, OUT / "editing_denoise.png",
                        title="Denoising from the matching step (Sohl-Dickstein et al. 2015, Fig. 5)")
    return res


def section_trajectory(run, x, y, a) -> dict:
    from difflab.plotting import save_image_grid
    from difflab.tasks import trajectory

    to_data = run.normalization.to_data
    traj = trajectory.record(run.denoiser, (4, *run.shape), sampler="ddpm", steps=a.steps, generator=_gen(7))
    trajectory.save_grid(traj, OUT / "editing_trajectory.png", to_data, count=10)
    trajectory.save_animation(traj, OUT / "editing_trajectory.gif", to_data)
    x_T = trajectory.start_noise(run.denoiser, (1, *run.shape), _gen(11))
    share = [0, a.steps // 4, a.steps // 2, 3 * a.steps // 4, a.steps - 1 - a.steps // 10]
    times, rows = trajectory.shared_rows(run.denoiser, x_T, 10, share, sampler="ddpm", steps=a.steps, seed=0)
    save_image_grid(to_data(rows.reshape(-1, *run.shape)), OUT / "editing_shared.png", nrow=10)
    spread = [float(to_data(r).std(0).mean()) for r in rows]
    return {"shared_times": [int(t) for t in times], "pixel_std_across_samples": spread}


NOTES_FILE = Path(__file__).with_name("editing_mnist_notes.md")


def render(results: dict, command: str) -> str:
    from difflab.io import write_text

    L = ["# Editing with diffusion on MNIST", "",
         "The shipped `mnist` model (class-conditional U-Net, run at its **null label**, i.e. unconditionally) with "
         "`difflab.tasks`; completions judged by the shipped MNIST judge (`load_judge(\"mnist\")`, trained separately, "
         "never used to train or steer the model). Test digits: the first N of the MNIST test split.", "",
         f"Command: `{command}`  ", f"Machine: CPU, one thread (`OMP_NUM_THREADS=1`), shared with other jobs. "
         f"Date: {results.get('date', '?')}", ""]
    inp = results.get("inpaint")
    if inp:
        cfg = results["config"]
        L += ["## (a) Inpainting", "",
              f"N = {cfg['num']} test digits, {cfg['steps']} ancestral (`ddpm`) steps; RePaint with jump j = {cfg['jump']} "
              f"and r = {cfg['repeats']} resamplings on the same {cfg['steps']}-step grid (≈ {cfg['steps'] * cfg['repeats']} "
              "network evaluations per image against 50). Share of completed digits the judge gives the original class:", "",
              "| hidden half | originals | half-blank input | replacement | RePaint |", "|---|---|---|---|---|"]
        for m in ("right", "bottom"):
            L.append(f"| {m} | {inp['originals']:.1%} | {inp[f'{m}/masked input']:.1%} | {inp[f'{m}/replacement']:.1%} "
                     f"| {inp[f'{m}/repaint']:.1%} |")
        L += ["", "Known pixels of every completion equal the input's exactly (checked in the script).", "",
              "![right](editing_inpaint_right.png)", "", "![bottom](editing_inpaint_bottom.png)", "",
              "Rows: originals; input with the hole grey; replacement; RePaint.", ""]
    sd = results.get("sdedit")
    if sd:
        L += ["## (b) SDEdit sweep over t0", "", "DDIM (η = 0), 50 steps over the full schedule (a run from t0 takes "
              "round(50·t0)). RMS distance to the guide in [0, 1] pixels (± standard error) and the share the judge "
              "still gives the guide's class:", "", "| t0 | RMS to guide | same class |", "|---|---|---|"]
        for t0, v in sd.items():
            L.append(f"| {t0} | {v['rms']:.4f} ± {v['rms_se']:.4f} | {v['judge_same']:.1%} |")
        L += ["", "![sdedit](editing_sdedit.png)", "", "Rows: guides, then t0 = " + ", ".join(sd) + " (top to bottom).", ""]
    sr = results.get("sr")
    if sr:
        ccdf = f"sr3_start{sr['sr_start']}"
        L += ["## (c) Super-resolution 14×14 → 28×28", "",
              f"Low-res = 2×2 average pooling of the test digit. SR3: `{results['config']['sr_run']}` (preset `mnist-sr`, "
              f"step {sr['sr3_step']}), 50 steps. ILVR: the unconditional model with N = 2 low-pass guidance, "
              "ancestral 50 steps. PSNR against the original, mean over the test digits (± standard error):", "",
              "| method | PSNR (dB) | judge: original class |", "|---|---|---|",
              f"| bicubic (`interpolate(mode='bicubic')`) | {sr['bicubic']:.2f} | {sr['bicubic_judge']:.1%} |",
              f"| **SR3** (`mnist-sr`) from pure noise, ancestral (`ddpm`, the paper's Algorithm 2; the default) | "
              f"**{sr['sr3']:.2f}** ± {sr['sr3_se']:.2f} | {sr['sr3_judge']:.1%} |"]
        if "sr3_ddim" in sr:
            L.append(f"| SR3 (`mnist-sr`) from pure noise, deterministic DDIM (η = 0) | {sr['sr3_ddim']:.2f} ± "
                     f"{sr['sr3_ddim_se']:.2f} | {sr['sr3_ddim_judge']:.1%} |")
        L += [f"| SR3 (`mnist-sr`) from the bicubic image noised to t0 = {sr['sr_start']} (CCDF), ancestral | "
              f"{sr[ccdf]:.2f} ± {sr[ccdf + '_se']:.2f} | {sr[ccdf + '_judge']:.1%} |",
              f"| ILVR (shipped `mnist`, zero-shot) | {sr['ilvr']:.2f} | {sr['ilvr_judge']:.1%} |", "",
              "The deterministic DDIM sampler started from pure noise keeps whatever its first, highest-noise steps get "
              "wrong: with no fresh noise later, those errors stay in the image as the grey, noisy backgrounds of row 5. "
              "Ancestral sampling re-draws noise at every step and washes them out; started from the noised bicubic "
              "image, the sampler skips those steps altogether.", "",
              "![superres](editing_superres.png)", "", "Rows: original; low-res (blocks); bicubic; SR3 ancestral from "
              f"noise; SR3 DDIM from noise; SR3 from t0 = {sr['sr_start']}; ILVR.", ""]
    it = results.get("interp")
    if it:
        L += ["## (d) Interpolation, denoising, trajectories", "",
              "![ddpm interpolation](editing_interp_ddpm.png)", "", "![ddim interpolation](editing_interp_ddim.png)", "",
              f"DDIM endpoints (λ = 0, 1) reproduce the inputs to RMS {it['ddim_endpoint_rms'][0]:.4f} and "
              f"{it['ddim_endpoint_rms'][1]:.4f} (inversion with 2 fixed-point iterations per step).", ""]
    dn = results.get("denoise")
    if dn:
        L += ["| noise σ (pixels) | start step t | RMS noisy | RMS denoised | judge noisy | judge denoised |",
              "|---|---|---|---|---|---|"]
        for s, v in dn.items():
            L.append(f"| {s} | {v['t']} | {v['rms_noisy']:.3f} | {v['rms_denoised']:.3f} | {v['judge_noisy']:.1%} | "
                     f"{v['judge_denoised']:.1%} |")
        L += ["", "![denoise](editing_denoise.png)", ""]
    tr = results.get("trajectory")
    if tr:
        L += ["![trajectory](editing_trajectory.png)", "", "Animation: [editing_trajectory.gif](editing_trajectory.gif)", "",
              "![shared](editing_shared.png)", "",
              "Samples sharing x_t: rows share x_t at t = " + ", ".join(map(str, tr["shared_times"])) +
              "; mean per-pixel std across the 10 samples of a row: " +
              ", ".join(f"{v:.3f}" for v in tr["pixel_std_across_samples"]) + ".", ""]
    if NOTES_FILE.is_file():
        L += [NOTES_FILE.read_text().strip(), ""]
    text = "\n".join(L)
    write_text(OUT / "editing_mnist.md", text)
    return text


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sections", default=",".join(SECTIONS))
    p.add_argument("--num", type=int, default=200, help="test digits (default 200)")
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--jump", type=int, default=5)
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--t0", type=lambda s: [float(v) for v in s.split(",")], default=[0.1, 0.3, 0.5, 0.7, 0.9, 1.0])
    p.add_argument("--noise", type=lambda s: [float(v) for v in s.split(",")], default=[0.1, 0.3, 0.6, 1.0])
    p.add_argument("--sr-run", default="runs/mnist-sr")
    p.add_argument("--sr-start", type=float, default=0.5, help="SR3 also from the noised bicubic image at this t0")
    p.add_argument("--batch", type=int, default=100)
    p.add_argument("--render-only", action="store_true")
    a = p.parse_args()

    import difflab
    from difflab.data import load_dataset
    from difflab.io import write_json

    json_path = OUT / "editing_mnist.json"
    results = json.loads(json_path.read_text()) if json_path.is_file() else {}
    command = "python " + " ".join(shlex.quote(v) for v in [str(Path(sys.argv[0])), *sys.argv[1:]])
    if not a.render_only:
        run = difflab.load("mnist")
        data = load_dataset("mnist", split="test", num=a.num)
        x, y = data.data[:a.num], data.labels[:a.num]
        for name in a.sections.split(","):
            if name not in SECTIONS:
                raise SystemExit(f"unknown section {name!r}; expected {', '.join(SECTIONS)}")
            with torch.no_grad():
                section = globals()[f"section_{name}"](run, x, y, a)
            # re-read before writing: sections may run in parallel processes, each adds its own
            results = json.loads(json_path.read_text()) if json_path.is_file() else {}
            results[name] = section
            results["config"] = {**results.get("config", {}), "num": a.num, "steps": a.steps, "jump": a.jump,
                                 "repeats": a.repeats, "sr_run": a.sr_run}
            results["date"] = time.strftime("%Y-%m-%d %H:%M")
            results.setdefault("commands", {})[name] = command
            write_json(json_path, results)
    print(render(results, "; ".join(sorted(set(results.get("commands", {}).values()))) or command))


if __name__ == "__main__":
    main()
