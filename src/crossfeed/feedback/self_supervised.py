"""Self-supervised pretraining of the large model's trunk on the pooled unlabelled field data, then fine-tuning.

The domains cannot send labels, but their field data is plentiful and unlabelled. The large
model's trunk (``module.embed``) first learns from all of it at once without labels, with
SimCLR's NT-Xent on two augmented views of every row (Chen, Kornblith, Norouzi & Hinton, ICML
2020, arXiv 2002.05709) or by restoring masked features; the usual training loop then fine-tunes
the whole network on the general domain's labelled data. The maths, the augmentations of every
kind of data and :func:`~crossfeed.feedback.pretrain_trunk` (usable on its own) are in
:mod:`crossfeed.feedback._contrastive`.

The pool is the field data of every expert's domain and of the general domain, plus (with
``general_rows``) the general domain's training rows without their labels. Domains without an
expert in this step are left out, so absorbing the domains one after another never sees the
field data of a domain that has not arrived yet.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import ClassVar

import numpy as np
from torch import nn

from crossfeed.data import DomainSuite
from crossfeed.exceptions import EmptyDataError
from crossfeed.feedback._base import FeedbackContext, FeedbackStrategy, TrainingData, flat, general_data, register
from crossfeed.feedback._contrastive import AUGMENTATIONS, OBJECTIVES, augmentation_for, pretrain_trunk
from crossfeed.feedback._params import Param

__all__ = ["SelfSupervised", "unlabelled_pool"]


def unlabelled_pool(suite: DomainSuite, domains: Iterable[str], general_rows: bool = True) -> dict[str, np.ndarray]:
    """The unlabelled rows pretraining sees, by source: each domain's ``X_field`` (flattened) and, with
    ``general_rows``, the general domain's training rows under ``"<general>:train"`` (labels dropped).

    The general domain's field data is always included; domains without field data give nothing.
    Raises ``EmptyDataError`` when no row is left.

    Example
    -------
    >>> from crossfeed.data import load_suite
    >>> pool = unlabelled_pool(load_suite("mnist1d", n_per_domain=200), ["noisy"], general_rows=False)
    >>> {k: v.shape for k, v in pool.items()}
    {'default': (30, 40), 'noisy': (30, 40)}
    """
    general = suite.general_domain
    names = list(dict.fromkeys([general, *domains]))
    pool = {n: flat(suite[n].X_field) for n in names if suite[n].X_field is not None and len(suite[n].X_field)}
    if general_rows:
        pool[f"{general}:train"] = flat(suite[general].X_train)
    if not pool:
        raise EmptyDataError(
            f"self-supervised pretraining found no unlabelled rows: domains {names} of suite {suite.name!r} have no "
            "field data (X_field) and general_rows is off; collect field data or set general_rows: true")
    return pool


@register("self_supervised")
class SelfSupervised(FeedbackStrategy):
    """Pretrain the large model's trunk on the pooled unlabelled data, then fine-tune on the general labels.

    Parameters
    ----------
    objective : "ntxent" (SimCLR's contrastive loss on two augmented views) or "masked"
        (reconstruct a share ``mask_fraction`` of hidden features from the embedding).
    augment : the views of "ntxent", a kind of :data:`~crossfeed.feedback._contrastive.AUGMENTATIONS`
        ("signal", "image", "tokens", "tabular"); None: the suite's kind (``suite_kind``).
    pretrain_epochs, pretrain_lr, pretrain_batch_size : the pretraining run's own settings (the
        fine-tuning uses the step's :class:`~crossfeed.feedback.TrainSettings`).
    temperature : NT-Xent's temperature (SimCLR: 0.1 to 0.5).
    mask_fraction : share of the features the "masked" objective hides.
    general_rows : also pretrain on the general domain's training rows, without their labels.

    The large model must have an ``embed`` method (cnn1d, cnn2d, lstm, sentence encoder). Reports
    ``info["pretrain_rows"]``: unlabelled rows per source.
    """

    needs_field_data = True
    params: ClassVar[dict[str, Param]] = {
        "objective": Param(str, choices=OBJECTIVES, help="pretext task of the pretraining"),
        "augment": Param(str, choices=tuple(sorted(AUGMENTATIONS)), none=True,
                         help="kind of augmentation for the views; null: the suite's kind"),
        "pretrain_epochs": Param(int, low=1, help="epochs of self-supervised pretraining"),
        "pretrain_lr": Param(float, low=0.0, low_open=True, help="learning rate of the pretraining"),
        "pretrain_batch_size": Param(int, low=2, help="rows per pretraining batch (NT-Xent contrasts them)"),
        "temperature": Param(float, low=0.0, low_open=True, help="NT-Xent temperature"),
        "mask_fraction": Param(float, low=0.0, high=1.0, low_open=True, high_open=True,
                               help="share of the features the masked objective hides"),
        "general_rows": Param(bool, help="pretrain on the general domain's training rows too (labels dropped)"),
    }

    def __init__(self, objective: str = "ntxent", augment: str | None = None, pretrain_epochs: int = 15,
                 pretrain_lr: float = 3e-3, pretrain_batch_size: int = 256, temperature: float = 0.2,
                 mask_fraction: float = 0.5, general_rows: bool = True) -> None:
        self.objective = objective
        self.augment = augment
        self.pretrain_epochs = pretrain_epochs
        self.pretrain_lr = pretrain_lr
        self.pretrain_batch_size = pretrain_batch_size
        self.temperature = temperature
        self.mask_fraction = mask_fraction
        self.general_rows = general_rows

    def prepare(self, ctx: FeedbackContext) -> TrainingData:
        _, X_gen, y_gen = general_data(ctx.suite)
        pool = unlabelled_pool(ctx.suite, ctx.experts, self.general_rows)
        return TrainingData(flat(X_gen), np.asarray(y_gen), info={"pretrain_rows": {k: len(v) for k, v in pool.items()}})

    def initial_module(self, ctx: FeedbackContext) -> nn.Module:
        pool = unlabelled_pool(ctx.suite, ctx.experts, self.general_rows)
        settings = ctx.settings
        module, _ = pretrain_trunk(
            ctx.large.module_, np.concatenate(list(pool.values())),
            augmentation_for(self.augment if self.augment is not None else ctx.suite, ctx.suite.meta.get("image_shape")),
            objective=self.objective, epochs=self.pretrain_epochs, batch_size=self.pretrain_batch_size,
            lr=self.pretrain_lr, weight_decay=settings.weight_decay, temperature=self.temperature,
            mask_fraction=self.mask_fraction, seed=settings.seed, device=settings.device, threads=settings.threads)
        return module
