"""Compose trained models into one servable mixture of experts.

- :func:`compose_experts`: the large model and the domain experts behind a learned gate
  (architecture ``"moe"``, :class:`crossfeed.models.GatedMixture`). The members keep their
  trained weights, frozen; only the gate learns, on labelled validation data (the mixture's
  log-likelihood, Jacobs et al. 1991), on field data whose domain is known (the gate learns to
  send a domain's samples to that domain's member), or on both, plus the Switch Transformer's
  load-balancing term. With ``top_k=1`` each sample runs the gate and one member.
- :func:`weight_ensemble`: fine-tuned copies of one base model merged into one network whose
  chosen linear layers mix the copies' task vectors per sample (WEMoE, Tang et al. 2024, arXiv
  2402.00433; architecture ``"wemoe"``). Everything else holds task-arithmetic weights; the
  routers learn on labelled data (cross-entropy) or, as in the paper, on unlabelled data by
  entropy minimisation.

Both return a fitted :class:`~crossfeed.models.TorchClassifier`, so the result predicts, saves
with :func:`~crossfeed.models.save_model` and exports to ONNX like any model.
:func:`routing_shares` and :func:`mixture_flops_per_sample` measure what the routing costs.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from crossfeed._validation import check_int, check_labels, check_members, encode_labels
from crossfeed.exceptions import LabelMismatchError, ValidationError
from crossfeed.models import (
    GatedMixture,
    TorchClassifier,
    WeightEnsemblingMoE,
    load_balancing_loss,
    mixture_log_proba,
)

__all__ = ["compose_experts", "mixture_flops_per_sample", "routing_shares", "weight_ensemble"]

Members = Sequence[tuple[str, TorchClassifier]] | Mapping[str, TorchClassifier]


def _pairs(members: Members, what: str, minimum: int = 2) -> list[tuple[str, TorchClassifier]]:
    pairs = check_members(list(members.items()) if isinstance(members, Mapping) else members, owner=what)
    if len(pairs) < minimum:
        raise ValidationError(f"{what} needs at least {minimum} models; got {len(pairs)}")
    for name, model in pairs:
        if not isinstance(model, TorchClassifier) or not hasattr(model, "module_"):
            raise ValidationError(f"{what}: member {name!r} must be a fitted TorchClassifier; got {type(model).__name__}")
        if not isinstance(model.module, str):
            raise ValidationError(
                f"{what}: member {name!r} was built from a {type(model.module).__name__}, not a registered architecture "
                "name, so the composed model could not be saved or rebuilt; fit it with module='<name>'"
            )
    first_name, first = pairs[0]
    for name, model in pairs[1:]:
        if not np.array_equal(model.classes_, first.classes_):
            raise LabelMismatchError(
                f"{what}: member {name!r} predicts classes {model.classes_.tolist()} but {first_name!r} predicts "
                f"{first.classes_.tolist()}; a gate mixes the members' probabilities class by class, so every member "
                "needs the same label set in the same order (refit the odd one on the shared classes)"
            )
        if model.n_features_in_ != first.n_features_in_:
            raise ValidationError(
                f"{what}: member {name!r} reads {model.n_features_in_} features but {first_name!r} reads "
                f"{first.n_features_in_}; every member must read the same input"
            )
    return pairs


def _shell(template: TorchClassifier, architecture: str, kwargs: dict[str, Any], module: nn.Module,
           history: list[dict[str, Any]]) -> TorchClassifier:
    """A fitted TorchClassifier around ``module`` with ``template``'s classes and input shape."""
    model = TorchClassifier(architecture, module_kwargs=kwargs, device="cpu",
                            random_state=template.random_state, batch_size=template.batch_size)
    model.classes_ = template.classes_.copy()
    model.n_features_in_ = template.n_features_in_
    model.input_shape_ = tuple(getattr(template, "input_shape_", (template.n_features_in_,)))
    model.module_ = module.cpu().eval()
    model.history_ = history
    model.best_epoch_ = len(history)
    return model


def _flat(model: TorchClassifier, X: Any) -> np.ndarray:
    return model._validate(X, reset=False).reshape(-1, model.n_features_in_)  # shape- and NaN-checked


def _labels(model: TorchClassifier, y: Any, n: int, name: str) -> np.ndarray:
    return encode_labels(check_labels(y, n, name=name), model.classes_, name=name, context="the members' classes")


def _check_nonneg(value: Any, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not np.isfinite(value) or value < 0:
        raise ValidationError(f"{name} must be a finite number >= 0; got {value!r}")
    return float(value)


def _batches(n: int, batch_size: int, rng: np.random.Generator) -> list[np.ndarray]:
    order = rng.permutation(n)
    return [order[i:i + batch_size] for i in range(0, n, batch_size)]


def compose_experts(
    members: Members,
    X: Any = None,
    y: Any = None,
    *,
    X_routed: Any = None,
    routed_to: Any = None,
    top_k: int = 1,
    gate_hidden: int = 64,
    gate: Mapping[str, Any] | None = None,
    balance: float = 0.01,
    epochs: int = 60,
    batch_size: int = 128,
    lr: float = 3e-3,
    weight_decay: float = 1e-4,
    random_state: int | None = 0,
) -> TorchClassifier:
    """The members behind one learned gate, as one servable model (architecture ``"moe"``).

    Parameters
    ----------
    members : (name, fitted TorchClassifier) pairs or a dict, e.g. the large model and the domain
        experts. They must share classes and input; their weights are copied and frozen.
    X, y : labelled data the gate learns on (e.g. every domain's validation split): it maximises
        the mixture's likelihood ``log sum_m g_m(x) p_m(y | x)``, which sends each sample to the
        members that give its label the highest probability.
    X_routed, routed_to : unlabelled data whose right member is known, e.g. each domain's field
        data with the name of that domain's member: the gate also learns the cross-entropy of
        ``g(x)`` against that member. Give ``X, y``, ``X_routed, routed_to`` or both.
    top_k : members each sample is routed to at inference.
    gate_hidden : hidden units of an MLP gate (0: linear).
    gate : {"architecture": name, "kwargs": {...}}, optional: a registered architecture as the gate
        (e.g. ``cnn1d`` tiny for signals, ``cnn2d`` tiny for images) instead of the MLP.
    balance : weight of the load-balancing term (Fedus et al. 2021); 0 switches it off.
    epochs, batch_size, lr, weight_decay, random_state : gate training (Adam).

    Returns
    -------
    TorchClassifier with ``module="moe"``; ``module_kwargs["member_names"]`` lists the members in
    gate order and ``history_`` the gate's loss per epoch.

    The members' log-probabilities on the training rows are computed once (they are frozen), so
    training the gate costs little more than fitting a small classifier.
    """
    pairs = _pairs(members, "compose_experts")
    names = [n for n, _ in pairs]
    first = pairs[0][1]
    check_int(top_k, "top_k", 1)
    if top_k > len(pairs):
        raise ValidationError(f"top_k={top_k} but there are only {len(pairs)} members; choose 1..{len(pairs)}")
    check_int(gate_hidden, "gate_hidden", 0)
    check_int(epochs, "epochs", 1)
    check_int(batch_size, "batch_size", 1)
    balance = _check_nonneg(balance, "balance")
    if (X is None) != (y is None):
        raise ValidationError("pass X and y together (labelled rows for the gate), or neither")
    if (X_routed is None) != (routed_to is None):
        raise ValidationError("pass X_routed and routed_to together (rows and the member each belongs to), or neither")
    if X is None and X_routed is None:
        raise ValidationError(
            "the gate needs data: labelled rows (X, y), e.g. the domains' validation splits, and/or rows whose "
            "member is known (X_routed, routed_to), e.g. each domain's field data with its expert's name"
        )
    parts: list[np.ndarray] = []
    y_idx = route_idx = None
    if X is not None:
        Xl = _flat(first, X)
        y_idx = _labels(first, y, len(Xl), "y")
        parts.append(Xl)
    if X_routed is not None:
        Xr = _flat(first, X_routed)
        targets = np.asarray(routed_to).reshape(-1)
        if len(targets) != len(Xr):
            raise ValidationError(f"routed_to has {len(targets)} entries but X_routed has {len(Xr)} rows")
        unknown = sorted({str(t) for t in targets} - set(names))
        if unknown:
            raise ValidationError(f"routed_to names members {unknown} that are not among {names}")
        route_idx = np.array([names.index(str(t)) for t in targets])
        parts.append(Xr)
    X_all = np.concatenate(parts).astype(np.float32)
    n_labelled = 0 if y_idx is None else len(y_idx)

    spec = [{"architecture": m.module, "kwargs": copy.deepcopy(dict(m.module_kwargs or {}))} for _, m in pairs]
    kwargs = {"members": spec, "top_k": int(top_k), "gate_hidden": int(gate_hidden),
              "gate": None if gate is None else copy.deepcopy(dict(gate)), "member_names": names}
    seed = 0 if random_state is None else int(random_state)
    torch.manual_seed(seed)
    module = GatedMixture(first.n_features_in_, len(first.classes_), **kwargs)
    for slot, (_, member) in zip(module.members, pairs):
        slot.load_state_dict(member.module_.state_dict())
    module.members.requires_grad_(False)
    module.eval()
    Xt = torch.as_tensor(X_all)
    with torch.no_grad():
        module.gate.scale.mean.copy_(Xt.mean(dim=0))
        module.gate.scale.std.copy_(Xt.std(dim=0).clamp_min(1e-6))
        member_lp = torch.stack([torch.log_softmax(torch.as_tensor(m.predict_logits(X_all)), dim=-1)
                                 for _, m in pairs], dim=1)  # (n, members, classes)
    y_t = None if y_idx is None else torch.as_tensor(y_idx, dtype=torch.long)
    r_t = None if route_idx is None else torch.as_tensor(route_idx, dtype=torch.long)
    opt = torch.optim.Adam(module.gate.parameters(), lr=lr, weight_decay=weight_decay)
    rng = np.random.default_rng(seed)
    history = []
    module.gate.train()
    for epoch in range(epochs):
        total, seen = 0.0, 0
        for batch in _batches(len(X_all), batch_size, rng):
            b = torch.as_tensor(batch)
            logits = module.gate(Xt[b])
            log_g = torch.log_softmax(logits, dim=-1)
            loss = balance * load_balancing_loss(log_g.exp())
            labelled = b < n_labelled  # labelled rows come first in X_all, routed rows after them
            if labelled.any():
                mix = mixture_log_proba(log_g[labelled], member_lp[b[labelled]])
                loss = loss + nn.functional.nll_loss(mix, y_t[b[labelled]]) * labelled.float().mean()
            if not labelled.all():
                routed = ~labelled
                loss = loss + nn.functional.nll_loss(log_g[routed], r_t[b[routed] - n_labelled]) * routed.float().mean()
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
            seen += len(batch)
        history.append({"epoch": epoch + 1, "gate_loss": total / seen})
    module.eval()
    return _shell(first, "moe", kwargs, module, history)


def routing_shares(model: TorchClassifier, X: Any) -> dict[str, float]:
    """Share of the samples of ``X`` whose top-1 member is each member of a composed ``"moe"`` model."""
    module = _moe_module(model)
    with torch.no_grad():
        gate = module.gate(torch.as_tensor(_flat(model, X)))
    counts = np.bincount(gate.argmax(dim=-1).numpy(), minlength=len(module.members))
    names = (model.module_kwargs or {}).get("member_names") or [f"member{i}" for i in range(len(counts))]
    return {str(n): float(c / counts.sum()) for n, c in zip(names, counts)}


def mixture_flops_per_sample(model: TorchClassifier, X: Any) -> float:
    """FLOPs per sample of a composed model over all of ``X``, as routed (sparse dispatch).

    ``crossfeed.models.flops_per_sample`` counts one sample; a mixture's cost depends on where
    each sample goes, so this counts the whole batch in ``eval()`` mode (the gate on every row,
    each member only on the rows routed to it) and divides by its size.
    """
    module = model.module_.cpu().eval()
    Xt = torch.as_tensor(_flat(model, X))
    with torch.no_grad(), FlopCounterMode(display=False) as counter:
        module(Xt)
    return float(counter.get_total_flops()) / len(Xt)


def _moe_module(model: TorchClassifier) -> Any:
    module = getattr(model, "module_", None)
    if not isinstance(module, GatedMixture):
        raise ValidationError(f"expected a model made by compose_experts (module 'moe'); got {type(module).__name__}")
    return module


def weight_ensemble(
    base: TorchClassifier,
    finetuned: Members,
    X: Any,
    y: Any = None,
    *,
    upscale: Sequence[str] | None = None,
    router_hidden: int = 32,
    lam: float = 0.3,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-3,
    random_state: int | None = 0,
) -> TorchClassifier:
    """Merge fine-tuned copies of ``base`` into one weight-ensembling MoE (architecture ``"wemoe"``).

    Parameters
    ----------
    base : the fitted model the copies were fine-tuned from (task vector ``tau_i = theta_i - theta_base``).
    finetuned : (name, TorchClassifier) pairs or a dict: copies with ``base``'s architecture.
    X, y : rows the routers learn on. With ``y``: cross-entropy on labelled rows (e.g. the domains'
        validation splits); without: entropy minimisation on unlabelled rows (the paper's
        test-time adaptation; e.g. the domains' field data).
    upscale : names of linear layers that mix task vectors per sample (default: every linear
        layer of the base). The other parameters and buffers are ``theta_base + lam · sum_i tau_i``.
    router_hidden, lam : router size and initial scale (an untrained WEMoE is task arithmetic).
    epochs, batch_size, lr, random_state : router training (Adam); nothing but the routers learns.
    """
    copies = _pairs(finetuned, "weight_ensemble", minimum=1)
    _pairs([("base", base), *copies], "weight_ensemble", minimum=1)
    base_state = base.module_.state_dict()
    for name, model in copies:
        state = model.module_.state_dict()
        if model.module != base.module or {k: tuple(v.shape) for k, v in state.items()} != \
                {k: tuple(v.shape) for k, v in base_state.items()}:
            raise ValidationError(
                f"weight_ensemble: {name!r} is not a fine-tuned copy of the base (architecture {model.module!r} with "
                f"{len(state)} tensors vs {base.module!r} with {len(base_state)}); task vectors need the same "
                "architecture and shapes (spawn the experts with crossfeed.spawn.finetune)"
            )
    linear = [n for n, m in base.module_.named_modules() if isinstance(m, nn.Linear)]
    layers = list(linear if upscale is None else upscale)
    check_int(router_hidden, "router_hidden", 0)
    check_int(epochs, "epochs", 1)
    check_int(batch_size, "batch_size", 1)
    lam = _check_nonneg(lam, "lam")
    spec = {"architecture": base.module, "kwargs": copy.deepcopy(dict(base.module_kwargs or {}))}
    kwargs = {"base": spec, "n_tasks": len(copies), "upscale": layers, "router_hidden": int(router_hidden),
              "lam": lam, "member_names": [n for n, _ in copies]}
    seed = 0 if random_state is None else int(random_state)
    torch.manual_seed(seed)
    module = WeightEnsemblingMoE(base.n_features_in_, len(base.classes_), **kwargs)
    states = [m.module_.state_dict() for _, m in copies]
    target = module.net.state_dict()
    merged: dict[str, torch.Tensor] = {}
    for key, value in base_state.items():
        layer, _, leaf = key.rpartition(".")
        if layer in layers:
            stacked = torch.stack([s[key] - value for s in states])
            merged[f"{layer}.{leaf}"] = value
            merged[f"{layer}.task_{leaf}"] = stacked
        elif value.is_floating_point():
            merged[key] = value + lam * sum(s[key] - value for s in states)
        else:
            merged[key] = value
    for key in target:
        if key not in merged:
            merged[key] = target[key]  # the routers' fresh weights
    module.net.load_state_dict(merged)
    module.requires_grad_(False)
    routers = [p for n, p in module.named_parameters() if ".router." in n]
    for p in routers:
        p.requires_grad_(True)
    Xt = torch.as_tensor(_flat(base, X))
    y_t = None if y is None else torch.as_tensor(_labels(base, y, len(Xt), "y"), dtype=torch.long)
    module.eval()  # BatchNorm keeps its merged statistics; only the routers learn
    opt = torch.optim.Adam(routers, lr=lr)
    rng = np.random.default_rng(seed)
    history = []
    for epoch in range(epochs):
        total = 0.0
        for batch in _batches(len(Xt), batch_size, rng):
            b = torch.as_tensor(batch)
            logits = module(Xt[b])
            if y_t is None:
                logp = torch.log_softmax(logits, dim=-1)
                loss = -(logp.exp() * logp).sum(dim=-1).mean()
            else:
                loss = nn.functional.cross_entropy(logits, y_t[b])
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += float(loss.detach()) * len(batch)
        history.append({"epoch": epoch + 1, "router_loss": total / len(Xt)})
    module.requires_grad_(True)
    return _shell(base, "wemoe", kwargs, module, history)
