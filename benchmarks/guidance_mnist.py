"""Guided sampling of a class-conditional model, judged by a held-out classifier.

For each guidance scale: draw ``--per-class`` samples of every class (DDIM, seeded), and report
  * accuracy: the share of samples that the shipped judge classifier (trained separately on the
    real training images, never used for guidance) labels as the requested class, and its mean
    confidence;
  * precision and recall (Kynkäänniemi et al. 2019, k = 5) in the judge's 128-d feature space
    against as many real test images.
Classifier-free guidance (Ho & Salimans 2022) at each ``--cfg`` scale w, and, with
``--classifier DIR`` (a noise-aware classifier from ``difflab train-classifier``), classifier
guidance (Dhariwal & Nichol 2021) at each ``--cg`` scale s on the model's unconditional (null
label) prediction. A 10×10 grid per setting (row i = class i) is written beside the table.

    python benchmarks/guidance_mnist.py --model mnist --per-class 50 --cfg 0,1,3,5
    python benchmarks/guidance_mnist.py --model runs/m --classifier runs/clf --cg 0,1,10 --cfg 3
"""

from __future__ import annotations

import argparse
import time

import torch

from _common import RESULTS, write_table


def _floats(text: str) -> list[float]:
    return [float(v) for v in text.split(",") if v]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--model", default="mnist", help="run directory, exported model or pretrained name")
    p.add_argument("--dataset", default=None, help="judge and reference data (default: the model's dataset)")
    p.add_argument("--data-root", default=None, help="directory of IDX files for the reference test images")
    p.add_argument("--per-class", type=int, default=50)
    p.add_argument("--steps", type=int, default=50)
    p.add_argument("--sampler", default="ddim")
    p.add_argument("--cfg", type=_floats, default=[0.0, 1.0, 3.0, 5.0], help="classifier-free guidance scales w")
    p.add_argument("--classifier", default=None, help="noise-aware classifier directory for classifier guidance")
    p.add_argument("--cg", type=_floats, default=[0.0, 1.0, 10.0], help="classifier guidance scales s")
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--batch", type=int, default=500)
    p.add_argument("--name", default="guidance_mnist", help="basename of the table and pictures in benchmarks/results/")
    a = p.parse_args()

    import difflab
    from difflab.data import load_dataset
    from difflab.metrics.classifiers import judge, load_judge
    from difflab.metrics.precision_recall import precision_recall
    from difflab.plotting import save_image_grid
    from difflab.random import generators_from_seeds

    torch.set_num_threads(max(1, torch.get_num_threads()))
    run = difflab.load(a.model, device=a.device)
    dataset = a.dataset or run.config["data"]["name"]
    k = run.model.num_classes or 10
    n = a.per_class * k
    real = load_dataset(dataset, root=a.data_root, split="test").data[:n].to(a.device)
    judge_net = load_judge(dataset).to(a.device)
    with torch.no_grad():
        real_feats = judge_net.features(real).cpu()

    settings = [("cfg", w) for w in a.cfg] if run.model.num_classes else []
    if a.classifier:
        settings += [("classifier", s) for s in a.cg]
    rows = ["| guidance | scale | accuracy on the requested class | mean confidence | precision | recall | seconds |",
            "|---|---|---|---|---|---|---|"]
    for kind, scale in settings:
        t0 = time.perf_counter()
        chunks = []
        for lo in range(0, n, a.batch):
            m = min(a.batch, n - lo)
            classes = [(lo + i) % k for i in range(m)]
            gens = generators_from_seeds(list(range(lo, lo + m)))
            opts = {"classifier": a.classifier} if kind == "classifier" else {}
            chunks.append(run.sample(m, sampler=a.sampler, steps=a.steps, generator=gens, classes=classes,
                                     guidance=kind, scale=scale, **opts))
        x = torch.cat(chunks)
        seconds = time.perf_counter() - t0
        want = torch.arange(n, device=x.device) % k
        pred, conf = judge(x, dataset)
        acc = (pred == want).double().mean().item()
        with torch.no_grad():
            pr = precision_recall(real_feats, judge_net.features(x).cpu())
        order = torch.cat([torch.nonzero(want == c).flatten()[:10] for c in range(k)])
        save_image_grid(x[order].cpu(), RESULTS / f"{a.name}_{kind}_{scale:g}.png", nrow=10)
        rows.append(f"| {kind} | {scale:g} | {acc:.1%} | {conf.mean().item():.3f} | {pr['precision']:.3f} | "
                    f"{pr['recall']:.3f} | {seconds:.0f} |")
        print(rows[-1], flush=True)

    lines = [f"Model `{a.model}` ({run.config['data']['name']}, step {run.step}), sampler {a.sampler}-{a.steps}, "
             f"{a.per_class} samples per class ({n} in all), device {a.device}.",
             f"Judge: the shipped `{dataset}` classifier (test accuracy {judge_net.meta.get('test_accuracy', 'n/a')}), "
             "trained on real images only, never used for guidance. Precision/recall: k = 5 in the judge's feature "
             f"space against {n} real test images. CFG scale w as in Ho & Salimans 2022 Eq. 6 (0 = plain conditional).",
             "", *rows, "",
             f"Grids (row i = class i): `benchmarks/results/{a.name}_<guidance>_<scale>.png`."]
    write_table(f"{a.name}.md", f"Guided sampling of {a.model}, judged by a held-out classifier", lines)


if __name__ == "__main__":
    main()
