"""Weight merging: experts fine-tuned from the large model are merged back into it, weight by weight.

No gradient step is needed: the experts' weights (or their *task vectors* ``theta_k - theta_large``)
are combined by one of

- ``"average"``: the mean of the experts' weights, scaled as ``theta + lam · mean_k tau_k``
  (``lam = 1``: the plain average, a "model soup"; Wortsman et al. ICML 2022, arXiv 2203.05482);
- ``"task_arithmetic"``: ``theta + lam · sum_k tau_k`` (Ilharco et al., ICLR 2023, arXiv 2212.04089);
- ``"ties"``: TIES-Merging, trim / elect sign / disjoint mean (Yadav et al., NeurIPS 2023,
  arXiv 2306.01708).

The maths lives in :mod:`crossfeed.feedback._merging`. Only the network's *parameters* are merged
that way. BatchNorm running statistics are not weights that add up (a task-vector sum can make a
variance negative): with ``bn_stats="recompute"`` (default) they are re-estimated for the merged
weights by forward passes in training mode over the unlabelled data the strategy may use (the
general training inputs and every expert's domain's field inputs; :func:`torch.optim.swa_utils.update_bn`),
the usual repair of the activation statistics that averaging weights distorts (Jordan et al.,
REPAIR, ICLR 2023, arXiv 2211.08403); with ``"average"`` they are the experts' mean statistics.

Every expert must be a TorchClassifier whose network has the large model's parameter names and
shapes (``needs_same_architecture``): spawn them as fine-tuned copies of the large model
(:func:`crossfeed.spawn.finetune`). With ``absorb(..., epochs=0)`` the merged network is the new
model as it is; with ``epochs > 0`` it is fine-tuned on the general domain's labelled training
data (its hard labels) plus every expert's domain's field data with that expert's probabilities
as soft targets (cross-entropy at temperature 1, i.e. distillation from the experts), so that what
merging lost is recovered from the experts themselves. The field data is used where a domain has
some; merging alone needs none (BatchNorm statistics are then recomputed on the general inputs).
"""

from __future__ import annotations

import copy
import logging
from collections.abc import Mapping
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn
from torch.optim.swa_utils import update_bn

from crossfeed.data import DomainSuite
from crossfeed.exceptions import LabelMismatchError
from crossfeed.feedback._base import (
    FeedbackContext,
    FeedbackStrategy,
    TrainingData,
    flat,
    general_data,
    register,
    with_unlabelled,
)
from crossfeed.feedback._merging import (
    average_weights,
    relative_distance,
    task_arithmetic,
    task_vectors,
    ties_merge,
)
from crossfeed.feedback._params import Param

__all__ = ["FOREIGN_DISTANCE", "METHODS", "Merge", "recompute_batchnorm"]

logger = logging.getLogger(__name__)

#: The merging methods of :class:`Merge`, and their default scaling coefficient ``lam``.
METHODS: dict[str, float] = {"average": 1.0, "task_arithmetic": 0.4, "ties": 1.0}
BN_STATS = ("recompute", "average")
#: An expert whose weights lie further than this from the large model's (relative distance, see
#: :func:`~crossfeed.feedback._merging.relative_distance`) was not fine-tuned from it: a warning is logged.
#: Measured on mnist1d: 0.12-0.15 after 10 epochs of fine-tuning, 1.06-1.13 for networks trained from scratch.
FOREIGN_DISTANCE = 0.5
_BN_BATCH = 256


@register("merge")
class Merge(FeedbackStrategy):
    """Merge the experts' weights into the large model (average, task arithmetic or TIES).

    Parameters
    ----------
    method : "average", "task_arithmetic" or "ties". The default, "average", forgot least on
        mnist1d: merged without training, the three reach about the same accuracy on the shifted
        domains, but task arithmetic and TIES at their default ``lam`` lose 10 points on the general
        domain, the average 1.4 (``tests/feedback/test_merge.py``).
    lam : float, scaling coefficient of the merged task vector; None: the method's default
        (:data:`METHODS`: 1.0 for "average" and "ties", 0.4 for "task_arithmetic").
    density : float in (0, 1], TIES only: fraction of each task vector's entries kept by magnitude.
    bn_stats : "recompute" (re-estimate BatchNorm statistics on unlabelled data) or "average".

    Reports ``info["merge"]``: method, lam, density (TIES), bn_stats, the merged experts and each
    expert's ``relative_distance`` from the large model's parameters; an expert further than
    :data:`FOREIGN_DISTANCE` was probably not fine-tuned from the large model, and a warning says so.

    Example
    -------
    >>> experts = {d.name: finetune(large, d) for d in suite if d.name != "default"}       # doctest: +SKIP
    >>> merged, report = absorb(large, experts, suite, "merge", params={"method": "ties"}, epochs=0)  # doctest: +SKIP
    """

    needs_same_architecture = True
    params: ClassVar[dict[str, Param]] = {
        "method": Param(str, choices=tuple(METHODS)),
        "lam": Param(float, none=True, help="scaling of the task vectors; null: the method's default"),
        "density": Param(float, low=0.0, high=1.0, low_open=True, help="share of each task vector TIES keeps"),
        "bn_stats": Param(str, choices=BN_STATS),
    }

    def __init__(self, method: str = "average", lam: float | None = None, density: float = 0.2,
                 bn_stats: str = "recompute") -> None:
        self.method = method
        self.lam = lam
        self.density = density
        self.bn_stats = bn_stats

    def _lam(self) -> float:
        """The effective ``lam``: the method's default when None."""
        return float(METHODS[self.method] if self.lam is None else self.lam)

    def prepare(self, ctx: FeedbackContext) -> TrainingData:
        large, experts, suite = ctx.large, ctx.experts, ctx.suite
        lam = self._lam()
        _, X_gen, y_gen = general_data(suite)
        classes, y_gen = large.classes_, np.asarray(y_gen)
        unknown = np.setdiff1d(y_gen, classes)
        if len(unknown):
            raise LabelMismatchError(
                f"the general training data holds labels {unknown.tolist()} that the large model does not predict "
                f"({classes.tolist()})"
            )
        parts_X, parts_t = [flat(X_gen)], [np.eye(len(classes), dtype=np.float32)[np.searchsorted(classes, y_gen)]]
        for name, expert in experts.items():
            X_field = suite[name].X_field
            if X_field is not None and len(X_field):
                parts_X.append(flat(X_field))
                parts_t.append(np.asarray(expert.predict_proba(flat(X_field)), dtype=np.float32))
        X = np.concatenate(parts_X)
        y, labelled = with_unlabelled(y_gen, len(X) - len(X_gen), large.classes_[0])
        info = {"method": self.method, "lam": lam, "bn_stats": self.bn_stats, "experts": list(experts),
                "relative_distance": _distances(large, experts)}
        if self.method == "ties":
            info["density"] = float(self.density)
        return TrainingData(X, y, soft_targets=np.concatenate(parts_t), info={"merge": info}, labelled_mask=labelled)

    def initial_module(self, ctx: FeedbackContext) -> nn.Module:
        large, experts, suite = ctx.large, ctx.experts, ctx.suite
        lam = self._lam()
        module = copy.deepcopy(large.module_)
        params = [name for name, _ in module.named_parameters()]
        buffers = [name for name, _ in module.named_buffers()]
        base = {k: v.detach().clone() for k, v in module.state_dict().items()}
        states = [{k: v.detach() for k, v in e.module_.state_dict().items()} for e in experts.values()]
        merged = _merge_parameters({k: base[k] for k in params}, [{k: s[k] for k in params} for s in states],
                                   self.method, lam, self.density)
        if buffers:
            merged.update(average_weights([{k: s[k] for k in buffers} for s in states]))
        module.load_state_dict({**base, **merged})
        if self.bn_stats == "recompute":
            recompute_batchnorm(module, _unlabelled(experts, suite))
        return module.eval()


def _distances(large: Any, experts: Mapping[str, Any]) -> dict[str, float]:
    """Each expert's relative distance from the large model's parameters; warn about foreign ones."""
    params = [name for name, _ in large.module_.named_parameters()]
    base = large.module_.state_dict()
    out = {}
    for name, expert in experts.items():
        theirs = expert.module_.state_dict()
        out[name] = relative_distance({k: base[k] for k in params}, {k: theirs[k] for k in params})
    foreign = {n: round(d, 3) for n, d in out.items() if d > FOREIGN_DISTANCE}
    if foreign:
        logger.warning(
            "merge: the experts %s lie far from the large model's weights (relative distance > %s), so they were "
            "probably not fine-tuned from it and merging their weights is unlikely to work; fine-tune copies of the "
            "large model (crossfeed.spawn.finetune) or use a distilling strategy (multi_teacher_kd)",
            foreign, FOREIGN_DISTANCE,
        )
    return out


def _merge_parameters(base: dict[str, torch.Tensor], states: list[dict[str, torch.Tensor]], method: str,
                      lam: float, density: float) -> dict[str, torch.Tensor]:
    if method == "task_arithmetic":
        return task_arithmetic(base, states, lam)
    if method == "ties":
        return ties_merge(base, states, lam, density)
    mean = average_weights(task_vectors(base, states))  # the mean task vector
    return {k: base[k] + lam * mean[k] for k in base}


def _unlabelled(experts: Mapping[str, Any], suite: DomainSuite) -> np.ndarray:
    """The general training inputs and every expert's domain's field inputs, shape (n, n_features)."""
    _, X_gen, _ = general_data(suite)
    parts = [flat(X_gen)] + [flat(suite[n].X_field) for n in experts
                             if suite[n].X_field is not None and len(suite[n].X_field)]
    return np.concatenate(parts)


def recompute_batchnorm(module: nn.Module, X: np.ndarray, batch_size: int = _BN_BATCH) -> nn.Module:
    """Re-estimate every BatchNorm layer's running statistics of ``module`` on inputs ``X``, in place.

    The statistics become the average of the per-batch statistics over ``X`` (momentum ``None``),
    from forward passes in training mode without gradients (:func:`torch.optim.swa_utils.update_bn`).
    A network without BatchNorm is left as it is.

    Parameters
    ----------
    module : nn.Module.
    X : array of shape (n_samples, n_features).
    batch_size : int.

    Returns
    -------
    the same module.

    Example
    -------
    >>> net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    >>> _ = recompute_batchnorm(net, np.ones((8, 3), dtype="float32"))
    >>> net[1].num_batches_tracked.item()
    1
    """
    tensor = torch.as_tensor(np.asarray(X, dtype=np.float32))
    device = next(module.parameters()).device
    with torch.no_grad():
        update_bn(torch.split(tensor, batch_size), module, device=device)
    return module
