"""Save and load models as safetensors + JSON. Nothing is ever unpickled.

A model folder holds ``model.safetensors`` (the weights) and ``config.json`` (what the weights
mean). Format version 2 also records the sample shape (``input_shape``) and sha256 checksums of
the weights file and of the config itself, verified at load: flipped bytes in the weights or an
edited ``classes`` / ``n_features_in`` are refused instead of silently changing the answers.
Version-1 folders (no checksums) still load, with a warning; saving them again upgrades them.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import os
import shutil
import tempfile
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.numpy import load as load_numpy
from safetensors.numpy import save_file as save_numpy
from safetensors.torch import load as load_bytes
from safetensors.torch import save_file

from crossfeed._cache import current_umask
from crossfeed.exceptions import CrossfeedError, ModelFileError, ValidationError
from crossfeed.models._architectures import ARCHITECTURES, build_module
from crossfeed.models._forest import MetaForest
from crossfeed.models._torch_classifier import TorchClassifier

FORMAT = "crossfeed.torch_classifier"
FOREST_FORMAT = "crossfeed.meta_forest"
FORMAT_VERSION = 2
_JSONABLE = (str, int, float, bool, type(None))
#: Keys every config.json has, with their JSON types; version 2 adds ``_V2_KEYS``.
_REQUIRED: dict[str, type | tuple[type, ...]] = {
    "format": str, "format_version": int, "architecture": str, "module_kwargs": dict, "n_features_in": int,
    "classes": list, "classes_dtype": str, "params": dict,
}
_V2_KEYS: dict[str, type | tuple[type, ...]] = {"input_shape": list, "sha256": dict}
#: TorchClassifier parameters a config may hold (the module and its kwargs have keys of their own).
_STORED_PARAMS = ("module", "module_kwargs", "callback")
_CLASS_DTYPE_KINDS = "biufUSO"  # bool, ints, floats, strings, objects (string labels)


def _jsonable(value: Any) -> Any:
    if isinstance(value, _JSONABLE):
        return value
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, np.generic):
        return value.item()
    raise ValidationError(f"cannot store {type(value).__name__} in a model's JSON config")


def save_model(model: TorchClassifier | MetaForest, path: str | os.PathLike[str]) -> Path:
    """Write a fitted ``TorchClassifier`` (or :class:`~crossfeed.models.MetaForest`) to the directory ``path``.

    The directory holds ``model.safetensors`` (weights) and ``config.json`` (architecture name,
    its keyword arguments, classes, sample shape, training settings and the sha256 checksums of
    the weights and of the config, which :func:`load_model` verifies). It is written to a
    temporary sibling and renamed into place, so an interrupted save never leaves a half-written
    model; an existing model at ``path`` is replaced only once the new one is complete. The folder
    gets the usual mode of a new folder (``0o777`` minus the umask), its files ``0o666`` minus it.
    """
    if isinstance(model, MetaForest):
        return _save_forest(model, path)
    if not isinstance(model, TorchClassifier) or not hasattr(model, "module_"):
        raise ValidationError(f"save_model expects a fitted TorchClassifier or MetaForest; got {type(model).__name__}")
    if not isinstance(model.module, str):
        raise ValidationError(
            "only models built from a registered architecture name can be saved without pickle; "
            f"got module={type(model.module).__name__}. Register the factory with "
            "crossfeed.models.ARCHITECTURES.register('name') and pass module='name'"
        )
    classes = model.classes_.tolist()
    config = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "architecture": model.module,
        "module_kwargs": _jsonable(model.module_kwargs or {}),
        "n_features_in": int(model.n_features_in_),
        "classes": _jsonable(classes),
        "classes_dtype": str(model.classes_.dtype),
        "params": {k: _jsonable(v) for k, v in model.get_params().items() if k not in _STORED_PARAMS},
        "input_shape": [int(d) for d in getattr(model, "input_shape_", (model.n_features_in_,))],
    }
    state = {k: v.detach().cpu().contiguous() for k, v in model.module_.state_dict().items()}
    return _write_folder(Path(path), config, lambda file: save_file(state, str(file)))


def _save_forest(model: MetaForest, path: str | os.PathLike[str]) -> Path:
    """A MetaForest's folder: its arrays (:meth:`MetaForest.state`) in ``model.safetensors``, and
    ``config.json`` with its parameters, classes, the JSON part of its state and the checksums."""
    arrays, meta = model.state()
    config = {"format": FOREST_FORMAT, "format_version": 1, "classes": _jsonable(model.classes_.tolist()),
              "classes_dtype": str(model.classes_.dtype), "n_features_in": int(model.n_features_in_),
              "params": _jsonable(model.get_params()), "state": _jsonable(meta)}
    return _write_folder(Path(path), config, lambda file: save_numpy(arrays, str(file)))


def _write_folder(target: Path, config: dict[str, Any], write_weights: Callable[[Path], None]) -> Path:
    """Write ``model.safetensors`` (``write_weights(file)``) and ``config.json`` (with both
    checksums) into a temporary sibling of ``target`` and rename it into place."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        write_weights(tmp / "model.safetensors")
        weights_sha = hashlib.sha256((tmp / "model.safetensors").read_bytes()).hexdigest()
        config["sha256"] = {"weights": weights_sha, "config": _config_digest(config)}
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
        mask = current_umask()  # mkdtemp creates 0o700 and safetensors writes 0o600: give both the usual modes
        os.chmod(tmp / "model.safetensors", 0o666 & ~mask)
        os.chmod(tmp / "config.json", 0o666 & ~mask)
        os.chmod(tmp, 0o777 & ~mask)
        backup = None
        if target.exists():
            backup = target.with_name(f".{target.name}.old")
            shutil.rmtree(backup, ignore_errors=True)
            os.replace(target, backup)
        os.replace(tmp, target)
        if backup is not None:
            shutil.rmtree(backup, ignore_errors=True)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return target


def load_model(path: str | os.PathLike[str]) -> TorchClassifier | MetaForest:
    """Load a model written by :func:`save_model` (safetensors + JSON; no pickle): a
    ``TorchClassifier``, or a ``MetaForest`` from a forest's folder.

    ``config.json`` is checked against its schema (a JSON object with the required keys and
    types, a known architecture, known parameters, a valid class dtype), then both checksums are
    verified, then the weights are read into the architecture. Every failure is a
    ``ModelFileError`` saying which file is wrong and how; a version-1 folder (saved before
    checksums existed) loads with a ``UserWarning`` that it could not be verified.
    """
    root = Path(path)
    config_path, weights_path = root / "config.json", root / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelFileError(
            f"{root} is not a crossfeed model directory: expected config.json and model.safetensors in it"
        )
    try:
        config = json.loads(config_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"{config_path} is not valid JSON ({exc}); the model file is corrupt") from exc
    if isinstance(config, dict) and config.get("format") == FOREST_FORMAT:
        return _load_forest(config, weights_path.read_bytes(), config_path, weights_path)
    classes, input_shape = _check_config(config, config_path)
    data = weights_path.read_bytes()
    if config["format_version"] >= 2:
        _verify_checksums(config, data, config_path, weights_path)
    else:
        warnings.warn(
            f"{root} was saved by an older crossfeed (model format v{config['format_version']}) without checksums: "
            "its weights and config cannot be verified. Load it where it was made and save it again "
            "(crossfeed.models.save_model) to add them",
            UserWarning,
            stacklevel=2,
        )
    try:
        state = load_bytes(data)
    except Exception as exc:  # safetensors raises its own error type for truncated or foreign files
        raise ModelFileError(
            f"{weights_path} is not a readable safetensors file ({len(data)} bytes; truncated, or not written by "
            f"save_model: {exc}); restore it from a backup or save the model again"
        ) from exc
    kwargs = config["module_kwargs"]
    n_features = config["n_features_in"]
    try:
        module = build_module(config["architecture"], n_features, len(classes), **kwargs)
    except CrossfeedError as exc:
        raise ModelFileError(f"{config_path}: its architecture cannot be built: {exc}") from exc
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise ModelFileError(
            f"{weights_path} is a valid safetensors file, but its tensors do not match architecture "
            f"{config['architecture']!r} with module_kwargs {kwargs}, {n_features} features and {len(classes)} classes "
            f"(the file was saved from another architecture, or by a crossfeed whose {config['architecture']!r} "
            f"differs): {exc}"
        ) from exc
    model = TorchClassifier(config["architecture"], module_kwargs=kwargs or None, **config["params"])
    model.module_ = module.eval()
    model.classes_ = classes
    model.n_features_in_ = int(n_features)
    if input_shape is not None:
        model.input_shape_ = input_shape
    model.history_ = []
    model.best_epoch_ = -1
    return model



def _load_forest(config: dict[str, Any], data: bytes, config_path: Path, weights_path: Path) -> MetaForest:
    def bad(message: str) -> ModelFileError:
        return ModelFileError(f"{config_path}: {message}; the file is not a valid crossfeed forest config "
                              "(restore it, or save the model again)")

    if config.get("format_version") != 1:
        raise ModelFileError(f"{config_path} has format {FOREST_FORMAT!r} v{config.get('format_version')}; "
                             "this crossfeed reads v1")
    schema = {"classes": list, "classes_dtype": str, "n_features_in": int, "params": dict, "state": dict,
              "sha256": dict}
    for key, kind in schema.items():
        if not isinstance(config.get(key), kind):
            raise bad(f"{key!r} must be a JSON {_json_type(kind)}, got {config.get(key)!r}")
    unknown = sorted(set(config["params"]) - set(MetaForest().get_params()))
    if unknown:
        raise bad(f"unknown MetaForest parameters {unknown} in 'params'")
    classes = _check_classes(config["classes"], config["classes_dtype"], bad)
    _verify_checksums(config, data, config_path, weights_path)
    try:
        arrays = load_numpy(data)
    except Exception as exc:  # safetensors raises its own error type for truncated or foreign files
        raise ModelFileError(f"{weights_path} is not a readable safetensors file ({exc}); save the model again") from exc
    try:
        return MetaForest.from_state(config["params"], classes, arrays, config["state"])
    except (KeyError, ValueError, TypeError) as exc:
        raise ModelFileError(f"{weights_path} does not hold the arrays {config_path.name} describes ({exc}); "
                             "the two files do not belong together: save the model again") from exc


def _config_digest(config: dict[str, Any]) -> str:
    """sha256 of the config without its ``sha256`` entry, as canonical JSON (key order and spacing do not count)."""
    body = {k: v for k, v in config.items() if k != "sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _verify_checksums(config: dict[str, Any], data: bytes, config_path: Path, weights_path: Path) -> None:
    sums = config["sha256"]
    if _config_digest(config) != sums["config"]:
        raise ModelFileError(
            f"{config_path} was changed after saving: its content does not match the sha256 checksum recorded in "
            "it. Its fields (classes, n_features_in, input_shape, module_kwargs, ...) decide how the weights are "
            "read, so an edited config gives wrong answers; restore the file or save the model again"
        )
    if hashlib.sha256(data).hexdigest() != sums["weights"]:
        try:
            load_bytes(data)
            how = "it still parses as safetensors, so bytes inside the tensors changed: these are not the saved weights"
        except Exception as exc:
            how = f"it is not a readable safetensors file any more: truncated or overwritten ({exc})"
        raise ModelFileError(
            f"{weights_path} does not match the sha256 checksum recorded in {config_path.name} when the model was "
            f"saved ({len(data)} bytes; {how}); restore it from a backup or save the model again"
        )


def _check_config(config: Any, config_path: Path) -> tuple[np.ndarray, tuple[int, ...] | None]:
    """Check ``config.json`` against the schema; return (classes, input_shape or None for version 1)."""

    def bad(message: str) -> ModelFileError:
        return ModelFileError(f"{config_path}: {message}; the file is not a valid crossfeed model config "
                              "(restore it, or save the model again)")

    if not isinstance(config, dict):
        raise bad(f"expected a JSON object (a mapping of keys to values), got a JSON {type(config).__name__}")
    version = config.get("format_version")
    if config.get("format") != FORMAT or not _is_int(version) or not 1 <= version <= FORMAT_VERSION:
        raise ModelFileError(
            f"{config_path} has format {config.get('format')!r} v{version}; "
            f"this crossfeed reads {FORMAT!r} v1 to v{FORMAT_VERSION}"
        )
    schema = {**_REQUIRED, **(_V2_KEYS if version >= 2 else {})}
    missing = [k for k in schema if k not in config]
    if missing:
        raise bad(f"required keys {missing} are missing")
    for key, kind in schema.items():
        value = config[key]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise bad(f"{key!r} must be a JSON {_json_type(kind)}, got {type(value).__name__} {value!r}")
    try:
        ARCHITECTURES.get(config["architecture"])
    except KeyError as exc:
        raise bad(str(exc)) from None
    n_features = config["n_features_in"]
    if n_features < 1:
        raise bad(f"'n_features_in' must be a positive integer, got {n_features}")
    known = sorted(TorchClassifier().get_params().keys() - set(_STORED_PARAMS))
    for name in config["params"]:
        if name not in known:
            close = difflib.get_close_matches(name, known, n=1)
            raise bad(f"unknown TorchClassifier parameter {name!r} in 'params'"
                      + (f" (did you mean {close[0]!r}?)" if close else f"; known: {', '.join(known)}"))
    classes = _check_classes(config["classes"], config["classes_dtype"], bad)
    input_shape = None
    if version >= 2:
        shape = config["input_shape"]
        if not shape or not all(_is_int(d) and d >= 1 for d in shape) or int(np.prod(shape)) != n_features:
            raise bad(f"'input_shape' must be a list of positive integers whose product is n_features_in "
                      f"({n_features}), got {shape}")
        input_shape = tuple(int(d) for d in shape)
        sums = config["sha256"]
        for key in ("weights", "config"):
            digest = sums.get(key)
            if not (isinstance(digest, str) and len(digest) == 64 and all(c in "0123456789abcdef" for c in digest)):
                raise bad(f"'sha256' must hold {key!r}: a sha256 hex digest of 64 characters, got {digest!r}")
    return classes, input_shape


def _check_classes(values: list[Any], dtype_name: str, bad: Any) -> np.ndarray:
    if not values or not all(isinstance(v, _JSONABLE) and v is not None for v in values):
        raise bad(f"'classes' must be a non-empty list of labels (strings or numbers), got {values!r}")
    try:
        dtype = np.dtype(dtype_name)
    except TypeError as exc:
        raise bad(f"'classes_dtype' {dtype_name!r} is not a NumPy dtype ({exc})") from None
    if dtype.kind not in _CLASS_DTYPE_KINDS:
        raise bad(f"'classes_dtype' must be a bool, integer, float or string dtype, got {dtype_name!r}")
    try:
        classes = np.asarray(values, dtype=dtype)
    except (TypeError, ValueError) as exc:
        raise bad(f"'classes' {values!r} cannot be read as {dtype_name} ({exc})") from None
    if classes.ndim != 1 or classes.tolist() != list(values) or len(np.unique(classes)) != len(values):
        raise bad(f"'classes' must be distinct labels that {dtype_name} holds exactly, got {values!r}")
    return classes


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _json_type(kind: type | tuple[type, ...]) -> str:
    return {str: "string", int: "integer", dict: "object", list: "array"}.get(kind, str(kind))  # type: ignore[call-overload]
