"""What ``crossfeed spawn`` and the spawn part of ``crossfeed demo`` run (the CLI owns the terminal).

``spawn_command`` trains the suite's large model (the teacher), a student from scratch and a
distilled student (optionally pruned, quantized and exported to ONNX), measures them side by side
and prints one rich table. ``spawn_section`` measures per-domain experts for the demo report.
"""

from __future__ import annotations

import logging
import numbers
import os
import re
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from crossfeed.data import DomainSuite, check_suite_kwargs, load_suite
from crossfeed.distill import check_alpha, check_mixup, check_temperature
from crossfeed.evaluate import prediction_accuracy
from crossfeed.exceptions import ValidationError
from crossfeed.models import (
    CNN1D_SIZES,
    TorchClassifier,
    build_module,
    count_params,
    flops_per_sample,
    measure_latency,
)
from crossfeed.spawn._distill import Distiller
from crossfeed.spawn._experts import make_student, spawn_experts
from crossfeed.spawn._export import export_onnx
from crossfeed.spawn._prune import _check_ratio, prune_structured
from crossfeed.spawn._quantize import is_quantized, quantize, weights_file_size
from crossfeed.training import resolve_device

__all__ = ["spawn_command", "spawn_section"]

logger = logging.getLogger(__name__)


def _student_template(student: str, *, epochs: int, device: str, seed: int) -> TorchClassifier:
    spec = f"cnn1d:{student}" if student in CNN1D_SIZES else student
    template = make_student(spec, epochs=epochs, random_state=seed)
    template.set_params(device=device)
    return template


def measure_row(
    name: str,
    model: Any,
    X_test: np.ndarray,
    y_test: np.ndarray,
    *,
    reference: Any = None,
    float_model: Any = None,
) -> dict[str, Any]:
    """Accuracy, parameters, FLOPs, latency (batch 1 and 256) and weight-file size of one model.

    ``float_model`` gives the parameter and FLOP counts of a quantized model (same network, int8
    storage: torch's counters see no float parameters or FLOPs in quantized kernels).
    """
    counted = float_model if float_model is not None else model
    row: dict[str, Any] = {
        "model": name,
        "accuracy": prediction_accuracy(model, X_test, y_test),
        "params": count_params(counted),
        "flops": flops_per_sample(counted, X_test),
        "latency_b1_us": 1e6 * measure_latency(model, X_test, batch_size=1),
        "latency_b256_us": 1e6 * measure_latency(model, X_test, batch_size=256),
        "file_bytes": weights_file_size(model),
        "int8": is_quantized(model),
    }
    ref = reference if reference is not None else row
    row["retention"] = row["accuracy"] / ref["accuracy"] if ref["accuracy"] else float("nan")
    row["param_share"] = row["params"] / ref["params"]
    row["speedup_b1"] = ref["latency_b1_us"] / row["latency_b1_us"]
    row["speedup_b256"] = ref["latency_b256_us"] / row["latency_b256_us"]
    return row


def render_table(rows: list[dict[str, Any]], title: str) -> Table:
    """The rows of :func:`spawn_command` as a rich table."""
    table = Table(title=title)
    for col in ("model", "accuracy", "retention", "params", "share", "FLOPs", "b1 µs", "b256 µs",
                "speed-up b1/b256", "weights", "ONNX parity"):
        table.add_column(col, justify="left" if col == "model" else "right")
    for r in rows:
        parity = r.get("onnx_max_abs_diff")
        table.add_row(
            r["model"], f"{r['accuracy']:.3f}", f"{r['retention']:.1%}", f"{r['params']:,}",
            f"{r['param_share']:.1%}", f"{r['flops'] / 1e3:,.0f}k", f"{r['latency_b1_us']:.0f}",
            f"{r['latency_b256_us']:.1f}", f"{r['speedup_b1']:.1f}x / {r['speedup_b256']:.1f}x",
            f"{r['file_bytes'] / 1024:,.1f} KiB", "-" if parity is None else f"{parity:.1e}",
        )
    return table


def spawn_command(
    suite: str = "mnist1d",
    student: str = "small",
    prune: float | None = None,
    quantize: bool = False,
    export: str | Path | None = None,
    seed: int = 0,
    device: str = "cpu",
    n_per_domain: int = 4000,
    console: Console | None = None,
    *,
    epochs: int = 20,
    teacher_epochs: int = 20,
    temperature: float = 4.0,
    alpha: float = 0.9,
    mixup: int = 0,
) -> list[dict[str, Any]]:
    """Teacher, student from scratch, distilled student (+ pruned / quantized / ONNX), measured side by side.

    Parameters
    ----------
    suite : suite name (``crossfeed.data.SUITES``).
    student : a ``cnn1d`` size ("tiny", "small", "medium") or "arch[:size]" (e.g. "mlp").
    prune : share of channels to remove from the distilled student (then recovered by distilling
        for ``epochs // 2`` epochs), or None.
    quantize : add an int8 copy of the distilled student (static for convolutions).
    export : folder for ONNX files of the float students (created if missing), or None.
    seed, device, n_per_domain : data and training settings.
    console : rich Console to print to (a new one by default).
    epochs, teacher_epochs, temperature, alpha : training settings.
    mixup : extra mixup rows of the training and field inputs for the teacher to label
        (:class:`~crossfeed.spawn.Distiller`'s ``mixup``); 0: the field data alone.

    Returns
    -------
    list of dict, one per model: model, accuracy, retention (vs the teacher), params, param_share,
    flops, latency_b1_us, latency_b256_us, speedup_b1, speedup_b256, file_bytes, int8 and, with
    ``export``, onnx_path, onnx_bytes, onnx_max_abs_diff.
    """
    console = console or Console()
    template = _check_options(suite=suite, student=student, prune=prune, export=export, seed=seed, device=device,
                              n_per_domain=n_per_domain, epochs=epochs, teacher_epochs=teacher_epochs,
                              temperature=temperature, alpha=alpha, mixup=mixup)
    data = load_suite(suite, seed=seed, n_per_domain=n_per_domain)
    X, y = data.pooled("train")
    X_val, y_val = data.pooled("val")
    X_test, y_test = data.pooled("test")
    fields = [d.X_field for d in data if d.X_field is not None and len(d.X_field)]
    X_field = np.concatenate(fields) if fields else None
    for what, model in (("teacher (cnn1d large)", TorchClassifier("cnn1d", module_kwargs={"size": "large"})),
                        (f"student {student!r}", template)):
        try:  # cheap: builds the untrained networks for this data, so a misfit fails before any training
            build_module(model.module, int(np.prod(X.shape[1:])), len(np.unique(y)), **(model.module_kwargs or {}))
        except ValidationError as exc:
            raise ValidationError(f"the {what} does not fit suite {suite!r}: {exc}") from exc

    console.log(f"teacher: cnn1d large on {len(X)} pooled samples of {suite!r}")
    teacher = TorchClassifier("cnn1d", module_kwargs={"size": "large"}, epochs=teacher_epochs, lr=3e-3,
                              device=device, random_state=seed).fit(X, y, X_val=X_val, y_val=y_val)
    console.log(f"student {student!r}: from scratch")
    scratch = TorchClassifier(**template.get_params()).fit(X, y, X_val=X_val, y_val=y_val)
    transfer = "field data" + (f" + {mixup} mixup rows" if mixup else "")
    console.log(f"student {student!r}: distilled (T={temperature}, alpha={alpha}, transfer = {transfer})")
    distilled = Distiller(teacher, template, temperature=temperature, alpha=alpha, mixup=mixup).fit(
        X, y, X_val=X_val, y_val=y_val, X_transfer=X_field
    ).student_
    models: list[tuple[str, Any, Any]] = [
        ("teacher cnn1d large", teacher, None),
        (f"{student} from scratch", scratch, None),
        (f"{student} distilled", distilled, None),
    ]
    if prune is not None:
        console.log(f"pruning {prune:.0%} of the distilled student's channels, then distilling to recover")
        pruned = prune_structured(
            distilled, prune, example_X=X, teacher=teacher,
            fine_tune={"X": X, "y": y, "X_transfer": X_field, "epochs": max(1, epochs // 2),
                       "temperature": temperature, "alpha": alpha},
        )
        models.append((f"{student} distilled + pruned {prune:.0%}", pruned, None))
    if quantize:
        console.log("quantizing the distilled student to int8")
        models.append((f"{student} distilled + int8", quantize_model(distilled, X), distilled))

    console.log("measuring accuracy, cost and latency side by side")
    rows: list[dict[str, Any]] = []
    reference = None
    for name, model, float_model in models:
        row = measure_row(name, model, X_test, y_test, reference=reference, float_model=float_model)
        reference = reference or row
        rows.append(row)
    if export is not None:
        folder = Path(export)
        for row, (name, model, _) in zip(rows, models, strict=True):
            if row["int8"]:
                continue
            report = export_onnx(model, folder / f"{_slug(name)}.onnx", example_X=X_test)
            row.update(onnx_path=str(report.path), onnx_bytes=report.file_size_bytes,
                       onnx_max_abs_diff=report.max_abs_diff)
    console.print(render_table(rows, f"crossfeed spawn: {suite}, seed {seed} (latency on {device}, this machine)"))
    return rows


def _check_options(
    *, suite: str, student: str, prune: float | None, export: str | Path | None, seed: int, device: str,
    n_per_domain: int, epochs: int, teacher_epochs: int, temperature: float, alpha: float, mixup: int = 0,
) -> TorchClassifier:
    """Check every option of :func:`spawn_command` before anything is loaded or trained; returns the
    student template. Raises ``UnknownNameError`` / ``ValidationError`` naming the option."""
    for name, value in (("n_per_domain", n_per_domain), ("epochs", epochs), ("teacher_epochs", teacher_epochs)):
        if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < 1:
            raise ValidationError(f"{name} must be a positive integer; got {value!r}")
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral):
        raise ValidationError(f"seed must be an integer; got {seed!r}")
    check_suite_kwargs(suite, {"n_per_domain": n_per_domain})  # unknown suite names raise with the list
    if not isinstance(student, str) or not student:
        raise ValidationError(f"student must be a cnn1d size ({', '.join(CNN1D_SIZES)}) or 'arch[:size]'; got {student!r}")
    template = _student_template(student, epochs=int(epochs), device=device, seed=int(seed))
    if template.module == "cnn1d" and (template.module_kwargs or {}).get("size", "medium") not in CNN1D_SIZES:
        raise ValidationError(
            f"unknown cnn1d size in student {student!r}; choose one of {', '.join(CNN1D_SIZES)} (e.g. --student tiny)"
        )
    if prune is not None:
        _check_ratio(prune, "prune")
    check_temperature(temperature)
    check_alpha(alpha)
    check_mixup(mixup, name="--mixup")
    resolve_device(device)  # a typo, or cuda where there is none
    if export is not None:
        folder = Path(export)
        if folder.exists() and not folder.is_dir():
            raise ValidationError(f"export must be a folder for the ONNX files; {folder} exists and is a file")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise ValidationError(f"export folder {folder} cannot be created ({exc}); pass a writable folder") from exc
        if not os.access(folder, os.W_OK):
            raise ValidationError(f"export folder {folder} is not writable; pass a folder you may write to")
    return template


def quantize_model(model: TorchClassifier, calibration_X: np.ndarray) -> TorchClassifier:
    """Int8 copy of ``model`` (static for convolutional models, calibrated on 512 samples)."""
    return quantize(model, calibration_X[:512])


def _slug(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z]+", "_", name).strip("_")


def spawn_section(
    large: Any,
    suite: DomainSuite,
    seed: int = 0,
    *,
    experts: dict[str, Any] | None = None,
    **spawn_kwargs: Any,
) -> list[dict[str, Any]]:
    """Per-domain rows for the demo report: each domain's expert against the large model.

    Parameters
    ----------
    large : the fitted large model.
    suite : DomainSuite.
    seed : random_state of :func:`spawn_experts`.
    experts : dict domain -> fitted model, optional; spawned with ``spawn_experts(large, suite,
        random_state=seed, **spawn_kwargs)`` when not given (pass them to reuse them elsewhere).

    Returns
    -------
    list of dict: domain, student_accuracy, teacher_accuracy (on the domain's test split), params,
    flops (the expert's), teacher_params, teacher_flops.
    """
    if experts is None:
        experts = spawn_experts(large, suite, random_state=seed, **spawn_kwargs)
    rows = []
    X_any = suite.domains[0].X_test
    t_params, t_flops = count_params(large), flops_per_sample(large, X_any)
    for name, expert in experts.items():
        X_test, y_test = suite[name].split("test")
        rows.append({
            "domain": name,
            "student_accuracy": prediction_accuracy(expert, X_test, y_test),
            "teacher_accuracy": prediction_accuracy(large, X_test, y_test),
            "params": count_params(expert),
            "flops": flops_per_sample(expert, X_test),
            "teacher_params": t_params,
            "teacher_flops": t_flops,
        })
    return rows
