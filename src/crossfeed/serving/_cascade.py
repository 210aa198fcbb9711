"""A fitted Cascade served with ONNX Runtime stages and a lean per-sample path.

:class:`ServedCascade` takes the routing a :class:`crossfeed.combine.Cascade` learned (stage
order, thresholds, confidence rule, per-member temperatures) and runs it over
:class:`OnnxModel` stages: TorchClassifier members are exported (optionally int8-quantized),
members that already are OnnxModels are kept, any other member runs its own ``predict_proba``.
Answers are the Cascade's: same thresholds, same rule (``crossfeed.combine.CONFIDENCE_RULES``),
same temperature scaling ``softmax(log(clip(p, 1e-12, 1)) / T)``, applied to float64
probabilities as the Cascade does. Only the per-call overhead differs: one input check per
call, no scikit-learn validation, no re-check of each stage's probabilities (the Cascade refuses
NaN from a member; a served stage is trusted), and a single sample runs its routing maths on
Python floats with no index bookkeeping. Measured here (2 slow cores, one thread) on a 2-stage
cascade of a tiny and a small cnn1d: a sample answered by stage 0 takes about 32 us served
(the stage alone: 23 us) against about 240 us through the torch Cascade.
"""

from __future__ import annotations

import heapq
import logging
import math
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin

from crossfeed._validation import check_features, is_fitted
from crossfeed.combine import CONFIDENCE_RULES, Cascade
from crossfeed.exceptions import LabelMismatchError, NotFittedError, ValidationError
from crossfeed.models import TorchClassifier
from crossfeed.serving._onnx import OnnxModel, all_finite, check_input
from crossfeed.serving._quantize import quantize_onnx

__all__ = ["ServedCascade"]

logger = logging.getLogger(__name__)

#: Probabilities are clipped to [PROBA_FLOOR, 1] before taking logs (as crossfeed.combine does).
PROBA_FLOOR = 1e-12

_F32 = np.dtype(np.float32)


def temperature_scale(proba: np.ndarray, temperature: float) -> np.ndarray:
    """``softmax(log(clip(proba, 1e-12, 1)) / T)`` row by row, array of shape (n_samples, n_classes).

    The arithmetic of ``scipy.special.log_softmax`` (shift by the row maximum, subtract the log
    of the sum of exponentials) without its per-call overhead, so the scaled probabilities are
    those the Cascade computes.
    """
    z = np.log(np.clip(proba, PROBA_FLOOR, 1.0)) / temperature
    z = z - z.max(axis=1, keepdims=True)
    return np.exp(z - np.log(np.sum(np.exp(z), axis=1, keepdims=True)))


# One sample at a time the same maths runs on a list of Python floats: right after an ONNX Runtime
# call every NumPy operation on a tiny array costs microseconds (measured: about 6 us for the first
# reduction, 1-3 us for each later one), more than the small stages themselves. Results equal the
# array versions up to the last bit of a log or exp; tests keep the two in step.
def temperature_scale_row(proba: list[float], temperature: float) -> list[float]:
    """:func:`temperature_scale` of one row, on Python floats."""
    z = [math.log(min(max(p, PROBA_FLOOR), 1.0)) / temperature for p in proba]
    top = max(z)
    z = [v - top for v in z]
    log_total = math.log(sum(math.exp(v) for v in z))
    return [math.exp(v - log_total) for v in z]


def _margin_row(proba: list[float]) -> float:
    if len(proba) < 2:
        return proba[0]
    first, second = heapq.nlargest(2, proba)
    return first - second


def _entropy_row(proba: list[float]) -> float:
    return sum(p * math.log(p) for p in proba if p > 0)


#: One-row versions of ``crossfeed.combine.CONFIDENCE_RULES`` (a rule missing here takes the array path).
ROW_RULES: dict[str, Callable[[list[float]], float]] = {
    "entropy": _entropy_row,
    "margin": _margin_row,
    "max_prob": max,
}


class ServedCascade(ClassifierMixin, BaseEstimator):
    """Cascade routing over fast stages: each stage answers when confident, the others escalate.

    Stage ``k`` answers a sample when ``rule(p_k) >= thresholds[k]``, ``p_k`` being its
    (temperature-scaled) probabilities; the last stage always answers. Build one with
    :meth:`from_cascade`; the constructor takes the stages already in order.

    Parameters
    ----------
    stages : list of (name, fitted estimator) pairs, cheapest first
        Classifiers with ``predict_proba`` sharing ``classes_``; :class:`OnnxModel` stages run
        on the fast path.
    thresholds : sequence of float, one per stage
        The last one is ignored (the last stage always answers).
    rule : "max_prob", "margin" or "entropy", default "max_prob"
    temperatures : sequence of float > 0, one per stage, or None (no scaling)
    costs : sequence of float >= 0, one per stage, or None
        Cost per sample of each stage, for :meth:`expected_cost`.

    Attributes
    ----------
    stages_ : list of (name, estimator), in stage order
    thresholds_ : array of shape (n_stages,), the last one ``-inf``
    temperatures_ : array of shape (n_stages,) or None, in stage order
    costs_ : array of shape (n_stages,) or None, in stage order
    classes_ : array of shape (n_classes,)
    n_features_in_ : int

    Example
    -------
    >>> served = ServedCascade.from_cascade(cascade, "served/", example_X=X_test)  # doctest: +SKIP
    >>> proba, stage = served.predict_with_stages(X_test[:1])                      # doctest: +SKIP
    """

    def __init__(
        self,
        stages: list[tuple[str, Any]],
        *,
        thresholds: Sequence[float],
        rule: str = "max_prob",
        temperatures: Sequence[float] | None = None,
        costs: Sequence[float] | None = None,
    ) -> None:
        self.stages = stages
        self.thresholds = thresholds
        self.rule = rule
        self.temperatures = temperatures
        self.costs = costs

    @classmethod
    def from_cascade(
        cls,
        cascade: Cascade,
        folder: str | os.PathLike[str],
        *,
        example_X: Any,
        threads: int = 1,
        int8: bool = False,
        calibration_X: Any = None,
    ) -> ServedCascade:
        """Serve a fitted Cascade: export its TorchClassifier stages to ``folder/stage{k}.onnx``.

        Parameters
        ----------
        cascade : fitted :class:`crossfeed.combine.Cascade`.
        folder : where the stage files go (created if missing); an existing ``stage{k}.onnx``
            is replaced.
        example_X : array of shape (n_samples, n_features); traces and checks each export.
        threads : int >= 1, ONNX Runtime threads per stage.
        int8 : bool, default False
            Quantize each exported stage with :func:`quantize_onnx` (the float export stays
            next to it as ``stage{k}.float.onnx``). Routing then follows the int8
            probabilities, so answers can differ from the Cascade's on a few samples.
        calibration_X : array of shape (n_samples, n_features); required with ``int8=True``.

        Returns
        -------
        ServedCascade, fitted.
        """
        if not isinstance(cascade, Cascade):
            raise ValidationError(f"from_cascade needs a crossfeed.combine.Cascade; got {type(cascade).__name__}")
        if not is_fitted(cascade):
            raise NotFittedError("this Cascade is not fitted yet; call cascade.fit(X, y) first")
        if int8 and calibration_X is None:
            raise ValidationError("int8=True needs calibration_X (a few hundred training samples) to calibrate with")
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        order = np.asarray(cascade.order_)
        stages = []
        for k, member in enumerate(order):
            name, est = cascade.members_[member]
            if isinstance(est, TorchClassifier):
                path = folder / f"stage{k}.onnx"
                if int8:
                    float_model = OnnxModel.from_model(
                        est, folder / f"stage{k}.float.onnx", example_X=example_X, threads=threads
                    )
                    quantize_onnx(float_model, path, calibration_X=calibration_X)
                    est = OnnxModel.load(path, threads=threads)
                else:
                    est = OnnxModel.from_model(est, path, example_X=example_X, threads=threads)
                logger.info("ServedCascade: stage %d (%s) -> %s", k, name, path)
            stages.append((name, est))
        temperatures = None if cascade.temperatures_ is None else np.asarray(cascade.temperatures_)[order]
        return cls(
            stages,
            thresholds=np.asarray(cascade.thresholds_, dtype=float).copy(),
            rule=cascade.rule,
            temperatures=temperatures,
            costs=np.asarray(cascade.costs_, dtype=float)[order],
        ).fit()

    def fit(self, X: Any = None, y: Any = None) -> ServedCascade:
        """Check the stages and routing parameters and prepare the fast path; nothing is trained.

        Parameters
        ----------
        X, y : ignored (accepted for scikit-learn compatibility).

        Returns
        -------
        self
        """
        stages = self._check_stages()
        n = len(stages)
        if self.rule not in CONFIDENCE_RULES:
            raise ValidationError(f"rule must be one of {sorted(CONFIDENCE_RULES)}; got {self.rule!r}")
        thresholds = self._per_stage(self.thresholds, "thresholds", n)
        if np.isnan(thresholds[:-1]).any():
            raise ValidationError(f"thresholds must not be NaN; got {thresholds.tolist()}")
        thresholds[-1] = -np.inf
        temperatures = None if self.temperatures is None else self._per_stage(self.temperatures, "temperatures", n)
        if temperatures is not None and not (np.all(np.isfinite(temperatures)) and np.all(temperatures > 0)):
            raise ValidationError(f"temperatures must be finite and > 0; got {temperatures.tolist()}")
        costs = None if self.costs is None else self._per_stage(self.costs, "costs", n)
        if costs is not None and not (np.all(np.isfinite(costs)) and np.all(costs >= 0)):
            raise ValidationError(f"costs must be finite and >= 0; got {costs.tolist()}")
        classes = np.asarray(stages[0][1].classes_)
        for name, est in stages[1:]:
            other = np.asarray(est.classes_)
            if other.shape != classes.shape or not np.array_equal(other, classes):
                raise LabelMismatchError(
                    f"stages must share one label set; {stages[0][0]!r} has {classes.tolist()} but {name!r} has "
                    f"{other.tolist()}"
                )
        widths = {int(est.n_features_in_) for _, est in stages if hasattr(est, "n_features_in_")}
        if len(widths) != 1:
            raise ValidationError(
                f"the stages must agree on n_features_in_ (one feature count); got {sorted(widths) or 'none'}"
            )
        self.stages_ = stages
        self.thresholds_ = thresholds
        self.temperatures_ = temperatures
        self.costs_ = costs
        self.classes_ = classes
        self.n_features_in_ = widths.pop()
        self._prepare()
        return self

    def _check_stages(self) -> list[tuple[str, Any]]:
        stages = self.stages
        if not isinstance(stages, Sequence) or isinstance(stages, str) or len(stages) == 0:
            raise ValidationError(f"stages must be a non-empty list of (name, fitted estimator) pairs; got {stages!r}")
        out = []
        for item in stages:
            if not (isinstance(item, tuple | list) and len(item) == 2 and isinstance(item[0], str)):
                raise ValidationError(f"each stage must be a (name, estimator) pair; got {item!r}")
            name, est = item
            if not hasattr(est, "predict_proba") or not hasattr(est, "classes_"):
                raise ValidationError(
                    f"stage {name!r} ({type(est).__name__}) needs predict_proba and classes_ (a fitted classifier)"
                )
            out.append((name, est))
        return out

    @staticmethod
    def _per_stage(values: Any, name: str, n: int) -> np.ndarray:
        try:
            arr = np.array(values, dtype=float)
        except (TypeError, ValueError) as exc:
            raise ValidationError(f"{name} must be numbers, one per stage ({n}); got {values!r}") from exc
        if arr.shape != (n,):
            raise ValidationError(f"{name} must have one number per stage ({n}); got shape {arr.shape}")
        return arr

    def _prepare(self) -> None:
        """Per stage: (run on float32 input?, predict function, temperature, threshold)."""
        runners: list[tuple[bool, Callable[[np.ndarray], Any], float | None, float]] = []
        for k, (_, est) in enumerate(self.stages_):
            onnx = isinstance(est, OnnxModel)
            run = est._infer if onnx else est.predict_proba
            t = None if self.temperatures_ is None else float(self.temperatures_[k])
            runners.append((onnx, run, t, float(self.thresholds_[k])))
        self._runners = runners
        self._score = CONFIDENCE_RULES[self.rule]
        self._row_score = ROW_RULES.get(self.rule)

    # ----------------------------------------------------------------- predicting
    def _check_X(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """(float32 C-contiguous X for ONNX stages, X for the other stages: float64 input stays float64)."""
        if "_runners" not in self.__dict__:
            raise NotFittedError("this ServedCascade is not fitted; build it with ServedCascade.from_cascade")
        d = self.n_features_in_
        if type(X) is np.ndarray and X.dtype == _F32 and X.ndim == 2 and X.flags.c_contiguous and X.shape[1] == d:
            if X.shape[0] and all_finite(X):
                return X, X
        X32 = check_input(X, d, owner="ServedCascade")
        if any(not onnx for onnx, *_ in self._runners):
            full = check_features(X, n_features=d, owner="ServedCascade")
            return X32, (full if full.dtype != _F32 else X32)
        return X32, X32

    def _stage_proba(self, k: int, X32: np.ndarray, X_other: np.ndarray) -> np.ndarray:
        onnx, run, t, _ = self._runners[k]
        p = np.asarray(run(X32 if onnx else X_other), dtype=float)
        return p if t is None else temperature_scale(p, t)

    def predict_with_stages(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Run the cascade; stage ``k`` only sees the samples the earlier stages deferred.

        Parameters
        ----------
        X : array of shape (n_samples, n_features); a C-contiguous float32 array takes the
            fast path.

        Returns
        -------
        proba : float64 array of shape (n_samples, n_classes), the answering stage's probabilities.
        stage : int array of shape (n_samples,), the answering stage (index in ``stages_``).
        """
        X32, X_other = self._check_X(X)
        last = len(self._runners) - 1
        score_row = self._row_score
        if X32.shape[0] == 1 and score_row is not None:  # one sample: Python floats, no index bookkeeping
            for k, (onnx, run, t, threshold) in enumerate(self._runners):
                row = (run(X32)[0] if onnx else np.asarray(run(X_other), dtype=float)[0]).tolist()
                if t is not None:
                    row = temperature_scale_row(row, t)
                if k == last or score_row(row) >= threshold:
                    return np.array([row]), np.array([k], dtype=np.intp)
        n = X32.shape[0]
        proba = np.zeros((n, self.classes_.size))
        stage = np.full(n, -1, dtype=np.intp)
        remaining = np.arange(n)
        for k in range(last + 1):
            if remaining.size == 0:
                break
            if remaining.size == n:
                p = self._stage_proba(k, X32, X_other)
            else:
                sub32 = X32[remaining]
                p = self._stage_proba(k, sub32, sub32 if X_other is X32 else X_other[remaining])
            answer = self._score(p) >= self._runners[k][3] if k < last else np.ones(remaining.size, dtype=bool)
            proba[remaining[answer]] = p[answer]
            stage[remaining[answer]] = k
            remaining = remaining[~answer]
        return proba, stage

    def predict_proba(self, X: Any) -> np.ndarray:
        """Probabilities of the stage that answered each sample, array of shape (n_samples, n_classes)."""
        return self.predict_with_stages(X)[0]

    def predict(self, X: Any) -> np.ndarray:
        """Predicted labels, array of shape (n_samples,)."""
        proba, _ = self.predict_with_stages(X)  # first: it raises NotFittedError before fit
        return self.classes_[np.argmax(proba, axis=1)]

    def expected_cost(self, X: Any) -> float:
        """Mean cost per sample of serving ``X`` (array of shape (n_samples, n_features)); needs ``costs``."""
        if getattr(self, "costs_", None) is None:
            raise ValidationError("expected_cost needs the cost per stage; pass costs=[...] (from_cascade does)")
        _, stage = self.predict_with_stages(X)
        return float(np.cumsum(self.costs_)[stage].mean())

    def __getstate__(self) -> dict[str, Any]:
        state = super().__getstate__()
        return {k: v for k, v in state.items() if k not in ("_runners", "_score")}

    def __setstate__(self, state: dict[str, Any]) -> None:
        super().__setstate__(state)
        if "stages_" in state:
            self._prepare()
