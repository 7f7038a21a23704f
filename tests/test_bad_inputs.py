"""Bad input, as a careless user gives it, to every command: each row must end with exit status 2, one short line
on stderr that says what was wrong, no traceback, and nothing written or changed on disk. A new command adds rows,
not code. ``{d}`` is the scratch folder holding a tiny toy run (``toy``), a tiny 8x8 digits run (``digits``) and the
files below; ``{bad}`` is a folder no file can be made in."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from difflab.cli.main import main

TOY = """preset: 8gaussians
model: {hidden: 16, depth: 2, time_dim: 8}
diffusion: {T: 50}
train: {steps: 4, batch_size: 32, log_every: 2, save_every: 2, sample_every: 0, num_samples: 16}
sample: {steps: 4}
data: {num: 256}
"""
DIGITS = """preset: digits
model: {base_channels: 8, channel_mult: [1, 2], num_res_blocks: 1, attention_resolutions: [], groups: 4}
diffusion: {T: 50}
train: {steps: 2, batch_size: 8, log_every: 1, save_every: 2, sample_every: 0, num_samples: 4}
sample: {steps: 4}
data: {num: 32}
"""

ROWS = [
    # --- difflab train ----------------------------------------------------------------------------------------
    ("train: no arguments", "train", "required: config, --out"),
    ("train: no --out", "train {d}/toy.yaml", "required: --out"),
    ("train: unknown preset", "train nopreset --out {d}/new", "unknown preset 'nopreset'"),
    ("train: missing file", "train {d}/missing.yaml --out {d}/new", "does not exist"),
    ("train: not UTF-8", "train {d}/latin1.yaml --out {d}/new", "is not UTF-8 text"),
    ("train: not YAML", "train {d}/broken.yaml --out {d}/new", "could not be parsed"),
    ("train: a list", "train {d}/list.json --out {d}/new", "must hold a mapping of sections"),
    ("train: unknown section", "train {d}/unknown_section.yaml --out {d}/new", "unknown config key 'trian'"),
    ("train: unknown key", "train {d}/unknown_key.yaml --out {d}/new", "unknown config key 'train.step'"),
    ("train: bad lr", "train {d}/bad_lr.yaml --out {d}/new", "train.lr must be a positive number"),
    ("train: bad model option", "train {d}/bad_model.yaml --out {d}/new", "'widthh' is not an option"),
    ("train: image model on points", "train {d}/mismatch.yaml --out {d}/new", "attention_resolutions"),
    ("train: EDM sigma_data 0", "train {d}/edm_sd.yaml --out {d}/new", "diffusion.sigma_data must be a positive number"),
    ("train: EDM formulation, ε network", "train {d}/edm_eps.yaml --out {d}/new",
     "diffusion.formulation = 'edm' trains a network predicting edm, not diffusion.parameterization 'eps'; for 'eps' set diffusion.formulation: ddpm"),
    ("train: unknown weighting", "train {d}/weighting.yaml --out {d}/new", "diffusion.weighting must be one of"),
    ("train: lognormal on a discrete schedule", "train {d}/lognormal.yaml --out {d}/new", "needs a continuous schedule"),
    ("train: OT pairing outside flow", "train {d}/ot_ddpm.yaml --out {d}/new", "it needs diffusion.formulation: flow"),
    ("train: logit-normal on a discrete schedule", "train {d}/logit.yaml --out {d}/new", "needs a continuous schedule"),
    ("train: flow schedule bounds", "train {d}/flow_bounds.yaml --out {d}/new", "flow schedule needs 0 < t_min < t_max < 1"),
    ("train: steps 0", "train {d}/toy.yaml --out {d}/new --steps 0", "--steps must be a positive integer"),
    ("train: steps text", "train {d}/toy.yaml --out {d}/new --steps many", "expected an integer"),
    ("train: seed too large", "train {d}/toy.yaml --out {d}/new --seed 99999999999999999999", "--seed must be an integer"),
    ("train: negative seed", "train {d}/toy.yaml --out {d}/new --seed -1", "--seed must be an integer"),
    ("train: max-minutes 0", "train {d}/toy.yaml --out {d}/new --max-minutes 0", "--max-minutes must be a positive"),
    ("train: grad-accum 0", "train {d}/toy.yaml --out {d}/new --grad-accum 0", "--grad-accum must be a positive"),
    ("train: grad-accum not dividing", "train {d}/toy.yaml --out {d}/new --grad-accum 5", "--grad-accum 5 does not divide"),
    ("train: precision", "train {d}/toy.yaml --out {d}/new --precision fp16", "invalid choice: 'fp16'"),
    ("train: device", "train {d}/toy.yaml --out {d}/new --device tpu", "--device must be cpu, cuda"),
    ("train: cuda absent", "train {d}/toy.yaml --out {d}/new --device cuda", "no CUDA GPU"),
    ("train: save-every negative", "train {d}/toy.yaml --out {d}/new --save-every -1", "--save-every must be an integer >= 0"),
    ("train: unknown flag", "train {d}/toy.yaml --out {d}/new --batch-size 3", "unrecognized arguments: --batch-size"),
    ("train: out is a file", "train {d}/toy.yaml --out {d}/toy.yaml", "is a file, not a run directory"),
    ("reflow: not a flow model", "reflow {d}/toy --out {d}/new --pairs 10", "reflow straightens a flow-matching model"),
    ("reflow: no pairs", "reflow {d}/toy --out {d}/new", "reflow straightens a flow-matching model"),
    ("reflow: zero pairs", "reflow {d}/nothere --out {d}/new --pairs 0", "does not exist, and it is not the name"),
    ("reflow: no teacher", "reflow --out {d}/new --pairs 10", "reflow needs the teacher run unless it resumes"),
    ("reflow: resume a train run", "reflow --out {d}/toy --resume", "is not a reflow run; resume it with difflab train"),
    # --- difflab distill / tune-steps -----------------------------------------------------------------------------
    ("distill: --to no halving", "distill {d}/toy --to 3 --out {d}/new", "must be the teacher's 4 steps halved"),
    ("distill: --to 0", "distill {d}/toy --to 0 --out {d}/new", "--to must be a positive integer"),
    ("distill: no teacher", "distill {d}/nothere --to 2 --out {d}/new", "does not exist, and it is not the name"),
    ("sample: consistency sampler, diffusion model", "sample {d}/toy --sampler consistency --out {d}/new.png",
     "only a consistency model predicts"),
    ("distill: no --to", "distill {d}/toy --out {d}/new", "progressive distillation needs --to"),
    ("distill: consistency with --to", "distill {d}/toy --method consistency --to 2 --out {d}/new",
     "--to and --from set the rounds"),
    ("distill: consistency --levels 2", "distill {d}/toy --method consistency --levels 2 --out {d}/new",
     "must be an integer >= 3, got 2"),
    ("distill: unknown method", "distill {d}/toy --method magic --to 2 --out {d}/new", "invalid choice: 'magic'"),
    ("distill: out holds a run", "distill {d}/toy --to 2 --out {d}/digits", "already holds files"),
    ("tune-steps: stochastic sampler", "tune-steps {d}/toy --nfe 4 --sampler ddpm", "draws fresh noise"),
    ("tune-steps: NFE no step count meets", "tune-steps {d}/toy --nfe 3 --sampler heun", "at no step count near"),
    ("tune-steps: NFE 0", "tune-steps {d}/toy --nfe 0", "--nfe must be a positive integer"),
    ("tune-steps: shipped model", "tune-steps mnist --nfe 4", "is a shipped model, which is read-only"),
    ("tune-steps: no run", "tune-steps {d}/nothere --nfe 4", "does not exist"),
    ("sample: tuned times not tuned", "sample {d}/toy --discretization tuned --out {d}/o.npz", "no tuned steps for sampler"),
    # --- difflab fit-gaussian / sample --gaussian-start -------------------------------------------------------------
    ("fit-gaussian: shipped model", "fit-gaussian mnist", "is a shipped model, which is read-only"),
    ("fit-gaussian: no run", "fit-gaussian {d}/nothere", "does not exist"),
    ("fit-gaussian: rank 0", "fit-gaussian {d}/toy --rank 0", "--rank must be a positive integer"),
    ("sample: Gaussian start without a Gaussian", "sample {d}/toy --gaussian-start 5 --out {d}/g.npz",
     "has no gaussian.safetensors"),
    ("sample: Gaussian start negative", "sample mnist --gaussian-start -1 --num 2 --out {d}/g.npz", "σ̃ = σ/α > 0"),
    # --- difflab posthoc-ema / train.posthoc_ema -----------------------------------------------------------------------
    ("posthoc-ema: no snapshots", "posthoc-ema {d}/toy --sigma-rel 0.1 --out {d}/ph", "holds no post-hoc EMA snapshots"),
    ("posthoc-ema: sigma_rel too long", "posthoc-ema {d}/toy --sigma-rel 0.3 --out {d}/ph",
     "--sigma-rel must lie strictly between 0 and 0.2887"),
    ("posthoc-ema: not a run", "posthoc-ema {d}/nothere --sigma-rel 0.1 --out {d}/ph", "is not a run directory"),
    ("train: posthoc_ema length", "train {d}/posthoc_bad.yaml --out {d}/ph", "train.posthoc_ema[1] must lie strictly"),
    ("train: out holds a run", "train {d}/toy.yaml --out {d}/toy", "already holds a run"),
    ("train: out unwritable", "train {d}/toy.yaml --out {bad}/run", "cannot create the run directory"),
    ("train: resume nothing", "train {d}/toy.yaml --out {d}/nothing --resume", "does not exist"),
    ("train: resume other config", "train {d}/digits.yaml --out {d}/toy --resume", "with a different config"),
    ("train: resume other seed", "train {d}/toy.yaml --out {d}/toy --resume --seed 5", "leave --seed out when resuming"),
    ("train: resume list config", "train {d}/toy.yaml --out {d}/listcfg --resume", "must hold a mapping of sections"),
    ("train: resume truncated", "train {d}/toy.yaml --out {d}/trunc --resume --steps 8", "no valid checkpoint"),
    ("train: resume onto weights of another shape", "train {d}/wide.yaml --out {d}/wrongshape --resume --steps 8",
     "do not match the model in config.json (size mismatch"),
    ("train: resume classifier run", "train {d}/toy.yaml --out {d}/notdiffusion --resume", "is a classifier run"),
    # --- difflab sample ---------------------------------------------------------------------------------------
    ("sample: no run", "sample --out {d}/s.npz", "required: run"),
    ("sample: missing run", "sample {d}/missing --out {d}/s.npz", "does not exist"),
    ("sample: num 0", "sample {d}/toy --num 0 --out {d}/s.npz", "--num must be a positive integer"),
    ("sample: batch-size 0", "sample {d}/toy --batch-size 0 --out {d}/s.npz", "--batch-size must be a positive"),
    ("sample: out suffix", "sample {d}/toy --out {d}/s.txt", "must end in .png or .npz"),
    ("sample: out is a directory", "sample {d}/toy --out {d}/adir.npz", "is a directory"),
    ("sample: out unwritable", "sample {d}/toy --out {bad}/s.npz", "is not a writable directory"),
    ("sample: unknown sampler", "sample {d}/toy --sampler nope --out {d}/s.npz", "unknown sampler 'nope'"),
    ("sample: steps 0", "sample {d}/toy --steps 0 --out {d}/s.npz", "steps must be an integer from 1"),
    ("sample: steps above T", "sample {d}/toy --steps 51 --out {d}/s.npz", "steps must be an integer from 1 to T = 50"),
    ("sample: eta elsewhere", "sample {d}/toy --sampler ddpm --eta 0.5 --out {d}/s.npz", "--eta applies to the ddim"),
    ("sample: negative eta", "sample {d}/toy --eta -1 --out {d}/s.npz", "eta must be a number >= 0"),
    ("sample: unknown option", "sample {d}/toy --option foo=1 --out {d}/s.npz", "has no option 'foo'"),
    ("sample: option syntax", "sample {d}/toy --option foo --out {d}/s.npz", "--option expects KEY=VALUE"),
    ("sample: discretization", "sample {d}/toy --discretization wobbly --out {d}/s.npz", "wobbly"),
    ("sample: seed too large", "sample {d}/toy --seed 99999999999999 --out {d}/s.npz", "--seed 99999999999999 is too large"),
    ("sample: class unconditional", "sample {d}/toy --class 3 --out {d}/s.npz", "unconditional"),
    ("sample: scale alone", "sample {d}/toy --scale 2 --out {d}/s.npz", "--scale needs --guidance"),
    ("sample: compose alone", "sample {d}/toy --compose --out {d}/s.npz", "--compose needs --classes"),
    ("sample: classifier missing", "sample {d}/digits --class 1 --guidance classifier --out {d}/s.npz", "needs --classifier"),
    ("sample: prompts to classes", "sample {d}/digits --prompt hello --out {d}/s.npz", "not text-conditioned"),
    ("sample: batch beyond memory", "sample {d}/toy --num 1000000000 --batch-size 1000000000 --out {d}/s.npz",
     "GiB are available"),
    ("sample: huge grid", "sample {d}/toy --num 20000 --out {d}/s.png", "write an .npz"),
    ("sample: truncated run", "sample {d}/trunc --out {d}/s.npz", "truncated or corrupt"),
    ("sample: corrupt config", "sample {d}/badjson --out {d}/s.npz", "is corrupt (not valid JSON)"),
    ("sample: config a list", "sample {d}/listcfg --out {d}/s.npz", "must hold a mapping of sections"),
    ("sample: config lacks a section", "sample {d}/nosec --out {d}/s.npz", "lacks its 'diffusion' section"),
    ("sample: corrupt record", "sample {d}/badrec --out {d}/s.npz", "run record"),
    ("sample: weights of another shape", "sample {d}/wrongshape --out {d}/s.npz", "do not match the model"),
    # --- difflab eval -----------------------------------------------------------------------------------------
    ("eval: neither run nor samples", "eval", "give either a run"),
    ("eval: samples without ref", "eval --samples {d}/good.npz", "--samples needs --ref"),
    ("neighbors: a toy run", "neighbors {d}/toy --out {d}/nb.png", "neighbours compare images"),
    ("neighbors: k beyond the training set", "neighbors {d}/digits --k 100000 --out {d}/nb.png", "the run trained on"),
    ("neighbors: picture suffix", "neighbors {d}/digits --out {d}/nb.jpg", "must end in .png"),
    ("cascade: upsampler is no SR model", "cascade {d}/digits {d}/digits --out {d}/c.png", "not a super-resolution model"),
    ("cascade: a toy base", "cascade {d}/toy {d}/digits --out {d}/c.png", "one of these models 2-D points"),
    ("eval: more than the test split", "eval {d}/digits --num 451 --metrics fd", "the digits test split holds 450"),
    ("eval: .npy", "eval --samples {d}/arr.npy --ref mnist", "must be an .npz"),
    ("eval: missing file", "eval --samples {d}/missing.npz --ref mnist", "does not exist"),
    ("eval: not a zip", "eval --samples {d}/notzip.npz --ref mnist", "is not an .npz"),
    ("eval: wrong key", "eval --samples {d}/wrongkey.npz --ref mnist", "is not an .npz"),
    ("eval: NaN", "eval --samples {d}/nan.npz --ref mnist", "non-finite"),
    ("eval: out of range", "eval --samples {d}/range.npz --ref mnist", "outside [0, 1]"),
    ("eval: empty", "eval --samples {d}/empty.npz --ref mnist", "non-empty batch"),
    ("eval: unknown metric", "eval --samples {d}/good.npz --ref mnist --metrics fd,xyz", "xyz"),
    ("eval: unknown ref", "eval --samples {d}/good.npz --ref imagenet", "imagenet"),
    ("eval: nll without run", "eval --samples {d}/good.npz --ref mnist --metrics nll", "needs a run"),
    ("eval: num 1", "eval {d}/digits --num 1", "--num must be at least 2"),
    ("eval: points run", "eval {d}/toy --num 4", "this run holds 2-D points"),
    ("eval: out unwritable", "eval --samples {d}/good.npz --ref mnist --out {bad}/x.json", "not a writable directory"),
    # --- difflab likelihood -----------------------------------------------------------------------------------
    ("likelihood: method", "likelihood {d}/toy --method nope", "unknown likelihood method"),
    ("likelihood: num 0", "likelihood {d}/toy --num 0", "--num and --batch-size must be positive"),
    ("likelihood: vlb on points", "likelihood {d}/toy --method vlb --num 4", "defined for 8-bit images"),
    ("likelihood: missing run", "likelihood {d}/missing", "does not exist"),
    ("likelihood: out unwritable", "likelihood {d}/toy --num 4 --out {bad}/l.json", "not a writable directory"),
    # --- difflab export ---------------------------------------------------------------------------------------
    ("export: missing run", "export {d}/missing --out {d}/exp", "is not a run directory"),
    ("export: out exists", "export {d}/toy --out {d}/digits", "already exists"),
    ("export: out unwritable", "export {d}/toy --out {bad}/exp", "not a writable directory"),
    ("export: truncated run", "export {d}/trunc --out {d}/exp", "no valid checkpoint"),
    ("export: unknown format", "export {d}/toy --format pickle --out {d}/exp", "invalid choice: 'pickle'"),
    ("export diffusers: a toy MLP", "export {d}/toy --format diffusers --out {d}/exp", "a 'mlp' model has no diffusers"),
    ("export diffusers: out exists", "export {d}/toy --format diffusers --out {d}/digits", "already exists"),
    ("export onnx: truncated run", "export {d}/trunc --format onnx --out {d}/exp", "no valid checkpoint"),
    ("export onnx: out unwritable", "export {d}/toy --format onnx --out {bad}/exp", "not a writable directory"),
    # --- difflab app (each refused before the server starts) --------------------------------------------------
    ("app: port out of range", "app {d}/toy --port 70000", "--port must be from 0 to 65535"),
    ("app: missing run", "app {d}/missing", "does not exist"),
    ("app: jobs 0", "app {d}/toy --jobs 0", "--jobs, --max-images and --max-steps must be at least 1"),
    ("app: classifier is no classifier run", "app {d}/toy --classifier {d}/toy", "classifier"),
    ("sample: neither run nor model folder", "sample {d}/emptydir --num 2 --out {d}/s.png", "is neither a difflab run"),
    # --- train-classifier, train-autoencoder ------------------------------------------------------------------
    ("train-classifier: unknown preset", "train-classifier nope --out {d}/c", "unknown classifier preset"),
    ("train-classifier: diffusion preset", "train-classifier digits --out {d}/c", "its classifier is digits-classifier"),
    ("train-classifier: steps 0", "train-classifier digits-classifier --out {d}/c --steps 0", "--steps must be"),
    ("train-classifier: resume a diffusion run", "train-classifier digits-classifier --out {d}/toy --resume",
     "is a diffusion run, not a classifier run"),
    ("train-autoencoder: unknown preset", "train-autoencoder nope --out {d}/a", "unknown autoencoder preset"),
    ("train-autoencoder: seed", "train-autoencoder mnist-pairs-kl --out {d}/a --seed -4", "--seed must be"),
    ("train-autoencoder: resume a diffusion run", "train-autoencoder mnist-pairs-kl --out {d}/toy --resume",
     "is not an autoencoder run"),
    # --- the editing commands ---------------------------------------------------------------------------------
    ("inpaint: points run", "inpaint {d}/toy --image {d}/d8.npz --mask right --out {d}/o.npz", "models 2-D points"),
    ("inpaint: image shape", "inpaint {d}/digits --image {d}/good.npz --mask right --out {d}/o.npz", "has shape (1, 28, 28)"),
    ("inpaint: mask", "inpaint {d}/digits --image {d}/d8.npz --mask sideways --out {d}/o.npz", "sideways"),
    ("inpaint: repaint sampler", "inpaint {d}/digits --image {d}/d8.npz --mask right --method repaint --sampler heun "
     "--out {d}/o.npz", "RePaint descends with"),
    ("inpaint: out suffix", "inpaint {d}/digits --image {d}/d8.npz --mask right --out {d}/o.jpg", "must end in .png or .npz"),
    ("edit: strength", "edit {d}/digits --image {d}/d8.npz --strength 2 --out {d}/o.npz", "strength"),
    ("edit: .npy image", "edit {d}/digits --image {d}/arr.npy --strength 0.5 --out {d}/o.npz", "must be a .png or an .npz"),
    ("edit: not a PNG", "edit {d}/digits --image {d}/notpng.png --strength 0.5 --out {d}/o.npz", "notpng.png"),
    ("edit: decompression bomb", "edit {d}/digits --image {d}/bomb.png --strength 0.5 --out {d}/o.npz", "are refused unread"),
    ("edit: out unwritable", "edit {d}/digits --image {d}/d8.npz --strength 0.5 --out {bad}/o.npz", "not a writable"),
    ("upscale: not SR3", "upscale {d}/digits --image {d}/d8.npz --out {d}/o.npz", "not a super-resolution model"),
    ("upscale: ilvr size", "upscale {d}/digits --image {d}/good.npz --method ilvr --out {d}/o.npz", "ILVR needs"),
    ("interpolate: counts", "interpolate {d}/digits --image {d}/d8.npz --image2 {d}/d8one.npz --out {d}/o.npz",
     "give as many of each"),
    ("interpolate: t", "interpolate {d}/digits --image {d}/d8one.npz --image2 {d}/d8one.npz --method ddpm --t x "
     "--out {d}/o.npz", "expected numbers"),
    ("denoise: noise std", "denoise {d}/digits --image {d}/d8.npz --noise-std -1 --out {d}/o.npz", "noise"),
    ("trajectory: num 0", "trajectory {d}/digits --num 0 --out {d}/o.npz", "--num must be a positive integer"),
    ("trajectory: gif suffix", "trajectory {d}/digits --num 1 --out {d}/o.png --gif {d}/o.png", "must end in .gif"),
    ("trajectory: Gaussian start negative", "trajectory mnist --num 1 --gaussian-start -2 --out {d}/o.png",
     "--gaussian-start must be >= 0"),
    ("trajectory: Gaussian start without a Gaussian", "trajectory {d}/digits --num 1 --gaussian-start 5 --out {d}/o.png",
     "has no gaussian.safetensors"),
    ("trajectory: gif unwritable", "trajectory {d}/digits --num 1 --out {d}/o.png --gif {bad}/o.gif", "not a writable"),
    # --- the other commands -----------------------------------------------------------------------------------
    ("reproduce: unknown", "reproduce nope", "unknown reproduction 'nope'"),
    ("schedules: T 0", "schedules --T 0", "T must be a positive integer"),
    ("schedules: plot suffix", "schedules --plot {d}/s.jpg", "must end in .png"),
    ("samplers: extra argument", "samplers extra", "unrecognized arguments: extra"),
    ("demo: out is a foreign folder", "demo --out {d}/digits", "is not a difflab demo directory"),
    ("unknown command", "fly", "invalid choice: 'fly'"),
]


def _write_files(d: Path) -> None:
    from PIL import Image

    (d / "toy.yaml").write_text(TOY)
    (d / "digits.yaml").write_text(DIGITS)
    (d / "latin1.yaml").write_bytes("preset: digits\n# café\n".encode("latin-1"))
    (d / "broken.yaml").write_text("preset: [digits\n")
    (d / "list.json").write_text("[1, 2]")
    (d / "unknown_section.yaml").write_text("preset: digits\ntrian: {steps: 3}\n")
    (d / "unknown_key.yaml").write_text("preset: digits\ntrain: {step: 3}\n")
    (d / "bad_lr.yaml").write_text("preset: digits\ntrain: {lr: -1}\n")
    (d / "bad_model.yaml").write_text("preset: 8gaussians\nmodel: {widthh: 3}\n")
    (d / "edm_sd.yaml").write_text("preset: 8gaussians-edm\ndiffusion: {sigma_data: 0}\n")
    (d / "edm_eps.yaml").write_text("preset: 8gaussians-edm\ndiffusion: {parameterization: eps}\n")
    (d / "weighting.yaml").write_text("preset: digits\ndiffusion: {weighting: max-snr}\n")
    (d / "lognormal.yaml").write_text("preset: digits\ntrain: {timestep_sampler: lognormal}\n")
    (d / "ot_ddpm.yaml").write_text("preset: 8gaussians\ndiffusion: {ot_pairing: true}\n")
    (d / "logit.yaml").write_text("preset: digits\ntrain: {timestep_sampler: logit-normal}\n")
    (d / "flow_bounds.yaml").write_text("preset: 8gaussians-flow\ndiffusion: {schedule_params: {t_max: 1.0}}\n")
    (d / "wide.yaml").write_text(TOY.replace("hidden: 16", "hidden: 24"))
    (d / "posthoc_bad.yaml").write_text("preset: 8gaussians\ntrain: {posthoc_ema: [0.05, 0.5]}\n")
    (d / "mismatch.yaml").write_text("preset: 8gaussians\nmodel: {type: unet, image_size: 8}\n")
    rng = np.random.default_rng(0)
    np.savez(d / "good.npz", samples=rng.random((20, 1, 28, 28), dtype=np.float32))
    np.savez(d / "nan.npz", samples=np.full((20, 1, 28, 28), np.nan, np.float32))
    np.savez(d / "range.npz", samples=(rng.random((20, 1, 28, 28)) * 3 - 1).astype(np.float32))
    np.savez(d / "empty.npz", samples=np.zeros((0, 1, 28, 28), np.float32))
    np.savez(d / "wrongkey.npz", images=rng.random((20, 1, 28, 28), dtype=np.float32))
    np.savez(d / "d8.npz", samples=rng.random((3, 1, 8, 8), dtype=np.float32))
    np.savez(d / "d8one.npz", samples=rng.random((1, 1, 8, 8), dtype=np.float32))
    np.save(d / "arr.npy", rng.random((20, 1, 28, 28), dtype=np.float32))
    (d / "notzip.npz").write_text("not a zip file")
    (d / "notpng.png").write_text("not a png")
    Image.new("L", (12000, 12000)).save(d / "bomb.png")  # 144 megapixels: PIL's decompression-bomb guard trips
    (d / "adir.npz").mkdir()
    (d / "emptydir").mkdir()


def _broken_runs(d: Path) -> None:
    def copy(name):
        shutil.copytree(d / "toy", d / name)
        return d / name

    for ck in copy("trunc").glob("ckpt-*"):
        for part in ("model", "ema"):
            f = ck / f"{part}.safetensors"
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    (copy("listcfg") / "config.json").write_text("[1, 2]")
    (copy("badjson") / "config.json").write_text("{not json")
    (copy("badrec") / "record.json").write_text("{oops")
    cfg = json.loads((d / "toy" / "config.json").read_text())
    (copy("nosec") / "config.json").write_text(json.dumps({k: v for k, v in cfg.items() if k != "diffusion"}))
    wrong = {**cfg, "model": {**cfg["model"], "hidden": 24}}
    (copy("wrongshape") / "config.json").write_text(json.dumps(wrong))
    shutil.copytree(d / "digits", d / "notdiffusion")
    dcfg = json.loads((d / "digits" / "config.json").read_text())
    (d / "notdiffusion" / "config.json").write_text(json.dumps({**dcfg, "model": {**dcfg["model"], "type": "classifier"}}))


@pytest.fixture(scope="module")
def scratch(tmp_path_factory):
    d = tmp_path_factory.mktemp("bad")
    _write_files(d)
    assert main(["train", str(d / "toy.yaml"), "--out", str(d / "toy"), "--no-progress"]) == 0
    assert main(["train", str(d / "digits.yaml"), "--out", str(d / "digits"), "--no-progress"]) == 0
    _broken_runs(d)
    bad = d / "readonly"
    bad.mkdir()
    bad.chmod(0o500)
    if os.access(bad, os.W_OK):  # root writes anywhere it may: use a pseudo file system no file can be made in
        bad = Path("/proc")
    return d, bad


def _listing(d: Path) -> dict:
    return {str(p.relative_to(d)): (p.stat().st_size, p.stat().st_mtime_ns) for p in sorted(d.rglob("*"))}


@pytest.mark.parametrize("name,command,message", ROWS, ids=[r[0] for r in ROWS])
def test_bad_input_is_one_clear_error_and_leaves_nothing(scratch, capsys, name, command, message):
    d, bad = scratch
    argv = command.format(d=d, bad=bad).split()
    if argv and argv[0] in ("sample", "eval", "train", "train-classifier", "train-autoencoder"):
        argv.append("--no-progress")
    before = _listing(d)
    try:
        code = main(argv)
    except SystemExit as e:  # argparse's usage errors
        code = e.code
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert code == 2, f"exit status {code}; stderr: {err}"
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith("difflab") and ": error: " in lines[0] and len(lines[0]) < 400, lines[0]
    assert message in lines[0], f"expected {message!r} in: {lines[0]}"
    assert _listing(d) == before, "files were written or changed"


def test_the_table_covers_every_command():
    from difflab.cli.main import COMMANDS

    covered = {command.split()[0] for _, command, _ in ROWS}
    assert {c.NAME for c in COMMANDS} <= covered
    assert len(ROWS) >= 80
