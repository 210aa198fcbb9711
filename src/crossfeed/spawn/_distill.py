"""Knowledge distillation as a scikit-learn classifier: a small student learns from a fitted teacher.

Hinton, Vinyals & Dean (2015), "Distilling the Knowledge in a Neural Network", arXiv 1503.02531,
with optional FitNets hints (Romero et al. 2015, arXiv 1412.6550). :class:`Distiller.fit` reads
top to bottom like the method: validate, compute the teacher's outputs once, fit the student
through the one training loop with a :class:`~crossfeed.spawn.DistillationHook` (or, for a
student without gradients, on the teacher's labels).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, clone
from sklearn.model_selection import train_test_split
from sklearn.utils.metaestimators import available_if
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import has_fit_parameter

from crossfeed._validation import check_features, check_labels, is_fitted
from crossfeed.distill import (
    DistillationHook,
    check_alpha,
    check_hint_pairs,
    check_hint_weight,
    check_mixup,
    check_temperature,
    discrete_columns,
    find_layer,
    mixup_rows,
    teacher_logits,
)
from crossfeed.exceptions import LabelMismatchError, NotFittedError, ValidationError

__all__ = ["Distiller"]

logger = logging.getLogger(__name__)


def _takes_hooks(estimator: Any) -> bool:
    return has_fit_parameter(estimator, "hooks")


class Distiller(ClassifierMixin, BaseEstimator):
    """Train a small student on a fitted teacher's soft outputs (knowledge distillation).

    For a student trained by gradient descent (a :class:`~crossfeed.models.TorchClassifier`)
    the loss is ``(1 - alpha) · CE(y, student) + alpha · T² · KL(p_teacher^T || p_student^T)``
    (Hinton et al. 2015, arXiv 1503.02531), plus ``hint_weight`` times the FitNets hint losses
    (Romero et al. 2015, arXiv 1412.6550). Unlabelled *transfer* data (``X_transfer``), where
    only the teacher's outputs exist, takes part in the KD term with its hard-label term masked.

    A student without gradients (any scikit-learn classifier) cannot follow soft targets; it is
    fitted instead on the labelled data (true labels, weight ``1 - alpha``) plus every sample
    labelled by the teacher's argmax (weight ``alpha`` times the teacher's confidence, its top
    probability). Rows of weight 0 are dropped. A student whose ``fit`` takes no
    ``sample_weight`` gets the true labels plus the teacher's labels on the transfer data,
    unweighted.

    Parameters
    ----------
    teacher : fitted classifier with ``predict_proba`` (``predict_logits`` is used when present).
        Used as it is, never refitted.
    student : estimator template, cloned at ``fit`` (a TorchClassifier for gradient distillation).
    temperature : float > 0, default 4.0.
    alpha : float in [0, 1], default 0.9; the weight of the distillation term.
    hints : list of (teacher_layer, student_layer), optional
        Layer names from ``dict(module.named_modules())``; a learned 1x1 convolution or linear
        projection maps the student's features to the teacher's width when they differ.
    hint_weight : float >= 0, default 1.0.
    mixup : int >= 0, default 0
        Extra unlabelled rows for the teacher to label, each a mixup of two training or transfer
        rows (``lam ~ Beta(mixup_alpha, mixup_alpha)``; :func:`crossfeed.distill.mixup_rows`),
        added to the transfer data: the student matches the teacher's function between the
        collected inputs, not only on them (function matching on mixup views, Beyer et al. 2022,
        arXiv 2106.05237; MixKD, Liang et al. 2021, arXiv 2011.00593). The pool is drawn once,
        seeded by ``random_state`` (else the student's integer ``random_state``; with neither, a
        fresh draw each fit, as scikit-learn's ``None``), and labelled by the teacher once.
        Refused when every input column holds whole numbers (ids, counts: nothing to interpolate).
    mixup_alpha : float > 0, default 1.0 (``lam`` uniform).
    random_state : int, optional; overrides the student's ``random_state`` when given.

    Attributes
    ----------
    student_ : the fitted student. teacher_ : the teacher (the object passed in).
    classes_ : array of shape (n_classes,). n_features_in_ : int.
    hint_projections_ : nn.ModuleList of the trained projections, or None without hints.

    Example
    -------
    >>> import numpy as np
    >>> from sklearn.linear_model import LogisticRegression
    >>> from crossfeed.models import TorchClassifier
    >>> rng = np.random.default_rng(0); X = rng.normal(size=(200, 5)).astype("float32"); y = (X[:, 0] + X[:, 1] > 0).astype(int)
    >>> teacher = LogisticRegression().fit(X, y)
    >>> student = TorchClassifier("linear", epochs=20, lr=0.05, random_state=0)
    >>> d = Distiller(teacher, student, temperature=2.0).fit(X[:20], y[:20], X_transfer=X[20:])
    >>> d.score(X, y) > 0.8
    True
    """

    def __init__(
        self,
        teacher: Any,
        student: Any,
        *,
        temperature: float = 4.0,
        alpha: float = 0.9,
        hints: Sequence[tuple[str, str]] | None = None,
        hint_weight: float = 1.0,
        mixup: int = 0,
        mixup_alpha: float = 1.0,
        random_state: int | None = None,
    ) -> None:
        self.teacher = teacher
        self.student = student
        self.temperature = temperature
        self.alpha = alpha
        self.hints = hints
        self.hint_weight = hint_weight
        self.mixup = mixup
        self.mixup_alpha = mixup_alpha
        self.random_state = random_state

    def fit(
        self,
        X: Any,
        y: Any,
        *,
        X_val: Any = None,
        y_val: Any = None,
        X_transfer: Any = None,
    ) -> Distiller:
        """Distil the teacher into a clone of the student.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), labelled training data.
        y : array of shape (n_samples,), labels among the teacher's ``classes_``.
        X_val, y_val : validation data for the student's early stopping, optional.
        X_transfer : array of shape (n_transfer, n_features), optional
            Unlabelled data; the student learns the teacher's outputs on it.

        Returns
        -------
        self
        """
        # 1. validate
        temperature = check_temperature(self.temperature)
        alpha = check_alpha(self.alpha)
        check_hint_weight(self.hint_weight)
        hints = check_hint_pairs(self.hints)
        n_mixup = check_mixup(self.mixup, self.mixup_alpha)
        teacher = self._check_teacher()
        X = check_features(X)
        X = X.reshape(len(X), -1)
        y = check_labels(y, len(X))
        check_classification_targets(y)
        classes = np.asarray(teacher.classes_)
        _check_labels_known(y, classes, name="y")
        Xtr = None
        if X_transfer is not None:
            Xtr = check_features(X_transfer, name="X_transfer", n_features=X.shape[1]).reshape(-1, X.shape[1])
        if X_val is not None:
            X_val = check_features(X_val, name="X_val", n_features=X.shape[1]).reshape(-1, X.shape[1])
            _check_labels_known(check_labels(y_val, len(X_val), name="y_val"), classes, name="y_val")
        if hints and not hasattr(teacher, "module_"):
            raise ValidationError(
                f"hints need a PyTorch teacher (a fitted TorchClassifier); got {type(teacher).__name__}"
            )
        for t_layer, _ in hints:
            find_layer(teacher.module_, t_layer, owner="teacher")

        if n_mixup:
            pool = X if Xtr is None else np.concatenate([X, Xtr])
            if discrete_columns(pool).all():
                raise ValidationError(
                    "mixup interpolates continuous inputs, but every column of the training and transfer rows "
                    "holds whole numbers (ids, counts or flags, as in the amazon and movielens suites), where a "
                    "mixup row is only a copy of a real one. Set mixup=0, or distil on continuous features "
                    "(e.g. sentence embeddings)"
                )
            extra = mixup_rows(pool, n_mixup, np.random.default_rng(self._seed()), self.mixup_alpha)
            Xtr = extra if Xtr is None else np.concatenate([Xtr, extra])

        # 2. the teacher's outputs on every training row (labelled, transfer, then mixup rows)
        X_all = X if Xtr is None else np.concatenate([X, Xtr])
        logits = teacher_logits(teacher, X_all)
        if logits.shape != (len(X_all), len(classes)):
            raise LabelMismatchError(
                f"the teacher returned outputs of shape {logits.shape} for {len(X_all)} samples but has "
                f"{len(classes)} classes; its outputs must be one column per class in classes_"
            )
        self.teacher_ = teacher
        self.classes_ = classes
        self.n_features_in_ = X.shape[1]

        # 3. fit the student
        if _takes_hooks(self.student):
            self._fit_gradient(X, y, Xtr, logits, X_val, y_val, temperature, alpha, hints)
        else:
            if hints:
                raise ValidationError(
                    f"hints need a student trained by gradient descent (a TorchClassifier); got "
                    f"{type(self.student).__name__}"
                )
            self._fit_label_transfer(X, y, Xtr, logits, X_val, alpha)
        student_classes = np.asarray(self.student_.classes_)
        if student_classes.shape != classes.shape or not np.array_equal(student_classes, classes):
            raise LabelMismatchError(
                f"the student learned classes {student_classes.tolist()} but the teacher has "
                f"{classes.tolist()}; the training data (plus the teacher's labels on transfer data) "
                "must cover every class of the teacher"
            )
        return self

    # -- fit parts ----------------------------------------------------------------------------
    def _check_teacher(self) -> Any:
        teacher = self.teacher
        if not (hasattr(teacher, "predict_proba") or hasattr(teacher, "predict_logits")):
            raise ValidationError(
                f"the teacher must be a fitted classifier with predict_proba; got {type(teacher).__name__}"
            )
        if not is_fitted(teacher) or not hasattr(teacher, "classes_"):
            raise NotFittedError(
                f"the teacher ({type(teacher).__name__}) is not fitted; Distiller uses the teacher as it "
                "is and never fits it: fit it first"
            )
        return teacher

    def _seed(self) -> int | None:
        seed = self.random_state
        if seed is None and hasattr(self.student, "get_params"):
            seed = self.student.get_params().get("random_state")
        return int(seed) if isinstance(seed, (int, np.integer)) else None

    def _student_clone(self) -> Any:
        student = clone(self.student)
        if self.random_state is not None and "random_state" in student.get_params():
            student.set_params(random_state=self.random_state)
        return student

    def _fit_gradient(
        self,
        X: np.ndarray,
        y: np.ndarray,
        Xtr: np.ndarray | None,
        logits: np.ndarray,
        X_val: Any,
        y_val: Any,
        temperature: float,
        alpha: float,
        hints: list[tuple[str, str]],
    ) -> None:
        student = self._student_clone()
        params = student.get_params()
        n_lab = len(X)
        labelled = np.ones(len(logits), dtype=bool)
        y_all = y
        if Xtr is not None:
            labelled[n_lab:] = False
            y_all = np.concatenate([y, self.classes_[logits[n_lab:].argmax(axis=1)]])
        X_all = X if Xtr is None else np.concatenate([X, Xtr])
        covered = np.unique(y_all)
        if covered.shape != self.classes_.shape or not np.array_equal(covered, self.classes_):
            raise LabelMismatchError(
                f"the training labels (plus the teacher's labels on the transfer data) cover classes "
                f"{covered.tolist()} but the teacher has {self.classes_.tolist()}; a student must learn every "
                "class of its teacher: add samples of the missing classes"
            )
        # The hook finds teacher logits by row position, so no split may happen inside fit.
        fraction = float(params.get("validation_fraction", 0.0) or 0.0)
        if X_val is None and fraction > 0:
            tr, va = _split(np.flatnonzero(labelled), y, fraction, params.get("random_state"))
            X_val, y_val = X_all[va], y_all[va]
            keep = np.setdiff1d(np.arange(len(X_all)), va)
            X_all, y_all, logits, labelled = X_all[keep], y_all[keep], logits[keep], labelled[keep]
        if "validation_fraction" in params:
            student.set_params(validation_fraction=0.0)
        teacher_module = getattr(self.teacher_, "module_", None) if hints else None
        hook = DistillationHook(
            logits, labelled=labelled, temperature=temperature, alpha=alpha,
            teacher_module=teacher_module, hints=hints, hint_weight=self.hint_weight, example_x=X_all[:8],
        )
        logger.debug("distilling into %s: %d labelled + %d transfer samples", type(student).__name__,
                     int(labelled.sum()), int((~labelled).sum()))
        student.fit(X_all, y_all, X_val=X_val, y_val=y_val, hooks=[hook])
        self.student_ = student
        self.hint_projections_ = hook.projections if hints else None

    def _fit_label_transfer(
        self, X: np.ndarray, y: np.ndarray, Xtr: np.ndarray | None, logits: np.ndarray, X_val: Any, alpha: float
    ) -> None:
        student = self._student_clone()
        proba = torch.softmax(torch.as_tensor(logits), dim=1).numpy()
        t_label = self.classes_[proba.argmax(axis=1)]
        conf = proba.max(axis=1)
        n_lab = len(X)
        X_all = X if Xtr is None else np.concatenate([X, Xtr])
        if has_fit_parameter(student, "sample_weight"):
            rows_X = [X, X_all]
            rows_y = [y, t_label]
            rows_w = [np.full(n_lab, 1.0 - alpha), alpha * conf]
            Xf, yf, wf = np.concatenate(rows_X), np.concatenate(rows_y), np.concatenate(rows_w)
            keep = wf > 0
            student.fit(Xf[keep], yf[keep], sample_weight=wf[keep])
        else:
            logger.warning(
                "%s.fit takes no sample_weight: distilling by the teacher's hard labels on the transfer "
                "data only (alpha and the teacher's confidence are not applied)", type(student).__name__
            )
            if Xtr is None or alpha == 0:
                student.fit(X, y)
            else:
                student.fit(X_all, np.concatenate([y, t_label[n_lab:]]))
        if X_val is not None:
            logger.debug("X_val is not used by a label-transfer student (%s)", type(student).__name__)
        self.student_ = student
        self.hint_projections_ = None

    # -- predicting -------------------------------------------------------------------------
    def _check_fitted(self) -> None:
        if not hasattr(self, "student_"):
            raise NotFittedError("this Distiller is not fitted yet; call fit(X, y) first")

    def predict(self, X: Any) -> np.ndarray:
        """Class labels predicted by the student, array of shape (n_samples,)."""
        self._check_fitted()
        return self.student_.predict(X)

    def predict_proba(self, X: Any) -> np.ndarray:
        """The student's class probabilities, array of shape (n_samples, n_classes)."""
        self._check_fitted()
        return self.student_.predict_proba(X)

    def _student_has_logits(self) -> bool:
        return hasattr(self.student_ if hasattr(self, "student_") else self.student, "predict_logits")

    @available_if(_student_has_logits)
    def predict_logits(self, X: Any) -> np.ndarray:
        """The student's logits, array of shape (n_samples, n_classes)."""
        self._check_fitted()
        return self.student_.predict_logits(X)


def _check_labels_known(y: np.ndarray, classes: np.ndarray, *, name: str) -> None:
    unknown = np.setdiff1d(np.unique(y), classes)
    if unknown.size:
        raise LabelMismatchError(
            f"{name} holds labels {unknown.tolist()} that the teacher does not know; the teacher's classes "
            f"are {classes.tolist()}. Teacher and student must share one label set"
        )


def _split(rows: np.ndarray, y: np.ndarray, fraction: float, seed: Any) -> tuple[np.ndarray, np.ndarray]:
    """Hold out ``fraction`` of the labelled ``rows`` for validation, stratified where possible."""
    labels = y[rows]
    stratify = labels if np.unique(labels, return_counts=True)[1].min() >= 2 else None
    seed = seed if isinstance(seed, int | np.integer) else 0
    tr, va = train_test_split(rows, test_size=fraction, random_state=int(seed), stratify=stratify)
    return np.sort(tr), np.sort(va)
