"""Self-supervised pretraining of a trunk on unlabelled rows: NT-Xent (SimCLR) or masked reconstruction.

- NT-Xent: Chen, Kornblith, Norouzi & Hinton (ICML 2020), "A Simple Framework for Contrastive
  Learning of Visual Representations" (SimCLR), arXiv 2002.05709. Two augmented views of every
  row go through the trunk (``module.embed``) and a small projection head; each view must pick
  its partner out of the other ``2N - 2`` views of the batch.
- Masked reconstruction: a share of every row's features is zeroed and a decoder on the trunk's
  embedding predicts the original values there (the denoising / masked-autoencoding pretext of
  Vincent et al., ICML 2008, and He et al., "Masked Autoencoders Are Scalable Vision Learners",
  arXiv 2111.06377, reduced to flat rows).
- Tabular corruption: Bahri, Jiang, Tay & Metzler (ICLR 2022), "SCARF: Self-Supervised
  Contrastive Learning using Random Feature Corruption", arXiv 2106.15147.

Augmentations are pure functions ``augment(x, generator) -> x`` on tensors of shape
(batch, n_features), one family per kind of data (:data:`AUGMENTATIONS`), picked for a suite by
:func:`augmentation_for`. Pretraining runs through the one training loop
(:func:`crossfeed.training.train`): a :class:`PretextHook` adds the head's parameters (``setup``)
and replaces cross-entropy with the pretext loss (``base_loss``). The loop's own forward pass of
the clean batch is not used by the pretext loss (about one extra forward pass per batch); the
price buys the loop's seeding, threads, device and divergence checks instead of a second loop.
"""

from __future__ import annotations

import copy
import functools
import logging
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from crossfeed.data import DomainSuite
from crossfeed.exceptions import EmptyDataError, ValidationError
from crossfeed.training import Batch, TrainConfig, TrainingHook, TrainResult, train

__all__ = [
    "AUGMENTATIONS",
    "OBJECTIVES",
    "MaskedReconstructionHook",
    "NTXentHook",
    "augmentation_for",
    "embedding_dim",
    "image_views",
    "mask_features",
    "nt_xent",
    "pretrain_trunk",
    "projection_head",
    "signal_views",
    "suite_kind",
    "tabular_views",
    "token_views",
]

logger = logging.getLogger(__name__)

Augment = Callable[[torch.Tensor, torch.Generator], torch.Tensor]

#: The pretext objectives of :func:`pretrain_trunk`.
OBJECTIVES = ("ntxent", "masked")


def nt_xent(z1: torch.Tensor, z2: torch.Tensor, temperature: float = 0.5, reduction: str = "mean") -> torch.Tensor:
    """Normalized temperature-scaled cross-entropy over the ``2N`` views of a batch (SimCLR, arXiv 2002.05709).

    The views are L2-normalised; view ``i`` scores every other view by cosine similarity / ``temperature``
    and is classified (softmax cross-entropy) as its partner ``z2[i]`` (or ``z1[i]``).

    Parameters
    ----------
    z1, z2 : tensors of shape (N, d), the projections of the two views of N rows (N >= 2).
    temperature : float > 0.
    reduction : "mean" (a scalar) or "none" (shape (2N,): the loss of every view, z1's first).

    Example
    -------
    >>> eye = torch.eye(2)                # two orthogonal rows, each view identical to its partner
    >>> round(float(nt_xent(eye, eye, temperature=1.0)), 4)   # log(2 + e) - 1
    0.5514
    """
    if temperature <= 0:
        raise ValidationError(f"nt_xent: temperature must be > 0; got {temperature!r}")
    if z1.ndim != 2 or z1.shape != z2.shape or len(z1) < 2:
        raise ValidationError(
            f"nt_xent needs two views of the same shape (N, d) with N >= 2; got {tuple(z1.shape)} and {tuple(z2.shape)}")
    if reduction not in ("mean", "none"):
        raise ValidationError(f"nt_xent: reduction must be 'mean' or 'none'; got {reduction!r}")
    n = len(z1)
    z = F.normalize(torch.cat([z1, z2]), dim=1)
    sim = z @ z.T / temperature
    sim = sim.masked_fill(torch.eye(2 * n, dtype=torch.bool, device=z.device), float("-inf"))
    partner = torch.cat([torch.arange(n, 2 * n), torch.arange(n)]).to(z.device)
    losses = F.cross_entropy(sim, partner, reduction="none")
    return losses.mean() if reduction == "mean" else losses


# -- augmentations: pure functions (x, generator) -> x of the same shape ---------------------------
def _uniform(shape: tuple[int, ...], low: float, high: float, g: torch.Generator, like: torch.Tensor) -> torch.Tensor:
    return (low + (high - low) * torch.rand(shape, generator=g)).to(like.device, like.dtype)


def _normal(like: torch.Tensor, sigma: float, g: torch.Generator) -> torch.Tensor:
    return sigma * torch.randn(like.shape, generator=g).to(like.device, like.dtype)


def _interpolate(x: torch.Tensor, pos: torch.Tensor) -> torch.Tensor:
    """``x`` (batch, L) read at fractional positions ``pos`` (batch, L), linear interpolation."""
    lo = pos.floor().long().clamp(0, x.shape[1] - 1)
    hi = (lo + 1).clamp(max=x.shape[1] - 1)
    frac = pos - lo.to(pos.dtype)
    return torch.gather(x, 1, lo) * (1 - frac) + torch.gather(x, 1, hi) * frac


def signal_views(x: torch.Tensor, generator: torch.Generator, *, max_shift: float = 0.15, scale: tuple[float, float] = (0.8, 1.2),
                 jitter: float = 0.05, min_crop: float = 0.7) -> torch.Tensor:
    """A random view of 1-D signals (MNIST-1D): crop-and-resize, roll, amplitude scaling, gaussian jitter.

    Each row gets a window of ``min_crop`` to all of its length stretched back to the full length,
    a circular shift by up to ``max_shift`` of the length, a gain in ``scale`` and noise of
    ``jitter`` times the batch's standard deviation.

    Parameters
    ----------
    x : tensor of shape (batch, length)
    generator : torch.Generator (CPU), the only source of randomness.

    Example
    -------
    >>> x = torch.randn(4, 40)
    >>> a, b = signal_views(x, torch.Generator().manual_seed(0)), signal_views(x, torch.Generator().manual_seed(0))
    >>> a.shape, bool(torch.equal(a, b))
    (torch.Size([4, 40]), True)
    """
    n, length = x.shape
    width = _uniform((n, 1), min_crop, 1.0, generator, x) * (length - 1)
    start = _uniform((n, 1), 0.0, 1.0, generator, x) * (length - 1 - width)
    grid = torch.linspace(0, 1, length, device=x.device, dtype=x.dtype)
    out = _interpolate(x, start + width * grid)
    shift = (_uniform((n, 1), -max_shift, max_shift, generator, x) * length).round().long()
    out = torch.gather(out, 1, (torch.arange(length, device=x.device) - shift) % length)
    out = out * _uniform((n, 1), *scale, generator, x)
    return out + _normal(out, jitter * float(x.std()), generator)


def image_views(x: torch.Tensor, generator: torch.Generator, *, image_shape: tuple[int, int, int] = (1, 28, 28),
                pad: int = 3, flip: float = 0.5, noise: float = 0.05) -> torch.Tensor:
    """A random view of flattened images (Fashion-MNIST): crop after zero padding, horizontal flip, noise.

    Parameters
    ----------
    x : tensor of shape (batch, channels * height * width), rows row-major as in ``image_shape``.
    generator : torch.Generator (CPU).
    image_shape : (channels, height, width).
    pad : pixels of zero padding on every side; the crop moves by up to ``pad`` pixels each way.
    flip : probability of a horizontal flip; ``noise`` : standard deviation of added gaussian noise.

    Example
    -------
    >>> image_views(torch.rand(2, 784), torch.Generator().manual_seed(0)).shape
    torch.Size([2, 784])
    """
    c, h, w = image_shape
    if x.shape[1] != c * h * w:
        raise ValidationError(f"image_views: rows of {x.shape[1]} features do not hold images of shape {image_shape}; "
                              "pass the suite's image_shape")
    n = len(x)
    padded = F.pad(x.reshape(n, c, h, w), (pad, pad, pad, pad))
    dy, dx = (torch.randint(0, 2 * pad + 1, (2, n, 1), generator=generator)).to(x.device)
    rows = (dy + torch.arange(h, device=x.device))[:, :, None]           # (n, h, 1)
    cols = (dx + torch.arange(w, device=x.device))[:, None, :]           # (n, 1, w)
    crop = padded.permute(0, 2, 3, 1)[torch.arange(n, device=x.device)[:, None, None], rows, cols]  # (n, h, w, c)
    crop = crop.permute(0, 3, 1, 2)
    flipped = (torch.rand(n, generator=generator) < flip).to(x.device)
    crop = torch.where(flipped[:, None, None, None], crop.flip(3), crop)
    out = crop.reshape(n, -1)
    return out + _normal(out, noise, generator)


def mask_features(x: torch.Tensor, generator: torch.Generator, fraction: float, fill: Any = 0.0) -> tuple[torch.Tensor, torch.Tensor]:
    """``x`` with a random ``fraction`` of every row's entries replaced by ``fill``, and the mask (True: replaced).

    ``fill`` is a number or a tensor of ``x``'s shape (the values put in the masked places).

    Example
    -------
    >>> out, mask = mask_features(torch.ones(2, 10), torch.Generator().manual_seed(0), 0.5)
    >>> out.shape, bool(((out == 0) == mask).all())
    (torch.Size([2, 10]), True)
    """
    if not 0.0 <= fraction < 1.0:
        raise ValidationError(f"the masked fraction must lie in [0, 1); got {fraction!r}")
    mask = (torch.rand(x.shape, generator=generator) < fraction).to(x.device)
    return torch.where(mask, torch.as_tensor(fill, dtype=x.dtype, device=x.device), x), mask


def token_views(x: torch.Tensor, generator: torch.Generator, *, drop: float = 0.15) -> torch.Tensor:
    """A random view of rows of word ids (the ``amazon`` suite): a share ``drop`` of the words becomes unknown (id 1).

    Padding (id 0) stays padding, so the ids remain valid for an embedding table.
    """
    dropped, _ = mask_features(x, generator, drop, fill=1.0)
    return torch.where(x == 0, x, dropped)


def tabular_views(x: torch.Tensor, generator: torch.Generator, *, corrupt: float = 0.3) -> torch.Tensor:
    """SCARF (arXiv 2106.15147): a share ``corrupt`` of every row's columns takes the value of another row of the batch.

    Each corrupted entry is drawn from the column's empirical marginal, so categorical ids stay
    valid ids and binary columns stay binary (the ``movielens`` suite, any tabular rows).
    """
    donors = torch.randint(0, len(x), x.shape, generator=generator).to(x.device)
    out, _ = mask_features(x, generator, corrupt, fill=torch.gather(x, 0, donors))
    return out


#: Augmentation families by kind of data: name -> ``augment(x, generator)``.
AUGMENTATIONS: dict[str, Augment] = {
    "signal": signal_views,
    "image": image_views,
    "tokens": token_views,
    "tabular": tabular_views,
}


def suite_kind(suite: DomainSuite) -> str:
    """The kind of data a suite holds (a key of :data:`AUGMENTATIONS`), read from its meta data.

    ``meta["data_kind"]`` if the suite names it; else images (``meta["image_shape"]``), word ids
    (``meta["vocabulary"]``), tabular rows (``meta["categorical_columns"]``), or 1-D signals for
    ``mnist1d``.
    """
    meta = suite.meta
    if "data_kind" in meta:
        return str(meta["data_kind"])
    for key, kind in (("image_shape", "image"), ("vocabulary", "tokens"), ("categorical_columns", "tabular")):
        if key in meta:
            return kind
    if suite.name == "mnist1d":
        return "signal"
    raise ValidationError(
        f"cannot tell what kind of data suite {suite.name!r} holds (its meta has none of data_kind, image_shape, "
        f"vocabulary, categorical_columns); pass the augmentation explicitly: one of {', '.join(sorted(AUGMENTATIONS))}, "
        "or your own function augment(x, generator) -> x"
    )


def augmentation_for(spec: str | DomainSuite | Augment, image_shape: Any = None) -> Augment:
    """The augmentation ``augment(x, generator) -> x`` for a kind name, a suite, or your own function.

    Parameters
    ----------
    spec : a key of :data:`AUGMENTATIONS`, a :class:`~crossfeed.data.DomainSuite` (its kind is
        :func:`suite_kind`, images take the suite's ``meta["image_shape"]``), or a callable,
        returned as it is.
    image_shape : (channels, height, width) for the "image" kind; default the suite's, else (1, 28, 28).

    Example
    -------
    >>> augmentation_for("signal") is signal_views
    True
    >>> augmentation_for("audio")
    Traceback (most recent call last):
    ...
    crossfeed.exceptions.ValidationError: unknown augmentation kind 'audio'; known kinds: image, signal, tabular, tokens. ...
    """
    if callable(spec) and not isinstance(spec, DomainSuite):
        return spec
    if isinstance(spec, DomainSuite):
        image_shape = image_shape if image_shape is not None else spec.meta.get("image_shape")
        spec = suite_kind(spec)
    if spec not in AUGMENTATIONS:
        raise ValidationError(
            f"unknown augmentation kind {spec!r}; known kinds: {', '.join(sorted(AUGMENTATIONS))}. "
            "Pick one of them or pass your own function augment(x, generator) -> x of the same shape")
    if spec == "image" and image_shape is not None:
        return functools.partial(image_views, image_shape=tuple(int(s) for s in image_shape))
    return AUGMENTATIONS[spec]


# -- trunk, heads and the pretext hooks ------------------------------------------------------------
def embedding_dim(module: nn.Module, n_features: int) -> int:
    """Width of ``module.embed(x)`` for rows of ``n_features`` (measured on a zero batch, in eval mode)."""
    if not callable(getattr(module, "embed", None)):
        raise ValidationError(
            f"self-supervised pretraining needs a trunk: {type(module).__name__} has no embed(x) method. "
            "Use an architecture with one (cnn1d, cnn2d, lstm, sentence_encoder) or add embed(x) -> features")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad():
            device = next(module.parameters()).device
            return int(module.embed(torch.zeros(2, n_features, device=device)).shape[1])
    finally:
        module.train(was_training)


def projection_head(in_dim: int, out_dim: int = 64, hidden: int = 128) -> nn.Sequential:
    """SimCLR's projection head g(h): Linear -> ReLU -> Linear, shape (batch, in_dim) -> (batch, out_dim)."""
    return nn.Sequential(nn.Linear(in_dim, hidden), nn.ReLU(), nn.Linear(hidden, out_dim))


class PretextHook(TrainingHook):
    """Base of the pretext hooks: a head on the trunk's embedding, trained with it and dropped after.

    ``setup`` builds the head (``make_head(embedding_dim)``) and hands its parameters to the loop;
    ``base_loss`` (subclasses) returns the per-sample pretext loss and ignores the loop's logits.
    """

    def __init__(self, n_features: int, seed: int, make_head: Callable[[int], nn.Module]) -> None:
        self.n_features = n_features
        self.generator = torch.Generator().manual_seed(seed)
        self._make_head = make_head
        self.head: nn.Module | None = None

    def setup(self, module: nn.Module, device: torch.device) -> list[nn.Parameter]:
        with torch.random.fork_rng(devices=[]):  # a seeded head without moving torch's global generator
            torch.manual_seed(int(torch.randint(2**31 - 1, (1,), generator=self.generator)))
            self.head = self._make_head(embedding_dim(module, self.n_features)).to(device)
        return list(self.head.parameters())

    def batches(self, epoch: int, n_samples: int, batch_size: int,
                generator: torch.Generator) -> Iterator[torch.Tensor]:
        """Shuffled batches; a last batch of a single row is dropped (a view needs another row to contrast with)."""
        order = torch.randperm(n_samples, generator=generator)
        for start in range(0, n_samples, batch_size):
            if n_samples - start >= 2:
                yield order[start: start + batch_size]


class NTXentHook(PretextHook):
    """NT-Xent on two augmented views of every batch (SimCLR); both views go through the trunk at once."""

    def __init__(self, augment: Augment, n_features: int, temperature: float = 0.5, projection_dim: int = 64,
                 seed: int = 0) -> None:
        super().__init__(n_features, seed, lambda d: projection_head(d, projection_dim))
        self.augment = augment
        self.temperature = temperature

    def base_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor:
        x = batch.x
        views = torch.cat([self.augment(x, self.generator), self.augment(x, self.generator)])
        z = self.head(module.embed(views))
        per_view = nt_xent(z[: len(x)], z[len(x):], self.temperature, reduction="none")
        return (per_view[: len(x)] + per_view[len(x):]) / 2


class MaskedReconstructionHook(PretextHook):
    """Zero a share ``mask_fraction`` of every row's features; a decoder on the embedding restores them (MSE there)."""

    def __init__(self, n_features: int, mask_fraction: float = 0.5, seed: int = 0) -> None:
        super().__init__(n_features, seed, lambda d: projection_head(d, n_features, hidden=2 * d))
        self.mask_fraction = mask_fraction

    def base_loss(self, batch: Batch, logits: torch.Tensor, module: nn.Module) -> torch.Tensor:
        masked, mask = mask_features(batch.x, self.generator, self.mask_fraction)
        error = (self.head(module.embed(masked)) - batch.x).square() * mask
        return error.sum(dim=1) / mask.sum(dim=1).clamp_min(1)


def pretrain_trunk(module: nn.Module, X_unlabelled: Any, augment: str | DomainSuite | Augment = "signal", *,
                   objective: str = "ntxent", epochs: int = 20, batch_size: int = 256, lr: float = 1e-3,
                   weight_decay: float = 1e-4, temperature: float = 0.5, mask_fraction: float = 0.5,
                   projection_dim: int = 64, seed: int = 0, device: str = "cpu",
                   threads: int | None = None) -> tuple[nn.Module, TrainResult]:
    """A copy of ``module`` whose trunk (``module.embed``) is pretrained on unlabelled rows; ``module`` is untouched.

    Parameters
    ----------
    module : nn.Module with ``embed(x)`` (cnn1d, cnn2d, lstm, sentence encoder) mapping rows of
        shape (batch, n_features) to features; its head is left as it is.
    X_unlabelled : array of shape (n_samples, ...), the pooled unlabelled rows (flattened here).
    augment : the views of "ntxent" (see :func:`augmentation_for`): a kind, a suite or a function.
    objective : "ntxent" (SimCLR, arXiv 2002.05709) or "masked" (masked-feature reconstruction).
    epochs, batch_size, lr, weight_decay, seed, device, threads : the one training loop's settings.
    temperature, projection_dim : NT-Xent's temperature and projection width.
    mask_fraction : share of the features the "masked" objective hides.

    Returns
    -------
    (pretrained copy of module, TrainResult with the pretext loss per epoch)

    Example
    -------
    >>> from crossfeed.models import CNN1D
    >>> net, log = pretrain_trunk(CNN1D(40, 10, size="tiny"), np.random.rand(64, 40), epochs=1, batch_size=32)
    >>> len(log.history)
    1
    """
    X = _check_unlabelled(X_unlabelled, batch_size)
    if objective not in OBJECTIVES:
        raise ValidationError(f"objective must be one of {OBJECTIVES}; got {objective!r}")
    if objective == "ntxent":
        hook: PretextHook = NTXentHook(augmentation_for(augment), X.shape[1], temperature, projection_dim, seed)
    else:
        hook = MaskedReconstructionHook(X.shape[1], mask_fraction, seed)
    trunk = copy.deepcopy(module)
    config = TrainConfig(epochs=epochs, batch_size=min(batch_size, len(X)), lr=lr, weight_decay=weight_decay,
                         device=device, seed=seed, threads=threads)
    result = train(trunk, X, np.zeros(len(X), dtype=np.int64), config=config, hooks=[hook])
    logger.info("pretrain_trunk: %s on %d rows, pretext loss %.4f -> %.4f", objective, len(X),
                result.history[0]["train_loss"], result.history[-1]["train_loss"])
    return trunk.cpu().eval(), result


def _check_unlabelled(X: Any, batch_size: int) -> np.ndarray:
    rows = np.asarray(X, dtype=np.float32) if X is not None else np.zeros((0, 0), np.float32)
    if rows.ndim < 2 or len(rows) < 2:
        raise EmptyDataError(
            f"self-supervised pretraining needs at least 2 unlabelled rows of shape (n_samples, n_features); got "
            f"{'None' if X is None else f'shape {rows.shape}'}. Give the domains field data (X_field) or pass rows")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 2:
        raise ValidationError(f"batch_size must be an integer >= 2 (NT-Xent contrasts the rows of a batch); got {batch_size!r}")
    if not np.isfinite(rows).all():
        raise ValidationError("the unlabelled rows contain NaN or infinite values; impute or drop them before pretraining")
    return rows.reshape(len(rows), -1)
