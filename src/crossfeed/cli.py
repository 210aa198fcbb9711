"""The ``crossfeed`` command line. The CLI owns the terminal (rich); the library only logs."""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from crossfeed.config import RLExperimentConfig
from crossfeed.data import check_suite_kwargs
from crossfeed.exceptions import CrossfeedError, ValidationError
from crossfeed.experiments import load_config, load_experiment, run_demo, run_experiment
from crossfeed.report import accuracy_matrix, lineage_rows, write_experiment_report
from crossfeed.spawn import spawn_command
from crossfeed.training import init_from_env, resolve_device

app = typer.Typer(help="crossfeed: make large and small models better together.", no_args_is_help=True, add_completion=False)
console = Console()


@app.callback()
def _root() -> None:
    """crossfeed: make large and small models better together."""


class RichProgress:
    """Renders a job's progress as rich progress bars (one bar per model being trained)."""

    def __init__(self, bars: Progress) -> None:
        self.bars = bars

    def stage(self, message: str) -> None:
        self.bars.console.log(message)

    def training(self, name: str, epochs: int) -> Callable[[dict[str, Any]], None]:
        task = None

        def on_epoch(logs: dict[str, Any]) -> None:
            nonlocal task
            if task is None:
                task = self.bars.add_task(f"training {name}", total=epochs)
            info = f"loss {logs['train_loss']:.3f}" + (f", val acc {100 * logs['val_accuracy']:.1f}%" if "val_accuracy" in logs else "")
            self.bars.update(task, completed=logs["epoch"], description=f"training {name} ({info})")

        return on_epoch


def _results_tables(result: Any) -> list[Table]:
    domains = result.meta["domains"]
    accuracy = Table(title="test accuracy %, pooled and per domain")
    cost = Table(title="calibration and cost (pooled test set)")
    for col in ["model", "pooled", *domains]:
        accuracy.add_column(col, justify="left" if col == "model" else "right")
    for col in ["model", "NLL", "ECE", "params", "FLOPs/sample", "µs/sample b1", "µs/sample b256"]:
        cost.add_column(col, justify="left" if col == "model" else "right")
    for r in result.records:
        style = "bold" if r["kind"] == "combiner" else None
        accuracy.add_row(r["name"], f"{100 * r['accuracy']:.2f}", *[f"{100 * r['domains'][d]['accuracy']:.1f}" for d in domains], style=style)
        cost.add_row(r["name"], f"{r['nll']:.3f}", f"{r['ece']:.3f}", f"{r['params']:,}", f"{r['flops_per_sample']:,.0f}",
                     f"{1e6 * r['latency_batch1_s']:.0f}", f"{1e6 * r['latency_batch256_s']:.1f}", style=style)
    return [accuracy, cost]


@app.command()
def demo(
    out: Path = typer.Option(Path("crossfeed-demo"), "--out", help="folder for results.json, report.md, report.html"),
    seed: int = typer.Option(0, "--seed", help="seed of data, models and combiners"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    n_per_domain: int = typer.Option(4000, "--n-per-domain", help="samples generated per mnist1d domain"),
    epochs: int = typer.Option(20, "--epochs", help="maximum epochs of the torch models"),
    no_spawn: bool = typer.Option(False, "--no-spawn", help="skip the spawn section"),
    no_feedback: bool = typer.Option(False, "--no-feedback", help="skip the feedback cycle"),
) -> None:
    """Train a large CNN and small models on the mnist1d suite, combine them, report accuracy and cost."""
    with _errors_exit_2():
        for option, value in (("--n-per-domain", n_per_domain), ("--epochs", epochs)):
            _check_positive(option, value)
        check_suite_kwargs("mnist1d", {"n_per_domain": n_per_domain})
        resolve_device(device)
        _check_out_folder(out, "--out")
        with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                      console=console) as bars:
            result = run_demo(out, seed=seed, device=device, n_per_domain=n_per_domain, epochs=epochs,
                              spawn=not no_spawn, feedback=not no_feedback, progress=RichProgress(bars))
    for table in _results_tables(result):
        console.print(table)
    c = result.cascade
    console.print(
        f"cascade {' -> '.join(c['members'])}: {100 * c['accuracy']:.2f}% vs large {100 * c['large_accuracy']:.2f}% "
        f"({c['gap_points']:+.2f} points) at {c['flops_fraction']:.3f} of its FLOPs, {100 * c['escalation_rate']:.1f}% escalated; "
        f"cost to match within 0.1 point on the test curve: "
        + ("not reached" if c["cost_to_match_flops_fraction"] is None else f"{c['cost_to_match_flops_fraction']:.3f} of its FLOPs")
    )
    if result.spawn:
        table = Table(title="spawn: one small expert per domain (distilled from the large CNN, fine-tuned)")
        for col in ["domain", "expert acc %", "large acc %", "expert params", "share of large FLOPs"]:
            table.add_column(col, justify="left" if col == "domain" else "right")
        for row in result.spawn:
            table.add_row(row["domain"], f"{100 * row['student_accuracy']:.1f}", f"{100 * row['teacher_accuracy']:.1f}",
                          f"{row['params']:,}", f"{row['flops'] / row['teacher_flops']:.3f}")
        console.print(table)
    if result.cycle is not None:
        _print_cycle(result.cycle)
    console.print(f"done in {result.meta['seconds']} s; wrote {out / 'results.json'}, {out / 'report.md'}, {out / 'report.html'}")


def _print_cycle(cycle: Any) -> None:
    """Every model on every domain, generation after generation, and each feedback step's absorption."""
    labels, matrix = accuracy_matrix(cycle)
    table = Table(title="feedback cycle: test accuracy % of every model on every domain")
    for col in ["model", *cycle.domains]:
        table.add_column(col, justify="left" if col == "model" else "right")
    for label, row in zip(labels, matrix):
        table.add_row(label, *(f"{100 * v:.1f}" for v in row), style="bold" if label.startswith("large") else None)
    console.print(table)
    table = Table(title="feedback steps: absorption per domain = (v1 - v0) / (expert - v0)")
    shifted = [d for d in cycle.domains if d != cycle.general_domain]
    for col in ["generation", "strategy", *shifted, "forgetting (points)", "gate"]:
        table.add_column(col, justify="left" if col in ("generation", "strategy") else "right")
    for g in cycle.generations[1:]:
        for name, report, main in g.reports():
            cells = [report.domains[d].absorption for d in shifted]
            table.add_row(f"g{g.generation}", name if main else f"{name} (compared)",
                          *("–" if a is None else f"{a:.2f}" for a in cells), f"{100 * report.forgetting:+.2f}",
                          ("accepted" if g.accepted else "kept previous") if main else "–")
    console.print(table)


@app.command()
def spawn(
    suite: str = typer.Option("mnist1d", "--suite", help="suite name"),
    student: str = typer.Option("small", "--student", help="cnn1d size (tiny, small, medium) or arch[:size], e.g. mlp"),
    prune: float | None = typer.Option(None, "--prune", help="share of channels to remove from the distilled student, in [0, 1)"),
    quantize: bool = typer.Option(False, "--quantize", help="add an int8 copy of the distilled student"),
    export: Path | None = typer.Option(None, "--export", help="folder for ONNX files of the float students"),
    seed: int = typer.Option(0, "--seed"),
    device: str = typer.Option("cpu", "--device", help="cpu, cuda or auto"),
    n_per_domain: int = typer.Option(4000, "--n-per-domain", help="samples per domain"),
    epochs: int = typer.Option(20, "--epochs", help="student epochs"),
    teacher_epochs: int = typer.Option(20, "--teacher-epochs", help="teacher epochs"),
    mixup: int = typer.Option(0, "--mixup", help="extra mixup rows for the teacher to label (function matching), e.g. 100000"),
) -> None:
    """Distil a small student from the suite's large model (optionally prune, quantize, export) and compare them."""
    with _errors_exit_2():  # spawn_command checks every option before it loads or trains anything
        spawn_command(suite=suite, student=student, prune=prune, quantize=quantize, export=export, seed=seed,
                      device=device, n_per_domain=n_per_domain, console=console, epochs=epochs,
                      teacher_epochs=teacher_epochs, mixup=mixup)


@contextlib.contextmanager
def _errors_exit_2() -> Iterator[None]:
    """A crossfeed error (bad option, config or file) ends the command with ``error: ...`` and exit code 2."""
    try:
        yield
    except CrossfeedError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None


def _check_positive(option: str, value: int) -> None:
    if value < 1:
        raise ValidationError(f"{option} must be a positive integer; got {value}")


def _check_out_folder(folder: Path, option: str) -> None:
    """The output folder must be a folder we can create or write, checked before minutes of training."""
    if folder.exists() and not folder.is_dir():
        raise ValidationError(f"{option} must be a folder; {folder} exists and is a file. Pass another path")
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("."))
    if not os.access(existing, os.W_OK):
        raise ValidationError(f"{option} {folder} cannot be written ({existing} is not writable); pass another folder")


@app.command()
def run(
    config: Path = typer.Argument(..., help="experiment config (YAML), e.g. examples/demo.yaml"),
    out: Path | None = typer.Option(None, "--out", help="output folder (default: runs/<config name>)"),
    resume: bool = typer.Option(True, "--resume/--no-resume",
                                help="continue a killed run from its last finished generation"),
    device: str | None = typer.Option(None, "--device", help="override the config's device (cpu, cuda, auto)"),
    until: int | None = typer.Option(None, "--until", min=0,
                                     help="stop after this generation; run again to go on (e.g. --until 0 under "
                                          "torchrun trains generation 0 data-parallel)"),
) -> None:
    """Run the cycle of a YAML experiment: generations of spawn -> specialise -> feed back, every seed.

    Under torchrun (torchrun --nproc_per_node=2 -m crossfeed.cli run CONFIG --until 0) every training
    step is data-parallel and only rank 0 writes and prints.
    """
    try:
        cfg = load_config(config)
        if isinstance(cfg, RLExperimentConfig):
            _run_rl(cfg, out if out is not None else Path("runs") / cfg.name, device, until)
            return
        if device is not None:
            cfg = dataclasses.replace(cfg, device=device)
        folder = out if out is not None else Path("runs") / cfg.name
        w = init_from_env(cfg.device)
        if not w.parallel or w.rank == 0:
            with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                          console=console) as bars:
                result = run_experiment(cfg, folder, resume=resume, progress=RichProgress(bars), until=until)
        else:
            run_experiment(cfg, folder, resume=resume, until=until)
            return
    except CrossfeedError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    summary = result.summary()
    domains = summary["domains"]
    table = Table(title=f"{cfg.name}: large model, test accuracy % per generation (median over {len(cfg.seeds)} seed(s))")
    for col in ["generation", *domains]:
        table.add_column(col, justify="left" if col == "generation" else "right")
    for gen, row in summary["large_accuracy"].items():
        table.add_row(gen, *(f"{100 * row[d]['median']:.2f}" for d in domains))
    console.print(table)
    table = Table(title=f"served model of each domain, test accuracy % per generation (gate: {cfg.gate.test}, "
                        f"margin {100 * cfg.gate.margin:g} points, confidence {cfg.gate.confidence:g})")
    for col in ["generation", *domains]:
        table.add_column(col, justify="left" if col == "generation" else "right")
    for gen, row in summary["served_accuracy"].items():
        table.add_row(gen, *(f"{100 * row[d]['median']:.2f}" for d in domains))
    console.print(table)
    falls = summary["served_falls_beyond_margin"]
    console.print(f"served accuracy fell by more than the margin {len(falls)} time(s)"
                  + "".join(f"; seed {f['seed']} g{f['generation']} {f['domain']} {f['points']:+.2f}" for f in falls))
    if summary["absorption_last_generation"]:
        table = Table(title="absorption per domain, last generation (median over seeds)")
        for col in ["strategy", *domains]:
            table.add_column(col, justify="left" if col == "strategy" else "right")
        for strategy, rows in summary["absorption_last_generation"].items():
            table.add_row(strategy, *(f"{rows[d]['median']:.2f}" if d in rows else "–" for d in domains))
        console.print(table)
    console.print(f"done in {result.seconds} s; wrote {folder / 'results.json'}, {folder / 'report.md'}, "
                  f"{folder / 'report.html'}")


def _run_rl(cfg: RLExperimentConfig, folder: Path, device: str | None, until: int | None) -> None:
    """``crossfeed run`` of a ``kind: rl`` config: the RL cycle for every seed, then the returns table."""
    from crossfeed.experiments import run_rl_experiment

    if device not in (None, "cpu") or until is not None:
        raise ValidationError("an RL experiment (kind: rl) runs on the CPU from generation 0 to its last; "
                              "drop --device and --until")
    _check_out_folder(folder, "--out")
    result = run_rl_experiment(cfg, folder, progress=lambda line: console.log(line))
    last = list(result["summary"])[-1]
    rows = result["summary"][last]
    variants = list(next(iter(rows.values())))
    held_out = set(result["seeds"][0]["held_out"])
    table = Table(title=f"{cfg.name}: mean return per variant, {last}, median over {len(cfg.seeds)} seed(s)")
    table.add_column("policy")
    for v in variants:
        table.add_column(f"{v} (held out)" if v in held_out else v, justify="right")
    for policy, returns in rows.items():
        table.add_row(policy, *(f"{returns[v]['median']:.1f}" for v in variants))
    console.print(table)
    console.print(f"wrote {folder / 'rl-results.json'} and seed-<s>/rl-report.md under {folder}")


@app.command()
def report(
    run_dir: Path = typer.Argument(..., help="output folder of `crossfeed run` (e.g. runs/demo)"),
    out: Path | None = typer.Option(None, "--out", help="folder for report.md / report.html (default: RUN_DIR)"),
) -> None:
    """Write the report of a run folder: accuracy over generations, gate decisions, lineage (also of a stopped run)."""
    try:
        result = load_experiment(run_dir)
        folder = out if out is not None else run_dir
        _check_out_folder(folder, "--out")
        paths = write_experiment_report(result, folder)
    except CrossfeedError as exc:
        console.print(f"[red]error:[/red] {exc}")
        raise typer.Exit(2) from None
    for cycle in result.cycles:
        table = Table(title=f"lineage, seed {cycle.seed}")
        for col in ["generation", "parent", "strategy", "field data", "large model", "gate"]:
            table.add_column(col)
        for row in lineage_rows(cycle):
            table.add_row(*(row[:3] + row[4:]))
        console.print(table)
    console.print(f"wrote {paths['md']}, {paths['html']}")


@app.command("rl")
def rl_cycle(
    suite: str = typer.Argument("cartpole", help="RL suite: cartpole, acrobot, mountaincar or pendulum"),
    generations: int = typer.Option(1, "--generations", help="generations after generation 0 (PPO on pooled variants)"),
    seed: int = typer.Option(0, "--seed"),
    general_timesteps: int | None = typer.Option(None, "--general-timesteps", help="PPO budget of generation 0"),
    expert_timesteps: int | None = typer.Option(None, "--expert-timesteps", help="PPO budget of each expert"),
    out: Path = typer.Option(Path("runs/rl"), "--out", help="folder for the policies, rl-cycle.json, rl-report.md"),
) -> None:
    """The cycle on RL environment variants: spawn experts, specialise with PPO, distil back (needs crossfeed[rl])."""
    import torch

    with _errors_exit_2():
        from crossfeed.report import rl_matrix, write_rl_report
        from crossfeed.rl import load_rl_suite, run_rl_cycle

        if generations < 0:
            raise ValidationError(f"--generations must be >= 0; got {generations}")
        for option, value in (("--general-timesteps", general_timesteps), ("--expert-timesteps", expert_timesteps)):
            if value is not None:
                _check_positive(option, value)
        _check_out_folder(out, "--out")
        variants = load_rl_suite(suite, seed=seed)
        torch.set_num_threads(1)  # 64-unit policies step one environment batch at a time: more threads only add overhead
        cycle = run_rl_cycle(variants, generations=generations, seed=seed, general_timesteps=general_timesteps,
                             expert_timesteps=expert_timesteps, out_dir=out,
                             progress=lambda line: console.log(line))
        paths = write_rl_report(cycle, out)
    labels, matrix = rl_matrix(cycle)
    table = Table(title=f"{suite}: mean return of every policy on every variant (seed {seed})")
    table.add_column("policy")
    for v in cycle.variants:
        table.add_column(f"{v} (held out)" if v in cycle.held_out else v, justify="right")
    for label, row in zip(labels, matrix):
        table.add_row(label, *(f"{x:.1f}" for x in row))
    console.print(table)
    console.print(f"wrote {out / 'rl-cycle.json'}, {paths['markdown']}, {paths['heatmap']}")


def main() -> None:  # pragma: no cover
    logging.basicConfig(level=logging.WARNING)
    app()


if __name__ == "__main__":  # pragma: no cover
    main()
