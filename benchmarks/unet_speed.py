"""U-Net speed on CPU, difflab against diffusers' ``UNet2DModel`` built to the same architecture.

Two scales, each with the model of a preset (``difflab.config.PRESETS``): ``mnist`` (28×28×1)
and ``digits`` (8×8×1), batch 64, float32. For each, difflab's :class:`difflab.models.UNet` and a
diffusers ``UNet2DModel`` with the same layout (channels, res blocks per level, attention at the
same resolutions with one head, GroupNorm groups and eps, stride-2 conv down, nearest + conv up,
sinusoidal time embedding with cosines first, time-embedding width 4C, dropout) are timed,
interleaved (difflab, diffusers, difflab, diffusers, ...), for

* a training step: forward, MSE loss, backward, AdamW step;
* a no-grad forward (eval mode).

Before timing, difflab's weights (randomised, so that no zero-initialised layer hides a
difference) are copied into the diffusers model and the two outputs are compared: the models
are then the same function, not just the same parameter count. FLOPs of the forward pass are
counted with ``torch.utils.flop_counter.FlopCounterMode`` (a training step counted as 3×
forward), and set against this machine's throughput on one large 3×3 convolution, timed as one
more interleaved row (so under the same load as the models). A profiled training step per library
(torch.profiler, interleaved) splits the time by op kind. Extra rows, not part of the headline
ratio: difflab in channels_last memory format, difflab under ``torch.compile``, and difflab under bfloat16
autocast where the CPU has native bf16 (the trainer's ``precision: bf16``). The tables go
to ``benchmarks/results/unet_speed.md``.

    python benchmarks/unet_speed.py              # full run (about 3-4 minutes on 2 idle cores)
    python benchmarks/unet_speed.py --quick      # smoke run: fewer repetitions, no compile, writes nothing
    python benchmarks/unet_speed.py --profile    # also print torch.profiler tables of a training step

diffusers is needed (``pip install diffusers``, the ``bench`` extra); it is no dependency of
difflab. It is imported with ``HF_HUB_OFFLINE=1``: nothing is downloaded.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import time
from pathlib import Path

os.environ["HF_HUB_OFFLINE"] = "1"  # before diffusers (and huggingface_hub) are imported

import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import write_table  # noqa: E402

BATCH = 64
SCALES = (("mnist", "MNIST scale, 28×28×1"), ("digits", "digits scale, 8×8×1"))
T_MAX = 1000
SEED = 0


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


# ------------------------------------------------------------------------------------ models
def difflab_config(preset: str) -> dict:
    from difflab.config import PRESETS
    from difflab.models import complete_config

    return complete_config(PRESETS[preset]["model"])


def build_difflab(cfg: dict) -> torch.nn.Module:
    from difflab.models import build_model

    return build_model(cfg)


def diffusers_kwargs(cfg: dict) -> dict:
    """``UNet2DModel`` arguments for the same architecture as difflab's ``UNet(**cfg)``: the config that
    ``difflab export --format diffusers`` writes (:func:`difflab.formats.diffusers.unet_config`)."""
    from difflab.formats.diffusers import unet_config

    return {k: v for k, v in unet_config(cfg).items() if not k.startswith("_")}


def build_diffusers(cfg: dict) -> torch.nn.Module:
    from diffusers import UNet2DModel

    return UNet2DModel(**diffusers_kwargs(cfg))


def to_diffusers_state_dict(cfg: dict, sd: dict) -> dict:
    """difflab U-Net weights for the matching ``UNet2DModel`` (:func:`difflab.formats.diffusers.unet_weights`): the
    diffusers network told timestep k computes difflab's at t = k + 1."""
    from difflab.formats.diffusers import unet_weights

    return unet_weights(cfg, sd)


def equivalence(cfg: dict) -> tuple[float, float]:
    """Randomised difflab weights copied into diffusers: (max |difference| of outputs, max |output|)."""
    torch.manual_seed(SEED)
    ours = build_difflab(cfg).eval()
    with torch.no_grad():
        for p in ours.parameters():
            p.add_(0.05 * torch.randn_like(p))  # wakes up the zero-initialised layers
    theirs = build_diffusers(cfg).eval()
    theirs.load_state_dict(to_diffusers_state_dict(cfg, ours.state_dict()), strict=True)
    x, t, y = inputs(cfg)
    with torch.no_grad():
        a, b = ours(x, t, y), theirs(x, t - 1, y).sample  # diffusers' timestep k is difflab's t = k + 1
    return float((a - b).abs().max()), float(a.abs().max())


def inputs(cfg: dict) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """x ~ N(0, I), t uniform in 1..T (as float), and labels uniform in 0..K (K: the null label) for a
    class-conditional model, else None."""
    g = torch.Generator().manual_seed(SEED)
    s = cfg["image_size"]
    x = torch.randn(BATCH, cfg["in_channels"], s, s, generator=g)
    t = torch.randint(1, T_MAX + 1, (BATCH,), generator=g).float()
    k = cfg.get("num_classes")
    y = torch.randint(0, k + 1, (BATCH,), generator=g) if k else None
    return x, t, y


def n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


# ------------------------------------------------------------------------------------ timing
class Runner:
    """One model, one kind of work (``train`` or ``forward``); ``time(n)`` returns ms per iteration."""

    def __init__(self, model, cfg: dict, kind: str, *, diffusers: bool = False, channels_last: bool = False,
                 bf16: bool = False):
        self.model, self.kind, self.diffusers, self.bf16 = model, kind, diffusers, bf16
        self.x, self.t, self.y = inputs(cfg)
        if channels_last:
            self.x = self.x.contiguous(memory_format=torch.channels_last)
        self.target = torch.randn_like(self.x)
        if kind == "train":
            model.train()
            self.opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
        else:
            model.eval()

    def _out(self):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=self.bf16):  # as the trainer's precision: bf16
            out = self.model(self.x, self.t, self.y)
        return (out.sample if self.diffusers else out).float()

    def step(self) -> None:
        if self.kind == "train":
            self.opt.zero_grad(set_to_none=True)
            F.mse_loss(self._out(), self.target).backward()
            self.opt.step()
        else:
            with torch.no_grad():
                self._out()

    def time(self, n: int) -> float:
        t0 = time.perf_counter()
        for _ in range(n):
            self.step()
        return (time.perf_counter() - t0) / n * 1e3


def forward_flops(model, cfg: dict) -> int:
    from torch.utils.flop_counter import FlopCounterMode

    x, t, y = inputs(cfg)
    model.eval()
    with torch.no_grad(), FlopCounterMode(display=False) as fc:
        model(x, t, y)
    return fc.get_total_flops()


class ConvProbe:
    """The machine's convolution throughput, timed like a row: a 3×3 conv, batch 64, 64→64 channels,
    28×28, float32, forward under ``no_grad``. ``time(n)`` returns ms per call."""

    desc = f"Conv2d(64, 64, 3, padding=1) on ({BATCH}, 64, 28, 28), forward, no_grad"
    flops = 2 * 64 * 64 * 9 * 28 * 28 * BATCH

    def __init__(self):
        self.conv = torch.nn.Conv2d(64, 64, 3, padding=1)
        self.x = torch.randn(BATCH, 64, 28, 28, generator=torch.Generator().manual_seed(SEED))

    def time(self, n: int) -> float:
        with torch.no_grad():
            t0 = time.perf_counter()
            for _ in range(n):
                self.conv(self.x)
            return (time.perf_counter() - t0) / n * 1e3

    def gflops(self, ms: float) -> float:
        return self.flops / (ms / 1e3) / 1e9


def try_compile(model, cfg: dict, kind: str, budget_s: float):
    """(runner, compile seconds) for ``torch.compile(model)``, or (None, reason)."""
    try:
        cm = torch.compile(model)
        r = Runner(cm, cfg, kind)
        t0 = time.perf_counter()
        r.step()
        r.step()  # the second call can recompile (e.g. dynamic shapes); keep it out of the timings
        dt = time.perf_counter() - t0
    except Exception as e:  # noqa: BLE001 - any backend failure means: no compile row
        return None, f"torch.compile failed: {type(e).__name__}: {str(e).splitlines()[0][:120]}"
    if dt > budget_s:
        return None, f"torch.compile took {dt:.0f} s (> {budget_s:.0f} s budget)"
    return r, dt


CATEGORIES = (  # (label, predicate on an aten op name), first match wins
    ("conv forward", lambda n: n in ("aten::mkldnn_convolution", "aten::_convolution", "aten::convolution",
                                     "aten::conv2d", "aten::_slow_conv2d_forward", "aten::thnn_conv2d")),
    ("conv backward", lambda n: "convolution_backward" in n or "conv2d_backward" in n),
    ("matmul (Linear, q/k/v, out proj)", lambda n: n in ("aten::mm", "aten::addmm", "aten::bmm", "aten::baddbmm",
                                                          "aten::linear", "aten::matmul")),
    ("attention kernel", lambda n: "scaled_dot_product" in n or "_softmax" in n),
    ("GroupNorm", lambda n: "group_norm" in n),
    ("SiLU", lambda n: "silu" in n),
    ("dropout mask", lambda n: "bernoulli" in n),
    ("copies (cat, copy_, clone)", lambda n: n in ("aten::cat", "aten::copy_", "aten::clone", "aten::contiguous",
                                                   "aten::_to_copy")),
    ("resampling", lambda n: "upsample" in n or "constant_pad" in n or "aten::pad" in n),
)


def breakdown(runners: dict[str, Runner], steps: int = 5) -> dict[str, dict[str, float]]:
    """ms per training step for each runner: the forward + backward split by op kind (torch.profiler,
    self CPU time) and the optimiser step (wall clock, outside the profiler). The runners take turns
    step by step; each entry is the median over ``steps`` steps (robust to another job's bursts)."""
    from torch.profiler import ProfilerActivity, profile

    keys = [k for k, _ in CATEGORIES] + ["other ops", "AdamW step"]
    samples = {name: {k: [] for k in keys} for name in runners}
    for r in runners.values():
        r.step()
    for _ in range(steps):
        for name, r in runners.items():
            one = dict.fromkeys(keys, 0.0)
            r.opt.zero_grad(set_to_none=True)
            with profile(activities=[ProfilerActivity.CPU]) as prof:
                F.mse_loss(r._out(), r.target).backward()
            t0 = time.perf_counter()
            r.opt.step()
            one["AdamW step"] = (time.perf_counter() - t0) * 1e3
            for ev in prof.key_averages():
                # aten ops by kind; autograd/profiler wrappers' own (self) time goes to "other ops"
                label = next((k for k, f in CATEGORIES if f(ev.key)), "other ops") if ev.key.startswith("aten::") \
                    else "other ops"
                one[label] += ev.self_cpu_time_total / 1e3
            for k, v in one.items():
                samples[name][k].append(v)
    return {name: {k: statistics.median(v) for k, v in d.items()} for name, d in samples.items()}


def profile_step(runner: Runner, label: str, rows: int = 25) -> None:
    from torch.profiler import ProfilerActivity, profile

    runner.step()
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(3):
            runner.step()
    print(f"\n=== profile: {label} (3 steps) ===")
    print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


# ------------------------------------------------------------------------------------ main
ITERS = {("mnist", "train"): 1, ("mnist", "forward"): 2, ("digits", "train"): 4, ("digits", "forward"): 8}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--quick", action="store_true", help="smoke run: fewer repetitions, no torch.compile; prints, writes nothing")
    p.add_argument("--reps", type=int, default=None, help="interleaved repetitions per row (default 15; 3 with --quick)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-compile", action="store_true", help="skip the torch.compile rows")
    p.add_argument("--compile-budget", type=float, default=90.0, help="skip a compile row whose compilation takes longer (s)")
    p.add_argument("--profile", action="store_true", help="also print torch.profiler tables of a training step per library")
    a = p.parse_args()
    try:
        import diffusers
    except ImportError:
        sys.exit("benchmarks/unet_speed.py compares against diffusers, which is not installed: pip install diffusers")

    torch.set_num_threads(a.threads)
    t_start = time.perf_counter()
    load_start = os.getloadavg()
    reps = a.reps or (3 if a.quick else 15)
    compile_on = not (a.quick or a.no_compile)
    from difflab.training.loop import native_bf16
    bf16_on = native_bf16(torch.device("cpu"))

    probe = ConvProbe()
    probe_ms: list[float] = []  # every probe timing of the run
    sections, summary, summary_min, shares = [], [], [], {}
    extra: dict[str, list] = {"channels_last": [], "torch.compile": [], "bf16": []}
    for preset, title in SCALES:
        cfg = difflab_config(preset)
        diff, scale = equivalence(cfg)
        log(f"{preset}: max |difflab - diffusers| = {diff:.2e} (outputs up to {scale:.2f})")
        torch.manual_seed(SEED)
        ours, theirs = build_difflab(cfg), build_diffusers(cfg)
        ours_cl = build_difflab(cfg).to(memory_format=torch.channels_last)
        np_ours, np_theirs = n_params(ours), n_params(theirs)
        fl_ours, fl_theirs = forward_flops(ours, cfg), forward_flops(theirs, cfg)
        res: dict[tuple[str, str], list[float]] = {}
        notes, parts, peak = [], {}, {}
        for kind in ("train", "forward"):
            n = ITERS[(preset, kind)]
            runners = {
                "difflab": Runner(ours, cfg, kind),
                "diffusers": Runner(theirs, cfg, kind, diffusers=True),
                "difflab, channels_last": Runner(ours_cl, cfg, kind, channels_last=True),
            }
            if bf16_on:  # bfloat16 autocast, where the CPU has native bf16 (else oneDNN emulates it, slower than fp32)
                runners["difflab, bf16 autocast"] = Runner(build_difflab(cfg), cfg, kind, bf16=True)
            if compile_on:
                torch.manual_seed(SEED)
                r, info = try_compile(build_difflab(cfg), cfg, kind, a.compile_budget)
                if r is None:
                    notes.append(f"{kind}: {info}")
                else:
                    runners["difflab, torch.compile"] = r
                    notes.append(f"{kind}: torch.compile (default mode, inductor) compiled in {info:.0f} s (not timed; "
                                 "inductor's on-disk cache makes repeat runs compile faster)")
            runners["conv probe"] = probe
            for r in runners.values():  # warm-up
                r.time(2)
            names = list(runners)
            for rep in range(reps):  # interleaved; the order rotates so that no row always runs first
                for name in names[rep % len(names):] + names[:rep % len(names)]:
                    res.setdefault((kind, name), []).append(runners[name].time(2 if name == "conv probe" else n))
            probe_ms += res.pop((kind, "conv probe"))
            peak[kind] = probe.gflops(statistics.median(probe_ms[-reps:]))
            log(f"{preset} {kind}: " + ", ".join(f"{name} {statistics.median(res[(kind, name)]):.1f} ms"
                                                 for name in names if name != "conv probe")
                + f"; conv probe {peak[kind]:.0f} GFLOP/s")
            if kind == "train":
                parts = breakdown({name: runners[name] for name in ("difflab", "diffusers")})
                if a.profile:
                    profile_step(runners["difflab"], f"difflab {preset} training step")
                    profile_step(runners["diffusers"], f"diffusers {preset} training step")

        med = {k: statistics.median(v) for k, v in res.items()}
        cond = f", {cfg['num_classes']} classes (+ null label)" if cfg.get("num_classes") else ""
        lines = [
            f"## {title} (`{preset}` preset model), batch {BATCH}, float32",
            "",
            f"Model: base {cfg['base_channels']}, channel_mult {cfg['channel_mult']}, "
            f"{cfg['num_res_blocks']} res block(s) per level, attention at {cfg['attention_resolutions']} "
            f"({cfg['num_heads']} head), {cfg['groups']} groups, dropout {cfg['dropout']}{cond}. "
            f"Parameters: difflab {np_ours:,}, diffusers {np_theirs:,}. "
            f"Forward FLOPs (FlopCounterMode: convs and matmuls): diffusers {fl_theirs / 1e9:.3f} G, "
            f"difflab {fl_ours / 1e9:.3f} G (its upsampling convs do 16 instead of 36 multiply-adds per input "
            f"pixel, see below). Conv probe during these rows (median): {peak['train']:.0f} GFLOP/s "
            f"(training-step rows), {peak['forward']:.0f} GFLOP/s (forward rows). Same function: difflab's randomised weights loaded "
            f"into diffusers give outputs within {diff:.1e} (outputs up to {scale:.2f}).",
            "",
            "| work | implementation | ms/iter (median) | min–max | diffusers / this | GFLOP/s | % of conv peak |",
            "|---|---|---:|---:|---:|---:|---:|",
        ]
        for kind in ("train", "forward"):
            base = med[(kind, "diffusers")]
            for name in [k[1] for k in res if k[0] == kind]:
                ms = med[(kind, name)]
                fl = fl_theirs * (3 if kind == "train" else 1)  # the architecture's work, the same for every row
                gf = fl / (ms / 1e3) / 1e9
                label = "training step" if kind == "train" else "no-grad forward"
                ratio = "—" if name == "diffusers" else f"**{base / ms:.2f}**" if name == "difflab" else f"{base / ms:.2f}"
                lines.append(f"| {label} | {name} | {ms:.1f} | {min(res[(kind, name)]):.1f}–{max(res[(kind, name)]):.1f} "
                             f"| {ratio} | {gf:.1f} | {100 * gf / peak[kind]:.0f}% |")
            summary.append((preset, kind, base / med[(kind, "difflab")]))
            summary_min.append((preset, kind, min(res[(kind, "diffusers")]) / min(res[(kind, "difflab")])))
            for name, key in (("difflab, channels_last", "channels_last"), ("difflab, torch.compile", "torch.compile"),
                              ("difflab, bf16 autocast", "bf16")):
                if (kind, name) in med:
                    extra[key].append((preset, kind, base / med[(kind, name)]))
        if notes:
            lines += ["", "Notes: " + "; ".join(notes) + "."]
        conv_ours = parts["difflab"]["conv forward"] + parts["difflab"]["conv backward"]
        lines += [
            "",
            "Where a training step goes (torch.profiler, self CPU time of the forward + backward ops; the AdamW "
            "step timed apart; each entry the median over 5 profiled steps, the two libraries taking turns; "
            "profiling slows small ops, so the totals exceed the plain timings above):",
            "",
            "| ms per step | difflab | diffusers |",
            "|---|---:|---:|",
        ] + [f"| {k} | {parts['difflab'][k]:.1f} | {parts['diffusers'][k]:.1f} |" for k in parts["difflab"]] + [
            f"| total | {sum(parts['difflab'].values()):.1f} | {sum(parts['diffusers'].values()):.1f} |",
            "",
            f"Convolutions are {100 * conv_ours / sum(parts['difflab'].values()):.0f}% of difflab's profiled step. "
            f"Ceiling for the training-step ratio if everything but difflab's convolutions cost nothing: "
            f"{sum(parts['diffusers'].values()) / conv_ours:.2f} (diffusers' profiled step / difflab's conv time).",
        ]
        sections += lines + [""]
        shares[preset] = (conv_ours / sum(parts["difflab"].values()),
                          sum(parts["diffusers"].values()) / conv_ours)

    target = 1.3
    train = {p: r for p, k, r in summary if k == "train"}
    sections += [
        "## Interpretation",
        "",
        "* Same network, same work: the parameter counts match exactly, and difflab's weights loaded into "
        "diffusers give the same outputs to float32 rounding. Both run the same oneDNN convolutions and the "
        "same GroupNorm/SiLU/dropout kernels; they differ in the glue around them (diffusers: a SiLU of the "
        "time embedding in every ResBlock, a division by `output_scale_factor` = 1 after every residual, "
        "separate q/k/v projections and more reshapes in attention) and, since this benchmark was added, "
        "in difflab's upsampling, which computes nearest×2 + conv3×3 as four 2×2 convolutions of the "
        "low-resolution map (the same function and parameters, 16 instead of 36 multiply-adds per input "
        "pixel; see `Upsample` in `src/difflab/models/unet.py`).",
        "* Training-step ratio (diffusers / difflab, plain float32): "
        + ", ".join(f"{p} {r:.2f}" for p, r in train.items())
        + f"; the target is ≥ {target}: " + ("met" if all(r >= target for r in train.values()) else "not met")
        + ". Convolutions take "
        + ", ".join(f"{100 * sh:.0f}% ({p})" for p, (sh, _) in shares.items())
        + " of difflab's profiled step; with everything but difflab's convolutions at zero cost the "
        "ratio would be " + ", ".join(f"{c:.2f} ({p})" for p, (_, c) in shares.items())
        + " (diffusers' profiled step / difflab's convolution time: a ceiling for changes that leave the "
        "convolutions alone).",
        "* Beyond the glue, a higher ratio needs less convolution time: fewer FLOPs for the same function "
        "(as done for the upsampling; the remaining 3×3 convolutions have no such redundancy), fused "
        "kernels (GroupNorm + SiLU + dropout and the residual additions, as `torch.compile` can generate: "
        + (", ".join(f"{p} {k} {r:.2f}" for p, k, r in extra["torch.compile"]) or "not run") + " in its rows), "
        "or lower precision (bfloat16 autocast, which difflab's trainer offers as `precision: bf16`; it "
        "changes the numerics, so it is no fp32 comparison: "
        + (", ".join(f"{p} {k} {r:.2f}" for p, k, r in extra["bf16"]) or "not run: this CPU has no native bf16")
        + " in its rows). channels_last: "
        + ", ".join(f"{p} {k} {r:.2f}" for p, k, r in extra["channels_last"]) + " (diffusers / difflab channels_last).",
        "* Dropout (MNIST preset, p = 0.1) costs the same in both: on CPU PyTorch draws the mask with "
        "`bernoulli_` on a full-size tensor, about as much time as a small convolution.",
        "",
    ]

    elapsed = time.perf_counter() - t_start
    head = [
        f"Machine: {platform.machine()} {platform.processor() or ''}".rstrip() + f", torch {torch.__version__}, "
        f"diffusers {diffusers.__version__}, Python {platform.python_version()}, "
        f"torch.set_num_threads({a.threads}) (of {os.cpu_count()} cores; the machine is shared, so timings are noisy: "
        f"1-minute load average {load_start[0]:.1f} at the start of the run, {os.getloadavg()[0]:.1f} at the end). "
        f"Whole run: {elapsed:.0f} s.",
        "",
        f"Each row: {reps} repetitions, interleaved with the other rows of its block (difflab, diffusers, ..., "
        "the starting row rotating), each repetition timing a few iterations after warm-up; the median and "
        "the range over repetitions. Training step = `zero_grad`, forward, `F.mse_loss` against a fixed "
        "random target, backward, `torch.optim.AdamW` step (train mode, so dropout is active). "
        "Forward = `torch.no_grad()` in eval mode. Inputs: x ~ N(0, 1), t uniform integers in 1..1000 "
        "(as float), labels uniform over the classes and the null label for a class-conditional model, "
        f"fixed seed; batch {BATCH} whatever batch size the preset trains with.",
        "",
        f"Conv peak: the throughput of one large convolution, {ConvProbe.desc}, timed as one more row "
        "interleaved with every block (so under the same load); over the whole run its median was "
        f"{probe.gflops(statistics.median(probe_ms)):.0f} GFLOP/s and its best {probe.gflops(min(probe_ms)):.0f} GFLOP/s. "
        "'% of conv peak' = a row's GFLOP/s / the probe's median GFLOP/s in the same block. GFLOP/s of a row = its counted FLOPs (training step = 3 × forward) / its time; "
        "FlopCounterMode counts convolutions, matmuls and attention only (GroupNorm, SiLU, additions, "
        "interpolation and the optimiser are free in that count). The column uses the diffusers count "
        "(the work of the architecture as usually computed) for every row, so it compares times, not "
        "algorithms: difflab's upsampling needs fewer FLOPs for the same function.",
        "",
        *([f"**Warning: the load average exceeded the {a.threads} threads during this run; other jobs took "
            "CPU time, so the timings below are inflated and their ratios unreliable.**", ""]
          if max(load_start[0], os.getloadavg()[0]) > a.threads + 0.5 else []),
        "Headline (plain float32 vs plain float32, diffusers time / difflab time, > 1 means difflab faster): "
        + ", ".join(f"{p} {k} **{r:.2f}**" for p, k, r in summary) + ". The same ratios from each row's "
        "fastest repetition (other jobs only ever add time, so the minima are the least disturbed): "
        + ", ".join(f"{p} {k} {r:.2f}" for p, k, r in summary_min) + ".",
        "",
    ]
    if a.quick:
        print("\n".join(head + sections))
        return
    write_table("unet_speed.md", "U-Net speed on CPU: difflab vs diffusers UNet2DModel, same architecture",
                head + sections)


if __name__ == "__main__":
    main()
