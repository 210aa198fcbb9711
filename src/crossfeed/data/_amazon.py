"""The ``amazon`` suite: multi-domain sentiment of product reviews (text), read from local files.

Domains share one binary label space (0 negative, 1 positive):

- ``books``, ``dvd``, ``electronics``, ``kitchen``: the Amazon reviews of Blitzer, Dredze & Pereira,
  "Biographies, Bollywood, Boom-boxes and Blenders: Domain Adaptation for Sentiment
  Classification" (ACL 2007), 1000 positive and 1000 negative each, in pseudo-XML files
  ``<domain>/positive.review`` and ``<domain>/negative.review`` (latin-1);
- ``airline``, ``imdb``, ``blog`` (optional): CSV files ``<domain>.csv`` with columns
  ``reviews,labels`` (latin-1).

``X`` of every split is a float32 array of shape (n_samples, max_len) of word ids from one
:class:`~crossfeed.models._text.Vocabulary` (``suite.meta["vocabulary"]``), so every text model
(the MiniLM sentence encoder, the LSTM, TF-IDF + logistic regression) reads the same ``X`` and
plugs into every combiner. The vocabulary holds the training words first, most frequent first
(``suite.meta["vocab_size"]`` of them seen at least ``min_count`` times: the embedding size for an
LSTM), then every other word of the loaded texts, so the ids turn back into the full text for the
sentence encoder. No labels go into the vocabulary; models fitted on training data never see ids
of words that only occur elsewhere (the LSTM reads ids ``>= vocab_size`` as unknown; TF-IDF keeps
its training vocabulary). The raw texts stay in ``domain.meta["texts"][split]``.

The general domain (the large model's home ground in feedback experiments) is ``books`` by
default; the field data of each domain is its unlabelled 12.5% split.
"""

from __future__ import annotations

import csv
import hashlib
import io
import logging
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossfeed._cache import cache_dir
from crossfeed.data._domain import Domain, DomainSuite, stratified_split
from crossfeed.exceptions import MissingDataError, ValidationError
from crossfeed.models import Vocabulary

__all__ = [
    "AMAZON_DIR_ENV",
    "AMAZON_DOMAINS",
    "AMAZON_MD5",
    "AMAZON_REFERENCE",
    "DEFAULT_DOMAINS",
    "find_amazon",
    "load_amazon",
    "read_amazon_domain",
    "verify_files",
]

logger = logging.getLogger(__name__)


#: Files of each domain, relative to the data folder (the first .review file holds the positives).
AMAZON_DOMAINS: dict[str, tuple[str, ...]] = {
    "books": ("books/positive.review", "books/negative.review"),
    "dvd": ("dvd/positive.review", "dvd/negative.review"),
    "electronics": ("electronics/positive.review", "electronics/negative.review"),
    "kitchen": ("kitchen/positive.review", "kitchen/negative.review"),
    "airline": ("airline.csv",),
    "imdb": ("imdb.csv",),
    "blog": ("blog.csv",),
}
DEFAULT_DOMAINS = ("books", "dvd", "electronics", "kitchen")

#: MD5 of the copy the reference figures were measured on (bzantium/bert-AAD, commit cbe2e0c).
AMAZON_MD5: dict[str, str] = {
    "books/negative.review": "4b067dc9a3161889e61e9326aff76dbf",
    "books/positive.review": "abf798359eeaaebf8496571741b6f702",
    "dvd/negative.review": "eb1f613afc4c5daed703cfbe6ab6d1cc",
    "dvd/positive.review": "e01acd5c9bcfb5bce9b58e2e5e77e1db",
    "electronics/negative.review": "c7be128b07475b8cbfbd8a7677cbc8b7",
    "electronics/positive.review": "3bd7fe3dc6915631f97b220e2ea95272",
    "kitchen/negative.review": "dbc6e7695849fac1d2ad697cb461a68a",
    "kitchen/positive.review": "975b99cd67dbaaddd1a878cdcb54f90e",
    "airline.csv": "545be642d283ca568c9e396dc447196f",
    "blog.csv": "f6658891d569f39964a5d98b70f5c1cb",
    "imdb.csv": "bb850e11d3f356f5e65c78aa98448de2",
}

#: In-domain accuracy (%) of TF-IDF (1-2 grams) + logistic regression, 5-fold, on these files;
#: and Blitzer et al. 2007's in-domain figures (approximate, from their paper).
AMAZON_REFERENCE: dict[str, dict[str, float]] = {
    "tfidf_lr_5fold": {"books": 81.3, "dvd": 83.7, "electronics": 84.6, "kitchen": 87.8,
                       "airline": 85.7, "imdb": 84.6, "blog": 98.4},
    "blitzer_2007": {"books": 80.4, "dvd": 82.4, "electronics": 84.4, "kitchen": 87.7},
}

#: Environment variable naming the data folder when no ``directory`` is passed.
AMAZON_DIR_ENV = "CROSSFEED_AMAZON_DIR"
_REVIEW_TEXT = re.compile(r"<review_text>\s*(.*?)\s*</review_text>", re.DOTALL)
_HOW_TO_GET = (
    "The files are the multi-domain sentiment reviews of Blitzer et al. (ACL 2007) as kept in the data "
    "folder of https://github.com/bzantium/bert-AAD (commit cbe2e0c): <domain>/positive.review and "
    "<domain>/negative.review for books, dvd, electronics and kitchen, plus airline.csv, imdb.csv and "
    "blog.csv. Put that folder somewhere and pass directory='/path/to/folder' (or set "
    f"${AMAZON_DIR_ENV})."
)


def _candidates(directory: str | os.PathLike[str] | None) -> list[tuple[str, Path]]:
    if directory is not None:
        return [("directory=", Path(directory).expanduser())]
    found = [(f"${AMAZON_DIR_ENV}", Path(os.environ[AMAZON_DIR_ENV]).expanduser())] if os.environ.get(AMAZON_DIR_ENV) else []
    return found + [("the crossfeed cache", cache_dir() / "amazon")]


def find_amazon(directory: str | os.PathLike[str] | None = None, domains: Sequence[str] = DEFAULT_DOMAINS) -> Path:
    """The folder holding the files of ``domains``.

    Looks at ``directory`` when given; otherwise at ``$CROSSFEED_AMAZON_DIR``, then
    ``$CROSSFEED_CACHE/amazon``. Nothing is downloaded.

    Raises
    ------
    MissingDataError (a ``FileNotFoundError``) naming the missing files, every folder looked at,
    and where to get the files.
    """
    needed = [f for name in domains for f in AMAZON_DOMAINS[name]]
    looked = []
    for origin, folder in _candidates(directory):
        missing = [f for f in needed if not (folder / f).is_file()]
        if not missing:
            return folder
        looked.append(f"{origin} {str(folder)!r}: missing {missing}")
    raise MissingDataError(
        f"the amazon suite needs {needed} but did not find them; looked at: {'; '.join(looked)}. {_HOW_TO_GET}"
    )


def _md5(path: Path) -> str:
    return hashlib.md5(path.read_bytes(), usedforsecurity=False).hexdigest()


def verify_files(folder: Path, files: Sequence[str]) -> None:
    """Raise ``ValidationError`` unless every file has the MD5 of the reference copy (``AMAZON_MD5``)."""
    for rel in files:
        got = _md5(folder / rel)
        if got != AMAZON_MD5[rel]:
            raise ValidationError(
                f"{folder / rel} has MD5 {got}, expected {AMAZON_MD5[rel]}: it is not the copy the reference "
                "figures were measured on. Get the files again, or pass verify=False to use this copy as it is"
            )


def read_amazon_domain(folder: str | os.PathLike[str], name: str) -> tuple[list[str], np.ndarray]:
    """Texts and labels (1 positive, 0 negative) of one domain, in file order.

    Example
    -------
    >>> texts, y = read_amazon_domain("../shared/datasets/amazon", "kitchen")   # doctest: +SKIP
    >>> len(texts), int(y.sum())                                             # doctest: +SKIP
    (2000, 1000)
    """
    if name not in AMAZON_DOMAINS:
        raise ValidationError(f"unknown amazon domain {name!r}; available: {list(AMAZON_DOMAINS)}")
    root = Path(folder)
    files = AMAZON_DOMAINS[name]
    if len(files) == 2:
        parts = [_read_reviews(root / f) for f in files]
        texts = parts[0] + parts[1]
        labels = np.concatenate([np.ones(len(parts[0]), np.int64), np.zeros(len(parts[1]), np.int64)])
        return texts, labels
    return _read_csv(root / files[0])


def _read_reviews(path: Path) -> list[str]:
    """The ``<review_text>`` blocks of a pseudo-XML review file (parsed leniently, latin-1)."""
    texts = _REVIEW_TEXT.findall(path.read_text(encoding="latin-1"))
    if not texts:
        raise ValidationError(f"{path} holds no <review_text> blocks; expected a pseudo-XML .review file of Blitzer et al.")
    return texts


def _read_csv(path: Path) -> tuple[list[str], np.ndarray]:
    rows = list(csv.reader(io.StringIO(path.read_text(encoding="latin-1"))))
    if not rows or [c.strip().lower() for c in rows[0]] != ["reviews", "labels"]:
        raise ValidationError(f"{path} must be a CSV with the header 'reviews,labels'; got {rows[:1]}")
    texts, labels = [], []
    for line, row in enumerate(rows[1:], start=2):
        if not row:
            continue
        if len(row) != 2 or row[1].strip() not in ("0", "1"):
            raise ValidationError(f"{path}, line {line}: expected 'text,label' with label 0 or 1; got {row[-1:]!r}")
        texts.append(row[0].strip())
        labels.append(int(row[1]))
    return texts, np.asarray(labels, dtype=np.int64)


def _subsample(y: np.ndarray, n: int, rng: np.random.Generator) -> np.ndarray:
    """Indices of a stratified random subset of ``n`` samples (class shares kept)."""
    parts = []
    for label in np.unique(y):
        idx = np.flatnonzero(y == label)
        parts.append(rng.permutation(idx)[: round(n * len(idx) / len(y))])
    return np.sort(np.concatenate(parts))


def load_amazon(
    seed: int = 0,
    *,
    domains: Sequence[str] = DEFAULT_DOMAINS,
    directory: str | os.PathLike[str] | None = None,
    n_per_domain: int | None = None,
    max_len: int = 512,
    min_count: int = 2,
    general_domain: str = "books",
    verify: bool = True,
) -> DomainSuite:
    """Build the ``amazon`` suite from the review files.

    Parameters
    ----------
    seed : int
        Seeds the subsampling and the stratified splits (domain ``i`` uses ``seed * 1000 + i``).
    domains : names among ``AMAZON_DOMAINS`` (default books, dvd, electronics, kitchen).
    directory : folder of the files; default ``$CROSSFEED_AMAZON_DIR``, then
        ``$CROSSFEED_CACHE/amazon`` (see :func:`find_amazon`). Nothing is downloaded.
    n_per_domain : int, optional
        A stratified random subset of this many reviews per domain (all by default; 2000 for the
        Amazon domains), split 50% train, 12.5% val, 25% test, 12.5% unlabelled field data.
    max_len : words (and punctuation marks) kept per review; longer reviews are truncated.
    min_count : a training word needs this many occurrences to count in ``meta["vocab_size"]``.
    general_domain : the domain of the general large model (one of ``domains``).
    verify : check the MD5 of every file against ``AMAZON_MD5`` (the reference copy).

    Returns
    -------
    DomainSuite; ``meta`` holds ``vocabulary``, ``vocab_size``, ``max_len``, ``class_names``,
    ``general_domain``, ``reference`` (published in-domain accuracies), ``directory`` and
    ``module_kwargs``: the suite-dependent keyword arguments of the text architectures
    (``{"sentence_encoder": {"vocabulary": [...]}, "lstm": {"vocab_size": ...}}``).

    Example
    -------
    >>> suite = load_amazon(directory="../shared/datasets/amazon", n_per_domain=200)   # doctest: +SKIP
    >>> suite["books"].X_train.shape                                                  # doctest: +SKIP
    (100, 512)
    """
    names = [domains] if isinstance(domains, str) else list(domains)
    unknown = [n for n in names if n not in AMAZON_DOMAINS]
    if unknown or not names:
        raise ValidationError(f"unknown amazon domain(s) {unknown or names}; available: {list(AMAZON_DOMAINS)}")
    if general_domain not in names:
        raise ValidationError(f"general_domain {general_domain!r} must be one of the loaded domains {names}")
    if n_per_domain is not None and not (isinstance(n_per_domain, int) and n_per_domain >= 16):
        raise ValidationError(
            f"n_per_domain must be None or an integer >= 16 (so every split holds both classes); got {n_per_domain!r}"
        )
    if not (isinstance(max_len, int) and max_len >= 1):
        raise ValidationError(f"max_len must be a positive integer; got {max_len!r}")
    folder = find_amazon(directory, names)
    if verify:
        verify_files(folder, [f for n in names for f in AMAZON_DOMAINS[n]])

    split_texts: dict[str, dict[str, list[str]]] = {}
    split_labels: dict[str, dict[str, np.ndarray]] = {}
    for i, name in enumerate(names):
        texts, y = read_amazon_domain(folder, name)
        rng = np.random.default_rng(seed * 1000 + i)
        if n_per_domain is not None and n_per_domain < len(y):
            keep = _subsample(y, n_per_domain, rng)
            texts, y = [texts[j] for j in keep], y[keep]
        splits = stratified_split(y, rng)
        split_texts[name] = {k: [texts[j] for j in idx] for k, idx in splits.items()}
        split_labels[name] = {k: y[idx] for k, idx in splits.items()}

    trained = Vocabulary.build([t for n in names for t in split_texts[n]["train"]], min_count=min_count)
    vocabulary = trained.extend(t for n in names for texts in split_texts[n].values() for t in texts)
    built = []
    for name in names:
        X = {k: vocabulary.encode(v, max_len) for k, v in split_texts[name].items()}
        y = split_labels[name]
        built.append(Domain(
            name=name,
            X_train=X["train"], y_train=y["train"], X_val=X["val"], y_val=y["val"],
            X_test=X["test"], y_test=y["test"], X_field=X["field"], y_field=y["field"],
            meta={"files": list(AMAZON_DOMAINS[name]), "texts": {k: tuple(v) for k, v in split_texts[name].items()}},
        ))
    logger.info("amazon: %d domains, vocabulary of %d words (%d from training)", len(names), len(vocabulary), len(trained))
    return DomainSuite.from_domains("amazon", built, meta={
        "seed": seed, "general_domain": general_domain, "vocabulary": vocabulary, "vocab_size": len(trained),
        "module_kwargs": {"sentence_encoder": {"vocabulary": list(vocabulary.words)}, "lstm": {"vocab_size": len(trained)}},
        "max_len": max_len, "min_count": min_count, "n_per_domain": n_per_domain,
        "class_names": ["negative", "positive"], "directory": str(folder),
        "reference": {k: {n: v[n] for n in names if n in v} for k, v in AMAZON_REFERENCE.items()},
    })
