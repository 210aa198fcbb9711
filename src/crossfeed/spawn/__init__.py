"""Spawn small models from a large one: distil, prune, quantize, fine-tune, export.

- :class:`Distiller` / :class:`DistillationHook`: knowledge distillation (Hinton et al. 2015,
  arXiv 1503.02531) with FitNets hints (Romero et al. 2015, arXiv 1412.6550), as a hook on the one
  training loop; :func:`kd_loss`, :func:`soft_targets`, :func:`hint_loss` are its pure maths.
- :func:`prune_structured` (Torch-Pruning, channels really removed) and :func:`prune_unstructured`
  (L1 magnitude, made permanent), each optionally followed by fine-tuning or distillation.
- :func:`quantize_dynamic`, :func:`quantize_static`, :func:`quantize`: int8 post-training
  quantization for CPU inference.
- :func:`finetune`: head-only, partial or full fine-tuning on one domain, early-stopped.
- :func:`spawn_experts`: one small expert per domain, distilled then fine-tuned (the spawn step of
  the ecosystem cycle).
- :func:`export_onnx`: ONNX export with a parity check, written atomically.
- :func:`search_architecture`: Optuna (TPE) search of a small model's architecture on one domain,
  warm-started from other domains' best configurations (:func:`warm_start_configs`) or from a
  surrogate fitted on their trials (:func:`prior_configs`), over an :class:`ArchitectureSpace`; a
  :class:`SearchResult` has the trials, the best and the accuracy-vs-FLOPs Pareto front;
  :func:`tpe_search` runs the same search over any scorer (:func:`trial_scorer` is the training
  one). Needs ``pip install 'crossfeed[search]'``.
- :func:`spawn_command`, :func:`spawn_section`: what ``crossfeed spawn`` and ``crossfeed demo`` run.
"""

from crossfeed.distill import (
    DistillationHook,
    hint_loss,
    kd_loss,
    soft_targets,
    teacher_logits,
)
from crossfeed.spawn._cli import spawn_command, spawn_section
from crossfeed.spawn._distill import Distiller
from crossfeed.spawn._experts import make_student, spawn_experts
from crossfeed.spawn._export import ExportReport, export_onnx
from crossfeed.spawn._finetune import FREEZE_MODES, finetune, frozen_parameters
from crossfeed.spawn._prune import prune_structured, prune_unstructured, sparsity
from crossfeed.spawn._quantize import (
    is_quantized,
    quantize,
    quantize_dynamic,
    quantize_static,
    quantized_state,
    weights_file_size,
)
from crossfeed.spawn._search import (
    ArchitectureSpace,
    SearchResult,
    pareto_front,
    prior_configs,
    search_architecture,
    tpe_search,
    trial_scorer,
    warm_start_configs,
)

__all__ = [
    "ArchitectureSpace",
    "DistillationHook",
    "Distiller",
    "ExportReport",
    "FREEZE_MODES",
    "SearchResult",
    "export_onnx",
    "finetune",
    "frozen_parameters",
    "hint_loss",
    "is_quantized",
    "kd_loss",
    "make_student",
    "pareto_front",
    "prior_configs",
    "prune_structured",
    "prune_unstructured",
    "quantize",
    "quantize_dynamic",
    "quantize_static",
    "quantized_state",
    "search_architecture",
    "soft_targets",
    "sparsity",
    "spawn_command",
    "spawn_experts",
    "spawn_section",
    "teacher_logits",
    "tpe_search",
    "trial_scorer",
    "warm_start_configs",
    "weights_file_size",
]
