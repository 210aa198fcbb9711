"""Recommendation models: matrix factorisation (the large model) and naive Bayes on side features (the small one).

- ``"mf"`` (:class:`MatrixFactorizationNet`): a registered architecture, so that
  ``TorchClassifier("mf", module_kwargs={"n_users": ..., "n_items": ...})`` is a collaborative-
  filtering classifier trained by the one training loop (distilled, fine-tuned, fed back like
  any other network). Biased matrix factorisation (Koren, Bell & Volinsky 2009, "Matrix
  Factorization Techniques for Recommender Systems", IEEE Computer 42(8)):
  ``score(u, i) = mu + b_u + b_i + <p_u, q_i>``.
- :class:`MatrixFactorization`: the same network as a scikit-learn regressor of the rating,
  trained on squared error with L2 on the rows each batch touches (the regularised objective of
  Funk's SVD, the reference RMSE figures' "SVD"), by the same loop: a base-loss hook
  (:class:`RatingLoss`) replaces its cross-entropy.
- :class:`FeatureNaiveBayes`: naive Bayes over categorical columns (CategoricalNB) and binary
  flags (BernoulliNB) of the same rows. Fitted on star ratings as classes, its posterior mean
  ``predict_proba(X) @ classes_`` is a small model's rating estimate.

All of them read one row layout: integer ids stored as float32 in some columns, side features in
others (e.g. :data:`crossfeed.data._movielens.COLUMNS`), so every combiner can take them together.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, ClassifierMixin, RegressorMixin
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted, validate_data
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.models._architectures import ARCHITECTURES
from crossfeed.training import Batch, TrainConfig, TrainingHook, train

__all__ = [
    "FeatureNaiveBayes",
    "MatrixFactorization",
    "MatrixFactorizationNet",
    "RatingLoss",
    "bernoulli_log_likelihood",
    "categorical_log_likelihood",
    "rmse",
]


# -- the network ---------------------------------------------------------------------------------
@ARCHITECTURES.register("mf")
class MatrixFactorizationNet(nn.Module):
    """Biased matrix factorisation over (user, item) id columns: ``mu + b_u + b_i + <p_u, q_i>``.

    As a classifier of two classes its logits are ``(0, score)``, so ``P(class 1) =
    sigmoid(score)``; :meth:`score` is also the predicted rating of :class:`MatrixFactorization`.

    Parameters
    ----------
    n_features, n_classes : int
        Width of the input rows (ids sit in ``user_column`` and ``item_column``, other columns are
        ignored) and number of classes (must be 2).
    n_users, n_items : int
        Sizes of the id spaces; ids are ``0 .. n - 1``, stored as float32 and cast with ``.long()``.
    dim : int
        Number of latent factors.
    user_column, item_column : int
    init_std : float
        Standard deviation of the factors' normal initialisation (biases start at 0).

    Example
    -------
    >>> net = MatrixFactorizationNet(24, 2, n_users=10, n_items=20, dim=4)
    >>> net(torch.tensor([[3.0, 7.0] + [0.0] * 22])).shape
    torch.Size([1, 2])
    """

    def __init__(self, n_features: int, n_classes: int, *, n_users: int, n_items: int, dim: int = 32,
                 user_column: int = 0, item_column: int = 1, init_std: float = 0.05) -> None:
        super().__init__()
        if n_classes != 2:
            raise ValidationError(
                f"the 'mf' architecture predicts one score, i.e. two classes; got {n_classes} classes. "
                "Binarise the target (e.g. rating >= 4) or use MatrixFactorization to regress the rating"
            )
        for name, value in (("n_users", n_users), ("n_items", n_items), ("dim", dim)):
            if not (isinstance(value, int | np.integer) and value >= 1):
                raise ValidationError(f"{name} must be a positive integer; got {value!r}")
        for name, col in (("user_column", user_column), ("item_column", item_column)):
            if not (isinstance(col, int | np.integer) and 0 <= col < n_features):
                raise ValidationError(f"{name} must be a column index in [0, {n_features}); got {col!r}")
        self.n_users, self.n_items = int(n_users), int(n_items)
        self.user_column, self.item_column = int(user_column), int(item_column)
        self.user_factors = nn.Embedding(self.n_users, int(dim))
        self.item_factors = nn.Embedding(self.n_items, int(dim))
        self.user_bias = nn.Embedding(self.n_users, 1)
        self.item_bias = nn.Embedding(self.n_items, 1)
        self.global_bias = nn.Parameter(torch.zeros(()))
        nn.init.normal_(self.user_factors.weight, std=init_std)
        nn.init.normal_(self.item_factors.weight, std=init_std)
        nn.init.zeros_(self.user_bias.weight)
        nn.init.zeros_(self.item_bias.weight)

    def ids(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """User and item indices of the rows of ``x``, checked against ``n_users`` / ``n_items``."""
        u, i = x[:, self.user_column].long(), x[:, self.item_column].long()
        for name, idx, n in (("user", u, self.n_users), ("item", i, self.n_items)):
            if len(idx) and (int(idx.min()) < 0 or int(idx.max()) >= n):
                raise ValidationError(
                    f"{name} ids must lie in [0, {n}); got ids from {int(idx.min())} to {int(idx.max())}. "
                    f"Build the model with n_{name}s covering every id (e.g. the suite's meta['n_{name}s'])"
                )
        return u, i

    def score(self, x: torch.Tensor) -> torch.Tensor:
        """``mu + b_u + b_i + <p_u, q_i>`` for every row, shape (batch,)."""
        u, i = self.ids(x)
        dot = (self.user_factors(u) * self.item_factors(i)).sum(dim=1)
        return self.global_bias + self.user_bias(u).squeeze(1) + self.item_bias(i).squeeze(1) + dot

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The user's and the item's factors side by side, shape (batch, 2 * dim)."""
        u, i = self.ids(x)
        return torch.cat([self.user_factors(u), self.item_factors(i)], dim=1)

    def penalty(self, x: torch.Tensor) -> torch.Tensor:
        """Mean over the rows of ``x`` of ``|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2`` (L2 on what the batch touches)."""
        u, i = self.ids(x)
        squares = (self.user_factors(u).square().sum(1) + self.item_factors(i).square().sum(1)
                   + self.user_bias(u).square().squeeze(1) + self.item_bias(i).square().squeeze(1))
        return squares.mean()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.score(x)
        return torch.stack([torch.zeros_like(s), s], dim=1)


# -- the rating regressor --------------------------------------------------------------------------
class MatrixFactorization(RegressorMixin, BaseEstimator):
    """Rating prediction by biased matrix factorisation, trained on regularised squared error.

    Minimises ``mean((r - score)^2) + reg * mean(|p_u|^2 + |q_i|^2 + b_u^2 + b_i^2)`` over
    mini-batches with Adam (Koren, Bell & Volinsky 2009; Funk 2006's "SVD"), starting from
    ``mu`` = the mean training rating. Predictions are clipped to the range of the training
    ratings. Trained by :func:`crossfeed.training.train` with a :class:`RatingLoss` hook (squared
    error to the ratings in place of cross-entropy, the L2 term as an extra loss); early stopping
    watches the validation mean squared error.

    Parameters
    ----------
    n_users, n_items : int, optional
        Sizes of the id spaces (default: the largest id seen in ``fit`` plus one).
    dim : int, number of latent factors.
    reg : float >= 0, L2 strength on the rows each batch touches.
    epochs, batch_size, lr : training settings.
    patience : int, optional
        Early stopping on validation RMSE (``X_val`` in ``fit`` or ``validation_fraction``); the
        best epoch's weights are kept.
    validation_fraction : float in [0, 1), share of the training rows held out when no ``X_val``.
    user_column, item_column : columns holding the ids.
    init_std : float, initial scale of the factors.
    device : "cpu", "cuda" or "auto".
    threads : int, optional
        torch intra-op threads while fitting (None: :func:`crossfeed.training.default_threads`).
    random_state : int, optional.

    Attributes
    ----------
    module_ : the trained :class:`MatrixFactorizationNet` (on CPU).
    rating_range_ : (min, max) of the training ratings.
    history_ : per-epoch logs of the loop (``train_loss`` with the L2 term, ``val_loss`` = the
        validation MSE) plus ``train_rmse`` and, with validation data, ``val_rmse``.
    best_epoch_ : int. n_features_in_ : int.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> X = np.stack([rng.integers(0, 30, 600), rng.integers(0, 40, 600)], 1).astype("float32")
    >>> r = np.clip(np.round(3 + (X[:, 0] % 3) - (X[:, 1] % 2)), 1, 5)
    >>> MatrixFactorization(dim=4, epochs=5, random_state=0).fit(X, r).predict(X[:2]).shape
    (2,)
    """

    def __init__(self, *, n_users: int | None = None, n_items: int | None = None, dim: int = 32, reg: float = 0.05,
                 epochs: int = 40, batch_size: int = 256, lr: float = 5e-3, patience: int | None = None,
                 validation_fraction: float = 0.0, user_column: int = 0, item_column: int = 1,
                 init_std: float = 0.05, device: str = "cpu", threads: int | None = None,
                 random_state: int | None = None) -> None:
        self.n_users = n_users
        self.n_items = n_items
        self.dim = dim
        self.reg = reg
        self.epochs = epochs
        self.batch_size = batch_size
        self.lr = lr
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.user_column = user_column
        self.item_column = item_column
        self.init_std = init_std
        self.device = device
        self.threads = threads
        self.random_state = random_state

    def fit(self, X: Any, y: Any, *, X_val: Any = None, y_val: Any = None) -> MatrixFactorization:
        """Train a fresh network on the ratings ``y`` of the rows ``X``.

        Parameters
        ----------
        X : array of shape (n_samples, n_features) with the ids in ``user_column`` / ``item_column``.
        y : array of shape (n_samples,), ratings.
        X_val, y_val : validation rows and ratings for early stopping, optional.

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float32, y_numeric=True)
        X = np.require(X, requirements="W")  # torch warns about read-only arrays (e.g. memmaps); copy those
        y = np.asarray(y, dtype=np.float32)
        self._check_params(X)
        seed = int(np.random.default_rng().integers(2**31 - 1)) if self.random_state is None else int(self.random_state)
        config = TrainConfig(epochs=self.epochs, batch_size=self.batch_size, lr=self.lr, optimizer="adam",
                             patience=self.patience, device=self.device, seed=seed, threads=self.threads)
        config.validate()
        rng = np.random.default_rng(seed)
        if X_val is not None:
            X_val = np.require(_as_float32(X_val, self.n_features_in_, "X_val"), requirements="W")
            y_val = np.asarray(y_val, dtype=np.float32)
            if len(y_val) != len(X_val):
                raise ValidationError(f"X_val has {len(X_val)} rows but y_val has {len(y_val)} ratings")
        elif self.validation_fraction > 0:
            order = rng.permutation(len(X))
            n_val = max(1, round(self.validation_fraction * len(X)))
            X_val, y_val, X, y = X[order[:n_val]], y[order[:n_val]], X[order[n_val:]], y[order[n_val:]]
        ids = np.concatenate([X, X_val]) if X_val is not None else X
        n_users = self.n_users or int(ids[:, self.user_column].max()) + 1
        n_items = self.n_items or int(ids[:, self.item_column].max()) + 1

        torch.manual_seed(seed)
        net = MatrixFactorizationNet(X.shape[1], 2, n_users=n_users, n_items=n_items, dim=self.dim,
                                     user_column=self.user_column, item_column=self.item_column,
                                     init_std=self.init_std)
        with torch.no_grad():
            net.global_bias.fill_(float(y.mean()))
        # the one loop; the hook reads the ratings by row index, so the loop's labels are placeholders
        loss = RatingLoss(y, y_val, reg=self.reg)
        result = train(net, X, np.zeros(len(X), dtype=np.int64), config=config, hooks=[loss], X_val=X_val,
                       y_val=None if X_val is None else np.zeros(len(X_val), dtype=np.int64))
        self.history_ = []
        for logs, train_rmse in zip(result.history, loss.train_rmse, strict=True):
            logs = {**logs, "train_rmse": train_rmse}
            if "val_loss" in logs:
                logs["val_rmse"] = math.sqrt(logs["val_loss"])
            self.history_.append(logs)
        self.best_epoch_ = result.best_epoch
        self.module_ = net.cpu().eval()
        self.rating_range_ = (float(y.min()), float(y.max()))
        return self

    def _check_params(self, X: np.ndarray) -> None:
        for name in ("user_column", "item_column"):
            col = getattr(self, name)
            if not (isinstance(col, int) and 0 <= col < X.shape[1]):
                raise ValidationError(f"{name}={col!r} is not a column of X, which has {X.shape[1]} feature(s)")
        if np.any(X[:, [self.user_column, self.item_column]] < 0):
            raise ValidationError(
                f"Negative values in data passed to {type(self).__name__}: user and item ids must be non-negative "
                "integer indices (encode them, e.g. with sklearn.preprocessing.OrdinalEncoder)"
            )
        if not (self.reg >= 0 and math.isfinite(self.reg)):
            raise ValidationError(f"reg must be a finite number >= 0; got {self.reg!r}")
        if self.patience is not None and not (isinstance(self.patience, int) and self.patience >= 1):
            raise ValidationError(f"patience must be None or a positive integer; got {self.patience!r}")
        if not 0.0 <= self.validation_fraction < 1.0:
            raise ValidationError(f"validation_fraction must be in [0, 1); got {self.validation_fraction!r}")

    def predict(self, X: Any) -> np.ndarray:
        """Predicted ratings, array of shape (n_samples,), clipped to ``rating_range_``."""
        check_is_fitted(self, "module_")
        X = validate_data(self, X, dtype=np.float32, reset=False)
        return np.clip(_scores(self.module_, X, torch.device("cpu")), *self.rating_range_)

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True  # ids are non-negative integers
        tags.regressor_tags.poor_score = True  # ids are codes: continuous test data carries no signal for it
        tags.non_deterministic = self.random_state is None
        return tags


def _scores(net: MatrixFactorizationNet, X: np.ndarray, device: torch.device, batch_size: int = 8192) -> np.ndarray:
    net.eval()
    with torch.inference_mode():
        Xt = torch.tensor(X, dtype=torch.float32)
        return torch.cat([net.score(Xt[s : s + batch_size].to(device)).cpu() for s in range(0, len(Xt), batch_size)]).numpy()


class RatingLoss(TrainingHook):
    """Base-loss hook of :func:`crossfeed.training.train` for rating regression with an MF network.

    Replaces the loop's cross-entropy by the squared error ``(score - r)^2`` of every row, the
    rating ``r`` looked up by ``Batch.index`` (in ``val_ratings`` for validation batches), and adds
    ``reg * module.penalty(x)`` (L2 on the rows the batch touches) as an extra loss; the ``y`` given
    to the loop is not read. Records the training RMSE of every epoch in ``train_rmse``.

    Parameters
    ----------
    ratings : array of shape (n_samples,), the training rows' ratings.
    val_ratings : array of shape (n_val,), optional, the validation rows' ratings.
    reg : float >= 0.

    Example
    -------
    >>> X = np.array([[0, 0], [1, 1], [1, 0]], dtype="float32"); r = np.array([1.0, 5.0, 3.0])
    >>> net = MatrixFactorizationNet(2, 2, n_users=2, n_items=2, dim=2)
    >>> hook = RatingLoss(r, reg=0.0)
    >>> _ = train(net, X, np.zeros(3, dtype=np.int64), hooks=[hook], config=TrainConfig(epochs=300, lr=0.05))
    >>> bool(hook.train_rmse[-1] < 0.1)
    True
    """

    def __init__(self, ratings: Any, val_ratings: Any = None, *, reg: float = 0.0) -> None:
        self.ratings = torch.as_tensor(np.asarray(ratings, dtype=np.float32))
        self.val_ratings = None if val_ratings is None else torch.as_tensor(np.asarray(val_ratings, dtype=np.float32))
        self.reg = reg
        self.train_rmse: list[float] = []

    def setup(self, module: nn.Module, device: torch.device) -> None:
        self.ratings = self.ratings.to(device)
        self.val_ratings = None if self.val_ratings is None else self.val_ratings.to(device)
        self._squares, self._seen = torch.zeros((), device=device), 0

    def base_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        ratings = self.val_ratings if batch.validation else self.ratings
        if ratings is None:
            return None
        err = logits[:, 1] - ratings[batch.index]  # logits are (0, score)
        if not batch.validation:
            self._squares += err.detach().square().sum()
            self._seen += len(err)
        return err.square()

    def extra_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor | None:
        return self.reg * module.penalty(batch.x) if self.reg else None

    def on_epoch_end(self, epoch: int, logs: dict[str, Any]) -> None:
        self.train_rmse.append(math.sqrt(self._squares.item() / max(self._seen, 1)))
        self._squares, self._seen = torch.zeros_like(self._squares), 0
        return None


def _as_float32(X: Any, n_features: int, name: str) -> np.ndarray:
    arr = np.asarray(X, dtype=np.float32)
    if arr.ndim != 2 or arr.shape[1] != n_features:
        raise ValidationError(f"{name} must have shape (n_samples, {n_features}); got {arr.shape}")
    return arr


def rmse(y_true: Any, y_pred: Any) -> float:
    """Root mean squared error of two arrays of shape (n_samples,).

    Example
    -------
    >>> rmse([1.0, 3.0], [2.0, 3.0])
    0.7071067811865476
    """
    diff = np.asarray(y_true, dtype=np.float64) - np.asarray(y_pred, dtype=np.float64)
    return float(np.sqrt(np.mean(diff**2)))


# -- naive Bayes: the pure maths ------------------------------------------------------------------
def categorical_log_likelihood(codes: np.ndarray, y_idx: np.ndarray, weight: np.ndarray, n_classes: int,
                               n_categories: int, alpha: float) -> np.ndarray:
    """``log P(value | class)`` with additive smoothing, one categorical feature.

    ``log((N_cv + alpha) / (N_c + alpha * n_categories))`` from weighted counts (CategoricalNB).

    Parameters
    ----------
    codes : int array of shape (n_samples,), values in ``0 .. n_categories - 1``.
    y_idx : int array of shape (n_samples,), class indices.
    weight : array of shape (n_samples,).
    n_classes, n_categories : int. alpha : float > 0.

    Returns
    -------
    array of shape (n_classes, n_categories + 1); the last column is an unseen value's (count 0).

    Example
    -------
    >>> t = categorical_log_likelihood(np.array([0, 1, 1]), np.array([0, 0, 1]), np.ones(3), 2, 2, 1.0)
    >>> np.round(np.exp(t[:, :2]), 3).tolist()
    [[0.5, 0.5], [0.333, 0.667]]
    """
    counts = np.zeros((n_classes, n_categories + 1))
    np.add.at(counts, (y_idx, codes), weight)
    return np.log(counts + alpha) - np.log(counts[:, :n_categories].sum(axis=1, keepdims=True) + alpha * n_categories)


def bernoulli_log_likelihood(flags: np.ndarray, y_idx: np.ndarray, weight: np.ndarray, n_classes: int,
                             alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """``log P(flag = 1 | class)`` and ``log P(flag = 0 | class)`` per feature (BernoulliNB).

    Parameters
    ----------
    flags : array of shape (n_samples, n_flags) in {0, 1}.
    y_idx, weight : arrays of shape (n_samples,). n_classes : int. alpha : float > 0.

    Returns
    -------
    (log_p1, log_p0), each of shape (n_classes, n_flags).

    Example
    -------
    >>> p1, p0 = bernoulli_log_likelihood(np.array([[1], [0]]), np.array([0, 1]), np.ones(2), 2, 1.0)
    >>> np.round(np.exp(p1), 3).ravel().tolist()
    [0.667, 0.333]
    """
    ones = np.zeros((n_classes, flags.shape[1]))
    np.add.at(ones, y_idx, flags * weight[:, None])
    totals = np.bincount(y_idx, weights=weight, minlength=n_classes)[:, None]
    p1 = (ones + alpha) / (totals + 2 * alpha)
    return np.log(p1), np.log1p(-p1)


# -- naive Bayes: the estimators --------------------------------------------------------------------
class FeatureNaiveBayes(ClassifierMixin, BaseEstimator):
    """Naive Bayes over chosen columns: categorical ones (CategoricalNB) and binary flags (BernoulliNB).

    The joint log-likelihood of a row is ``log P(c) + sum_j log P(x_j | c)`` over the selected
    columns, with additive smoothing ``alpha``; columns not selected are ignored, so the rows a
    collaborative-filtering model reads (ids first) serve as they are. A categorical value never
    seen in ``fit`` counts as seen zero times.

    Parameters
    ----------
    categorical : sequence of int, optional
        Columns holding non-negative integer codes (floats are truncated). None: every column not
        in ``binary``.
    binary : sequence of int, optional
        Columns holding flags (a value > 0 is 1). None: no binary column.
    alpha : float > 0, additive (Laplace) smoothing.

    Attributes
    ----------
    classes_, class_log_prior_ : arrays of shape (n_classes,).
    categorical_ , binary_ : the column indices used.
    category_log_prob_ : list of arrays of shape (n_classes, n_categories + 1), one per categorical column.
    flag_log_prob_ : (log_p1, log_p0) of shape (n_classes, n_binary) each.
    n_features_in_ : int.

    Example
    -------
    >>> X = np.array([[0, 1], [0, 1], [1, 0], [1, 1]], dtype="float32"); y = np.array([0, 0, 1, 1])
    >>> FeatureNaiveBayes(categorical=[0], binary=[1]).fit(X, y).predict(X).tolist()
    [0, 0, 1, 1]
    """

    def __init__(self, categorical: Sequence[int] | None = None, binary: Sequence[int] | None = None,
                 alpha: float = 1.0) -> None:
        self.categorical = categorical
        self.binary = binary
        self.alpha = alpha

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> FeatureNaiveBayes:
        """Count the selected columns per class.

        Parameters
        ----------
        X : array of shape (n_samples, n_features). y : array of shape (n_samples,).
        sample_weight : array of shape (n_samples,), optional.

        Returns
        -------
        self
        """
        X, y = validate_data(self, X, y, dtype=np.float64)
        check_classification_targets(y)
        if not (isinstance(self.alpha, int | float) and self.alpha > 0 and math.isfinite(self.alpha)):
            raise ValidationError(f"alpha must be a finite number > 0; got {self.alpha!r}")
        self.categorical_, self.binary_ = self._columns(X.shape[1])
        weight = np.ones(len(X)) if sample_weight is None else np.asarray(sample_weight, dtype=np.float64).reshape(-1)
        if weight.shape != (len(X),) or not np.all(np.isfinite(weight)) or np.any(weight < 0):
            raise ValidationError(f"sample_weight must be {len(X)} finite non-negative numbers; got shape {weight.shape}")
        if weight.sum() <= 0:
            raise ValidationError("Sample weights must contain at least one non-zero number; every weight is 0")
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        n_classes = len(self.classes_)
        class_weight = np.bincount(y_idx, weights=weight, minlength=n_classes)
        self.class_log_prior_ = np.log(np.maximum(class_weight, 1e-300)) - np.log(class_weight.sum())
        codes = self._codes(X)
        self.n_categories_ = [int(c.max()) + 1 for c in codes.T]
        self.category_log_prob_ = [
            categorical_log_likelihood(c, y_idx, weight, n_classes, n, self.alpha) for c, n in zip(codes.T, self.n_categories_)
        ]
        self.flag_log_prob_ = bernoulli_log_likelihood(X[:, self.binary_] > 0, y_idx, weight, n_classes, self.alpha)
        return self

    def _columns(self, n_features: int) -> tuple[list[int], list[int]]:
        binary = [] if self.binary is None else [int(c) for c in self.binary]
        categorical = [c for c in range(n_features) if c not in binary] if self.categorical is None else [int(c) for c in self.categorical]
        bad = [c for c in categorical + binary if not 0 <= c < n_features]
        if bad:
            raise ValidationError(f"column indices {bad} are outside the {n_features} columns of X")
        if set(categorical) & set(binary):
            raise ValidationError(f"columns {sorted(set(categorical) & set(binary))} are both categorical and binary; pick one")
        if not categorical and not binary:
            raise ValidationError("no column selected: give categorical= and/or binary= column indices")
        return categorical, binary

    def _codes(self, X: np.ndarray) -> np.ndarray:
        codes = X[:, self.categorical_]
        if np.any(codes < 0):
            raise ValidationError(
                f"Negative values in data passed to {type(self).__name__}: categorical columns {self.categorical_} "
                "must hold non-negative integer codes (encode them, e.g. with sklearn.preprocessing.OrdinalEncoder)"
            )
        return codes.astype(np.int64)

    def joint_log_likelihood(self, X: Any) -> np.ndarray:
        """``log P(c) + sum_j log P(x_j | c)``, array of shape (n_samples, n_classes)."""
        check_is_fitted(self, "classes_")
        X = validate_data(self, X, dtype=np.float64, reset=False)
        jll = np.tile(self.class_log_prior_, (len(X), 1))
        for codes, table, n in zip(self._codes(X).T, self.category_log_prob_, self.n_categories_):
            jll += table[:, np.minimum(codes, n)].T
        log_p1, log_p0 = self.flag_log_prob_
        flags = (X[:, self.binary_] > 0).astype(np.float64)
        return jll + flags @ log_p1.T + (1.0 - flags) @ log_p0.T

    def predict_log_proba(self, X: Any) -> np.ndarray:
        jll = self.joint_log_likelihood(X)
        return jll - np.logaddexp.reduce(jll, axis=1, keepdims=True)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, array of shape (n_samples, n_classes)."""
        return np.exp(self.predict_log_proba(X))

    def predict(self, X: Any) -> np.ndarray:
        """Most probable class of every row, array of shape (n_samples,)."""
        jll = self.joint_log_likelihood(X)
        return self.classes_[np.argmax(jll, axis=1)]

    def __sklearn_tags__(self):  # type: ignore[no-untyped-def]
        tags = super().__sklearn_tags__()
        tags.input_tags.positive_only = True
        tags.input_tags.categorical = True
        return tags
