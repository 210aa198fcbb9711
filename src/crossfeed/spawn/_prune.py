"""Pruning: remove channels for real (structured) or zero single weights (unstructured).

- :func:`prune_structured` removes whole channels / neurons with Torch-Pruning's dependency
  graph (Fang et al. 2023, "DepGraph: Towards Any Structural Pruning", arXiv 2301.12900), so the
  network really gets smaller and faster; coupled layers (a convolution, its BatchNorm, the
  linear layer reading the pooled features) shrink together. Channels are ranked by the L2 norm
  of their grouped weights (magnitude pruning, Li et al. 2017, arXiv 1608.08710).
- :func:`prune_unstructured` zeroes the ``amount`` smallest weights (L1 magnitude, Han et al.
  2015, arXiv 1506.02626) with ``torch.nn.utils.prune`` and makes it permanent. The tensors keep
  their shape: it saves nothing on disk or in time without a sparse runtime; it is the baseline.

Both can recover accuracy afterwards by fine-tuning, or by distilling from a teacher (the
unpruned model, typically). During the recovery of unstructured pruning the mask is kept, so the
zeroed weights stay zero.
"""

from __future__ import annotations

import copy
import logging
import math
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from crossfeed._validation import check_features
from crossfeed.distill import DistillationHook, teacher_logits
from crossfeed.exceptions import ValidationError, missing_dependency
from crossfeed.models import (
    TorchClassifier,
    build_module,
    check_torch_model,
    fitted_copy,
    warm_fit,
)

__all__ = ["prune_structured", "prune_unstructured", "sparsity"]

logger = logging.getLogger(__name__)

_FINE_TUNE_KEYS = {"X", "y", "X_val", "y_val", "X_transfer", "epochs", "lr", "patience", "temperature", "alpha"}


def _check_ratio(ratio: Any, name: str) -> float:
    try:
        value = float(ratio)
    except (TypeError, ValueError):
        raise ValidationError(f"{name} must be a number in [0, 1); got {ratio!r}") from None
    if not (0.0 <= value < 1.0 and math.isfinite(value)):
        raise ValidationError(
            f"{name} must be in [0, 1): the share of channels or weights to remove (0.5 removes half); got {ratio!r}"
        )
    return value


def _output_layer(module: nn.Module) -> nn.Module:
    layers = [m for m in module.modules() if isinstance(m, nn.Linear | nn.modules.conv._ConvNd)]
    if not layers:
        raise ValidationError("the module has no Linear or Conv layer to prune")
    return layers[-1]


def _rebuild(model: TorchClassifier, module: nn.Module) -> tuple[nn.Module, dict[str, Any] | None]:
    """Express a pruned module through its registered architecture, so ``save_model`` works.

    Returns the rebuilt module and its new ``module_kwargs``, or the pruned module and None when
    the architecture has no keyword arguments describing the new widths.
    """
    kwargs = dict(model.module_kwargs or {})
    if model.module == "cnn1d":
        convs = [m for m in module.features if isinstance(m, nn.Conv1d)]
        kwargs.update(channels=[c.out_channels for c in convs], hidden=module.classifier[0].out_features)
    elif model.module == "mlp":
        kwargs.update(hidden=[m.out_features for m in module.body if isinstance(m, nn.Linear)])
    else:
        return module, None
    rebuilt = build_module(model.module, model.n_features_in_, len(model.classes_), **kwargs)
    try:
        rebuilt.load_state_dict(module.state_dict())
    except RuntimeError:  # the architecture changed in a way its kwargs cannot express
        logger.warning("pruned %r module cannot be rebuilt from keyword arguments; keeping the module", model.module)
        return module, None
    return rebuilt, kwargs


def _recover(
    model: TorchClassifier, fine_tune: dict[str, Any] | None, teacher: Any
) -> TorchClassifier:
    """Fine-tune ``model`` (a pruned copy) on ``fine_tune["X"], ["y"]``, distilling from ``teacher`` if given."""
    if fine_tune is None:
        if teacher is not None:
            raise ValidationError("teacher is used during recovery: pass fine_tune={'X': ..., 'y': ...} too")
        return model
    if not isinstance(fine_tune, dict) or "X" not in fine_tune or "y" not in fine_tune:
        raise ValidationError(
            "fine_tune must be a dict with at least 'X' and 'y', e.g. {'X': X, 'y': y, 'epochs': 5}; "
            f"got {fine_tune!r}"
        )
    unknown = set(fine_tune) - _FINE_TUNE_KEYS
    if unknown:
        raise ValidationError(f"unknown fine_tune keys {sorted(unknown)}; known: {sorted(_FINE_TUNE_KEYS)}")
    X = check_features(fine_tune["X"], name="fine_tune['X']", n_features=model.n_features_in_)
    X = X.reshape(len(X), -1)
    y = np.asarray(fine_tune["y"])
    params = {k: fine_tune[k] for k in ("epochs", "lr", "patience") if k in fine_tune}
    params.setdefault("epochs", 5)
    if fine_tune.get("patience") is not None and fine_tune.get("X_val") is None:
        raise ValidationError("fine_tune 'patience' needs 'X_val' and 'y_val'")
    if teacher is None and fine_tune.get("X_transfer") is not None:
        raise ValidationError("fine_tune 'X_transfer' is unlabelled data for distillation: pass a teacher too")
    hooks = []
    if teacher is not None:
        X_tr = fine_tune.get("X_transfer")
        labelled = np.ones(len(X), dtype=bool)
        if X_tr is not None:
            X_tr = check_features(X_tr, name="fine_tune['X_transfer']", n_features=model.n_features_in_)
            X_tr = X_tr.reshape(len(X_tr), -1)
            logits_tr = teacher_logits(teacher, X_tr)
            y = np.concatenate([y, np.asarray(teacher.classes_)[logits_tr.argmax(1)]])
            X = np.concatenate([X, X_tr])
            labelled = np.concatenate([labelled, np.zeros(len(X_tr), dtype=bool)])
        hooks.append(
            DistillationHook(
                teacher_logits(teacher, X), labelled=labelled, example_x=X[:8],
                temperature=fine_tune.get("temperature", 4.0), alpha=fine_tune.get("alpha", 0.9),
            )
        )
    return warm_fit(model, X, y, hooks=hooks, X_val=fine_tune.get("X_val"), y_val=fine_tune.get("y_val"), **params)


def prune_structured(
    model: TorchClassifier,
    ratio: float,
    *,
    example_X: Any,
    fine_tune: dict[str, Any] | None = None,
    teacher: Any = None,
) -> TorchClassifier:
    """Remove ``ratio`` of the channels of every prunable layer; return a smaller model.

    The output layer keeps its classes. Layers shrink by ``ratio`` in their output channels, so the
    number of parameters falls by about ``1 - (1 - ratio)²``. ``cnn1d`` and ``mlp`` models come
    back with ``module_kwargs`` holding the new ``channels`` / ``hidden`` sizes, so
    :func:`crossfeed.models.save_model` stores and reloads them; other modules come back with the
    pruned ``nn.Module`` as ``module`` (usable, not savable without pickle).

    Parameters
    ----------
    model : fitted TorchClassifier; not modified.
    ratio : float in [0, 1), share of channels to remove in each layer.
    example_X : array of shape (n, n_features); a sample to trace the layer dependencies.
    fine_tune : dict, optional
        ``{"X", "y"}`` (required) plus optional ``"epochs"`` (5), ``"lr"``, ``"X_val"``,
        ``"y_val"``, ``"patience"``, and with a teacher ``"X_transfer"``, ``"temperature"``,
        ``"alpha"``: train the pruned model to recover its accuracy.
    teacher : fitted classifier, optional; distil from it during the fine-tuning.

    Returns
    -------
    TorchClassifier, a new fitted model whose ``module_`` has fewer parameters.

    Raises ``MissingDependencyError`` without ``torch-pruning`` (``pip install 'crossfeed[prune]'``).

    Example
    -------
    >>> import numpy as np
    >>> from crossfeed.models import TorchClassifier, count_params
    >>> X = np.random.default_rng(0).normal(size=(64, 8)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> big = TorchClassifier("mlp", module_kwargs={"hidden": (32, 32)}, epochs=2, random_state=0).fit(X, y)
    >>> small = prune_structured(big, 0.5, example_X=X)
    >>> small.module_kwargs["hidden"], count_params(small) < count_params(big)
    ([16, 16], True)
    """
    model = check_torch_model(model, owner="prune_structured")
    ratio = _check_ratio(ratio, "ratio")
    try:
        import torch_pruning as tp
    except ImportError:
        raise missing_dependency("torch_pruning", "prune") from None
    X = check_features(example_X, name="example_X", n_features=model.n_features_in_)
    example = torch.as_tensor(X.reshape(len(X), -1)[:2])
    module = copy.deepcopy(model.module_).cpu().eval()
    if ratio > 0:
        pruner = tp.pruner.MetaPruner(
            module,
            example,
            importance=tp.importance.GroupMagnitudeImportance(p=2),
            pruning_ratio=ratio,
            ignored_layers=[_output_layer(module)],
        )
        pruner.step()
    module, kwargs = _rebuild(model, module)
    if kwargs is None:
        pruned = fitted_copy(model, module, module=copy.deepcopy(module))
    else:
        pruned = fitted_copy(model, module, module_kwargs=kwargs)
    logger.info("structured pruning removed %.0f%% of the channels", 100 * ratio)
    return _recover(pruned, fine_tune, teacher)


def _prunable_weights(module: nn.Module) -> list[tuple[nn.Module, str]]:
    return [
        (m, "weight") for m in module.modules()
        if isinstance(m, nn.Linear | nn.modules.conv._ConvNd) and isinstance(getattr(m, "weight", None), torch.Tensor)
    ]


def prune_unstructured(
    model: TorchClassifier,
    amount: float,
    *,
    scope: str = "layer",
    fine_tune: dict[str, Any] | None = None,
    teacher: Any = None,
) -> TorchClassifier:
    """Zero the ``amount`` smallest-magnitude weights of every Linear and Conv layer, permanently.

    Uses ``torch.nn.utils.prune.l1_unstructured`` (``scope="layer"``: each layer loses the same
    share) or ``global_unstructured`` (``scope="global"``: one threshold over all layers), then
    ``prune.remove`` so the zeros are baked into plain ``weight`` tensors (no ``weight_orig`` or
    mask remains and the model saves as usual). Biases and BatchNorm are untouched.

    Parameters
    ----------
    model : fitted TorchClassifier; not modified.
    amount : float in [0, 1), share of weights to zero.
    scope : "layer" or "global".
    fine_tune, teacher : as in :func:`prune_structured`; the mask is kept while fine-tuning.

    Returns
    -------
    TorchClassifier, a new fitted model with the same shapes and ``amount`` of its weights at 0.

    Example
    -------
    >>> import numpy as np
    >>> from crossfeed.models import TorchClassifier
    >>> X = np.random.default_rng(0).normal(size=(64, 8)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> m = TorchClassifier("mlp", module_kwargs={"hidden": (32,)}, epochs=2, random_state=0).fit(X, y)
    >>> round(sparsity(prune_unstructured(m, 0.5)), 2)
    0.5
    """
    model = check_torch_model(model, owner="prune_unstructured")
    amount = _check_ratio(amount, "amount")
    if scope not in ("layer", "global"):
        raise ValidationError(f"scope must be 'layer' or 'global'; got {scope!r}")
    module = copy.deepcopy(model.module_).cpu().eval()
    targets = _prunable_weights(module)
    if not targets:
        raise ValidationError("the module has no Linear or Conv weights to prune")
    if scope == "global":
        torch_prune.global_unstructured(targets, pruning_method=torch_prune.L1Unstructured, amount=amount)
    else:
        for layer, name in targets:
            torch_prune.l1_unstructured(layer, name, amount=amount)
    _detach_masked(module)  # a masked weight is a computed tensor, which deepcopy refuses
    pruned = fitted_copy(model, module)
    pruned = _recover(pruned, fine_tune, teacher)  # the masks keep pruned weights at zero meanwhile
    for layer, name in _prunable_weights(pruned.module_):
        if torch_prune.is_pruned(layer):
            torch_prune.remove(layer, name)
    return pruned


def _detach_masked(module: nn.Module) -> None:
    for layer, name in _prunable_weights(module):
        if torch_prune.is_pruned(layer):
            with torch.no_grad():
                setattr(layer, name, getattr(layer, f"{name}_orig") * getattr(layer, f"{name}_mask"))


def sparsity(model: TorchClassifier) -> float:
    """Share of exactly-zero entries among the Linear and Conv weights of a fitted model."""
    model = check_torch_model(model, owner="sparsity")
    weights = [getattr(m, n) for m, n in _prunable_weights(model.module_)]
    total = sum(w.numel() for w in weights)
    zeros = sum(int((w == 0).sum()) for w in weights)
    return zeros / total if total else 0.0
