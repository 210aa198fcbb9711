"""Exceptions raised by crossfeed.

Every exception is a :class:`CrossfeedError` *and* the builtin a caller would naturally catch,
so ``except ValueError`` keeps working::

    CrossfeedError(Exception)
    ├── ValidationError(CrossfeedError, ValueError)     bad arrays, shapes, NaN/inf, bad arguments
    │   ├── LabelMismatchError                           members / teacher and student disagree on labels
    │   ├── NonNumericInputError(..., TypeError)         X holds strings or other non-numbers
    │   └── EmptyDataError                               a domain or split with no samples
    ├── NotFittedError(CrossfeedError, ValueError)       a model used before ``fit`` (sklearn's too)
    ├── UnknownNameError(CrossfeedError, KeyError)       unknown registry / suite / layer name
    ├── DuplicateNameError(CrossfeedError, ValueError)   a name registered twice
    ├── ModelFileError(CrossfeedError, ValueError)       a model file that is missing or malformed
    ├── MissingDataError(CrossfeedError, FileNotFoundError)  a dataset's files are not on this machine
    └── MissingDependencyError(CrossfeedError, ImportError)  an optional extra is not installed

Messages say what was expected, what came, and how to fix it.
"""

from __future__ import annotations

from sklearn.exceptions import NotFittedError as _SklearnNotFittedError

__all__ = [
    "CrossfeedError",
    "DuplicateNameError",
    "EmptyDataError",
    "LabelMismatchError",
    "MissingDataError",
    "MissingDependencyError",
    "ModelFileError",
    "NonNumericInputError",
    "NotFittedError",
    "UnknownNameError",
    "ValidationError",
]


class CrossfeedError(Exception):
    """Base class of every error crossfeed raises on purpose."""


class ValidationError(CrossfeedError, ValueError):
    """Input of the wrong shape, type, range or content."""


class LabelMismatchError(ValidationError):
    """Models (or a model and its data) do not share one label set."""


class NonNumericInputError(ValidationError, TypeError):
    """``X`` holds values that are not numbers (also a ``TypeError``, as NumPy and sklearn raise)."""


class EmptyDataError(ValidationError):
    """A domain, split or array has no samples."""


class NotFittedError(CrossfeedError, _SklearnNotFittedError):
    """A model was used before it was fitted (also sklearn's ``NotFittedError``)."""


class UnknownNameError(CrossfeedError, KeyError):
    """A name that no registry, suite or model knows."""

    def __str__(self) -> str:  # KeyError quotes its message; we want it readable.
        return str(self.args[0]) if self.args else ""


class DuplicateNameError(CrossfeedError, ValueError):
    """A name registered twice in one registry."""


class ModelFileError(CrossfeedError, ValueError):
    """A saved model that is missing, incomplete or not a crossfeed model."""


class MissingDependencyError(CrossfeedError, ImportError):
    """An optional dependency is not installed; the message has the pip line."""


def missing_dependency(module: str, extra: str) -> MissingDependencyError:
    """Build the error for a missing optional module, with the exact install line."""
    return MissingDependencyError(
        f"this feature needs the optional package {module!r}, which is not installed; "
        f"install it with: pip install 'crossfeed[{extra}]'"
    )


class MissingDataError(CrossfeedError, FileNotFoundError):
    """A dataset's files are not on this machine; the message names them, where the loader looked
    and how to get them."""
