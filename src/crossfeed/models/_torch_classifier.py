"""``TorchClassifier``: a scikit-learn classifier over any ``nn.Module``."""

from __future__ import annotations

import copy
import numbers
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import scipy.sparse as sp
import torch
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from crossfeed._validation import check_features, check_labels, encode_labels
from crossfeed.exceptions import (
    LabelMismatchError,
    NonNumericInputError,
    ValidationError,
)
from crossfeed.models._architectures import ARCHITECTURES, build_module
from crossfeed.training import TrainConfig, TrainingHook, resolve_device, train

ModuleSpec = str | Callable[[int, int], nn.Module] | nn.Module


class TorchClassifier(ClassifierMixin, BaseEstimator):
    """A PyTorch module as a scikit-learn classifier.

    Parameters
    ----------
    module : str, callable or nn.Module
        A registered architecture name (``"mlp"``, ``"cnn1d"``, ``"linear"``), a factory
        ``f(n_features, n_classes) -> nn.Module``, or a module instance (deep-copied at ``fit``, so
        the caller's instance is never trained). The module maps (batch, n_features) to logits.
    module_kwargs : dict, optional
        Keyword arguments of the architecture (e.g. ``{"size": "large"}`` for ``cnn1d``).
    epochs, batch_size, lr, weight_decay, optimizer : training settings.
    patience : int, optional
        Early stopping on validation loss (needs ``X_val`` in ``fit`` or ``validation_fraction``).
    validation_fraction : float
        Share of the training data held out for early stopping when no ``X_val`` is passed.
    device : "cpu", "cuda" or "auto".
    mixed_precision : bool
        bfloat16 autocast on CUDA (ignored on CPU).
    threads : int, optional
        torch intra-op threads while fitting (None: :func:`crossfeed.training.default_threads`,
        half the CPUs; torch's own default oversubscribes small machines).
    random_state : int, optional
        Seeds weight initialisation, shuffling and the validation split.
    callback : callable, optional
        Called after every epoch with a dict of logs (the CLI renders progress from it).

    Attributes
    ----------
    module_ : the trained nn.Module (on CPU after ``fit``), classes_, n_features_in_,
    input_shape_ : shape of one sample in fit, e.g. (4, 10) for X of shape (n, 4, 10), (n_features,) for 2-D X,
    history_ : per-epoch logs, best_epoch_ : epoch whose weights were kept.

    Example
    -------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 5)).astype("float32"); y = (X[:, 0] > 0).astype(int)
    >>> clf = TorchClassifier("mlp", module_kwargs={"hidden": (16,)}, epochs=5, random_state=0).fit(X, y)
    >>> clf.predict_proba(X).shape
    (64, 2)
    """

    def __init__(
        self,
        module: ModuleSpec = "mlp",
        *,
        module_kwargs: dict[str, Any] | None = None,
        epochs: int = 20,
        batch_size: int = 128,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: str = "adamw",
        patience: int | None = None,
        validation_fraction: float = 0.0,
        device: str = "cpu",
        mixed_precision: bool = False,
        threads: int | None = None,
        random_state: int | None = None,
        callback: Callable[[dict[str, Any]], None] | None = None,
    ) -> None:
        self.module = module
        self.module_kwargs = module_kwargs
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer = optimizer
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.device = device
        self.mixed_precision = mixed_precision
        self.threads = threads
        self.random_state = random_state
        self.callback = callback

    # -- building -------------------------------------------------------------------------
    def _build(self, n_features: int, n_classes: int) -> nn.Module:
        kwargs = dict(self.module_kwargs or {})
        if isinstance(self.module, str):
            return build_module(self.module, n_features, n_classes, **kwargs)
        if isinstance(self.module, nn.Module):
            return copy.deepcopy(self.module)
        if callable(self.module):
            built = self.module(n_features, n_classes, **kwargs)
            if not isinstance(built, nn.Module):
                raise ValidationError(
                    f"module factory must return an nn.Module; it returned {type(built).__name__}"
                )
            return built
        raise ValidationError(
            f"module must be an architecture name ({', '.join(ARCHITECTURES.names())}), a factory "
            f"f(n_features, n_classes) -> nn.Module, or an nn.Module; got {type(self.module).__name__}"
        )

    def _seed(self) -> int:
        if self.random_state is None:
            return int(np.random.default_rng().integers(2**31 - 1))
        if isinstance(self.random_state, np.random.RandomState):
            return int(self.random_state.randint(2**31 - 1))
        return int(self.random_state)

    # -- fitting --------------------------------------------------------------------------
    def fit(
        self,
        X: Any,
        y: Any,
        *,
        sample_weight: Any = None,
        soft_targets: Any = None,
        X_val: Any = None,
        y_val: Any = None,
        hooks: Sequence[TrainingHook] = (),
    ) -> TorchClassifier:
        """Train a fresh module on ``(X, y)``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features), or (n_samples, d1, d2, ...) (flattened row-major for
            the network; the sample shape is kept in ``input_shape_`` and prediction input must have it,
            or be flat rows).
        y : array of shape (n_samples,).
        sample_weight : array of shape (n_samples,), optional.
        soft_targets : array of shape (n_samples, n_classes), optional
            Probability targets (columns in the order of ``np.unique(y)``, or of ``classes_`` of
            the teacher) that replace the hard labels in the loss, e.g. a teacher's outputs.
        X_val, y_val : validation data for logging and early stopping, optional.
        hooks : training hooks (distillation, EWC, ...), see :class:`crossfeed.training.TrainingHook`.
        """
        epochs, batch_size = _positive_int(self.epochs, "epochs"), _positive_int(self.batch_size, "batch_size")
        X, y = self._validate(X, y, reset=True)
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        weight = None
        if sample_weight is not None:
            weight = np.asarray(sample_weight, dtype=np.float32).reshape(-1)
            if weight.shape[0] != len(X) or not np.all(np.isfinite(weight)) or np.any(weight < 0):
                raise ValidationError(
                    f"sample_weight must be {len(X)} finite non-negative numbers; got shape {weight.shape}"
                )
            if weight.sum() <= 0:
                raise ValidationError("sample_weight sums to zero; at least one sample needs a positive weight")
        soft = None
        if soft_targets is not None:
            soft = np.asarray(soft_targets, dtype=np.float32)
            if soft.shape != (len(X), n_classes):
                raise LabelMismatchError(
                    f"soft_targets must have shape (n_samples, n_classes) = {(len(X), n_classes)}; "
                    f"got {soft.shape}. The teacher and the labels must share one label set"
                )
            if not np.all(np.isfinite(soft)) or np.any(soft < 0):
                raise ValidationError("soft_targets must be finite, non-negative probabilities")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValidationError(f"validation_fraction must be in [0, 1); got {self.validation_fraction!r}")
        seed = self._seed()
        Xv = yv = None
        if X_val is not None:
            self._check_input_shape(np.shape(_as_array(X_val, "X_val")), "X_val")
            Xv = check_features(X_val, name="X_val", n_features=self.n_features_in_).reshape(-1, self.n_features_in_)
            yv = encode_labels(check_labels(y_val, len(Xv), name="y_val"), self.classes_, name="y_val", context="the classes seen in fit")
        elif self.validation_fraction > 0:
            stratify = y_idx if np.bincount(y_idx).min() >= 2 else None
            tr, va = train_test_split(np.arange(len(X)), test_size=self.validation_fraction, random_state=seed, stratify=stratify)
            Xv, yv = X[va], y_idx[va]
            X, y_idx = X[tr], y_idx[tr]
            weight = None if weight is None else weight[tr]
            soft = None if soft is None else soft[tr]
        torch.manual_seed(seed)
        module = self._build(self.n_features_in_, n_classes)
        config = TrainConfig(
            epochs=epochs, batch_size=batch_size, lr=self.lr, weight_decay=self.weight_decay,
            optimizer=self.optimizer, patience=self.patience, device=self.device,
            mixed_precision=self.mixed_precision, seed=seed, threads=self.threads,
        )
        result = train(
            module, X, y_idx, config=config, sample_weight=weight, soft_targets=soft,
            X_val=Xv, y_val=yv, hooks=hooks, callback=self.callback,
        )
        self.module_ = module.cpu().eval()
        self.history_ = result.history
        self.best_epoch_ = result.best_epoch
        return self

    # -- predicting -----------------------------------------------------------------------
    def _validate(self, X: Any, y: Any = None, *, reset: bool) -> Any:
        """sklearn's validation (sparse, complex, NaN, shapes), raised as crossfeed errors.

        Inputs with more than two dimensions (images) are flattened to (n_samples, n_features).
        """
        if y is None and reset:
            raise ValidationError("requires y to be passed, but the target y is None")
        X_arr = X if sp.issparse(X) else _as_array(X, "X")
        if not reset and not sp.issparse(X_arr):
            self._check_input_shape(X_arr.shape, "X")
        if not sp.issparse(X_arr) and X_arr.ndim > 2:
            X = X_arr.reshape(len(X_arr), -1)
        kwargs: dict[str, Any] = {"dtype": [np.float32, np.float64], "reset": reset}
        try:
            if reset:
                X, y = validate_data(self, X, y, **kwargs)
            else:
                X = validate_data(self, X, **kwargs)
        except TypeError as exc:
            raise NonNumericInputError(f"{exc} Encode non-numeric features first (e.g. OneHotEncoder)") from exc
        except ValueError as exc:
            if isinstance(exc, ValidationError):
                raise
            raise ValidationError(str(exc)) from exc
        X = np.asarray(X, dtype=np.float32)
        if reset:
            self.input_shape_ = tuple(int(d) for d in X_arr.shape[1:]) if X_arr.ndim > 2 else (int(X.shape[1]),)
        return (X, y) if reset else X

    def _check_input_shape(self, shape: tuple[int, ...], name: str) -> None:
        """Refuse samples whose shape differs from the one seen in fit (a transposed (n, 10, 4) where
        (n, 4, 10) was fitted has the same feature count but other features in every position).

        Flat rows (2-D input) are always accepted, as the network reads them (row-major, as
        ``X.reshape(n, -1)`` flattens), and their feature count is left to sklearn's check; input
        with more dimensions must have exactly the fitted sample shape. Models without
        ``input_shape_`` (fitted by an older crossfeed, or copied without it) only have their
        feature count checked.
        """
        fitted = getattr(self, "input_shape_", None)
        if fitted is None or len(shape) <= 2:
            return
        got = tuple(int(d) for d in shape[1:])
        if got != tuple(fitted):
            n_fit, n_got = int(np.prod(fitted)), int(np.prod(got))
            raise ValidationError(
                f"{name} has samples of shape {got} (input of shape {tuple(shape)}), but this TorchClassifier was "
                f"fitted on samples of shape {tuple(fitted)} (input of shape (n_samples, {', '.join(map(str, fitted))}))"
                + (f"; the same {n_fit} features in another layout would be silently misread" if n_fit == n_got
                   else f"; it is expecting {n_fit} features, got {n_got}")
                + f". Pass data shaped as in fit (or flat rows, {name}.reshape(len({name}), -1), if it is laid out "
                "as in fit); transpose it back if its axes were swapped"
            )

    def _prepare(self, X: Any) -> torch.Tensor:
        check_is_fitted(self, "module_")
        return torch.as_tensor(self._validate(X, reset=False), dtype=torch.float32)

    def predict_logits(self, X: Any, batch_size: int = 1024) -> np.ndarray:
        """Raw outputs of the module, array of shape (n_samples, n_classes)."""
        Xt = self._prepare(X)
        module = self.module_
        device = next(module.parameters(), torch.empty(0)).device
        if device.type == "cpu" and self.device not in ("cpu", "auto"):
            device = resolve_device(self.device)  # fitted on CPU-only data, asked to predict on an accelerator
            module = module.to(device)
        module.eval()
        outs = []
        with torch.inference_mode():
            for start in range(0, len(Xt), batch_size):
                outs.append(module(Xt[start : start + batch_size].to(device)).float().cpu())
        return torch.cat(outs).numpy()

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, array of shape (n_samples, n_classes)."""
        logits = torch.as_tensor(self.predict_logits(X))
        return torch.softmax(logits, dim=1).numpy()

    def predict(self, X: Any) -> np.ndarray:
        logits = self.predict_logits(X)
        return self.classes_[np.argmax(logits, axis=1)]

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.non_deterministic = self.random_state is None
        return tags


def _positive_int(value: Any, name: str) -> int:
    """``value`` as an int if it is an integer >= 1 (Python or NumPy, not bool), else ``ValidationError``."""
    if isinstance(value, bool | np.bool_) or not isinstance(value, numbers.Integral) or value < 1:
        raise ValidationError(
            f"{name} must be a positive integer (int or numpy integer); got {value!r} of type {type(value).__name__}. "
            "Pass a whole number >= 1" + (f", e.g. {name}={int(value)}" if isinstance(value, float) and value.is_integer()
                                          and value >= 1 else "")
        )
    return int(value)


def _as_array(X: Any, name: str) -> np.ndarray:
    """``np.asarray(X)``, with a clear error for ragged nested lists (rows of different lengths)."""
    try:
        return np.asarray(X)
    except ValueError as exc:
        raise ValidationError(
            f"{name} must be a rectangular array of numbers of shape (n_samples, n_features); got a ragged "
            f"{type(X).__name__} whose rows differ in length ({exc}). Pad or cut every row to the same length"
        ) from exc
