"""Architectures, registered by name so configs and saved models can rebuild them.

Every factory takes ``n_features`` and ``n_classes`` (plus its own keyword arguments) and returns
an ``nn.Module`` mapping flat input of shape (batch, n_features) to logits (batch, n_classes).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

from crossfeed._registry import Registry
from crossfeed.exceptions import ValidationError

ARCHITECTURES: Registry[Callable[..., nn.Module]] = Registry("architecture")


@ARCHITECTURES.register("linear")
class Linear(nn.Module):
    """Multinomial logistic regression: one linear layer."""

    def __init__(self, n_features: int, n_classes: int) -> None:
        super().__init__()
        self.fc = nn.Linear(n_features, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(x.flatten(1))


@ARCHITECTURES.register("mlp")
class MLP(nn.Module):
    """Fully connected network with ReLU and optional dropout.

    Parameters
    ----------
    hidden : sizes of the hidden layers, e.g. (128, 128).
    """

    def __init__(self, n_features: int, n_classes: int, hidden: Sequence[int] = (128, 128), dropout: float = 0.0) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = n_features
        for h in hidden:
            layers += [nn.Linear(width, int(h)), nn.ReLU()]
            if dropout > 0:
                layers.append(nn.Dropout(dropout))
            width = int(h)
        self.body = nn.Sequential(*layers)
        self.head = nn.Linear(width, n_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x.flatten(1)))


#: The ladder of 1-D CNNs, from tiny to large (``cnn1d`` keyword arguments).
CNN1D_SIZES: dict[str, dict] = {
    "tiny": {"channels": (8, 8), "hidden": 32},
    "small": {"channels": (16, 16, 16), "hidden": 64},
    "medium": {"channels": (32, 32, 32), "hidden": 128},
    "large": {"channels": (64, 64, 64), "hidden": 256},
}


@ARCHITECTURES.register("cnn1d")
class CNN1D(nn.Module):
    """1-D convolutional network for signals such as MNIST-1D.

    Input of shape (batch, n_features) is read as one channel of length ``n_features``. Each block
    is Conv1d(kernel, padding same) -> BatchNorm -> ReLU, with max-pooling by 2 after every block
    but the first; then global average *and* max pooling, a hidden layer and the head.

    Parameters
    ----------
    size : one of ``CNN1D_SIZES`` ("tiny", "small", "medium", "large"); explicit ``channels`` /
        ``hidden`` override it.
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        size: str | None = "medium",
        channels: Sequence[int] | None = None,
        hidden: int | None = None,
        kernel_size: int = 5,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if size is not None and size not in CNN1D_SIZES:
            raise ValidationError(f"unknown cnn1d size {size!r}; choose one of {list(CNN1D_SIZES)}")
        preset = CNN1D_SIZES[size] if size is not None else {"channels": (32, 32), "hidden": 64}
        channels = tuple(channels if channels is not None else preset["channels"])
        hidden = int(hidden if hidden is not None else preset["hidden"])
        shortest = 2 ** (len(channels) - 1)  # every block after the first halves the signal
        if n_features < shortest:
            raise ValidationError(
                f"cnn1d with {len(channels)} convolution blocks (channels {list(channels)}) halves its input "
                f"{len(channels) - 1} time(s), so it needs at least {shortest} features per sample; got "
                f"n_features={n_features}. Use fewer blocks (size 'tiny' needs 2, or channels=[...] shorter) "
                "or the 'mlp' architecture for short inputs"
            )
        blocks: list[nn.Module] = []
        c_in = 1
        for i, c_out in enumerate(channels):
            if i > 0:
                blocks.append(nn.MaxPool1d(2))
            blocks += [
                nn.Conv1d(c_in, int(c_out), kernel_size, padding=kernel_size // 2),
                nn.BatchNorm1d(int(c_out)),
                nn.ReLU(),
            ]
            c_in = int(c_out)
        self.features = nn.Sequential(*blocks)
        self.classifier = nn.Sequential(
            nn.Linear(2 * c_in, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Pooled features of shape (batch, 2 * last_channels)."""
        h = self.features(x.reshape(x.shape[0], 1, -1))
        return torch.cat([h.mean(dim=2), h.amax(dim=2)], dim=1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))


def build_module(name: str, n_features: int, n_classes: int, **kwargs: object) -> nn.Module:
    """Instantiate a registered architecture."""
    factory = ARCHITECTURES.get(name)
    try:
        return factory(n_features, n_classes, **kwargs)
    except TypeError as exc:
        raise ValidationError(f"architecture {name!r} rejected its arguments {kwargs}: {exc}") from exc
