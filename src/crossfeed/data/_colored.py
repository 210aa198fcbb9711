"""The ``colored_fashion`` suite: Colored MNIST's protocol, built from Fashion-MNIST.

Arjovsky, Bottou, Gulrajani & Lopez-Paz (2019), "Invariant Risk Minimization", arXiv 1907.02893,
sec. 5.1 and their reference code (``InvariantRiskMinimization/code/colored_mnist``). Each image
gets a binary label from its class, flipped with probability ``label_noise`` (0.25); its colour
is the label flipped with probability ``e`` of its environment, and the image is put in the red
(colour 0) or green (colour 1) channel of a 2-channel, 2x-subsampled 14 x 14 picture. Colour
predicts the label with probability ``1 - e``; the shape predicts it with probability 0.75.
ERM trained on environments where colour is the stronger signal fails where the correlation is
reversed; the best invariant classifier (the shape) scores 75% everywhere.

The binary label. MNIST's digits ``< 5`` are one class; for Fashion-MNIST the default split
``POSITIVE_CLASSES`` puts Trouser, Sandal, Sneaker, Bag and Ankle boot (label 1) against the
tops (T-shirt/top, Pullover, Dress, Coat, Shirt; label 0): five classes each, so the labels are
balanced as in the paper, and the shape separates them about as cleanly as it separates digits
(the split 0-4 / 5-9 would mix shirts with the tops' look-alikes on both sides).

The domains are the environments: ``colour_0.9`` and ``colour_0.8`` (colour agrees with the
label with probability 0.9 and 0.8; the first is the general domain) and the held-out
``colour_0.1``. Each holds its own disjoint, class-stratified draw of the 70,000 images.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from crossfeed.data._domain import DomainSuite
from crossfeed.data._fashion import FASHION_CLASSES, draw_disjoint, read_images
from crossfeed.data._mnist1d import _split
from crossfeed.exceptions import ValidationError

__all__ = ["COLORED_ENVIRONMENTS", "POSITIVE_CLASSES", "color_environment", "colored_fashion"]

#: The environments (domain name -> probability ``e`` that the colour disagrees with the label).
COLORED_ENVIRONMENTS: dict[str, float] = {"colour_0.9": 0.1, "colour_0.8": 0.2, "colour_0.1": 0.9}

#: Fashion-MNIST classes that get the binary label 1 (Trouser, Sandal, Sneaker, Bag, Ankle boot).
POSITIVE_CLASSES: tuple[int, ...] = (1, 5, 7, 8, 9)


def color_environment(images: np.ndarray, classes: np.ndarray, e: float, rng: np.random.Generator,
                      *, label_noise: float = 0.25,
                      positive_classes: Sequence[int] = POSITIVE_CLASSES) -> tuple[np.ndarray, np.ndarray]:
    """One Colored-MNIST environment (``make_environment`` of the IRM reference code).

    Parameters
    ----------
    images : array of shape (n, 28, 28), grey pixels in [0, 1] (or uint8 in 0..255).
    classes : array of shape (n,), the original class of every image.
    e : float in [0, 1], probability that the colour is not the (noisy) label.
    rng : numpy Generator of the label and colour flips.
    label_noise : float in [0, 0.5), probability that the binary label is flipped.
    positive_classes : classes whose binary label is 1 before the flip.

    Returns
    -------
    (X, y): float32 array of shape (n, 2 * 14 * 14), channel 0 (red) then channel 1 (green),
    each 14 x 14 row-major; int64 labels of shape (n,).

    Example
    -------
    >>> X, y = color_environment(np.ones((4, 28, 28)), np.array([0, 1, 0, 1]), 0.0, np.random.default_rng(0),
    ...                          label_noise=0.0)
    >>> y.tolist(), X.reshape(4, 2, -1).sum(axis=2).tolist()     # colour = label when e = 0
    ([0, 1, 0, 1], [[196.0, 0.0], [0.0, 196.0], [196.0, 0.0], [0.0, 196.0]])
    """
    images = np.asarray(images)
    if images.ndim != 3 or images.shape[1:] != (28, 28) or len(images) != len(classes):
        raise ValidationError(
            f"color_environment needs images of shape (n, 28, 28) and n classes; got images {images.shape} and "
            f"{len(classes)} classes")
    for name, value, high in (("e", e, 1.0), ("label_noise", label_noise, 0.5)):
        if not 0.0 <= value <= high or (name == "label_noise" and value == high):
            raise ValidationError(f"{name} must be a probability in [0, {high}{')' if name == 'label_noise' else ']'}; "
                                  f"got {value!r}")
    pixels = images[:, ::2, ::2].astype(np.float32)
    if images.dtype == np.uint8:
        pixels /= np.float32(255)
    labels = np.isin(classes, list(positive_classes)).astype(np.int64)
    labels ^= (rng.random(len(labels)) < label_noise).astype(np.int64)
    colours = labels ^ (rng.random(len(labels)) < e).astype(np.int64)
    X = np.zeros((len(pixels), 2, 14, 14), dtype=np.float32)
    X[np.arange(len(pixels)), colours] = pixels
    return X.reshape(len(X), -1), labels


def colored_fashion(
    seed: int = 0,
    *,
    n_per_domain: int = 10000,
    label_noise: float = 0.25,
    environments: dict[str, float] | None = None,
    positive_classes: Sequence[int] = POSITIVE_CLASSES,
    directory: str | Path | None = None,
    download: bool = False,
) -> DomainSuite:
    """Build the ``colored_fashion`` suite (see the module docstring for the protocol).

    Parameters
    ----------
    seed : int, seeds the draw of every domain's images and its label and colour flips.
    n_per_domain : int, images per domain (a multiple of 10 is used: equal per Fashion class),
        from 80 to 70,000 // 10 // len(environments) * 10 (disjoint domains); split 50% train,
        12.5% val, 25% test and 12.5% unlabelled field data (stratified by the binary label).
    label_noise : float in [0, 0.5), probability that the binary label is flipped (paper: 0.25).
    environments : domain name -> ``e`` (default ``COLORED_ENVIRONMENTS``); the first is the
        general domain, the last is meant to be held out (``suite.meta["test_domain"]``).
    positive_classes : Fashion classes with binary label 1 (default ``POSITIVE_CLASSES``).
    directory, download : where the Fashion-MNIST files are; see :func:`crossfeed.data.load_fashion`.

    Example
    -------
    >>> suite = colored_fashion(seed=0, n_per_domain=2000)    # doctest: +SKIP
    >>> suite.names, suite.meta["image_shape"]                 # doctest: +SKIP
    (['colour_0.9', 'colour_0.8', 'colour_0.1'], [2, 14, 14])
    """
    envs = dict(COLORED_ENVIRONMENTS if environments is None else environments)
    if len(envs) < 2:
        raise ValidationError(f"environments must map at least two domain names to e; got {envs!r}")
    max_n = 7000 // len(envs) * 10
    if isinstance(n_per_domain, bool) or not isinstance(n_per_domain, int | np.integer) \
            or not 80 <= n_per_domain <= max_n:
        raise ValidationError(
            f"n_per_domain must be an integer from 80 to {max_n} (the 70,000 Fashion-MNIST images shared by "
            f"{len(envs)} disjoint domains); got {n_per_domain!r}")
    bad = sorted(set(positive_classes) - set(range(10)))
    if bad or not 0 < len(set(positive_classes)) < 10:
        raise ValidationError(f"positive_classes must be some but not all of the classes 0..9; got {positive_classes!r}")
    arrays = read_images(directory, download=download)
    images = np.concatenate([arrays["train_images"], arrays["test_images"]])
    classes = np.concatenate([arrays["train_labels"], arrays["test_labels"]])
    slots = draw_disjoint(classes, int(n_per_domain) // 10, len(envs), seed)
    built = []
    for i, (name, e) in enumerate(envs.items()):
        domain_seed = seed * 1000 + i
        X, y = color_environment(images[slots[i]], classes[slots[i]], e, np.random.default_rng(domain_seed),
                                 label_noise=label_noise, positive_classes=positive_classes)
        built.append(_split(name, X, y, domain_seed, {"e": e, "colour_correlation": 1.0 - e, "seed": domain_seed}))
    names = list(envs)
    meta = {"seed": seed, "n_per_domain": int(n_per_domain) // 10 * 10, "general_domain": names[0],
            "test_domain": names[-1], "environments": envs, "label_noise": label_noise, "image_shape": [2, 14, 14],
            "positive_classes": [FASHION_CLASSES[c] for c in sorted(set(positive_classes))],
            "pixels": "float32 in [0, 1]; red channel 14 x 14 then green channel 14 x 14"}
    return DomainSuite.from_domains("colored_fashion", built, meta=meta)
