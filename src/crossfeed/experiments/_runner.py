"""``crossfeed run CONFIG.yaml``: the cycle of a config over its seeds, with results and a report.

Output folder::

    config.yaml          the config as parsed (every default written out)
    seed-<s>/gen-<g>/    checkpoints of each generation (see crossfeed.cycle)
    results.json         every generation of every seed, and a summary over seeds
    report.md, report.html, *.png   heat maps and absorption charts
"""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path

from crossfeed._cache import atomic_write_bytes
from crossfeed._progress import Progress, SilentProgress
from crossfeed.config import ExperimentConfig, config_diff, load_config, save_config
from crossfeed.cycle import ExperimentResult, load_cycle, run_cycle
from crossfeed.exceptions import CrossfeedError, ValidationError
from crossfeed.report import write_experiment_report
from crossfeed.training import from_main, world

__all__ = ["ExperimentResult", "load_experiment", "run_experiment"]


def run_experiment(
    config: ExperimentConfig, out: str | Path | None = None, *, resume: bool = True, progress: Progress | None = None,
    until: int | None = None,
) -> ExperimentResult:
    """Run the cycle of ``config`` for each of its seeds; write checkpoints, results and report under ``out``.

    ``until``: stop every seed after this generation (see :func:`crossfeed.cycle.run_cycle`); run
    again with the same ``out`` to go on.

    Under torchrun (a ``torch.distributed`` process group, :func:`crossfeed.training.init_from_env`)
    every process runs the same cycle and every training is data-parallel; only rank 0 writes
    ``out``. Such a run starts from a folder without finished generations (the other ranks cannot
    read rank 0's checkpoints): train generation 0 that way with ``until=0``, then go on in one
    process, which resumes from the checkpoints.

    Example
    -------
    >>> from crossfeed.experiments import load_config, run_experiment     # doctest: +SKIP
    >>> result = run_experiment(load_config("examples/demo.yaml"), "runs/demo")  # doctest: +SKIP
    """
    progress = progress or SilentProgress()
    root = Path(out) if out is not None else None
    w = world()
    if w.parallel:
        problem = from_main(_distributed_start_problem(root, config) if w.rank == 0 else None, w)
        if problem:
            raise ValidationError(problem)
        if w.rank != 0:
            root, progress = None, SilentProgress()
    if root is not None:
        _claim(root, config)
    start = time.perf_counter()
    cycles = []
    for seed in config.seeds:
        progress.stage(f"seed {seed}")
        cycles.append(run_cycle(config, seed, None if root is None else root / f"seed-{seed}", resume=resume,
                                progress=progress, until=until))
    result = ExperimentResult(config, cycles, root, round(time.perf_counter() - start, 2))
    if root is not None:
        atomic_write_bytes(root / "results.json", json.dumps(result.to_dict(), indent=2).encode())
        write_experiment_report(result, root)
    return result


def _distributed_start_problem(root: Path | None, config: ExperimentConfig) -> str | None:
    """Why a data-parallel run cannot start in ``root`` (None: it can)."""
    if root is None:
        return None
    finished = sorted(str(p.parent.relative_to(root)) for p in root.glob("seed-*/gen-*/generation.json"))
    if finished:
        return (f"a data-parallel run (torchrun) starts from a folder without finished generations, but {root} holds "
                f"{', '.join(finished[:4])}{' ...' if len(finished) > 4 else ''}; resume it in one process "
                "(crossfeed run without torchrun), or pass a new --out")
    try:
        _claim(root, config)
    except CrossfeedError as exc:
        return str(exc)
    return None


def load_experiment(run_dir: str | Path) -> ExperimentResult:
    """The results of a ``crossfeed run`` folder: ``results.json``, or, for a run that was stopped
    before writing it, the finished generations of each seed's checkpoints.

    Example
    -------
    >>> result = load_experiment("runs/demo")                       # doctest: +SKIP
    >>> result.cycles[0].generations[-1].lineage["parent"]          # doctest: +SKIP
    """
    root = Path(run_dir)
    results = root / "results.json"
    if results.is_file():
        try:
            return ExperimentResult.from_dict(json.loads(results.read_text()), out=root)
        except (json.JSONDecodeError, KeyError, TypeError) as exc:
            raise ValidationError(f"{results} is not a crossfeed run's results ({exc}); rerun the config to rebuild it") from exc
    if not (root / "config.yaml").is_file():
        raise ValidationError(
            f"{root} holds neither results.json nor config.yaml; pass the output folder of `crossfeed run CONFIG` "
            "(default runs/<config name>)"
        )
    config = load_config(root / "config.yaml")
    if not isinstance(config, ExperimentConfig):  # kind: rl
        raise ValidationError(f"{root} is an RL experiment (kind: rl): its results are {root / 'rl-results.json'} "
                              "and each seed's rl-report.md, written by `crossfeed run`")
    cycles = [c for seed in config.seeds if (c := load_cycle(root / f"seed-{seed}")) is not None]
    if not cycles:
        raise ValidationError(f"{root} holds no finished generation yet; wait for generation 0 or rerun the config")
    return ExperimentResult(config, cycles, root, 0.0)


def _claim(root: Path, config: ExperimentConfig) -> None:
    """Write ``config.yaml`` into the output folder; refuse a folder that holds another experiment's results.

    The rule: a folder belongs to the config in its ``config.yaml`` once it holds results, i.e. a
    finished generation of any seed (``seed-*/gen-*/generation.json``) or ``results.json``. An earlier
    run that failed or was killed before finishing generation 0 left nothing to protect, so its
    ``config.yaml`` (even an unreadable one) is replaced and the folder reused. A folder with results
    and another config is refused, naming the keys in which the two configs differ.
    """
    path = root / "config.yaml"
    if path.exists():
        holds_results = (root / "results.json").exists() or any(root.glob("seed-*/gen-*/generation.json"))
        try:
            recorded = load_config(path)
        except CrossfeedError as exc:
            if holds_results:
                raise ValidationError(
                    f"{root} holds results, but its {path.name} cannot be read ({exc}); use another output folder "
                    "(--out), or delete it to start over"
                ) from exc
            recorded = None
        if recorded == config:
            return
        if recorded is not None and holds_results:
            raise ValidationError(
                f"{root} holds the results of another experiment ({recorded.name!r}, see {path}); its config differs "
                f"from this one in: {', '.join(config_diff(recorded, config))}. Use another output folder (--out), "
                "run the recorded config to resume it, or delete the folder to start over"
            )
        logging.getLogger(__name__).info(
            "%s: replacing %s of an earlier run that finished no generation", root, path.name
        )
    root.mkdir(parents=True, exist_ok=True)
    save_config(config, path)
