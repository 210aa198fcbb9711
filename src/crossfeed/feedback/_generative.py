"""Small class-conditional generators of flat features, and the measures of their samples.

A domain whose data cannot leave it can still send a generator of look-alike rows: fitted where
the data lives, on the domain's field rows with its expert's pseudo-labels as the conditions,
it is sampled per class and the samples travel instead of the rows
(:class:`~crossfeed.feedback.GenerativeAugment`). Two generators with one small interface,
``fit(X, y, *, steps, seed)`` and ``sample(classes, *, seed)``, both plain torch MLPs on flat
features (mnist1d's 40 signal values, Fashion-MNIST's 784 pixels), each standardising its
features inside (the mean and scale of its training rows are kept):

- :class:`ConditionalVAE`: Sohn, Lee & Yan (NeurIPS 2015), "Learning Structured Output
  Representation using Deep Conditional Generative Models"; a Gaussian decoder, samples are the
  decoder's means at ``z ~ N(0, I)``. Stable on a few dozen rows.
- :class:`ConditionalGAN`: Mirza & Osindero (2014), "Conditional Generative Adversarial Nets",
  arXiv 1411.1784; hinge loss, a projection discriminator (Miyato & Koyama, ICLR 2018, arXiv
  1802.05637) with spectral normalisation (Miyato et al., ICLR 2018, arXiv 1802.05957), which
  keeps the discriminator from winning outright on so few rows.

The measures of generated rows are pure functions of arrays:

- :func:`expert_agreement`: share of generated rows that the domain's expert puts in the class
  they were generated for (is the generator class-conditional at all?).
- :func:`c2st_accuracy`: the classifier two-sample test (Lopez-Paz & Oquab, ICLR 2017,
  "Revisiting Classifier Two-Sample Tests", arXiv 1610.06545): cross-validated accuracy of a
  logistic regression telling real rows from generated ones; 0.5 = indistinguishable.
- :func:`dcr_ratio`: distance to closest record, the memorisation check of the synthetic-data
  privacy literature (e.g. Park et al., VLDB 2018, "Data Synthesis based on Generative
  Adversarial Networks", arXiv 1806.03384; Zhao et al., ACML 2021, "CTAB-GAN", arXiv
  2102.08369): median distance of generated rows to their nearest training row, over the same
  for fresh real rows. Well below 1: the generator hands out copies of its training rows.

Privacy: a generator fitted on 50 rows can memorise them, and sharing it (or its samples) is not
differential privacy; :func:`dcr_ratio` detects gross copying, it proves nothing.
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import numpy as np
import torch
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import StratifiedKFold, cross_val_score
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler
from torch import nn
from torch.nn.utils.parametrizations import spectral_norm

from crossfeed._validation import check_int
from crossfeed.exceptions import EmptyDataError, LabelMismatchError, NotFittedError, ValidationError

__all__ = ["GENERATORS", "ConditionalGAN", "ConditionalVAE", "allocate", "c2st_accuracy", "dcr_ratio",
           "expert_agreement"]


class _Generator:
    """What both generators share: argument checks, standardisation, class bookkeeping, seeding."""

    def __init__(self, latent_dim: int = 16, hidden: int = 256, lr: float = 1e-3, batch_size: int = 64) -> None:
        self.latent_dim = latent_dim
        self.hidden = hidden
        self.lr = lr
        self.batch_size = batch_size

    def get_params(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in ("latent_dim", "hidden", "lr", "batch_size")}

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{k}={v!r}' for k, v in self.get_params().items())})"

    # -- fit ---------------------------------------------------------------------------------
    def fit(self, X: Any, y: Any, *, steps: int = 2000, seed: int = 0) -> _Generator:
        """Fit on rows ``X`` of shape (n_rows, n_features) with their classes ``y`` of shape (n_rows,).

        ``steps``: optimizer steps (batches), not epochs: with 50 rows an epoch is one batch.
        ``seed`` fixes the initial weights, the batches and the noise. Returns ``self``.
        """
        for name in ("latent_dim", "hidden", "batch_size"):
            check_int(getattr(self, name), f"{type(self).__name__}.{name}", 1)
        check_int(steps, "steps", 1)
        check_int(seed, "seed", 0)
        if not (isinstance(self.lr, numbers.Real) and math.isfinite(self.lr) and self.lr > 0):
            raise ValidationError(f"{type(self).__name__}.lr must be a finite number > 0; got {self.lr!r}")
        X = np.asarray(X, dtype=np.float32)
        y = np.asarray(y)
        if X.ndim != 2:
            raise ValidationError(f"X must have shape (n_rows, n_features); got shape {X.shape}: flatten the samples")
        if len(X) == 0:
            raise EmptyDataError("a generator needs at least one row to fit; got none")
        if len(y) != len(X):
            raise ValidationError(f"X has {len(X)} rows but y has {len(y)}")
        if not np.isfinite(X).all():
            raise ValidationError("X holds NaN or inf values; a generator fits finite features only")
        self.classes_, codes, self.class_counts_ = np.unique(y, return_inverse=True, return_counts=True)
        self.n_features_in_ = X.shape[1]
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.scale_ = np.maximum(std, 1e-2 * float(std.mean()) + 1e-8)  # constant pixels: no blow-up
        Z = torch.as_tensor((X - self.mean_) / self.scale_)
        c = torch.as_tensor(codes, dtype=torch.long)
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(seed)
            self._build(X.shape[1], len(self.classes_))
            self.loss_ = self._train(Z, c, steps, torch.Generator().manual_seed(seed))
        return self

    # -- sample ------------------------------------------------------------------------------
    def sample(self, classes: Sequence[Any] | np.ndarray, *, seed: int = 0) -> np.ndarray:
        """One generated row per entry of ``classes`` (each a class the generator was fitted on).

        Returns an array of shape (len(classes), n_features), float32, in the units of the rows
        it was fitted on. A class it never saw raises a LabelMismatchError that lists the ones
        it knows.
        """
        if not hasattr(self, "classes_"):
            raise NotFittedError(f"this {type(self).__name__} is not fitted yet; call fit(X, y) first")
        wanted = np.asarray(classes)
        if wanted.ndim != 1:
            raise ValidationError(f"classes must be a 1-d sequence of class labels; got shape {wanted.shape}")
        index = {_plain(c): i for i, c in enumerate(self.classes_)}
        codes = [index.get(_plain(v), -1) for v in wanted]
        if -1 in codes:
            unknown = sorted({_plain(v) for v, code in zip(wanted, codes) if code == -1}, key=str)
            raise LabelMismatchError(
                f"the {type(self).__name__} was fitted on rows of classes {self.classes_.tolist()} only, so it cannot "
                f"generate class(es) {unknown}; ask only for fitted classes (e.g. in proportion to class_counts_), "
                "or fit it on rows that include those classes")
        if len(wanted) == 0:
            return np.zeros((0, self.n_features_in_), dtype=np.float32)
        gen = torch.Generator().manual_seed(int(seed))
        noise = torch.randn(len(wanted), self.latent_dim, generator=gen)
        with torch.no_grad():
            out = self._decode(noise, torch.as_tensor(codes, dtype=torch.long)).numpy()
        return (out * self.scale_ + self.mean_).astype(np.float32)

    # -- for the subclasses ------------------------------------------------------------------
    def _build(self, n_features: int, n_classes: int) -> None:
        raise NotImplementedError

    def _train(self, Z: torch.Tensor, c: torch.Tensor, steps: int, gen: torch.Generator) -> float:
        raise NotImplementedError

    def _decode(self, noise: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def _batches(self, n: int, steps: int, gen: torch.Generator) -> Iterator[torch.Tensor]:
        size = min(self.batch_size, n)
        for _ in range(steps):
            yield torch.randint(0, n, (size,), generator=gen)


def _mlp(n_in: int, hidden: int, n_out: int, act: Callable[[], nn.Module] = nn.ReLU) -> nn.Sequential:
    return nn.Sequential(nn.Linear(n_in, hidden), act(), nn.Linear(hidden, hidden), act(), nn.Linear(hidden, n_out))


class ConditionalVAE(_Generator):
    """A conditional variational autoencoder on flat features (Sohn, Lee & Yan, NeurIPS 2015).

    Encoder ``q(z | x, y)`` and decoder ``p(x | z, y)`` are two-hidden-layer MLPs fed with the
    one-hot class, and the prior is conditional too, ``p(z | y) = N(m_y, diag s_y²)`` with a
    learned mean and scale per class (Sohn et al.'s prior network, here of the class alone). The
    loss per row is the squared error of the standardised reconstruction plus ``beta`` times
    ``KL(q(z | x, y) || p(z | y))``. A sample of class ``y`` is the decoder's mean at
    ``z ~ p(z | y)``. With the standard prior ``N(0, I)`` instead, a decoder trained on a few
    hundred rows learns to read the class from ``z`` and ignore ``y``, and samples drawn at a
    random ``z`` hardly depend on the class asked for; the class prior keeps each class's codes
    where that class's samples are drawn.

    Parameters
    ----------
    latent_dim : int >= 1, size of ``z``.
    hidden : int >= 1, width of the hidden layers.
    lr : float > 0, Adam's learning rate.
    batch_size : int >= 1 (at most the number of rows).
    beta : float > 0, weight of the KL term.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-2, 0.3, (40, 3)), rng.normal(2, 0.3, (40, 3))])
    >>> vae = ConditionalVAE(hidden=32).fit(X, np.repeat([0, 1], 40), steps=200, seed=0)
    >>> rows = vae.sample([0, 1], seed=0)
    >>> bool(rows[0].mean() < 0 < rows[1].mean())
    True
    """

    def __init__(self, latent_dim: int = 16, hidden: int = 256, lr: float = 1e-3, batch_size: int = 64,
                 beta: float = 1.0) -> None:
        super().__init__(latent_dim, hidden, lr, batch_size)
        self.beta = beta

    def get_params(self) -> dict[str, Any]:
        return {**super().get_params(), "beta": self.beta}

    def _build(self, n_features: int, n_classes: int) -> None:
        if not (isinstance(self.beta, numbers.Real) and math.isfinite(self.beta) and self.beta > 0):
            raise ValidationError(f"ConditionalVAE.beta must be a finite number > 0; got {self.beta!r}")
        self.encoder_ = _mlp(n_features + n_classes, self.hidden, 2 * self.latent_dim)
        self.decoder_ = _mlp(self.latent_dim + n_classes, self.hidden, n_features)
        self.prior_ = nn.Embedding(n_classes, 2 * self.latent_dim)  # per class: mean, log-variance
        nn.init.normal_(self.prior_.weight, std=0.1)

    def _onehot(self, codes: torch.Tensor) -> torch.Tensor:
        return nn.functional.one_hot(codes, len(self.classes_)).float()

    def _train(self, Z: torch.Tensor, c: torch.Tensor, steps: int, gen: torch.Generator) -> float:
        params = [*self.encoder_.parameters(), *self.decoder_.parameters(), *self.prior_.parameters()]
        opt = torch.optim.Adam(params, lr=self.lr)
        loss = torch.zeros(())
        for idx in self._batches(len(Z), steps, gen):
            x, h = Z[idx], self._onehot(c[idx])
            mu, logvar = self.encoder_(torch.cat([x, h], 1)).chunk(2, dim=1)
            logvar = logvar.clamp(-10.0, 10.0)
            prior_mu, prior_logvar = self._prior(c[idx])
            z = mu + torch.randn(mu.shape, generator=gen) * torch.exp(0.5 * logvar)
            recon = self.decoder_(torch.cat([z, h], 1))
            kl = 0.5 * (prior_logvar - logvar + (logvar.exp() + (mu - prior_mu).pow(2)) / prior_logvar.exp() - 1).sum(1)
            loss = ((recon - x).pow(2).sum(1) + self.beta * kl).mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
        return float(loss.detach())

    def _prior(self, codes: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mu, logvar = self.prior_(codes).chunk(2, dim=1)
        return mu, logvar.clamp(-10.0, 10.0)

    def _decode(self, noise: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        mu, logvar = self._prior(codes)
        return self.decoder_(torch.cat([mu + noise * torch.exp(0.5 * logvar), self._onehot(codes)], 1))


class ConditionalGAN(_Generator):
    """A conditional GAN on flat features (Mirza & Osindero 2014, arXiv 1411.1784).

    Generator: an MLP of ``[z, embedding(y)]``. Discriminator: a spectrally normalised MLP trunk
    ``h(x)`` with a projection head ``w·h + <embedding'(y), h>`` (Miyato & Koyama 2018). Hinge
    loss (Lim & Ye 2017, arXiv 1705.02894), Adam with ``betas = (0.5, 0.9)``, one discriminator
    step per generator step.

    Parameters
    ----------
    latent_dim, hidden, lr, batch_size : as :class:`ConditionalVAE` (``lr`` of both networks).

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> X = np.concatenate([rng.normal(-2, 0.3, (40, 3)), rng.normal(2, 0.3, (40, 3))])
    >>> gan = ConditionalGAN(hidden=32).fit(X, np.repeat([0, 1], 40), steps=50, seed=0)
    >>> gan.sample([1, 1, 0], seed=0).shape
    (3, 3)
    """

    def __init__(self, latent_dim: int = 16, hidden: int = 256, lr: float = 2e-4, batch_size: int = 64) -> None:
        super().__init__(latent_dim, hidden, lr, batch_size)

    def _build(self, n_features: int, n_classes: int) -> None:
        self.generator_ = nn.ModuleDict({
            "embed": nn.Embedding(n_classes, self.latent_dim),
            "net": _mlp(2 * self.latent_dim, self.hidden, n_features, act=lambda: nn.LeakyReLU(0.2)),
        })
        self.discriminator_ = nn.ModuleDict({
            "trunk": nn.Sequential(spectral_norm(nn.Linear(n_features, self.hidden)), nn.LeakyReLU(0.2),
                                   spectral_norm(nn.Linear(self.hidden, self.hidden)), nn.LeakyReLU(0.2)),
            "head": spectral_norm(nn.Linear(self.hidden, 1)),
            "embed": spectral_norm(nn.Embedding(n_classes, self.hidden)),
        })

    def _critic(self, x: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        d = self.discriminator_
        h = d["trunk"](x)
        return d["head"](h).squeeze(1) + (d["embed"](codes) * h).sum(1)

    def _train(self, Z: torch.Tensor, c: torch.Tensor, steps: int, gen: torch.Generator) -> float:
        opt_g = torch.optim.Adam(self.generator_.parameters(), lr=self.lr, betas=(0.5, 0.9))
        opt_d = torch.optim.Adam(self.discriminator_.parameters(), lr=self.lr, betas=(0.5, 0.9))
        loss_g = torch.zeros(())
        for idx in self._batches(len(Z), steps, gen):
            x, codes = Z[idx], c[idx]
            fake = self._decode(torch.randn(len(idx), self.latent_dim, generator=gen), codes)
            loss_d = (torch.relu(1 - self._critic(x, codes)).mean()
                      + torch.relu(1 + self._critic(fake.detach(), codes)).mean())
            opt_d.zero_grad()
            loss_d.backward()
            opt_d.step()
            loss_g = -self._critic(fake, codes).mean()
            opt_g.zero_grad()
            loss_g.backward()
            opt_g.step()
        self.generator_.eval()
        self.discriminator_.eval()
        return float(loss_g.detach())

    def _decode(self, noise: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        g = self.generator_
        return g["net"](torch.cat([noise, g["embed"](codes)], 1))


#: Generators by name: ``GENERATORS["cvae"](latent_dim=8)``.
GENERATORS: dict[str, type[_Generator]] = {"cvae": ConditionalVAE, "cgan": ConditionalGAN}


# -- how many rows of each class ----------------------------------------------------------------
def allocate(counts: Sequence[int] | np.ndarray, n: int, how: str = "proportional") -> np.ndarray:
    """Split ``n`` generated rows between classes.

    ``"proportional"``: in proportion to ``counts`` (largest remainders, ties to the first
    class); ``"balanced"``: equally between the classes with a count > 0. Classes with a count of
    0 get no rows either way (a generator knows nothing of them).

    Parameters
    ----------
    counts : array of shape (n_classes,), rows of each class the generator was fitted on.
    n : int >= 0, rows to split.
    how : "proportional" or "balanced".

    Returns
    -------
    array of int of shape (n_classes,), summing to ``n``.

    Example
    -------
    >>> allocate([6, 3, 0, 1], 20).tolist()
    [12, 6, 0, 2]
    >>> allocate([6, 3, 0, 1], 20, "balanced").tolist()
    [7, 7, 0, 6]
    """
    counts = np.asarray(counts, dtype=float)
    if counts.ndim != 1 or (counts < 0).any() or counts.sum() <= 0:
        raise ValidationError(f"counts must be a 1-d array of counts >= 0 with a positive sum; got {counts.tolist()}")
    check_int(n, "n", 0)
    if how not in ("proportional", "balanced"):
        raise ValidationError(f"how must be 'proportional' or 'balanced'; got {how!r}")
    weights = counts if how == "proportional" else (counts > 0).astype(float)
    exact = n * weights / weights.sum()
    out = np.floor(exact).astype(int)
    rest = n - int(out.sum())
    order = np.argsort(-(exact - out), kind="stable")  # largest remainders first
    out[order[:rest]] += 1
    return out


# -- measures of generated rows ------------------------------------------------------------------
def expert_agreement(expert_logits: np.ndarray, conditioned: np.ndarray) -> float:
    """Share of generated rows whose expert argmax is the class they were generated for.

    A class-conditional generator scores well above chance (``1 / n_classes``); one that ignores
    its condition scores about chance.

    Parameters
    ----------
    expert_logits : array of shape (n_rows, n_classes), the expert's logits of the generated rows.
    conditioned : array of int of shape (n_rows,), the class index (column) each row was made for.

    Returns
    -------
    float in [0, 1].

    Example
    -------
    >>> expert_agreement(np.array([[2.0, 0.0], [0.0, 1.0], [3.0, 1.0]]), np.array([0, 1, 1]))
    0.6666666666666666
    """
    z = np.asarray(expert_logits)
    c = np.asarray(conditioned)
    if z.ndim != 2 or c.shape != (len(z),):
        raise ValidationError(f"expert_logits must have shape (n_rows, n_classes) and conditioned (n_rows,); "
                              f"got {z.shape} and {c.shape}")
    if len(z) == 0:
        raise EmptyDataError("expert_agreement needs at least one generated row; got none")
    return float(np.mean(z.argmax(axis=1) == c))


def c2st_accuracy(X_real: np.ndarray, X_fake: np.ndarray, *, folds: int = 5, seed: int = 0) -> float:
    """Classifier two-sample test: how well a logistic regression tells real rows from generated ones.

    Lopez-Paz & Oquab (ICLR 2017), "Revisiting Classifier Two-Sample Tests", arXiv 1610.06545.
    The larger set is subsampled to the size of the smaller (so chance is exactly 0.5), then a
    standardised, L2-regularised logistic regression is scored by stratified ``folds``-fold
    cross-validation. 0.5: the classifier cannot tell them apart; 1.0: every row is told apart.
    A linear classifier sees differences of means and linear structure, not everything.

    Parameters
    ----------
    X_real, X_fake : arrays of shape (n_real, n_features) and (n_fake, n_features), at least
        ``folds`` rows each.
    folds : int >= 2.
    seed : int, the subsample and the folds.

    Returns
    -------
    float in [0, 1], mean held-out accuracy.

    Example
    -------
    >>> rng = np.random.default_rng(0)
    >>> same = c2st_accuracy(rng.normal(size=(200, 2)), rng.normal(size=(200, 2)))
    >>> apart = c2st_accuracy(rng.normal(size=(200, 2)), rng.normal(3.0, 1.0, size=(200, 2)))
    >>> bool(abs(same - 0.5) < 0.1 and apart > 0.95)
    True
    """
    real, fake = _pair(X_real, X_fake, "c2st_accuracy")
    check_int(folds, "folds", 2)
    n = min(len(real), len(fake))
    if n < folds:
        raise ValidationError(f"c2st_accuracy needs at least folds={folds} rows of each set; got {len(real)} real "
                              f"and {len(fake)} generated rows")
    rng = np.random.default_rng(seed)
    real = real[rng.permutation(len(real))[:n]]
    fake = fake[rng.permutation(len(fake))[:n]]
    X = np.concatenate([real, fake])
    y = np.repeat([0, 1], n)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    cv = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    return float(np.mean(cross_val_score(model, X, y, cv=cv, scoring="accuracy")))


def dcr_ratio(X_generated: np.ndarray, X_train: np.ndarray, X_holdout: np.ndarray) -> float:
    """Distance to closest record, generated over fresh real rows: a memorisation indicator.

    ``median_i min_j ||g_i - t_j|| / median_k min_j ||h_k - t_j||``: the median Euclidean
    distance from each generated row ``g_i`` to its nearest training row ``t_j`` (the rows the
    generator was fitted on), over the same for real rows ``h_k`` the generator never saw (e.g.
    the domain's validation split). About 1: generated rows are as far from the training rows as
    new real rows are; well below 1: the generator reproduces its training rows (0: copies).
    From the synthetic-data privacy literature (Park et al., VLDB 2018, arXiv 1806.03384; Zhao et
    al., ACML 2021, arXiv 2102.08369). A ratio near 1 does not prove privacy.

    Parameters
    ----------
    X_generated, X_train, X_holdout : arrays of shape (n_*, n_features), one feature space.

    Returns
    -------
    float >= 0 (inf when the holdout rows coincide with training rows).

    Example
    -------
    >>> train = np.array([[0.0, 0.0], [10.0, 0.0]])
    >>> dcr_ratio(train + [0.5, 0.0], train, np.array([[0.0, 2.0], [10.0, 2.0]]))  # 0.5 / 2.0
    0.25
    """
    gen, train = _pair(X_generated, X_train, "dcr_ratio")
    _, holdout = _pair(X_generated, X_holdout, "dcr_ratio")
    num = float(np.median(_nearest(gen, train)))
    den = float(np.median(_nearest(holdout, train)))
    if den == 0.0:
        return 0.0 if num == 0.0 else math.inf
    return num / den


def _nearest(A: np.ndarray, B: np.ndarray, chunk: int = 1024) -> np.ndarray:
    """Distance of each row of ``A`` to its nearest row of ``B``, shape (len(A),)."""
    B64 = B.astype(np.float64)
    b2 = (B64 ** 2).sum(1)
    out = np.empty(len(A))
    for s in range(0, len(A), chunk):
        a = A[s:s + chunk].astype(np.float64)
        d2 = (a ** 2).sum(1)[:, None] - 2.0 * a @ B64.T + b2[None, :]
        out[s:s + chunk] = np.sqrt(np.maximum(d2.min(axis=1), 0.0))
    return out


def _pair(A: Any, B: Any, owner: str) -> tuple[np.ndarray, np.ndarray]:
    A, B = np.asarray(A, dtype=np.float64), np.asarray(B, dtype=np.float64)
    if A.ndim != 2 or B.ndim != 2 or A.shape[1] != B.shape[1]:
        raise ValidationError(f"{owner}: both sets must have shape (n_rows, n_features) with the same n_features; "
                              f"got {A.shape} and {B.shape}")
    if len(A) == 0 or len(B) == 0:
        raise EmptyDataError(f"{owner}: both sets need at least one row; got {len(A)} and {len(B)}")
    return A, B


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, np.generic) else value


