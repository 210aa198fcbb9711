"""Strategy parameters declared once, as data, and checked before any training.

A strategy lists its parameters and their constraints in ``params`` (the way scikit-learn's
``_parameter_constraints`` does); its ``__init__`` stores the values unchanged. ``check_params``
validates a mapping of keyword arguments against the declaration: unknown names get a "did you
mean", missing required ones are named, each value is checked against its :class:`Param`. The
config loader calls it when a YAML file loads, so ``temperature: -1.0`` fails in milliseconds
instead of after the large model has trained.

Example
-------
>>> spec = {"temperature": Param(float, low=0.0, low_open=True), "method": Param(str, choices=("a", "b"))}
>>> check_params(spec, {"temperature": 2, "method": "a"}, owner="demo")
{'temperature': 2.0, 'method': 'a'}
>>> check_params(spec, {"temprature": 2}, owner="demo")
Traceback (most recent call last):
...
crossfeed.exceptions.ValidationError: demo has no parameter 'temprature'; did you mean 'temperature'? Its parameters: temperature, method
"""

from __future__ import annotations

import difflib
import math
import numbers
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from crossfeed.exceptions import ValidationError

__all__ = ["Param", "check_params"]

_KINDS = (bool, int, float, str, list, dict)


@dataclass(frozen=True)
class Param:
    """One parameter's constraint.

    Parameters
    ----------
    kind : bool, int, float, str, list or dict. ``float`` accepts any real number (and numeric
        strings such as ``"3e-3"``, which YAML 1.1 reads as strings); ``int`` accepts integers
        (numpy's too), never bools.
    low, high : bounds for numbers (inclusive unless ``low_open`` / ``high_open``).
    choices : allowed values (for strings).
    none : True when ``None`` is allowed (it then means the documented default behaviour).
    items : for lists, the kind of every item (str, int, float).
    help : one line on what the parameter does, shown in errors.
    """

    kind: type
    low: float | None = None
    high: float | None = None
    low_open: bool = False
    high_open: bool = False
    choices: Sequence[Any] | None = None
    none: bool = False
    items: type | None = None
    help: str = ""

    def __post_init__(self) -> None:
        if self.kind not in _KINDS:
            raise TypeError(f"Param kind must be one of {[k.__name__ for k in _KINDS]}; got {self.kind!r}")

    def describe(self) -> str:
        """The constraint in words, e.g. ``a number > 0`` or ``one of 'a', 'b'``."""
        if self.choices is not None:
            text = "one of " + ", ".join(repr(c) for c in self.choices)
        else:
            text = {bool: "true or false", int: "an integer", float: "a number", str: "a string",
                    list: "a list", dict: "a mapping"}[self.kind]
            if self.items is not None:
                text += f" of {self.items.__name__}"
            bounds = []
            if self.low is not None:
                bounds.append(f"{'>' if self.low_open else '>='} {self.low:g}")
            if self.high is not None:
                bounds.append(f"{'<' if self.high_open else '<='} {self.high:g}")
            if bounds:
                text += " " + " and ".join(bounds)
        return text + (" (or null)" if self.none else "")

    def check(self, name: str, value: Any, owner: str) -> Any:
        """``value`` normalised (ints to float for ``float``), or a ValidationError naming ``owner.name``."""
        if value is None:
            if self.none:
                return None
            raise self._error(name, value, owner)
        out = self._coerce(value)
        if out is _BAD:
            raise self._error(name, value, owner)
        if self.choices is not None and out not in self.choices:
            close = difflib.get_close_matches(str(out), [str(c) for c in self.choices], n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ValidationError(f"{owner}: {name} must be {self.describe()}; got {value!r}{hint}")
        if isinstance(out, float | int) and not isinstance(out, bool):
            if (self.low is not None and (out <= self.low if self.low_open else out < self.low)) or (
                self.high is not None and (out >= self.high if self.high_open else out > self.high)
            ):
                raise self._error(name, value, owner)
        return out

    def _coerce(self, value: Any) -> Any:
        if self.kind is bool:
            return value if isinstance(value, bool) else _BAD
        if self.kind is int:
            ok = isinstance(value, numbers.Integral) and not isinstance(value, bool)
            return int(value) if ok else _BAD
        if self.kind is float:
            if isinstance(value, bool):
                return _BAD
            try:
                out = float(value)
            except (TypeError, ValueError):
                return _BAD
            return out if math.isfinite(out) else _BAD
        if self.kind is str:
            return value if isinstance(value, str) else _BAD
        if self.kind is list:
            if isinstance(value, str | bytes) or not isinstance(value, Sequence):
                return _BAD
            items = list(value)
            if self.items is not None:
                item = Param(self.items)
                coerced = [item._coerce(v) for v in items]
                return _BAD if any(c is _BAD for c in coerced) else coerced
            return items
        return dict(value) if isinstance(value, Mapping) else _BAD

    def _error(self, name: str, value: Any, owner: str) -> ValidationError:
        hint = f" ({self.help})" if self.help else ""
        return ValidationError(f"{owner}: {name} must be {self.describe()}{hint}; got {value!r}")


_BAD = object()


def check_params(spec: Mapping[str, Param], values: Mapping[str, Any], *, owner: str,
                 required: Sequence[str] = ()) -> dict[str, Any]:
    """Check ``values`` against ``spec``; return them normalised (only the keys given).

    Raises ValidationError for an unknown name (with the closest known one), a missing
    ``required`` name, or a value that breaks its constraint; the message names ``owner``.
    """
    if not isinstance(values, Mapping):
        raise ValidationError(f"{owner}: parameters must be a mapping of name -> value; got {type(values).__name__}")
    known = list(spec)
    out: dict[str, Any] = {}
    for name, value in values.items():
        if name not in spec:
            close = difflib.get_close_matches(str(name), known, n=1, cutoff=0.5)
            hint = f"; did you mean {close[0]!r}?" if close else "."
            raise ValidationError(f"{owner} has no parameter {name!r}{hint} Its parameters: {', '.join(known) or 'none'}")
        out[name] = spec[name].check(name, value, owner)
    missing = [n for n in required if n not in values]
    if missing:
        raise ValidationError(f"{owner}: missing required parameter(s) {missing}")
    return out
