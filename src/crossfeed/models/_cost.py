"""Cost is part of a model: parameters, FLOPs per sample, measured latency per sample."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import torch
from sklearn.pipeline import Pipeline
from torch.utils.flop_counter import FlopCounterMode

from crossfeed.exceptions import ValidationError


@dataclass(frozen=True)
class Cost:
    """The serving cost of one model.

    Attributes
    ----------
    params : number of learned parameters (weights, coefficients, tree nodes).
    flops_per_sample : estimated floating-point operations to predict one sample
        (multiply and add counted separately, so a dense layer costs 2 * in * out).
    latency_batch1_s : measured seconds per sample when predicting one sample at a time.
    latency_batched_s : measured seconds per sample when predicting ``batch_size`` at a time.
    batch_size : the batch size of ``latency_batched_s``.
    """

    params: int
    flops_per_sample: float
    latency_batch1_s: float
    latency_batched_s: float
    batch_size: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _torch_module(estimator: Any) -> torch.nn.Module | None:
    module = getattr(estimator, "module_", None)
    return module if isinstance(module, torch.nn.Module) else None


def count_params(estimator: Any) -> int:
    """Number of learned parameters of a fitted model (torch, linear, naive Bayes, trees, pipelines, our ensembles)."""
    module = _torch_module(estimator)
    if module is not None:
        return int(sum(p.numel() for p in module.parameters()))
    if isinstance(estimator, Pipeline):
        return sum(count_params(step) for _, step in estimator.steps if step not in (None, "passthrough"))
    members = getattr(estimator, "members_", None)
    if members is not None:
        own = getattr(estimator, "final_estimator_", None)
        return sum(count_params(m) for _, m in _pairs(members)) + (count_params(own) if own is not None else 0)
    total = 0
    attrs = ["coef_", "intercept_", "theta_", "feature_log_prob_", "class_log_prior_", "scale_", "components_"]
    # var_ is a prediction-time parameter of GaussianNB but only a statistic of StandardScaler.
    attrs += ["var_"] if hasattr(estimator, "theta_") else ["mean_"]
    for attr in attrs:
        value = getattr(estimator, attr, None)
        if isinstance(value, np.ndarray):
            total += value.size
    tree = getattr(estimator, "tree_", None)
    if tree is not None:
        total += int(tree.node_count)
    for est in getattr(estimator, "estimators_", []) or []:
        for sub in np.ravel(np.asarray(est, dtype=object)):
            total += count_params(sub)
    return int(total)


def _pairs(members: Any) -> list[tuple[str, Any]]:
    return [(m[0], m[1]) if isinstance(m, tuple) else (type(m).__name__, m) for m in members]


def flops_per_sample(estimator: Any, X: Any) -> float:
    """Estimated FLOPs to predict one sample of ``X`` (array of shape (n, n_features)).

    Torch modules are counted with ``torch.utils.flop_counter.FlopCounterMode`` (matrix products
    and convolutions); scikit-learn linear models, naive Bayes, trees and pipelines analytically;
    crossfeed ensembles as the sum of their members (a cascade reports its expected cost); a model
    carrying a ``flops_per_sample_`` attribute (``crossfeed.serving.OnnxModel``, counted at export)
    reports it. Raises ``ValidationError`` for a model it cannot estimate: pass costs explicitly then.
    """
    X = np.asarray(X, dtype=np.float32)
    sample = X[:1].reshape(1, -1)
    n_features = sample.shape[1]
    module = _torch_module(estimator)
    if module is not None:
        module = module.cpu().eval()
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(torch.as_tensor(sample))
        return float(counter.get_total_flops())
    declared = getattr(estimator, "flops_per_sample_", None)
    if declared is not None:
        return float(declared)
    if isinstance(estimator, Pipeline):
        total, Xt = 0.0, sample
        for _, step in estimator.steps:
            if step in (None, "passthrough"):
                continue
            total += flops_per_sample(step, Xt)
            if hasattr(step, "transform"):
                Xt = np.asarray(step.transform(Xt), dtype=np.float32)
        return total
    if hasattr(estimator, "expected_cost_"):
        return float(estimator.expected_cost_)
    members = getattr(estimator, "members_", None)
    if members is not None:
        return float(sum(flops_per_sample(m, X) for _, m in _pairs(members)))
    coef = getattr(estimator, "coef_", None)
    if isinstance(coef, np.ndarray):
        return float(2 * coef.size + coef.shape[0] * 4)  # products + adds, then softmax
    if hasattr(estimator, "theta_"):  # GaussianNB: (x - mu)^2 / var summed per class
        return float(4 * estimator.theta_.size)
    if hasattr(estimator, "feature_log_prob_"):  # discrete naive Bayes: a matrix product
        return float(2 * estimator.feature_log_prob_.size)
    if hasattr(estimator, "tree_"):
        return float(estimator.tree_.max_depth + 1)
    estimators = getattr(estimator, "estimators_", None)
    if estimators is not None:
        return float(sum(flops_per_sample(e, sample) for e in np.ravel(np.asarray(estimators, dtype=object))))
    if hasattr(estimator, "mean_") and hasattr(estimator, "scale_"):  # StandardScaler
        return float(2 * n_features)
    if hasattr(estimator, "transform") and not hasattr(estimator, "predict"):
        return float(n_features)
    raise ValidationError(
        f"cannot estimate FLOPs of {type(estimator).__name__}; pass the member costs explicitly "
        "(e.g. Cascade(..., costs=[1.0, 10.0]))"
    )


def measure_latency(estimator: Any, X: Any, *, batch_size: int = 1, repeats: int = 5, max_samples: int = 256) -> float:
    """Measured seconds per sample of ``estimator.predict_proba`` at ``batch_size``.

    Runs ``repeats`` passes over up to ``max_samples`` samples (one warm-up pass first) and
    returns the median per-sample time. Single-threaded timings vary on shared machines: compare
    models measured side by side in one run.
    """
    X = np.asarray(X, dtype=np.float32)
    if batch_size < 1:
        raise ValidationError(f"batch_size must be >= 1; got {batch_size}")
    n = min(len(X), max(max_samples, batch_size))
    X = X[:n]
    batches = [X[i : i + batch_size] for i in range(0, n, batch_size)]
    if batch_size == 1:
        batches = batches[: min(len(batches), 64)]
    n_timed = sum(len(b) for b in batches)
    estimator.predict_proba(batches[0])  # warm-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        for b in batches:
            estimator.predict_proba(b)
        times.append((time.perf_counter() - start) / n_timed)
    return float(np.median(times))


def measure_cost(estimator: Any, X: Any, *, batch_size: int = 256, repeats: int = 5) -> Cost:
    """Parameters, FLOPs per sample and measured latency (batch 1 and ``batch_size``) of a fitted model.

    Example
    -------
    >>> from sklearn.linear_model import LogisticRegression
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(300, 4)); y = (X[:, 0] > 0).astype(int)
    >>> cost = measure_cost(LogisticRegression().fit(X, y), X, repeats=1)
    >>> cost.params, cost.flops_per_sample
    (5, 12.0)
    """
    return Cost(
        params=count_params(estimator),
        flops_per_sample=flops_per_sample(estimator, X),
        latency_batch1_s=measure_latency(estimator, X, batch_size=1, repeats=repeats),
        latency_batched_s=measure_latency(estimator, X, batch_size=batch_size, repeats=repeats),
        batch_size=batch_size,
    )
