"""Lineage: what produced each generation, enough to check it and to reproduce it exactly.

Every generation's record holds a ``lineage`` mapping::

    seed, generation          the run seed and the generation
    spawn_seed, feedback_seed the seeds of its two random steps (derived from seed and generation)
    parent                    {"label", "path", "sha256"}: the large model it started from
    strategy, kwargs          the feedback strategy and its parameters
    experts                   {"method", "student", "domains"}: how its experts were spawned
    field                     domain -> {"joined", "samples", "sha256", "batches"}: its field data
    large, candidate          {"label", "path", "sha256"}: the large model that goes on / the
                              feedback step's output (the same model when it advanced)
    expert_sha256             domain -> hash of each expert's weights
    config_sha256             hash of the run's config (what ``run.json`` records)

Hashes of weights are over every tensor of the state dict in name order (dtype, shape and bytes),
so two models hash equal exactly when their weights are. :func:`reproduce_generation` reruns a
generation from its parent checkpoint and its lineage and returns the models; equal hashes prove
the run reproducible.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import torch

from crossfeed.exceptions import ValidationError

__all__ = ["config_sha256", "weights_sha256"]


def weights_sha256(model: Any) -> str:
    """SHA-256 of a fitted model's weights (state dict, in name order; a forest's arrays and state)."""
    h = hashlib.sha256()
    if not hasattr(model, "module_") and callable(getattr(model, "state", None)):  # a MetaForest
        arrays, meta = model.state()
        for name, a in sorted(arrays.items()):
            a = np.ascontiguousarray(a)
            h.update(f"{name}:{a.dtype}:{a.shape}".encode())
            h.update(a.tobytes())
        h.update(json.dumps(meta, sort_keys=True, default=str).encode())
        return h.hexdigest()
    for name, tensor in sorted(model.module_.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        h.update(f"{name}:{t.dtype}:{tuple(t.shape)}".encode())
        h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return h.hexdigest()


def config_sha256(fingerprint: dict[str, Any]) -> str:
    """SHA-256 of a run's fingerprint (config without name / seeds / device, plus the seed) as canonical JSON."""
    return hashlib.sha256(json.dumps(fingerprint, sort_keys=True, default=str).encode()).hexdigest()


def check_field_lineage(recorded: dict[str, Any], seen: dict[str, dict[str, Any]], generation: int, root: Path) -> None:
    """The field data of a finished generation must be what it was when it ran."""
    before = {d: v["sha256"] for d, v in recorded.items()}
    now = {d: v["sha256"] for d, v in seen.items()}
    if before != now:
        changed = sorted(d for d in before.keys() | now.keys() if before.get(d) != now.get(d))
        raise ValidationError(
            f"{root}: the field data of generation {generation} differs from what it was trained on (domains "
            f"{changed}); restore the original batches, or start the run in a new folder"
        )
