"""Keep training an already-fitted TorchClassifier, without touching the caller's object.

``TorchClassifier.fit`` builds a fresh module; given an ``nn.Module`` instance as ``module`` it
trains a deep copy of it instead. Warm starting is therefore: a clone whose ``module`` is a copy
of the fitted ``module_``, fitted as usual through the one training loop (hooks, early stopping,
seeds), then re-labelled with the original architecture name so it can still be saved.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any

import numpy as np
from sklearn.base import clone
from torch import nn

from crossfeed.exceptions import LabelMismatchError, NotFittedError, ValidationError
from crossfeed.models._torch_classifier import TorchClassifier
from crossfeed.training import TrainingHook

FITTED_ATTRS = ("classes_", "n_features_in_", "input_shape_", "history_", "best_epoch_")


def check_torch_model(model: Any, *, owner: str) -> TorchClassifier:
    """Raise unless ``model`` is a fitted :class:`TorchClassifier`."""
    if not isinstance(model, TorchClassifier):
        raise ValidationError(
            f"{owner} needs a fitted crossfeed TorchClassifier; got {type(model).__name__}. "
            "Wrap a PyTorch module with crossfeed.models.TorchClassifier"
        )
    if not isinstance(getattr(model, "module_", None), nn.Module):
        raise NotFittedError(f"{owner}: the TorchClassifier is not fitted yet; call fit(X, y) first")
    return model


def fitted_copy(model: TorchClassifier, fitted_module: nn.Module, /, **params: Any) -> TorchClassifier:
    """A new TorchClassifier with ``model``'s parameters (updated by ``params``) and ``fitted_module`` as ``module_``."""
    out = clone(model)
    if params:
        out.set_params(**params)
    for attr in FITTED_ATTRS:
        if hasattr(model, attr):
            setattr(out, attr, copy.copy(getattr(model, attr)))
    out.module_ = fitted_module.cpu().eval()
    return out


def warm_fit(
    model: TorchClassifier,
    X: Any,
    y: Any,
    *,
    module: nn.Module | None = None,
    hooks: Sequence[TrainingHook] = (),
    X_val: Any = None,
    y_val: Any = None,
    **params: Any,
) -> TorchClassifier:
    """Train a copy of ``module`` (default ``model.module_``) on ``(X, y)``; return a new fitted model.

    ``params`` override training settings (``epochs``, ``lr``, ``patience``, ``random_state``) for
    this run only: the returned model keeps ``model``'s parameters (``module``, ``module_kwargs``,
    ``epochs``...), which describe how to fit it from scratch; the labels of
    ``y`` must be ``model.classes_`` (all of them, so the output layer keeps its meaning).
    """
    start = model.module_ if module is None else module
    labels = np.unique(np.asarray(y))
    if labels.shape != model.classes_.shape or not np.array_equal(labels, model.classes_):
        raise LabelMismatchError(
            f"training data for an already-fitted model must hold exactly its classes {model.classes_.tolist()}; "
            f"got labels {labels.tolist()}"
        )
    trainer = clone(model)
    trainer.set_params(module=copy.deepcopy(start), module_kwargs=None, **params)
    trainer.fit(X, y, X_val=X_val, y_val=y_val, hooks=hooks)
    out = clone(model)  # the parameters still describe the model, not this extra training
    for attr in FITTED_ATTRS:
        # the sample shape is the model's (the extra training may have seen flattened rows)
        source = model if attr == "input_shape_" and hasattr(model, attr) else trainer
        if hasattr(source, attr):
            setattr(out, attr, getattr(source, attr))
    out.module_ = trainer.module_
    return out
