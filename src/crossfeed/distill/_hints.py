"""FitNets hints: capture a layer's output in teacher and student, project, compare.

Romero et al. (2015), "FitNets: Hints for Thin Deep Nets", arXiv 1412.6550. A *hint* pairs a
teacher layer with a student layer (by name, as in ``dict(module.named_modules())``). Forward
hooks capture both outputs; when their widths differ a learned projection maps the student's
features to the teacher's shape (a 1x1 convolution for feature maps, a linear layer for vectors).
FitNets trains the hint stage first and then distils; here the hint term is added to the
distillation loss and trained jointly (as torchdistill's ``FitNet`` loss does), which needs one
training run instead of two.
"""

from __future__ import annotations

import difflib
from collections.abc import Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from crossfeed.distill._kd import hint_loss
from crossfeed.exceptions import UnknownNameError, ValidationError


def check_hint_pairs(hints: Any) -> list[tuple[str, str]]:
    """Validate ``hints`` as a list of ``(teacher_layer, student_layer)`` name pairs."""
    if hints is None:
        return []
    if isinstance(hints, str) or not isinstance(hints, Sequence):
        raise ValidationError(
            f"hints must be a list of (teacher_layer, student_layer) pairs; got {hints!r}. "
            "Example: hints=[('features.8', 'features.4')]"
        )
    pairs = []
    for item in hints:
        if not (isinstance(item, tuple | list) and len(item) == 2 and all(isinstance(n, str) for n in item)):
            raise ValidationError(
                f"each hint must be a (teacher_layer, student_layer) pair of layer names; got {item!r}"
            )
        pairs.append((item[0], item[1]))
    return pairs


def find_layer(module: nn.Module, name: str, *, owner: str) -> nn.Module:
    """Return the submodule called ``name`` or raise ``UnknownNameError`` listing the names."""
    layers = dict(module.named_modules())
    if name in layers and name != "":
        return layers[name]
    known = [n for n in layers if n]
    close = difflib.get_close_matches(name, known, n=1)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise UnknownNameError(f"the {owner} has no layer {name!r}; its layers are: {', '.join(known)}{hint}")


def _first_tensor(output: Any) -> torch.Tensor:
    if isinstance(output, torch.Tensor):
        return output
    if isinstance(output, tuple | list) and output and isinstance(output[0], torch.Tensor):
        return output[0]  # LSTM returns (output, (h, c))
    raise ValidationError(f"a hint layer must output a tensor; it returned {type(output).__name__}")


class FeatureCapture:
    """Record the latest output of some layers of a module through forward hooks."""

    def __init__(self, module: nn.Module, names: Sequence[str], *, owner: str) -> None:
        self.outputs: dict[str, torch.Tensor] = {}
        self._handles = []
        for name in dict.fromkeys(names):
            layer = find_layer(module, name, owner=owner)
            self._handles.append(layer.register_forward_hook(self._recorder(name)))

    def _recorder(self, name: str):  # type: ignore[no-untyped-def]
        def hook(_module: nn.Module, _inputs: Any, output: Any) -> None:
            self.outputs[name] = _first_tensor(output)

        return hook

    def remove(self) -> None:
        for handle in self._handles:
            handle.remove()
        self._handles = []


def _as_channels(feat: torch.Tensor) -> torch.Tensor:
    """(batch, C) stays; (batch, C, *spatial) becomes (batch, C, prod(spatial))."""
    if feat.ndim == 2:
        return feat
    if feat.ndim < 2:
        raise ValidationError(f"hint features need a batch and a feature axis; got shape {tuple(feat.shape)}")
    return feat.reshape(feat.shape[0], feat.shape[1], -1)


def align(student: torch.Tensor, teacher: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Bring two feature tensors to one layout (before the channel projection).

    Feature maps are flattened to (batch, C, L); two maps of different length are average-pooled
    to the shorter length; a map compared with a vector is mean-pooled over its length.
    """
    s, t = _as_channels(student), _as_channels(teacher)
    if s.ndim == 3 and t.ndim == 3:
        length = min(s.shape[2], t.shape[2])
        if s.shape[2] != length:
            s = F.adaptive_avg_pool1d(s, length)
        if t.shape[2] != length:
            t = F.adaptive_avg_pool1d(t, length)
    elif s.ndim == 3:
        s = s.mean(dim=2)
    elif t.ndim == 3:
        t = t.mean(dim=2)
    return s, t


def make_projection(student: torch.Tensor, teacher: torch.Tensor) -> nn.Module:
    """A learned map from the student's channels to the teacher's, or identity if they match.

    ``student`` and ``teacher`` are aligned features (see :func:`align`).
    """
    c_s, c_t = student.shape[1], teacher.shape[1]
    if c_s == c_t:
        return nn.Identity()
    if student.ndim == 3:
        return nn.Conv1d(c_s, c_t, kernel_size=1)
    return nn.Linear(c_s, c_t)


def hint_term(projection: nn.Module, student: torch.Tensor, teacher: torch.Tensor) -> torch.Tensor:
    """FitNets loss of one hint pair: ``hint_loss(projection(student), teacher)`` after alignment."""
    s, t = align(student, teacher)
    return hint_loss(projection(s), t.detach())
