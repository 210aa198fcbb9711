"""Serving: fitted models and cascades whose measured latency follows their FLOPs.

Why it exists (measured on this project's 2-core CPU machine, one thread): the large cnn1d's bare
PyTorch forward at batch 1 takes about 340 us, almost all of it per-call framework overhead, so a
cascade's cheap stages saved little wall time. The same graph in an ONNX Runtime session
(sequential, one intra- and one inter-op thread) runs in about 59 us, and binding preallocated
input and output buffers (``IOBinding``) cuts the fixed per-call floor from about 7.8 us to about
3.5 us. Int8 static quantization (QDQ, per-channel int8 weights, uint8 activations) makes the
large model faster still: 48.5 against 70.6 us at batch 1, 11.4 against 34.1 us per sample at
batch 256 (one measurement of an untrained large cnn1d, see :func:`quantize_onnx`).

- :class:`OnnxModel`: a fitted scikit-learn classifier backed by an ``onnxruntime`` session,
  exported from a TorchClassifier (:meth:`OnnxModel.from_model`) or loaded from a file with its
  JSON sidecar (:meth:`OnnxModel.load`; classes, feature count, FLOPs; never pickled). Works as
  a :class:`crossfeed.combine.Cascade` member and with :mod:`crossfeed.models.cost`.
- :func:`quantize_onnx` / :class:`QuantizeReport`: int8 static quantization with ONNX Runtime,
  written atomically, compared with the float model.
- :class:`ServedCascade`: a fitted Cascade's routing (order, thresholds, rule, temperatures)
  over OnnxModel stages, with a lean single-sample path.

Needs the ``onnx`` extra: ``pip install 'crossfeed[onnx]'``.
"""

from crossfeed.serving._cascade import ServedCascade
from crossfeed.serving._onnx import OnnxModel
from crossfeed.serving._quantize import QuantizeReport, quantize_onnx

__all__ = [
    "OnnxModel",
    "QuantizeReport",
    "ServedCascade",
    "quantize_onnx",
]
