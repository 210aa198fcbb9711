"""``cnn2d``: a 2-D convolutional network for images given as flat rows (e.g. Fashion-MNIST)."""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch
from torch import nn

from crossfeed.exceptions import ValidationError
from crossfeed.models._architectures import ARCHITECTURES

#: The ladder of 2-D CNNs, from tiny to large (``cnn2d`` keyword arguments).
CNN2D_SIZES: dict[str, dict] = {
    "tiny": {"channels": (8, 16), "hidden": 32},
    "small": {"channels": (16, 32), "hidden": 64},
    "medium": {"channels": (32, 64), "hidden": 128},
    "large": {"channels": (32, 64, 128), "hidden": 256},
}


def _image_shape(n_features: int, image_shape: Sequence[int] | None) -> tuple[int, int, int]:
    """``(channels, height, width)``: given, or one square channel inferred from ``n_features``."""
    if image_shape is None:
        side = math.isqrt(n_features)
        if side * side != n_features:
            raise ValidationError(
                f"cnn2d reads each sample as a square one-channel image, but n_features={n_features} is not a "
                "square number; pass image_shape=(channels, height, width) in module_kwargs"
            )
        return 1, side, side
    shape = tuple(int(s) for s in image_shape)
    if len(shape) != 3 or math.prod(shape) != n_features or min(shape) < 1:
        raise ValidationError(
            f"image_shape must be (channels, height, width) with channels * height * width = n_features "
            f"({n_features}); got {tuple(image_shape)}"
        )
    return shape  # type: ignore[return-value]


@ARCHITECTURES.register("cnn2d")
class CNN2D(nn.Module):
    """2-D convolutional network: a convolutional trunk that extracts features, and a head.

    Input of shape (batch, n_features) is read as images of ``image_shape`` (row-major, as
    ``X.reshape(n, -1)`` flattens them). Each block is Conv2d(kernel, padding same) -> BatchNorm
    -> ReLU -> MaxPool(2); the trunk ends in adaptive average pooling to a ``grid`` x ``grid`` map,
    flattened (:meth:`embed`). The head is a hidden layer with ReLU and dropout, then the logits.

    Parameters
    ----------
    size : one of ``CNN2D_SIZES`` ("tiny", "small", "medium", "large"); explicit ``channels`` /
        ``hidden`` override it.
    image_shape : (channels, height, width); default one square channel, e.g. (1, 28, 28) for 784
        features.
    grid : side of the pooled feature map (the embedding has ``channels[-1] * grid**2`` features).

    Example
    -------
    >>> net = CNN2D(784, 10, size="tiny")
    >>> net(torch.zeros(2, 784)).shape, net.embed(torch.zeros(2, 784)).shape
    (torch.Size([2, 10]), torch.Size([2, 144]))
    """

    def __init__(
        self,
        n_features: int,
        n_classes: int,
        size: str | None = "medium",
        channels: Sequence[int] | None = None,
        hidden: int | None = None,
        image_shape: Sequence[int] | None = None,
        kernel_size: int = 3,
        grid: int = 3,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        if size is not None and size not in CNN2D_SIZES:
            raise ValidationError(f"unknown cnn2d size {size!r}; choose one of {list(CNN2D_SIZES)}")
        preset = CNN2D_SIZES[size] if size is not None else CNN2D_SIZES["medium"]
        channels = tuple(int(c) for c in (channels if channels is not None else preset["channels"]))
        hidden = int(hidden if hidden is not None else preset["hidden"])
        self.image_shape = _image_shape(n_features, image_shape)
        if min(self.image_shape[1:]) < 2 ** len(channels):
            raise ValidationError(
                f"{len(channels)} blocks halve the image {len(channels)} times; images of shape "
                f"{self.image_shape} are too small. Use fewer channels entries"
            )
        blocks: list[nn.Module] = []
        c_in = self.image_shape[0]
        for c_out in channels:
            blocks += [
                nn.Conv2d(c_in, c_out, kernel_size, padding=kernel_size // 2),
                nn.BatchNorm2d(c_out),
                nn.ReLU(),
                nn.MaxPool2d(2),
            ]
            c_in = c_out
        self.features = nn.Sequential(*blocks, nn.AdaptiveAvgPool2d(grid), nn.Flatten())
        self.classifier = nn.Sequential(
            nn.Linear(c_in * grid * grid, hidden), nn.ReLU(), nn.Dropout(dropout), nn.Linear(hidden, n_classes)
        )

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """Trunk features of shape (batch, channels[-1] * grid**2)."""
        return self.features(x.reshape(x.shape[0], *self.image_shape))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.classifier(self.embed(x))
