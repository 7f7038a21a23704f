"""Classifier guidance at scale 0, 1, 10: FD, precision, recall, IS (Dhariwal & Nichol 2021, Sec. 4, Table 4 and Fig. 3).

An unconditional digits model (L_simple, cosine) guided by a noise-aware classifier trained on x_t for all
t (``difflab train-classifier``), with the ε-shift of ADM Algorithm 2 and DDIM, 50 steps. Each sample asks
for class i mod 10; the shipped digits judge — trained on clean images only, never used for guidance —
measures whether it got it, and its features give FD, precision and recall; its probabilities the IS.
"""

from __future__ import annotations

import torch

from .common import draw, figure_path, preset, run_or_train, scores, write_report

SCALES = (0.0, 1.0, 10.0)


def classifier_or_train(ctx):
    """The noise-aware digits classifier in ``ctx.runs / digits-classifier``, trained there when absent."""
    from .. import checkpoint
    from ..saved import load_classifier
    from ..training.classifier import resolve, train_classifier

    path = ctx.runs / "digits-classifier"
    if not (path.exists() and checkpoint.list_checkpoints(path)):
        print(f"[{ctx.name}] training the noise-aware classifier into {path}")
        train_classifier(resolve("digits-classifier"), path, steps=100 if ctx.quick else None, seed=0)
    return load_classifier(path)


def main(ctx):
    from .. import plotting
    from ..metrics.classifiers import judge

    run, reused = run_or_train(ctx, "digits-simple", preset("digits", diffusion={"schedule": "cosine", "loss": "simple"},
                                                            model={"num_classes": None}, train={"sample_every": 0}),
                               steps=100 if ctx.quick else 1000)
    clf = classifier_or_train(ctx)
    num = 130 if ctx.quick else 500
    want = torch.arange(num) % 10
    rows, grids = {}, []
    for s in SCALES:
        x = draw(run, num, sampler="ddim", steps=50, eta=0.0, classes=want.tolist(), guidance="classifier",
                 classifier=clf, scale=s)
        pred, _ = judge(x, "digits")
        rows[s] = {"accuracy": float((pred == want).double().mean()), **scores(x, "digits", min(num, 450))}
        order = torch.cat([torch.nonzero(want == c).flatten()[:1] for c in range(10)])
        grids.append(list(x[order]))
        print(f"[{ctx.name}] s = {s:g}: {rows[s]}")

    fig = plotting._figure(13, 3.3)
    for ax, key, label in zip(fig.subplots(1, 5), ("accuracy", "fd", "precision", "recall", "is"),
                              ("judge accuracy on the asked class", "FD (lower better)", "precision", "recall", "IS")):
        ax.plot(range(len(SCALES)), [rows[s][key] for s in SCALES], marker="o")
        ax.set_xticks(range(len(SCALES)), [f"s = {s:g}" for s in SCALES])
        ax.set_title(label, fontsize=9)
    fig.suptitle("classifier guidance on digits (ADM Alg. 2, DDIM-50): metrics against the scale")
    plotting._save_figure(fig, figure_path(ctx))
    plotting.plot_process_images(grids, [f"s = {s:g}" for s in SCALES], [str(c) for c in range(10)],
                                 figure_path(ctx, "_samples"), title="one sample per asked class, same noise per column")

    lines = [f"Model `{run.path}` ({'reused' if reused else 'trained here'}, {run.step} steps, unconditional); classifier "
             f"`{clf.path}` ({clf.step} steps). {num} samples per scale (class i mod 10), "
             f"DDIM-50 from the same noise; metrics in the shipped digits judge's features against {min(num, 450)} test "
             "images (FD[digits-classifier], not FID; IS from the judge's 10-way probabilities, at most 10).", "",
             "| scale s | judge accuracy | FD | precision | recall | IS |", "|---|---|---|---|---|---|"]
    for s, r in rows.items():
        lines.append(f"| {s:g} | {r['accuracy']:.1%} | {r['fd']:.2f} | {r['precision']:.3f} | {r['recall']:.3f} | {r['is']:.2f} |")
    a, b, c = (rows[s] for s in SCALES)
    lines += ["", f"![metrics against the scale]({figure_path(ctx).name})", "",
              f"![samples]({figure_path(ctx, '_samples').name})", "",
              "## Against the paper", "",
              "ADM (Table 4, Fig. 3): raising the classifier scale trades diversity for fidelity — precision and IS "
              "rise, recall falls — and an unconditional model at scale 1 mostly fails to produce the asked class, "
              f"while scale 10 does. Measured: accuracy {a['accuracy']:.1%} → {b['accuracy']:.1%} → {c['accuracy']:.1%}; "
              f"precision {a['precision']:.3f} → {c['precision']:.3f} "
              f"({'rises' if c['precision'] > a['precision'] else 'does NOT rise'}); recall {a['recall']:.3f} → "
              f"{c['recall']:.3f} ({'falls' if c['recall'] < a['recall'] else 'does NOT fall'}); IS {a['is']:.2f} → "
              f"{c['is']:.2f} ({'rises' if c['is'] > a['is'] else 'does NOT rise'}); FD {a['fd']:.2f} → {b['fd']:.2f} → "
              f"{c['fd']:.2f}. The paper's unconditional ImageNet model at scale 1 still gave poor class consistency; "
              f"here scale 1 already reaches {b['accuracy']:.1%} (ten easy classes, a strong classifier)."]
    return write_report(ctx, "Classifier guidance scale 0, 1, 10 (ADM Sec. 4)", lines)
