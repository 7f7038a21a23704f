"""Metrics of generated samples, over pluggable feature extractors.

Submodules are imported on first use, so ``import difflab.metrics`` does not import torch:

* ``classifiers``: the small per-dataset judges (digits, mnist, fashion-mnist) --
  ``judge(images, dataset) -> (pred_class, confidence)``, ``load_judge(dataset)`` with
  ``.features(x)`` and ``.logits(x)``.
* ``frechet``: Fréchet distance between feature sets (``frechet_distance_of``).
* ``precision_recall``: improved precision and recall of feature sets (``precision_recall``).
* ``kid``: kernel distance (unbiased MMD² with the cubic kernel, mean and standard error over subsets).
* ``inception_score``: exp(E KL(p(y|x) ‖ p(y))) over any classifier's probabilities, with splits.
* ``inception``: the FID InceptionV3 architecture, loading the standard weights from a path the user gives.
* ``efficientnet``: ImageNet EfficientNet-Lite0 features (optional extra ``features``).
* ``intervals``: the real-vs-real floor of a score, bootstrap and per-seed intervals, and the verdict rule.
"""

from __future__ import annotations

from ..lazy import exports

_SUBMODULES = {"classifiers", "frechet", "precision_recall", "kid", "inception_score", "inception", "efficientnet",
               "intervals"}
_ATTRIBUTES = {
    "judge": ("classifiers", "judge"),
    "load_judge": ("classifiers", "load_judge"),
    "load_classifier": ("classifiers", "load_classifier"),
    "JudgeNet": ("classifiers", "JudgeNet"),
    "JUDGE_DATASETS": ("classifiers", "JUDGE_DATASETS"),
    "frechet_distance_of": ("frechet", "frechet_distance_of"),
    "kernel_distance": ("kid", "kernel_distance"),
    "StreamingStatistics": ("frechet", "StreamingStatistics"),
}

__all__, __getattr__, __dir__ = exports(__name__, _SUBMODULES, _ATTRIBUTES)
