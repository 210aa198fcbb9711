"""The large model extracts features, a small model classifies them.

:class:`TorchEmbedding` turns a fitted network's trunk (its module's ``embed``) into a
scikit-learn transformer; :func:`feature_head` puts a small classifier (by default a standardised
logistic regression, a linear probe) on top of it as a ``Pipeline``. Cost counters
(:func:`~crossfeed.models.count_params`, :func:`~crossfeed.models.flops_per_sample`) see the trunk
and the head, not the extractor's own head.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np
import torch
from sklearn.base import BaseEstimator, TransformerMixin, clone
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import StandardScaler
from sklearn.utils.validation import check_is_fitted
from torch import nn

from crossfeed._validation import check_features
from crossfeed.exceptions import ValidationError


class EmbeddingModule(nn.Module):
    """``forward`` is ``net.embed``; ``parameters()`` yields only the parameters ``embed`` uses.

    Which parameters ``embed`` uses is found once, by differentiating ``embed(example)``;
    parameters that do not require gradients are counted as used.
    """

    def __init__(self, net: nn.Module, example: torch.Tensor) -> None:
        super().__init__()
        self.net = net
        trainable = [p for p in net.parameters() if p.requires_grad]
        with torch.enable_grad():
            out = net.embed(example)
            grads = torch.autograd.grad(out.sum(), trainable, allow_unused=True) if trainable else ()
        unused = {id(p) for p, g in zip(trainable, grads) if g is None}
        self._used = [p for p in net.parameters() if id(p) not in unused]

    def parameters(self, recurse: bool = True) -> Iterator[nn.Parameter]:
        return iter(self._used)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net.embed(x)


class TorchEmbedding(TransformerMixin, BaseEstimator):
    """The trunk features of a fitted network, as a scikit-learn transformer.

    Parameters
    ----------
    extractor : TorchClassifier whose architecture has ``embed(x)`` (``cnn1d``, ``cnn2d``, ...).
        Fitted: used as it is, never trained or modified (wrap it in
        ``sklearn.frozen.FrozenEstimator`` to keep it fitted through ``clone``). Not fitted: a clone
        is fitted on ``(X, y)`` in :meth:`fit`.
    batch_size : int, samples per forward pass in :meth:`transform`.

    Attributes
    ----------
    extractor_ : the fitted extractor in use. module_ : :class:`EmbeddingModule` over its network.
    n_features_in_ : input features. n_features_out_ : embedding width.

    Example
    -------
    >>> import numpy as np
    >>> from crossfeed.models import TorchClassifier
    >>> X = np.random.default_rng(0).random((64, 784), dtype=np.float32); y = np.arange(64) % 2
    >>> cnn = TorchClassifier("cnn2d", module_kwargs={"size": "tiny"}, epochs=1, random_state=0).fit(X, y)
    >>> TorchEmbedding(cnn).fit(X).transform(X).shape
    (64, 144)
    """

    def __init__(self, extractor: Any, *, batch_size: int = 1024) -> None:
        self.extractor = extractor
        self.batch_size = batch_size

    def fit(self, X: Any, y: Any = None) -> TorchEmbedding:
        """Take the fitted extractor as it is, or fit a clone of an unfitted one on ``(X, y)``."""
        if not isinstance(self.batch_size, int) or self.batch_size < 1:
            raise ValidationError(f"batch_size must be a positive integer; got {self.batch_size!r}")
        if isinstance(getattr(self.extractor, "module_", None), nn.Module):
            self.extractor_ = self.extractor
        elif hasattr(self.extractor, "fit") and hasattr(self.extractor, "get_params"):
            if y is None:
                raise ValidationError(
                    "the extractor is not fitted, so TorchEmbedding.fit trains a clone of it and needs y; "
                    "pass y or a fitted extractor"
                )
            self.extractor_ = clone(self.extractor).fit(X, y)
        else:
            raise ValidationError(
                f"extractor must be a crossfeed TorchClassifier (fitted or not); got {type(self.extractor).__name__}"
            )
        net = getattr(self.extractor_, "module_", None)
        if not isinstance(net, nn.Module) or not callable(getattr(net, "embed", None)):
            raise ValidationError(
                f"the extractor's network ({type(net).__name__}) has no embed(x) method; use an architecture "
                "with a feature view (cnn1d, cnn2d) or add embed(x) -> features to your module"
            )
        self.n_features_in_ = int(self.extractor_.n_features_in_)
        net.eval()
        self.module_ = EmbeddingModule(net, torch.zeros(2, self.n_features_in_))
        self.n_features_out_ = int(self.transform(np.zeros((1, self.n_features_in_), np.float32)).shape[1])
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Features, array of shape (n_samples, n_features_out_)."""
        check_is_fitted(self, "module_")
        X = check_features(X, n_features=self.n_features_in_, owner="TorchEmbedding")
        Xt = torch.as_tensor(X.reshape(len(X), -1), dtype=torch.float32)
        device = next(self.module_.net.parameters(), torch.empty(0)).device
        self.module_.eval()
        with torch.inference_mode():
            parts = [self.module_(Xt[i : i + self.batch_size].to(device)).float().cpu()
                     for i in range(0, len(Xt), self.batch_size)]
        return torch.cat(parts).flatten(1).numpy()


def feature_head(extractor: Any, head: Any = None, *, batch_size: int = 1024) -> Pipeline:
    """A small classifier on a network's trunk features: ``TorchEmbedding -> StandardScaler -> head``.

    Parameters
    ----------
    extractor : TorchClassifier with an ``embed`` view (see :class:`TorchEmbedding`); a fitted one
        is used as it is, so only the head trains.
    head : scikit-learn classifier, default ``LogisticRegression(max_iter=1000)`` (a linear probe).
    batch_size : forward-pass batch of the extractor.

    Returns
    -------
    Pipeline, a scikit-learn classifier (``fit``, ``predict_proba``, ``classes_``).

    Example
    -------
    >>> import numpy as np
    >>> from crossfeed.models import TorchClassifier
    >>> X = np.random.default_rng(0).random((64, 784), dtype=np.float32); y = np.arange(64) % 2
    >>> cnn = TorchClassifier("cnn2d", module_kwargs={"size": "tiny"}, epochs=1, random_state=0).fit(X, y)
    >>> feature_head(cnn).fit(X, y).predict_proba(X).shape
    (64, 2)
    """
    return Pipeline([
        ("embed", TorchEmbedding(extractor, batch_size=batch_size)),
        ("scale", StandardScaler()),
        ("head", head if head is not None else LogisticRegression(max_iter=1000)),
    ])
