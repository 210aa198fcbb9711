"""Shared bits of the benchmark scripts: machine description, medians with spread, JSON output."""

from __future__ import annotations

import json
import math
import os
import platform
import subprocess
from pathlib import Path
from typing import Any

import numpy as np

from crossfeed._cache import atomic_write_bytes

RESULTS = Path(__file__).parent / "results"


def _git_commit() -> str | None:
    """HEAD's short hash, marked ``+uncommitted-src`` when the package differs from it.

    The pathspec is ``:/src`` (the repository's ``src``): git runs in ``benchmarks/``, where a plain
    ``src`` named a folder that does not exist, so runs before this fix never got the mark.
    """
    try:
        commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                                cwd=Path(__file__).parent, check=False).stdout.strip() or None
        dirty = subprocess.run(["git", "status", "--porcelain", "--", ":/src"], capture_output=True, text=True,
                               cwd=Path(__file__).parent, check=False).stdout.strip()
    except OSError:
        return None
    if commit and dirty:
        commit += "+uncommitted-src"  # the package differed from the commit when this run started
    return commit


#: The commit of the code a run imported: taken when the script starts, not when it writes its JSON.
START_COMMIT = _git_commit()


def machine() -> dict[str, Any]:
    import sklearn
    import torch

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "platform": platform.platform(), "cpu": cpu, "cpu_count": os.cpu_count(),
        # the vector instructions torch's kernels use: float results can differ between AVX2 and AVX512 hosts
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "torch_threads": torch.get_num_threads(), "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "python": platform.python_version(), "torch": torch.__version__, "sklearn": sklearn.__version__,
        "numpy": np.__version__, "commit": START_COMMIT,
    }


def summary(values: list[float]) -> dict[str, float]:
    """Median with the spread (min, max) over seeds."""
    arr = np.asarray(values, dtype=float)
    return {"median": float(np.median(arr)), "min": float(arr.min()), "max": float(arr.max()), "n": int(arr.size)}


def cut(x: float, digits: int = 1, *, lower_is_better: bool = False) -> str:
    """``x`` at ``digits`` decimals, never rounded to look better than it is.

    Cut toward minus infinity (an accuracy, a speed-up), or toward plus infinity with
    ``lower_is_better`` (a cost, a violation rate).
    """
    f = 10**digits
    v = math.ceil(f * x - 1e-9) if lower_is_better else math.floor(f * x + 1e-9)
    return f"{v / f:.{digits}f}"


def span(s: dict[str, float], scale: float = 1.0, digits: int = 1, *, lower_is_better: bool = False) -> str:
    """``median [min, max]`` of a :func:`summary`, each times ``scale`` and :func:`cut` to ``digits``."""
    m, lo, hi = (cut(scale * s[k], digits, lower_is_better=lower_is_better) for k in ("median", "min", "max"))
    return f"{m} [{lo}, {hi}]"


def write(name: str, payload: dict[str, Any]) -> Path:
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / f"{name}.json"
    atomic_write_bytes(path, json.dumps(payload, indent=2).encode())
    return path
