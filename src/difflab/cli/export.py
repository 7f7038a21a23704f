"""``difflab export``: write a model as a difflab model directory, a diffusers pipeline folder or an ONNX graph."""

from __future__ import annotations

import argparse

NAME = "export"
HELP = "write a model as a difflab model directory, a diffusers DDPMPipeline folder, or an ONNX graph"


def add_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run directory, exported model, shipped model name, or (for --format diffusers/onnx) a "
                               "diffusers model folder")
    p.add_argument("--out", required=True, help="new directory for the exported model")
    p.add_argument("--format", default="difflab", choices=["difflab", "diffusers", "onnx"],
                   help="difflab: config.json + model.safetensors + model.json; diffusers: a folder that "
                        "diffusers.DDPMPipeline/DDIMPipeline.from_pretrained loads; onnx: model.onnx + onnx.json, "
                        "sampled by examples/onnx_sample.py without PyTorch")
    p.add_argument("--notes", default="", help="free text recorded beside the model (e.g. how it was trained)")
    p.add_argument("--weights", default="ema", choices=["ema", "model"])


def execute(a) -> None:
    if a.format == "diffusers":
        from ..formats.diffusers import export
        out = export(a.run, a.out, weights=a.weights, notes=a.notes)
        print(f"exported {a.run} ({a.weights} weights) as a diffusers DDPMPipeline folder to {out}; load it with "
              f"diffusers.DDPMPipeline.from_pretrained({str(out)!r})")
    elif a.format == "onnx":
        from ..formats.onnx import export
        out, gap = export(a.run, a.out, weights=a.weights, notes=a.notes)
        check = (f"onnxruntime matches PyTorch to {gap:.1e}" if gap is not None
                 else "not checked: onnxruntime is not installed")
        print(f"exported {a.run} ({a.weights} weights) as ONNX to {out} ({check}); sample it with "
              f"python examples/onnx_sample.py {out}")
    else:
        from ..pretrained import export
        out = export(a.run, a.out, weights=a.weights, notes=a.notes)
        print(f"exported {a.run} ({a.weights} weights) to {out}")
