"""The distillation hook on the one training loop, and the teacher's logits it looks up.

:class:`DistillationHook` adds Hinton et al.'s KD term (arXiv 1503.02531) and FitNets hint terms
(Romero et al., arXiv 1412.6550) to :func:`crossfeed.training.train` by returning values from the
hooks of :class:`~crossfeed.training.TrainingHook`; the teacher's logits are precomputed once and
looked up by ``Batch.index``.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn

from crossfeed.distill._hints import (
    FeatureCapture,
    align,
    check_hint_pairs,
    hint_term,
    make_projection,
)
from crossfeed.distill._kd import check_temperature, kd_loss
from crossfeed.exceptions import LabelMismatchError, ValidationError
from crossfeed.training import Batch, TrainingHook

__all__ = ["DistillationHook", "check_alpha", "check_hint_weight", "teacher_logits"]


def teacher_logits(teacher: Any, X: np.ndarray, *, eps: float = 1e-7) -> np.ndarray:
    """Logits of a fitted classifier: ``predict_logits`` if it has one, else ``log(predict_proba)``.

    Returns an array of shape (n_samples, n_classes). Probabilities are clipped at ``eps`` before
    the logarithm so that a class given probability 0 stays finite; ``log p`` are logits up to a
    per-sample constant, which softmax ignores.
    """
    if hasattr(teacher, "predict_logits"):
        return _finite_logits(np.asarray(teacher.predict_logits(X), dtype=np.float32), teacher)
    if not hasattr(teacher, "predict_proba"):
        raise ValidationError(
            f"the teacher ({type(teacher).__name__}) has neither predict_logits nor predict_proba; "
            "distillation needs the teacher's class probabilities (for SVC pass probability=True)"
        )
    proba = np.asarray(teacher.predict_proba(X), dtype=np.float64)
    return _finite_logits(np.log(np.clip(proba, eps, 1.0)).astype(np.float32), teacher)


def _finite_logits(logits: np.ndarray, teacher: Any) -> np.ndarray:
    """``logits`` unchanged, or a ValidationError when a row holds NaN or inf: never propagated."""
    bad = ~np.isfinite(logits).all(axis=1) if logits.ndim == 2 else ~np.isfinite(logits)
    if bad.any():
        raise ValidationError(
            f"the teacher ({type(teacher).__name__}) gives non-finite outputs (NaN or inf) on {int(bad.sum())} of "
            f"{len(logits)} samples; it cannot teach. Refit it (a diverged training?) or drop it"
        )
    return logits


class DistillationHook(TrainingHook):
    """Training hook for ``(1 - alpha) · CE(hard labels) + alpha · kd_loss + hint_weight · hints``.

    Parameters
    ----------
    teacher_logits : array of shape (n_samples, n_classes)
        The teacher's logits for every row of the training arrays, in their order (looked up by
        ``Batch.index``); columns in the order of the student's classes.
    labelled : array of bool of shape (n_samples,), optional
        False for transfer samples that have no hard label: their cross-entropy term is masked.
        All True by default.
    temperature, alpha : see :class:`Distiller`.
    teacher_module : nn.Module, optional
        The teacher's network, needed for ``hints`` (a private copy is used, in eval mode).
    hints : list of (teacher_layer, student_layer), optional
    hint_weight : float
    example_x : array of shape (n, n_features), optional
        A few training samples, used in ``setup`` to read the hint layers' shapes.

    The hard-label term goes through the loop's own cross-entropy: :meth:`targets` returns
    ``(1 - alpha) · one_hot(y)`` (all zeros for transfer samples); :meth:`extra_loss` adds
    ``alpha · kd_loss`` and the hint terms. With ``alpha = 0``, no hints and only labelled data the
    hook returns nothing, so training is exactly plain training.

    Attributes
    ----------
    projections : nn.ModuleList, one learned projection per hint (``nn.Identity`` where the
        widths already match), created in ``setup`` and optimised by the loop.
    initial_projection_state : dict, a copy of the projections' weights right after ``setup``.

    Example
    -------
    >>> import numpy as np
    >>> from crossfeed.models import TorchClassifier
    >>> X = np.random.default_rng(0).normal(size=(64, 6)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> t_logits = np.stack([-X[:, 0], X[:, 0]], axis=1) * 3
    >>> hook = DistillationHook(t_logits, temperature=2.0, alpha=0.5)
    >>> TorchClassifier("mlp", module_kwargs={"hidden": (8,)}, epochs=2, random_state=0).fit(X, y, hooks=[hook]).score(X, y) > 0.5
    True
    """

    def __init__(
        self,
        teacher_logits: Any,
        *,
        labelled: Any = None,
        temperature: float = 4.0,
        alpha: float = 0.9,
        teacher_module: nn.Module | None = None,
        hints: Sequence[tuple[str, str]] | None = None,
        hint_weight: float = 1.0,
        example_x: Any = None,
    ) -> None:
        self.temperature = check_temperature(temperature)
        self.alpha = check_alpha(alpha)
        self.hint_weight = check_hint_weight(hint_weight)
        self.hints = check_hint_pairs(hints)
        self._logits = torch.as_tensor(np.asarray(teacher_logits, dtype=np.float32))
        n = self._logits.shape[0]
        mask = np.ones(n, dtype=bool) if labelled is None else np.asarray(labelled, dtype=bool).reshape(-1)
        if mask.shape[0] != n:
            raise ValidationError(f"labelled has {mask.shape[0]} entries but teacher_logits has {n} rows")
        self._labelled = torch.as_tensor(mask)
        self._all_labelled = bool(mask.all())
        if self.hints and (teacher_module is None or example_x is None):
            raise ValidationError("hints need the teacher's module (teacher_module) and a few samples (example_x)")
        self._teacher = None if teacher_module is None else copy.deepcopy(teacher_module).eval()
        self._example = None if example_x is None else torch.as_tensor(np.asarray(example_x, dtype=np.float32)[:8])
        self.projections: nn.ModuleList = nn.ModuleList()
        self.initial_projection_state: dict[str, torch.Tensor] = {}
        self._student_capture: FeatureCapture | None = None
        self._teacher_capture: FeatureCapture | None = None

    # -- hooks ------------------------------------------------------------------------------
    def setup(self, module: nn.Module, device: torch.device) -> Iterable[nn.Parameter] | None:
        self._logits = self._logits.to(device)
        self._labelled = self._labelled.to(device)
        self._check_output_size(module, device)
        if not self.hints:
            return None
        assert self._teacher is not None and self._example is not None  # checked in __init__
        for p in self._teacher.parameters():
            p.requires_grad_(False)
        self._teacher.to(device).eval()
        self._student_capture = FeatureCapture(module, [s for _, s in self.hints], owner="student")
        self._teacher_capture = FeatureCapture(self._teacher, [t for t, _ in self.hints], owner="teacher")
        s_feats, t_feats = self._probe(module, device)
        self.projections = nn.ModuleList(make_projection(*align(s, t)) for s, t in zip(s_feats, t_feats, strict=True))
        self.projections.to(device)
        self.initial_projection_state = {k: v.detach().clone() for k, v in self.projections.state_dict().items()}
        return list(self.projections.parameters())

    def targets(self, batch: Batch, module: nn.Module) -> torch.Tensor | None:
        if self.alpha == 0.0 and self._all_labelled:
            return None  # plain cross-entropy on hard labels
        n_classes = self._logits.shape[1]
        one_hot = torch.nn.functional.one_hot(batch.y, n_classes).to(self._logits.dtype)
        return one_hot * ((1.0 - self.alpha) * self._labelled[batch.index].to(one_hot.dtype)).unsqueeze(1)

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        loss = None
        if self.alpha > 0.0:
            loss = self.alpha * kd_loss(logits, self._logits[batch.index], self.temperature)
        if self.hints and self.hint_weight > 0.0:
            assert self._teacher is not None and self._student_capture and self._teacher_capture
            with torch.no_grad():
                self._teacher(batch.x)
            terms = [
                hint_term(proj, self._student_capture.outputs[s], self._teacher_capture.outputs[t])
                for proj, (t, s) in zip(self.projections, self.hints, strict=True)
            ]
            hint = self.hint_weight * torch.stack(terms).sum()
            loss = hint if loss is None else loss + hint
        return loss

    def teardown(self, module: nn.Module) -> None:
        for capture in (self._student_capture, self._teacher_capture):
            if capture is not None:
                capture.remove()
        self._student_capture = self._teacher_capture = None
        if self._teacher is not None:
            self._teacher.cpu()
        self.projections.cpu()

    # -- helpers ----------------------------------------------------------------------------
    def _check_output_size(self, module: nn.Module, device: torch.device) -> None:
        if self._example is None:
            return
        was_training = module.training
        module.eval()
        with torch.no_grad():
            out = module(self._example[:2].to(device))
        module.train(was_training)
        if out.ndim != 2 or out.shape[1] != self._logits.shape[1]:
            raise LabelMismatchError(
                f"the student outputs {tuple(out.shape[1:])} values per sample but the teacher has "
                f"{self._logits.shape[1]} classes; student and teacher must share one label set"
            )

    def _probe(self, module: nn.Module, device: torch.device) -> tuple[list[torch.Tensor], list[torch.Tensor]]:
        assert self._teacher is not None and self._example is not None
        assert self._student_capture is not None and self._teacher_capture is not None
        x = self._example.to(device)
        was_training = module.training
        module.eval()
        with torch.no_grad():
            module(x)
            self._teacher(x)
        module.train(was_training)
        s_feats = [self._student_capture.outputs[s] for _, s in self.hints]
        t_feats = [self._teacher_capture.outputs[t] for t, _ in self.hints]
        return s_feats, t_feats


def check_alpha(alpha: Any) -> float:
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise ValidationError(f"alpha must be a number in [0, 1]; got {alpha!r}") from None
    if not 0.0 <= value <= 1.0:
        raise ValidationError(
            f"alpha must be in [0, 1] (0: hard labels only, 1: teacher only); got {alpha!r}"
        )
    return value


def check_hint_weight(weight: Any) -> float:
    try:
        value = float(weight)
    except (TypeError, ValueError):
        raise ValidationError(f"hint_weight must be a non-negative number; got {weight!r}") from None
    if not (value >= 0 and math.isfinite(value)):
        raise ValidationError(f"hint_weight must be a non-negative finite number; got {weight!r}")
    return value
