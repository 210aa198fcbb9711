"""Save and load models as safetensors + JSON. Nothing is ever unpickled."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
from safetensors.torch import load_file, save_file

from crossfeed.exceptions import ModelFileError, ValidationError
from crossfeed.models._architectures import build_module
from crossfeed.models._torch_classifier import TorchClassifier

FORMAT = "crossfeed.torch_classifier"
FORMAT_VERSION = 1
_JSONABLE = (str, int, float, bool, type(None))


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


def save_model(model: TorchClassifier, path: str | os.PathLike[str]) -> Path:
    """Write a fitted ``TorchClassifier`` to the directory ``path``.

    The directory holds ``model.safetensors`` (weights) and ``config.json`` (architecture name,
    its keyword arguments, classes and training settings). It is written to a temporary sibling
    and renamed into place, so an interrupted save never leaves a half-written model; an existing
    model at ``path`` is replaced only once the new one is complete.
    """
    if not isinstance(model, TorchClassifier) or not hasattr(model, "module_"):
        raise ValidationError(f"save_model expects a fitted TorchClassifier; got {type(model).__name__}")
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
        "params": {k: _jsonable(v) for k, v in model.get_params().items() if k not in ("module", "module_kwargs", "callback")},
    }
    target = Path(path)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp"))
    try:
        state = {k: v.detach().cpu().contiguous() for k, v in model.module_.state_dict().items()}
        save_file(state, str(tmp / "model.safetensors"))
        (tmp / "config.json").write_text(json.dumps(config, indent=2))
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


def load_model(path: str | os.PathLike[str]) -> TorchClassifier:
    """Load a model written by :func:`save_model` (safetensors + JSON; no pickle)."""
    root = Path(path)
    config_path, weights_path = root / "config.json", root / "model.safetensors"
    if not config_path.is_file() or not weights_path.is_file():
        raise ModelFileError(
            f"{root} is not a crossfeed model directory: expected config.json and model.safetensors in it"
        )
    try:
        config = json.loads(config_path.read_text())
    except json.JSONDecodeError as exc:
        raise ModelFileError(f"{config_path} is not valid JSON ({exc}); the model file is corrupt") from exc
    if config.get("format") != FORMAT or config.get("format_version", 0) > FORMAT_VERSION:
        raise ModelFileError(
            f"{config_path} has format {config.get('format')!r} v{config.get('format_version')}; "
            f"this crossfeed reads {FORMAT!r} up to v{FORMAT_VERSION}"
        )
    classes = np.asarray(config["classes"], dtype=config.get("classes_dtype"))
    model = TorchClassifier(config["architecture"], module_kwargs=config["module_kwargs"] or None, **config["params"])
    module = build_module(config["architecture"], config["n_features_in"], len(classes), **(config["module_kwargs"] or {}))
    try:
        state = load_file(str(weights_path))
        module.load_state_dict(state)
    except Exception as exc:
        raise ModelFileError(f"{weights_path} does not match architecture {config['architecture']!r}: {exc}") from exc
    model.module_ = module.eval()
    model.classes_ = classes
    model.n_features_in_ = int(config["n_features_in"])
    model.history_ = []
    model.best_epoch_ = -1
    return model
