"""Shared data and models for the serving tests: 40 features, 3 classes, fixed seeds, trained and
exported once per package (an export takes about a second). Each test module skips itself
without the onnx extra."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from crossfeed.models import TorchClassifier
from crossfeed.serving import OnnxModel

N_FEATURES = 40


@pytest.fixture(scope="package")
def data() -> dict[str, np.ndarray]:
    """Gaussian blobs, 40 features, 3 classes: 300 train, 200 validation, 200 test samples."""
    rng = np.random.default_rng(0)
    centers = rng.normal(scale=0.35, size=(3, N_FEATURES))
    y = rng.integers(0, 3, size=700)
    X = (centers[y] + rng.normal(size=(700, N_FEATURES))).astype(np.float32)
    return {"X": X[:300], "y": y[:300], "X_val": X[300:500], "y_val": y[300:500], "X_test": X[500:], "y_test": y[500:]}


@pytest.fixture(scope="package")
def torch_models(data: dict[str, np.ndarray]) -> dict[str, TorchClassifier]:
    """Three members of increasing cost (FLOPs): an MLP, a tiny and a small cnn1d."""
    models = {
        "mlp": TorchClassifier("mlp", module_kwargs={"hidden": (16,)}, epochs=2, random_state=0),
        "tiny": TorchClassifier("cnn1d", module_kwargs={"size": "tiny"}, epochs=10, lr=3e-3, random_state=0),
        "small": TorchClassifier("cnn1d", module_kwargs={"size": "small"}, epochs=15, lr=3e-3, random_state=0),
    }
    return {name: m.fit(data["X"], data["y"]) for name, m in models.items()}


@pytest.fixture(scope="package")
def onnx_folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("serving-onnx")


@pytest.fixture(scope="package")
def onnx_models(torch_models, data, onnx_folder) -> dict[str, OnnxModel]:  # type: ignore[no-untyped-def]
    """Each torch model exported once to ``<name>.onnx`` (plus sidecar) and loaded."""
    return {
        name: OnnxModel.from_model(m, onnx_folder / f"{name}.onnx", example_X=data["X_val"])
        for name, m in torch_models.items()
    }
