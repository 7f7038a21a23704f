"""Evaluating samples against a dataset: FD, KID, IS, precision/recall in a named feature space.

Features come from a pluggable extractor; the default for digits, MNIST and Fashion-MNIST is the
shipped judge classifier of that dataset (``difflab.metrics.classifiers``), so every score is
named by it — ``FD[mnist-classifier]``, never plain "FID". Reference features of a dataset's test
split are cached as ``.npz`` keyed by dataset, extractor and count.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch

from .errors import DifflabError

METRICS = ("fd", "kid", "is", "pr", "failed", "nll")
FEATURES = ("judge", "efficientnet-lite0")


def check_metrics(metrics) -> list[str]:
    names = [m.strip() for m in (metrics.split(",") if isinstance(metrics, str) else metrics) if m.strip()]
    unknown = [m for m in names if m not in METRICS]
    if unknown or not names:
        raise DifflabError(f"unknown metric {unknown[0] if unknown else '(none)'!r}; expected some of {', '.join(METRICS)}.")
    return names


# datasets of canvases made of another dataset's images side by side, judged cell by cell by that dataset's judge
CELL_JUDGES = {"mnist-pairs": "mnist"}


def cells(images: torch.Tensor) -> torch.Tensor:
    """The square cells of canvases (N, C, H, k·H), as (N·k, C, H, H), cell by cell per canvas."""
    n, c, h, w = images.shape
    if w % h:
        raise DifflabError(f"images of size {h}x{w} are not a row of square {h}x{h} cells.")
    return images.reshape(n, c, h, w // h, h).permute(0, 3, 1, 2, 4).reshape(n * (w // h), c, h, h)


class JudgeFeatures:
    """The shipped judge of ``dataset`` as a feature extractor: 128-d penultimate features and class probabilities.

    For a dataset of canvases (:data:`CELL_JUDGES`, e.g. ``mnist-pairs``: two MNIST digits side by side) the judge
    of the cells' dataset reads every cell: a canvas's features are its cells' features concatenated (k·128-d, so
    Fréchet distance and precision/recall see which digits appear together), and its class probabilities are the
    product over its cells (10^k joint classes, so the Inception score counts the combinations)."""

    def __init__(self, dataset: str):
        from .metrics.classifiers import load_judge
        self.dataset = dataset
        base = CELL_JUDGES.get(dataset, dataset)
        self.cellwise = dataset in CELL_JUDGES
        self.name = f"{base}-classifier" + ("-cells" if self.cellwise else "")
        self.net = load_judge(base)

    @torch.no_grad()
    def __call__(self, images: torch.Tensor, batch_size: int = 500) -> tuple[torch.Tensor, torch.Tensor]:
        if not self.cellwise:
            return self._judge(images, batch_size)
        n = images.shape[0] if isinstance(images, torch.Tensor) and images.ndim == 4 else 0
        if n == 0:
            raise DifflabError(f"samples must be a non-empty batch of canvases (N, C, H, k·H), got shape "
                               f"{tuple(getattr(images, 'shape', ()))}.")
        feats, probs = self._judge(cells(images), batch_size)
        k = feats.shape[0] // n
        joint = probs.reshape(n, k, -1)[:, 0]
        for i in range(1, k):  # p(y_1, ..., y_k | canvas) = Π_i p(y_i | cell i)
            joint = (joint[:, :, None] * probs.reshape(n, k, -1)[:, i, None, :]).reshape(n, -1)
        return feats.reshape(n, -1), joint

    def _judge(self, images: torch.Tensor, batch_size: int) -> tuple[torch.Tensor, torch.Tensor]:
        self.net.check_input(images, "samples")
        feats, probs = [], []
        for lo in range(0, images.shape[0], batch_size):
            x = images[lo:lo + batch_size].float().clamp(0, 1)
            f = self.net.features(x)
            feats.append(f)
            probs.append(torch.softmax(self.net.head(f).float(), 1) if hasattr(self.net, "head")
                         else torch.softmax(self.net.logits(x), 1))
        return torch.cat(feats).double(), torch.cat(probs).double()


def score_name(metric: str, extractor: str) -> str:
    """The name a score is reported under: "FID" only in the standard InceptionV3's features, otherwise the
    metric tagged with its extractor, e.g. ``FD[mnist-classifier]``."""
    return "FID" if metric == "FD" and extractor == "inception-v3" else f"{metric}[{extractor}]"


def check_enough_for_fd(num: int, dim: int, what: str) -> None:
    """Refuse a Fréchet distance from fewer feature vectors than a full-rank covariance needs."""
    from .metrics.frechet import min_samples
    if num < min_samples(dim):
        raise DifflabError(f"the Fréchet distance in {dim}-d features needs at least {min_samples(dim)} {what} for a "
                           f"full-rank covariance, got {num}; draw more (a few times that is better) or leave fd out.")


def _cache_dir() -> Path:
    return Path(os.environ.get("DIFFLAB_CACHE", Path.home() / ".cache" / "difflab"))


FLOOR_POOL = 10_000  # training images the floor draws its subsets from: at least this many, and 5 N (all when fewer)


def split_features(dataset: str, extractor, split: str, num: int, root=None, key: str | None = None) -> torch.Tensor:
    """Features of the first ``num`` images of ``dataset``'s ``split``, from the cache when present (keyed by
    dataset, split, extractor — ``key`` when given, e.g. with a weights fingerprint — and count)."""
    from .io import atomic_path

    path = _cache_dir() / f"ref-{dataset}-{split}-{key or extractor.name}-{num}.npz"
    if path.is_file():
        try:
            return torch.from_numpy(np.load(path)["features"])
        except Exception:  # a damaged cache file is recomputed
            pass
    from .data import load_dataset
    images = load_dataset(dataset, root=root, split=split)
    if num > len(images):
        raise DifflabError(f"{num} reference images asked for, but the {dataset} {split} split holds {len(images)}.")
    feats, _ = extractor(images.data[:num])
    with atomic_path(path) as tmp:
        np.savez(tmp, features=feats.numpy())
    return feats


def reference_features(dataset: str, extractor, num: int, root=None, key: str | None = None) -> torch.Tensor:
    """Features of the first ``num`` test images of ``dataset``: the reference every sample score is measured
    against (held-out images no model trained on)."""
    return split_features(dataset, extractor, "test", num, root, key)


def split_size(dataset: str, split: str = "test", root=None) -> int:
    """How many images ``dataset``'s ``split`` holds (digits: 1,347 train, 450 test)."""
    from .data import load_dataset

    return len(load_dataset(dataset, root=root, split=split))


FLOOR_METRICS = ("fd", "precision", "recall")


def _floor_metric(metric: str):
    from .metrics.frechet import frechet_distance_of
    from .metrics.precision_recall import precision_recall

    if metric == "fd":
        return lambda real, ref: frechet_distance_of(real, ref)
    if metric in ("precision", "recall"):  # precision_recall(real, fake): the subset plays the samples' part
        return lambda real, ref: precision_recall(ref, real)[metric]
    raise DifflabError(f"a floor is defined for {', '.join(FLOOR_METRICS)}, not {metric!r}.")


def real_floor(dataset: str, extractor, num: int, root=None, key: str | None = None, repeats: int = 10, seed: int = 0,
               metric: str = "fd"):
    """The real-vs-real floor of a score against the ``num`` reference test images: the score (``"fd"``,
    ``"precision"`` or ``"recall"``) of ``num`` *training* images (a random subset of the first ``FLOOR_POOL``,
    fresh each repeat) against those same test images — what a model that draws exactly from the data
    distribution would score at this N and extractor. The pool holds max(``FLOOR_POOL``, 5 N) training images (all
    of them when fewer), so the subsets differ from repeat to repeat. Returns a :class:`difflab.metrics.intervals.Floor`."""
    from .metrics.intervals import Floor

    score = _floor_metric(metric)
    ref = reference_features(dataset, extractor, num, root, key)
    pool_size = min(max(FLOOR_POOL, 5 * num), split_size(dataset, "train", root))  # a pool of N would never vary
    if pool_size < num:
        raise DifflabError(f"a floor at N = {num} needs {num} {dataset} training images; the train split holds {pool_size}.")
    pool = split_features(dataset, extractor, "train", pool_size, root, key)
    g = torch.Generator().manual_seed(seed)
    values = [score(pool[torch.randperm(pool_size, generator=g)[:num]], ref) for _ in range(repeats)]
    return Floor(num, tuple(float(v) for v in values))


def feature_extractor(dataset: str, features: str = "judge", inception_weights=None):
    """The extractor that scores samples of ``dataset`` and the key its reference features are cached under:
    the FID InceptionV3 when ``inception_weights`` is given, EfficientNet-Lite0 for ``features="efficientnet-lite0"``,
    else the dataset's judge. Cheap, so a command can call it to refuse a bad choice before it samples."""
    if features not in FEATURES:
        raise DifflabError(f"unknown feature extractor {features!r}; expected one of {', '.join(FEATURES)}.")
    if inception_weights is not None:
        import hashlib

        from .metrics.inception import InceptionFeatures
        extractor = InceptionFeatures(inception_weights)  # checks the file first
        return extractor, f"{extractor.name}-{hashlib.sha256(Path(inception_weights).read_bytes()).hexdigest()[:12]}"
    if features == "efficientnet-lite0":
        from .metrics.efficientnet import EfficientNetFeatures
        return EfficientNetFeatures(), None
    return JudgeFeatures(dataset), None


def check_pixels(samples: torch.Tensor, clip: bool = False) -> torch.Tensor:
    """Samples as the metrics read them, images in [0, 1]: a non-finite value is refused, and so is a value outside
    [0, 1] (beyond a rounding tolerance of 1e-4) unless ``clip``, which clamps on purpose; both counted."""
    bad = int((~torch.isfinite(samples)).sum())
    if bad:
        raise DifflabError(f"samples hold {bad} non-finite value(s) (NaN or inf) in {samples.shape[0]} images; "
                           "scores of such samples mean nothing.")
    out = int(((samples < -1e-4) | (samples > 1 + 1e-4)).sum())
    if out and not clip:
        lo, hi = float(samples.min()), float(samples.max())
        raise DifflabError(f"samples hold {out} value(s) outside [0, 1] (from {lo:.3g} to {hi:.3g}): images must be pixels "
                           "in [0, 1]; map them there, or set ⟨clip⟩ to clamp them on purpose.")
    return samples.clamp(0, 1)


def evaluate_samples(samples: torch.Tensor, dataset: str, metrics="fd,kid,is,pr", num_ref: int | None = None,
                     seed: int = 0, root=None, inception_weights=None, features: str = "judge", clip: bool = False,
                     noise: bool = True) -> dict:
    """Scores of ``samples`` (images in [0, 1], (N, C, H, W)) against ``dataset``'s test split, in the
    features of the dataset's judge, or of the FID InceptionV3 when ``inception_weights`` (a path to
    the standard weights) is given — only then is the Fréchet distance reported as "FID" — or of
    EfficientNet-Lite0 for ``features="efficientnet-lite0"``. ``nll`` needs a model and is scored by
    :func:`negative_log_likelihood`, not here.

    With ``noise`` (the default) the FD comes with its noise: ``<FD> 95% low`` / ``high``, a percentile bootstrap
    interval over samples and reference images (200 resamples), and ``<FD> floor`` / ``floor sd``, the FD of as
    many real training images against the same reference (:func:`real_floor`, 10 repeats) — a difference between
    two models smaller than a few floor sds is not resolved."""
    from .metrics.frechet import frechet_distance_of
    from .metrics.inception_score import inception_score
    from .metrics.kid import kernel_distance
    from .metrics.precision_recall import precision_recall

    names = [m for m in check_metrics(metrics) if m != "nll"]
    if not isinstance(samples, torch.Tensor) or samples.ndim != 4:
        raise DifflabError(f"samples must be images (N, C, H, W), got shape {tuple(getattr(samples, 'shape', ()))}.")
    samples = check_pixels(samples, clip)
    extractor, key = feature_extractor(dataset, features, inception_weights)
    feats, probs = extractor(samples)
    ref = reference_features(dataset, extractor, num_ref or samples.shape[0], root, key)
    tag = extractor.name
    out: dict = {"extractor": tag, "num_samples": samples.shape[0], "num_reference": ref.shape[0]}
    if "fd" in names:
        check_enough_for_fd(min(feats.shape[0], ref.shape[0]), feats.shape[1], "samples and reference images")
        out[score_name("FD", tag)] = frechet_distance_of(ref, feats)
        if noise:
            from .metrics.intervals import bootstrap_interval

            fd = score_name("FD", tag)
            _, low, out[f"{fd} 95% high"] = bootstrap_interval(ref, feats, generator=torch.Generator().manual_seed(seed))
            out[f"{fd} 95% low"] = max(0.0, low)  # the shifted interval can cross 0 at small N; an FD cannot
            floor = real_floor(dataset, extractor, ref.shape[0], root, key, seed=seed) \
                if feats.shape[0] == ref.shape[0] else None
            if floor is not None:  # the floor is defined for as many samples as reference images
                out[f"{fd} floor"], out[f"{fd} floor sd"] = floor.mean, floor.sd
    if "kid" in names:
        # subsets of half the smaller set (at most 1000, as in the paper), so they differ and the error means something
        size = min(1000, max(2, min(ref.shape[0], feats.shape[0]) // 2))
        k = kernel_distance(ref, feats, subsets=50, subset_size=size,
                            generator=torch.Generator().manual_seed(seed))
        out[score_name("KID", tag)], out[score_name("KID", tag) + " se"] = k["kid"], k["kid_se"]
    if "is" in names:
        r = inception_score(probs, splits=min(10, samples.shape[0]))
        out[score_name("IS", tag)], out[score_name("IS", tag) + " std"] = r["is"], r["is_std"]
    if "pr" in names:
        pr = precision_recall(ref, feats)
        out[score_name("precision", tag)], out[score_name("recall", tag)] = pr["precision"], pr["recall"]
    if "failed" in names:
        out.update(failed_scores(samples, dataset, root))
    return out


def failed_scores(samples: torch.Tensor, dataset: str, root=None) -> dict:
    """The share of failed samples (:mod:`difflab.metrics.failures`: the dataset's judge unsure, or a brightness no
    real image has) as ``failed[<judge>]`` with its 95% Wilson interval."""
    from .metrics.classifiers import JUDGE_DATASETS
    from .metrics.failures import failed_share

    if dataset not in JUDGE_DATASETS:
        raise DifflabError(f"the failed-sample share needs a judge of whole images ({', '.join(JUDGE_DATASETS)}); "
                           f"{dataset!r} has none.")
    r = failed_share(samples, dataset, root)
    name = f"failed[{dataset}-classifier]"
    return {name: r["failed"], f"{name} 95% low": r["failed 95% low"], f"{name} 95% high": r["failed 95% high"]}


def test_images(run, num: int) -> torch.Tensor:
    """The first ``num`` held-out examples of ``run``'s dataset, in data coordinates."""
    from .data import load_dataset

    d = run.config["data"]
    return load_dataset(d["name"], root=d["root"], image_size=d["image_size"], channels=d["channels"], num=num,
                        split="test", seed=run.config["seed"]).data[:num]


def _mean_and_stderr(values: torch.Tensor) -> tuple[float, float]:
    v = values.double()
    return float(v.mean()), float(v.std() / len(v) ** 0.5) if len(v) > 1 else float("nan")


def ode_likelihood(run, data: torch.Tensor, batch_size: int = 256, rtol: float = 1e-5, atol: float = 1e-5,
                   trace: str | None = None, generator=None, progress: bool = True) -> dict:
    """Per-example log-likelihoods of ``data`` by the probability-flow ODE (Song et al. 2021, Eq. 39; bits/dim for
    images, nats for points), batch by batch: ``values``, their ``mean`` and standard error ``stderr``, the
    ``unit`` and the solver's evaluations per batch ``nfe_per_batch``."""
    from .progress import progress_bar

    values, nfes = [], []
    for lo in progress_bar(range(0, len(data), batch_size), desc="likelihood", unit="batch", disable=not progress):
        v, nfe = run.log_likelihood(data[lo:lo + batch_size], rtol=rtol, atol=atol, trace=trace, generator=generator)
        values.append(v)
        nfes.append(nfe)
    v = torch.cat(values).double()
    mean, err = _mean_and_stderr(v)
    return {"values": v, "mean": mean, "stderr": err, "unit": "bits/dim" if run.kind == "image" else "nats",
            "nfe_per_batch": nfes}


def bound_terms(run, data: torch.Tensor, batch_size: int = 256, generator=None, progress: bool = True) -> dict:
    """The variational bound of ``data`` in bits/dim, term by term (Nichol & Dhariwal 2021, Eq. 4), batch by batch:
    per-example ``total``, its ``mean`` and ``stderr``; the mean prior term L_T (``prior``), the mean of every term
    L_{t−1} over the examples (``terms``, index t − 1; L_0 the decoder's at index 0)."""
    from .progress import progress_bar

    bar = None

    def tick():
        nonlocal bar
        if bar is None:  # once the run has passed the bound's checks
            batches = -(-len(data) // batch_size)
            bar = progress_bar(total=batches * run.schedule.T, desc="variational bound", unit="step", disable=not progress)
        bar.update(1)

    parts = []
    try:
        for lo in range(0, len(data), batch_size):
            parts.append(run.variational_bound(data[lo:lo + batch_size], generator=generator, progress=tick))
    finally:
        if bar is not None:
            bar.close()
    total = torch.cat([p["total_bpd"] for p in parts])
    mean, err = _mean_and_stderr(total)
    return {"total": total, "mean": mean, "stderr": err, "prior": float(torch.cat([p["prior_bpd"] for p in parts]).mean()),
            "terms": torch.cat([p["terms_bpd"] for p in parts]).mean(0)}


def continuous_bound_terms(run, data: torch.Tensor, batch_size: int = 256, generator=None, draws: int = 16,
                           progress: bool = True) -> dict:
    """The continuous-time bound of a learned-schedule run (Kingma et al. 2021) on ``data``, batch by batch:
    per-example ``total`` bits/dim, its ``mean`` and ``stderr``, and the mean ``prior``, ``reconstruction`` and
    ``diffusion`` terms."""
    from .progress import progress_bar

    parts = [run.continuous_bound(data[lo:lo + batch_size], generator=generator, draws=draws)
             for lo in progress_bar(range(0, len(data), batch_size), desc="continuous bound", unit="batch",
                                    disable=not progress)]
    total = torch.cat([p["total_bpd"] for p in parts])
    mean, err = _mean_and_stderr(total)
    out = {"total": total, "mean": mean, "stderr": err}
    for name in ("prior", "reconstruction", "diffusion"):
        out[name] = float(torch.cat([p[f"{name}_bpd"] for p in parts]).mean())
    return out


def negative_log_likelihood(run, num: int, batch_size: int = 256, seed: int = 0, progress: bool = True) -> dict:
    """Bits/dim of the first ``num`` test images of ``run``'s dataset, mean and standard error: the variational
    bound (Ho et al. 2020, Eq. 5; an upper bound on the NLL) for a discrete schedule, the continuous-time bound for a
    learned one (Kingma et al. 2021), the probability-flow ODE likelihood (Song et al. 2021, Eq. 39; exact up to the
    solver) for another continuous one."""
    if run.kind != "image":
        raise DifflabError("nll is scored in bits/dim for image runs; for points use difflab likelihood.")
    data = test_images(run, num)
    gen = torch.Generator().manual_seed(seed)
    if run.config["diffusion"]["schedule"] == "learned":  # its own bound (Kingma et al. 2021)
        result = continuous_bound_terms(run, data, batch_size, gen, progress=progress)
        return {"NLL bits/dim (continuous bound)": result["mean"], "NLL se": result["stderr"]}
    bound = getattr(run.schedule, "discrete", False)
    result = bound_terms(run, data, batch_size, gen, progress) if bound else \
        ode_likelihood(run, data, batch_size, generator=gen, progress=progress)
    return {"NLL bits/dim" + (" (bound)" if bound else " (ODE)"): result["mean"], "NLL se": result["stderr"]}
