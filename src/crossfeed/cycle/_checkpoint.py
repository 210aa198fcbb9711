"""Generation checkpoints: written whole or not at all, read back without pickle.

A finished generation ``g`` is the folder ``gen-{g:03d}`` holding ``large/`` (the large model
that goes on), ``candidate/`` (the feedback step's output, only when the gate kept the previous
large model), ``experts/<domain>/`` (:func:`crossfeed.models.save_model`: safetensors + JSON) and
``generation.json`` (what was measured). It is assembled in a hidden temporary sibling and renamed
into place, so a killed run leaves either the complete folder or none; leftovers of a killed write
are removed on the next start. ``run.json`` beside the generations records the config the run
belongs to, so resuming with another config is refused instead of mixing two runs; a folder with no
finished generation holds nothing to mix, so another config simply takes it over. Checkpoint
folders get the usual modes (``0o777`` minus the umask; files ``0o666`` minus it).
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from crossfeed._cache import atomic_write_bytes, current_umask
from crossfeed.exceptions import ModelFileError, ValidationError
from crossfeed.models import TorchClassifier, load_model, save_model

RUN_FILE = "run.json"

logger = logging.getLogger(__name__)


def generation_dir(root: Path, generation: int) -> Path:
    return root / f"gen-{generation:03d}"


def finished_generations(root: Path) -> list[int]:
    """Generations 0..k with a complete checkpoint under ``root`` (a run resumes after the first gap)."""
    done = []
    while (generation_dir(root, len(done)) / "generation.json").is_file():
        done.append(len(done))
    return done


def prepare_run_dir(root: Path, fingerprint: dict[str, Any], *, resume: bool) -> None:
    """Create ``root`` or check that it belongs to the same run; drop half-written leftovers.

    Without ``resume`` an existing run folder is an error (nothing is overwritten silently). A
    folder without a finished generation (its run failed or was killed before finishing generation
    0) has nothing to protect: it is taken over by ``fingerprint``, whatever it recorded.
    """
    run_file = root / RUN_FILE
    if run_file.exists() and not finished_generations(root):
        logger.info("%s holds no finished generation; starting it afresh", root)
        run_file.unlink()
    if run_file.exists():
        try:
            recorded = json.loads(run_file.read_text())
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"{run_file} is corrupt ({exc}); remove the folder {root} to start over") from exc
        fingerprint = json.loads(json.dumps(fingerprint))  # tuples and lists compare as JSON does
        if recorded != fingerprint:
            differ = sorted(_differences(recorded, fingerprint))
            raise ValidationError(
                f"{root} holds a run of a different config or seed (differs in: {', '.join(differ)}); use another "
                f"output folder, or delete {root} to start this one from scratch"
            )
        if not resume:
            raise ValidationError(
                f"{root} already holds this run; pass resume=True (CLI: --resume) to continue it, or delete the folder"
            )
    root.mkdir(parents=True, exist_ok=True)
    for leftover in root.glob(".gen-*.tmp"):
        shutil.rmtree(leftover, ignore_errors=True)
    if not run_file.exists():
        atomic_write_bytes(run_file, json.dumps(fingerprint, indent=2, sort_keys=True).encode())


def _differences(a: Any, b: Any, path: str = "") -> list[str]:
    """Dotted paths where two JSON values differ."""
    if isinstance(a, dict) and isinstance(b, dict):
        return [d for k in sorted(a.keys() | b.keys()) for d in _differences(a.get(k), b.get(k), f"{path}.{k}".lstrip("."))]
    return [] if a == b else [path or "(root)"]


def save_generation(
    root: Path, generation: int, large: TorchClassifier, experts: Mapping[str, TorchClassifier], record: dict[str, Any],
    *, candidate: TorchClassifier | None = None,
) -> Path:
    """Write generation ``generation`` atomically; returns its folder.

    ``large`` is the large model that goes on; ``candidate`` the feedback step's output when the
    gate did not let it go on (it may still serve some domains), saved as ``candidate/``.
    """
    final = generation_dir(root, generation)
    tmp = Path(tempfile.mkdtemp(dir=root, prefix=f".{final.name}.", suffix=".tmp"))
    try:
        os.chmod(tmp, 0o777 & ~current_umask())  # mkdtemp creates 0o700; the generation gets a folder's usual mode
        save_model(large, tmp / "large")
        if candidate is not None:
            save_model(candidate, tmp / "candidate")
        for name, expert in experts.items():
            save_model(expert, tmp / "experts" / name)
        (tmp / "generation.json").write_text(json.dumps(record, indent=2))
        with open(tmp / "generation.json", "rb") as f:
            os.fsync(f.fileno())
        if final.exists():  # a stale copy of a generation that is being recomputed
            shutil.rmtree(final)
        os.replace(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final



def load_record(root: Path, generation: int) -> dict[str, Any]:
    """The ``generation.json`` record of a finished generation."""
    path = generation_dir(root, generation) / "generation.json"
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{path} is missing or corrupt ({exc}); delete {path.parent} to recompute it") from exc


def read_fingerprint(root: Path) -> dict[str, Any]:
    """The run's ``run.json``: its config (without name, seeds, device) and seed."""
    try:
        return json.loads((root / RUN_FILE).read_text())
    except (OSError, json.JSONDecodeError) as exc:
        raise ModelFileError(f"{root / RUN_FILE} is missing or corrupt ({exc}); is {root} a seed's run folder?") from exc


def load_large(root: Path, generation: int) -> TorchClassifier:
    """The large model of a finished generation (the experts stay on disk for inspection)."""
    return load_model(generation_dir(root, generation) / "large")
