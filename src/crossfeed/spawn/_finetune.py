"""Fine-tune a fitted model on one domain: head only, partially or fully unfrozen.

Transfer learning by fine-tuning (Yosinski et al. 2014, "How transferable are features in deep
neural networks?", arXiv 1411.1792): the early layers of a network learn general features, the
late ones task-specific ones, so a model moved to a new domain retrains its late layers first.
``head_epochs`` gives the two-stage schedule of gradual unfreezing (head first, then more; Howard
& Ruder 2018, ULMFiT, arXiv 1801.06146). Early stopping on the domain's validation split keeps
the best epoch.
"""

from __future__ import annotations

import copy
import difflib
import logging
from collections.abc import Sequence
from typing import Any

from torch import nn

from crossfeed.data import Domain
from crossfeed.exceptions import UnknownNameError, ValidationError
from crossfeed.models import TorchClassifier, check_torch_model, warm_fit

__all__ = ["FREEZE_MODES", "finetune", "frozen_parameters"]

logger = logging.getLogger(__name__)

#: The named freezing modes of :func:`finetune` (a list of layer-name prefixes works too).
FREEZE_MODES = ("head", "partial", "none")


def _param_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    """Leaf-most modules that own parameters, in registration (roughly: forward) order."""
    return [(name, m) for name, m in module.named_modules() if any(True for _ in m.parameters(recurse=False))]


def frozen_parameters(module: nn.Module, freeze: str | Sequence[str]) -> list[str]:
    """Names of the parameters that ``freeze`` keeps fixed.

    - ``"head"``: everything but the last layer with parameters (train the head only).
    - ``"partial"``: the first half of the layers with parameters (train the later half).
    - ``"none"``: nothing (train everything).
    - a list of prefixes of module or parameter names (``["features.0", "features.1"]``).

    Raises ``UnknownNameError`` (listing the layer names) for a prefix that matches nothing.

    Example
    -------
    >>> from crossfeed.models import MLP
    >>> frozen_parameters(MLP(4, 2, hidden=(8,)), "head")
    ['body.0.weight', 'body.0.bias']
    """
    names = [n for n, _ in module.named_parameters()]
    layers = _param_layers(module)
    if isinstance(freeze, str):
        if freeze == "none":
            return []
        if freeze == "head":
            head = layers[-1][0]
            return [n for n in names if not _under(n, head)]
        if freeze == "partial":
            early = [name for name, _ in layers[: len(layers) // 2]]
            return [n for n in names if any(_under(n, e) for e in early)]
        raise ValidationError(
            f"freeze must be one of {FREEZE_MODES} or a list of layer-name prefixes; got {freeze!r}"
        )
    if not isinstance(freeze, Sequence) or not all(isinstance(p, str) for p in freeze):
        raise ValidationError(f"freeze must be one of {FREEZE_MODES} or a list of layer-name prefixes; got {freeze!r}")
    frozen: list[str] = []
    for prefix in freeze:
        matched = [n for n in names if _under(n, prefix)]
        if not matched:
            known = [name for name, _ in module.named_modules() if name]
            close = difflib.get_close_matches(prefix, known, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownNameError(f"no layer or parameter named {prefix!r} to freeze; layers: {', '.join(known)}{hint}")
        frozen += [n for n in matched if n not in frozen]
    return frozen


def _under(param_name: str, prefix: str) -> bool:
    return prefix == "" or param_name == prefix or param_name.startswith(prefix + ".")


def _freeze(module: nn.Module, freeze: str | Sequence[str]) -> nn.Module:
    module = copy.deepcopy(module)
    frozen = set(frozen_parameters(module, freeze))
    for name, p in module.named_parameters():
        p.requires_grad_(name not in frozen)
    return module


def finetune(
    model: TorchClassifier,
    domain: Domain,
    *,
    freeze: str | Sequence[str] = "none",
    head_epochs: int = 0,
    epochs: int = 10,
    lr: float | None = None,
    patience: int | None = 3,
    random_state: int | None = None,
) -> TorchClassifier:
    """Fine-tune a copy of a fitted model on ``domain``'s train split, early-stopped on its val split.

    Parameters
    ----------
    model : fitted TorchClassifier; not modified.
    domain : :class:`crossfeed.data.Domain` with the same label set as the model.
    freeze : "head" (train only the last layer), "partial" (freeze the first half of the layers),
        "none" (train everything), or a list of layer-name prefixes to freeze. See
        :func:`frozen_parameters`. BatchNorm running statistics of frozen layers still adapt to
        the domain in training mode (as in AdaBN, Li et al. 2016, arXiv 1603.04779); their
        weights stay fixed.
    head_epochs : int, default 0; epochs of head-only training before the main stage.
    epochs : int, epochs of the main stage (an upper bound with ``patience``).
    lr : float, optional; default: the model's ``lr``.
    patience : int or None; early stopping on the domain's validation loss (best epoch kept).
    random_state : int, optional; default: the model's.

    Returns
    -------
    TorchClassifier, a new fitted model (every parameter trainable again).

    Example
    -------
    >>> from crossfeed.data import load_suite
    >>> from crossfeed.models import TorchClassifier
    >>> suite = load_suite("mnist1d", seed=0, n_per_domain=200)
    >>> base = TorchClassifier("mlp", epochs=2, random_state=0).fit(*suite.pooled("train"))
    >>> tuned = finetune(base, suite["noisy"], freeze="head", epochs=2)
    >>> tuned is not base and tuned.classes_.tolist() == base.classes_.tolist()
    True
    """
    model = check_torch_model(model, owner="finetune")
    if not isinstance(domain, Domain):
        raise ValidationError(f"domain must be a crossfeed.data.Domain; got {type(domain).__name__}")
    if not (isinstance(head_epochs, int) and head_epochs >= 0):
        raise ValidationError(f"head_epochs must be a non-negative integer; got {head_epochs!r}")
    frozen_parameters(model.module_, freeze)  # validate before any training
    params: dict[str, Any] = {"patience": patience}
    if lr is not None:
        params["lr"] = lr
    if random_state is not None:
        params["random_state"] = random_state
    data = {"X": domain.X_train, "y": domain.y_train, "X_val": domain.X_val, "y_val": domain.y_val}
    current = model
    if head_epochs > 0:
        logger.debug("finetune on %r: %d head-only epochs", domain.name, head_epochs)
        current = warm_fit(current, data["X"], data["y"], module=_freeze(current.module_, "head"),
                           X_val=data["X_val"], y_val=data["y_val"], epochs=head_epochs, **params)
    logger.debug("finetune on %r: up to %d epochs, freeze=%r", domain.name, epochs, freeze)
    tuned = warm_fit(current, data["X"], data["y"], module=_freeze(current.module_, freeze),
                     X_val=data["X_val"], y_val=data["y_val"], epochs=epochs, **params)
    for p in tuned.module_.parameters():
        p.requires_grad_(True)
    return tuned
