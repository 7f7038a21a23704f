"""A behaviour fingerprint of difflab, to show that a refactoring changed nothing it did not mean to.

Runs the public commands with fixed seeds and records a SHA-256 of every tensor they produce: the final
weights (model and EMA) of short training runs of each kind, samples of the shipped ``mnist`` model from
five samplers, likelihoods, and each editing command's output. Run it before and after a change and
compare the two JSON files (``--compare``): every entry is bit-identical or listed with its largest
absolute difference.

    python scripts/reference_set.py --work /tmp/ref-before --out before.json
    python scripts/reference_set.py --work /tmp/ref-after --out after.json --compare before.json
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

STEPS = 300
HYBRID = """preset: digits
diffusion: {loss: hybrid, learned_variance: true}
"""


def cli(*args: str) -> None:
    cmd = [sys.executable, "-m", "difflab", *args]
    t0 = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "OMP_NUM_THREADS": "2"})
    if done.returncode:
        raise SystemExit(f"failed: {' '.join(args)}\n{done.stdout[-2000:]}\n{done.stderr[-2000:]}")
    print(f"  {time.perf_counter() - t0:6.1f}s  difflab {' '.join(args)}", flush=True)


def tensors_of_run(run: Path) -> dict[str, np.ndarray]:
    from safetensors.numpy import load_file

    ckpt = sorted(run.glob("ckpt-*"))[-1]
    out = {}
    for part in ("model", "ema"):
        for key, value in load_file(str(ckpt / f"{part}.safetensors")).items():
            out[f"{part}.{key}"] = value
    return out


def fingerprint(arrays: dict[str, np.ndarray]) -> dict:
    """One SHA-256 over the arrays in key order, plus a float64 copy of a few values to measure a difference."""
    h = hashlib.sha256()
    for key in sorted(arrays):
        a = np.ascontiguousarray(arrays[key])
        h.update(key.encode())
        h.update(str(a.dtype).encode())
        h.update(a.tobytes())
    flat = np.concatenate([np.asarray(arrays[k], dtype=np.float64).ravel() for k in sorted(arrays)])
    return {"sha256": h.hexdigest(), "n": int(flat.size), "values": flat.tolist() if flat.size <= 200_000 else None}


def npz(path: Path) -> dict[str, np.ndarray]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", required=True, help="scratch directory for the runs")
    ap.add_argument("--out", required=True, help="JSON file of fingerprints")
    ap.add_argument("--compare", default=None, help="an earlier JSON file to compare against")
    ap.add_argument("--only", default=None, help="comma-separated entry prefixes to (re)compute")
    ap.add_argument("--table", default=None, help="with --compare: also write the comparison as a Markdown table here")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    only = a.only.split(",") if a.only else None
    result: dict[str, dict] = {}

    def want(name: str) -> bool:
        return only is None or any(name.startswith(o) for o in only)

    # training runs of every kind: final model and EMA weights
    (work / "hybrid.yaml").write_text(HYBRID)
    runs = {"train/8gaussians": ("train", "8gaussians"), "train/digits": ("train", "digits"),
            "train/digits-hybrid": ("train", str(work / "hybrid.yaml")), "train/digits-vp": ("train", "digits-vp"),
            "train/8gaussians-ncsn": ("train", "8gaussians-ncsn"),
            "train/digits-classifier": ("train-classifier", "digits-classifier"),
            "train/mnist-pairs-kl": ("train-autoencoder", "mnist-pairs-kl")}
    for name, (command, spec) in runs.items():
        if not want(name):
            continue
        out = work / name.replace("/", "_")
        if not (out / "config.json").exists() or not list(out.glob("ckpt-*")):
            cli(command, spec, "--out", str(out), "--steps", str(STEPS), "--seed", "3", "--no-progress")
        result[name] = fingerprint(tensors_of_run(out))

    # samples of the shipped mnist model
    for sampler in ("ddim", "ddpm", "dpmpp_2m", "heun", "pc"):
        name = f"sample/mnist-{sampler}"
        if want(name):
            out = work / f"mnist-{sampler}.npz"
            cli("sample", "mnist", "--sampler", sampler, "--steps", "10", "--num", "8", "--seed", "5", "--out", str(out),
                "--no-progress")
            result[name] = fingerprint(npz(out))
    if want("sample/mnist-cfg"):
        out = work / "mnist-cfg.npz"
        cli("sample", "mnist", "--class", "3", "--guidance", "cfg", "--scale", "3", "--steps", "10", "--num", "8",
            "--out", str(out), "--no-progress")
        result["sample/mnist-cfg"] = fingerprint(npz(out))
    if want("sample/digits-classifier-guidance"):
        out = work / "digits-clf.npz"
        cli("sample", str(work / "train_digits"), "--class", "3", "--guidance", "classifier", "--classifier",
            str(work / "train_digits-classifier"), "--scale", "3", "--steps", "10", "--num", "8", "--out", str(out),
            "--no-progress")
        result["sample/digits-classifier-guidance"] = fingerprint(npz(out))

    # likelihoods
    for name, args in {"likelihood/8gaussians-ode": ["likelihood", str(work / "train_8gaussians"), "--num", "64"],
                       "likelihood/digits-hybrid-vlb": ["likelihood", str(work / "train_digits-hybrid"), "--method", "vlb",
                                                        "--num", "16"]}.items():
        if want(name):
            out = work / (name.replace("/", "_") + ".json")
            cli(*args, "--out", str(out))
            values = json.loads(out.read_text())
            result[name] = {"json": values}

    # editing commands on mnist digits drawn above
    if want("edit/"):
        images = npz(work / "mnist-ddim.npz")["samples"][:4]
        np.savez(work / "images.npz", samples=images)
        np.savez(work / "image2.npz", samples=images[1:2])
        np.savez(work / "image1.npz", samples=images[:1])
        low = images.reshape(4, 1, 14, 2, 14, 2).mean((3, 5))
        np.savez(work / "low.npz", samples=low)
        noisy = images + 0.2 * np.random.default_rng(0).standard_normal(images.shape).astype(np.float32)
        np.savez(work / "noisy.npz", samples=noisy)
        img = str(work / "images.npz")
        edits = {
            "edit/inpaint-replacement": ["inpaint", "mnist", "--image", img, "--mask", "right", "--steps", "10"],
            "edit/inpaint-repaint": ["inpaint", "mnist", "--image", img, "--mask", "bottom", "--method", "repaint",
                                     "--steps", "10", "--jump", "2", "--repeats", "2"],
            "edit/sdedit": ["edit", "mnist", "--image", img, "--strength", "0.5", "--steps", "10"],
            "edit/upscale-ilvr": ["upscale", "mnist", "--image", str(work / "low.npz"), "--method", "ilvr", "--steps", "10"],
            "edit/interpolate-ddim": ["interpolate", "mnist", "--image", str(work / "image1.npz"), "--image2",
                                      str(work / "image2.npz"), "--steps", "10", "--num", "3"],
            "edit/interpolate-ddpm": ["interpolate", "mnist", "--image", str(work / "image1.npz"), "--image2",
                                      str(work / "image2.npz"), "--method", "ddpm", "--steps", "10", "--num", "3"],
            "edit/denoise": ["denoise", "mnist", "--image", str(work / "noisy.npz"), "--noise-std", "0.2", "--steps", "10"],
            "edit/trajectory": ["trajectory", "mnist", "--num", "2", "--steps", "10"],
        }
        for name, args in edits.items():
            out = work / (name.replace("/", "_") + ".npz")
            cli(*args, "--seed", "2", "--out", str(out))
            result[name] = fingerprint(npz(out))

    previous = {}
    if Path(a.out).exists() and only is not None:
        previous = json.loads(Path(a.out).read_text())
    Path(a.out).write_text(json.dumps({**previous, **result}))
    print(f"wrote {a.out} ({len(result)} entries)")
    if a.compare:
        rows = compare(json.loads(Path(a.compare).read_text()), {**previous, **result})
        if a.table:
            command = "python scripts/reference_set.py " + " ".join(sys.argv[1:])
            lines = [f"Behaviour fingerprint, before and after a change: `{command}`", "",
                     "| entry | result |", "|---|---|"] + [f"| {name} | {verdict} |" for name, verdict in rows]
            Path(a.table).write_text("\n".join(lines) + "\n")


def compare(before: dict, after: dict) -> list[tuple[str, str]]:
    """Print and return (entry, verdict) for every entry of either file."""
    rows = []
    for name in sorted(set(before) | set(after)):
        b, c = before.get(name), after.get(name)
        if b is None or c is None:
            verdict = f"only {'after' if b is None else 'before'}"
        elif "json" in b:  # the numbers of a JSON result; the paths it names differ with --work
            bj, cj = ({k: v for k, v in d["json"].items() if k not in ("run", "plot")} for d in (b, c))
            diffs = [k for k in bj if bj[k] != cj.get(k)]
            verdict = "identical" if not diffs else "DIFFERS in " + ", ".join(diffs)
        elif b["sha256"] == c["sha256"]:
            verdict = "identical"
        elif b["values"] is not None and c["values"] is not None and len(b["values"]) == len(c["values"]):
            d = np.abs(np.array(b["values"]) - np.array(c["values"]))
            verdict = f"DIFFERS: max |diff| {d.max():.3g}, mean {d.mean():.3g} over {d.size} values"
        else:
            verdict = "DIFFERS (shapes differ)"
        print(f"{name:40s} {verdict}")
        rows.append((name, verdict))
    return rows


if __name__ == "__main__":
    main()
