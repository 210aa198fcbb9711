"""Models: TorchClassifier, architectures, cost, and safetensors I/O."""

from crossfeed.models._architectures import ARCHITECTURES, CNN1D, CNN1D_SIZES, MLP, Linear, build_module
from crossfeed.models._cost import Cost, count_params, flops_per_sample, measure_cost, measure_latency
from crossfeed.models._io import load_model, save_model
from crossfeed.models._torch_classifier import TorchClassifier

__all__ = [
    "ARCHITECTURES",
    "CNN1D",
    "CNN1D_SIZES",
    "Cost",
    "Linear",
    "MLP",
    "TorchClassifier",
    "build_module",
    "count_params",
    "flops_per_sample",
    "load_model",
    "measure_cost",
    "measure_latency",
    "save_model",
]
