"""TF-IDF n-grams + logistic regression over rows of word ids: the classic small text model.

It reads the same ``X`` as every text model of crossfeed (word ids from
:class:`~crossfeed.models._text.Vocabulary`, 0 pads), so it joins the Transformer and the LSTM
in every combiner. With the defaults (1-2 grams, sublinear term frequency, ``min_df=2``,
``C=10``) 5-fold in-domain accuracy on the Blitzer et al. (ACL 2007) Amazon domains matches the
reference figures of the ``amazon`` suite (81.3 / 83.7 / 84.6 / 87.8 on books / dvd /
electronics / kitchen).
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_is_fitted

from crossfeed._validation import check_features, check_labels
from crossfeed.exceptions import EmptyDataError, ValidationError

__all__ = ["TfidfClassifier", "id_documents"]


def id_documents(X: np.ndarray) -> list[str]:
    """Each row of word ids as a document of id tokens (``"12 5 77"``), padding (0) dropped."""
    ids = np.asarray(X).astype(np.int64)
    return [" ".join(map(str, row[row != 0].tolist())) for row in ids]


def _check_ids(X: Any, *, n_features: int | None = None) -> np.ndarray:
    X = check_features(X, n_features=n_features, owner="TfidfClassifier")
    X = X.reshape(len(X), -1)
    if np.any(X < 0) or np.any(X != np.round(X)):
        raise ValidationError(
            "X must hold word ids (non-negative integers, 0 for padding), as built by Vocabulary.encode; "
            f"got values such as {X[(X < 0) | (X != np.round(X))][:3].tolist()}"
        )
    return X


class TfidfClassifier(ClassifierMixin, BaseEstimator):
    """TF-IDF of word-id n-grams, then (multinomial) logistic regression.

    Parameters
    ----------
    ngram_range : (min_n, max_n), default (1, 2).
    min_df : int or float, default 2; n-grams in fewer training documents are dropped.
    sublinear_tf : bool, default True; ``1 + log(tf)`` instead of raw counts.
    C : float, default 10.0; inverse regularisation strength of the logistic regression.
    max_iter : int, default 2000.
    class_weight : None or "balanced".

    Attributes
    ----------
    vectorizer_ : the fitted ``TfidfVectorizer``. classifier_ : the fitted ``LogisticRegression``.
    classes_, coef_ (array of shape (1 or n_classes, n_ngrams)), intercept_, n_features_in_.

    Example
    -------
    >>> X = np.array([[2, 3, 0], [2, 3, 3], [4, 5, 0], [4, 5, 5]], dtype=np.float32)
    >>> clf = TfidfClassifier(min_df=1).fit(X, [1, 1, 0, 0])
    >>> clf.predict(np.array([[3, 2, 0]], dtype=np.float32)).tolist()
    [1]
    """

    def __init__(
        self,
        *,
        ngram_range: tuple[int, int] = (1, 2),
        min_df: float = 2,
        sublinear_tf: bool = True,
        C: float = 10.0,
        max_iter: int = 2000,
        class_weight: str | None = None,
    ) -> None:
        self.ngram_range = ngram_range
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.C = C
        self.max_iter = max_iter
        self.class_weight = class_weight

    def fit(self, X: Any, y: Any, sample_weight: Any = None) -> TfidfClassifier:
        """Fit the vectorizer and the logistic regression on rows of word ids ``X`` and labels ``y``."""
        X = _check_ids(X)
        y = check_labels(y, len(X))
        check_classification_targets(y)
        self.vectorizer_ = TfidfVectorizer(
            token_pattern=r"\S+", lowercase=False, ngram_range=tuple(self.ngram_range), min_df=self.min_df,
            sublinear_tf=self.sublinear_tf,
        )
        try:
            Z = self.vectorizer_.fit_transform(id_documents(X))
        except ValueError as exc:  # "empty vocabulary" and "no terms remain" after min_df
            raise EmptyDataError(
                f"TfidfClassifier found no n-grams to keep in {len(X)} training rows ({exc}); pass rows with "
                "words in them, or lower min_df"
            ) from exc
        self.classifier_ = LogisticRegression(C=self.C, max_iter=self.max_iter, class_weight=self.class_weight)
        self.classifier_.fit(Z, y, sample_weight=sample_weight)
        self.classes_ = self.classifier_.classes_
        self.coef_ = self.classifier_.coef_
        self.intercept_ = self.classifier_.intercept_
        self.n_features_in_ = X.shape[1]
        return self

    def transform(self, X: Any) -> sp.csr_matrix:
        """TF-IDF features, sparse matrix of shape (n_samples, n_ngrams)."""
        check_is_fitted(self, "classifier_")
        return self.vectorizer_.transform(id_documents(_check_ids(X, n_features=self.n_features_in_)))

    def decision_function(self, X: Any) -> np.ndarray:
        return self.classifier_.decision_function(self.transform(X))

    def predict_proba(self, X: Any) -> np.ndarray:
        """Class probabilities, array of shape (n_samples, n_classes)."""
        return self.classifier_.predict_proba(self.transform(X))

    def predict(self, X: Any) -> np.ndarray:
        return self.classifier_.predict(self.transform(X))
