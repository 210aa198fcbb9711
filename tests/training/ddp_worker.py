"""Run by tests/training/test_distributed.py under torchrun: fit one model data-parallel, save each rank's weights."""

import sys
from pathlib import Path

import numpy as np
import torch
from safetensors.torch import save_file

from crossfeed.models import TorchClassifier
from crossfeed.training import TrainingHook, init_from_env, world


class L2Pull(TrainingHook):
    """A data-independent extra loss (it must count once in the global loss, not once per rank);
    counts the rows this process trains on."""

    rows = 0

    def extra_loss(self, batch, logits, module):
        L2Pull.rows += len(batch.index)
        return 1e-2 * sum((p ** 2).sum() for p in module.parameters())


def fit(weighted: bool) -> TorchClassifier:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(203, 12)).astype("float32")
    y = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(int) + (X[:, 2] > 1).astype(int)
    model = TorchClassifier("mlp", module_kwargs={"hidden": [16]}, epochs=4, batch_size=32, lr=1e-2,
                            random_state=0, validation_fraction=0.2, patience=None, threads=1)
    model.fit(X, y, sample_weight=rng.random(len(X)) if weighted else None, hooks=[L2Pull()])
    return model


if __name__ == "__main__":
    out = Path(sys.argv[1])
    init_from_env("cpu")
    for weighted in (False, True):
        tensors = {k: v.contiguous() for k, v in fit(weighted).module_.state_dict().items()}
        save_file(tensors, str(out / f"rank{world().rank}-weighted{int(weighted)}.safetensors"),
                  metadata={"rows": str(L2Pull.rows), "world": str(world().size)})
        L2Pull.rows = 0
    torch.distributed.destroy_process_group()
