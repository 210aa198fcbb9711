"""Spawn one small expert per domain from a large model: distil, then fine-tune on the domain.

This is the *spawn* step of the ecosystem cycle (``crossfeed.cycle``): the general large model
teaches a small student on the pooled labelled data plus the domain's unlabelled field data
(Hinton et al. 2015, arXiv 1503.02531), and the student then specialises on its own domain
(:func:`crossfeed.spawn.finetune`).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

from sklearn.base import clone

from crossfeed.data import DomainSuite
from crossfeed.exceptions import ValidationError
from crossfeed.models import ARCHITECTURES, TorchClassifier
from crossfeed.spawn._distill import Distiller
from crossfeed.spawn._finetune import finetune

__all__ = ["make_student", "spawn_experts"]

logger = logging.getLogger(__name__)


def make_student(spec: str | TorchClassifier, *, epochs: int = 15, lr: float = 3e-3, random_state: int | None = 0) -> TorchClassifier:
    """A student template from ``"arch"`` or ``"arch:size"`` (``"cnn1d:tiny"``, ``"mlp"``), or a clone of one.

    Example
    -------
    >>> make_student("cnn1d:tiny").module_kwargs
    {'size': 'tiny'}
    """
    if isinstance(spec, TorchClassifier):
        return clone(spec)
    if not isinstance(spec, str):
        raise ValidationError(f"student must be 'arch', 'arch:size' or a TorchClassifier; got {type(spec).__name__}")
    arch, _, size = spec.partition(":")
    ARCHITECTURES.get(arch)  # unknown names raise with the list of known ones
    kwargs = {"size": size} if size else None
    return TorchClassifier(arch, module_kwargs=kwargs, epochs=epochs, lr=lr, random_state=random_state)


def spawn_experts(
    large: Any,
    suite: DomainSuite,
    *,
    student: str | TorchClassifier = "cnn1d:tiny",
    temperature: float = 4.0,
    alpha: float = 0.9,
    epochs: int = 15,
    finetune_epochs: int = 10,
    freeze: str | Sequence[str] = "none",
    patience: int | None = 3,
    mixup: int = 0,
    domains: Sequence[str] | None = None,
    random_state: int = 0,
) -> dict[str, TorchClassifier]:
    """One small model per domain, distilled from ``large`` and fine-tuned on its domain.

    For each domain: a student is distilled from ``large`` on the suite's pooled labelled train
    data plus the domain's unlabelled field data (``X_field``) as transfer data, then fine-tuned
    on the domain's train split with early stopping on its val split. ``large`` is used as it is.

    Parameters
    ----------
    large : fitted classifier (the teacher), e.g. a ``cnn1d`` large TorchClassifier.
    suite : DomainSuite.
    student : "arch" / "arch:size" (e.g. "cnn1d:tiny"), or a TorchClassifier template (its own
        epochs, lr and random_state are then used for the distillation).
    temperature, alpha : distillation settings (see :class:`Distiller`).
    epochs : distillation epochs (for a student given by name).
    finetune_epochs : fine-tuning epochs (0 skips fine-tuning).
    freeze, patience : fine-tuning settings (see :func:`finetune`).
    mixup : extra mixup rows of the pooled training and the domain's field inputs that ``large``
        labels for each distillation (see :class:`Distiller`); 0: the field data alone.
    domains : names of the domains to spawn for; all by default.
    random_state : int; domain ``i`` uses ``random_state + i``.

    Returns
    -------
    dict mapping each domain name to its fitted TorchClassifier.

    Example
    -------
    >>> from crossfeed.data import load_suite
    >>> suite = load_suite("mnist1d", seed=0, n_per_domain=200)
    >>> large = TorchClassifier("cnn1d", module_kwargs={"size": "small"}, epochs=2, random_state=0).fit(*suite.pooled("train"))
    >>> experts = spawn_experts(large, suite, epochs=1, finetune_epochs=1, domains=["noisy"])
    >>> sorted(experts)
    ['noisy']
    """
    if not isinstance(suite, DomainSuite):
        raise ValidationError(f"suite must be a crossfeed.data.DomainSuite; got {type(suite).__name__}")
    if not (isinstance(finetune_epochs, int) and finetune_epochs >= 0):
        raise ValidationError(f"finetune_epochs must be a non-negative integer; got {finetune_epochs!r}")
    names = list(domains) if domains is not None else suite.names
    for name in names:
        suite[name]  # unknown names raise with the list of domains
    X_pool, y_pool = suite.pooled("train")
    X_pool_val, y_pool_val = suite.pooled("val")
    experts: dict[str, TorchClassifier] = {}
    for i, name in enumerate(names):
        domain = suite[name]
        seed = int(random_state) + i
        template = make_student(student, epochs=epochs, random_state=seed)
        if isinstance(student, TorchClassifier):
            template.set_params(random_state=seed)
        X_transfer = domain.X_field if domain.X_field is not None and len(domain.X_field) else None
        logger.info("spawn: distilling a %s student for domain %r", template.module, name)
        distilled = Distiller(large, template, temperature=temperature, alpha=alpha, mixup=mixup).fit(
            X_pool, y_pool, X_val=X_pool_val, y_val=y_pool_val, X_transfer=X_transfer
        ).student_
        if finetune_epochs > 0:
            logger.info("spawn: fine-tuning the %r expert", name)
            distilled = finetune(distilled, domain, freeze=freeze, epochs=finetune_epochs, patience=patience,
                                 random_state=seed)
        experts[name] = distilled
    return experts

