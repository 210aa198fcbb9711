"""What ``crossfeed spawn`` and the demo's spawn section run: rows, a table, exported files."""

from __future__ import annotations

import io

from rich.console import Console

from crossfeed.spawn import spawn_command, spawn_section


def test_spawn_command_rows_table_and_exports(tmp_path) -> None:  # type: ignore[no-untyped-def]
    out = io.StringIO()
    rows = spawn_command(
        student="tiny", prune=0.5, quantize=True, export=tmp_path / "onnx", n_per_domain=200,
        console=Console(file=out, width=200), epochs=2, teacher_epochs=2,
    )
    names = [r["model"] for r in rows]
    assert names == ["teacher cnn1d large", "tiny from scratch", "tiny distilled", "tiny distilled + pruned 50%",
                     "tiny distilled + int8"]
    teacher, scratch, distilled, pruned, int8 = rows
    assert teacher["retention"] == 1.0 and teacher["param_share"] == 1.0
    assert scratch["params"] == distilled["params"] == int8["params"] == 1282
    assert pruned["params"] < distilled["params"]
    assert int8["int8"] and int8["file_bytes"] < distilled["file_bytes"] < teacher["file_bytes"]
    for r in rows:
        assert 0 <= r["accuracy"] <= 1 and r["latency_b1_us"] > 0 and r["latency_b256_us"] > 0
        if not r["int8"]:
            assert r["onnx_max_abs_diff"] <= 1e-4
    assert sorted(p.name for p in (tmp_path / "onnx").iterdir()) == sorted(
        ["teacher_cnn1d_large.onnx", "tiny_from_scratch.onnx", "tiny_distilled.onnx",
         "tiny_distilled_pruned_50.onnx"]
    )
    text = out.getvalue()
    assert "crossfeed spawn" in text and "tiny distilled + int8" in text and "retention" in text


def test_spawn_section_rows(teacher, suite) -> None:  # type: ignore[no-untyped-def]
    rows = spawn_section(teacher, suite, 0, epochs=1, finetune_epochs=1, domains=["noisy", "scaled"])
    assert [r["domain"] for r in rows] == ["noisy", "scaled"]
    for r in rows:
        assert set(r) == {"domain", "student_accuracy", "teacher_accuracy", "params", "flops", "teacher_params",
                          "teacher_flops"}
        assert r["params"] < r["teacher_params"] and r["flops"] < r["teacher_flops"]


def test_spawn_command_checks_every_option_before_training(monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import pytest

    from crossfeed.exceptions import UnknownNameError, ValidationError
    from crossfeed.models import TorchClassifier

    def fit(*args, **kwargs):  # type: ignore[no-untyped-def]
        raise AssertionError("training started before the options were checked")

    monkeypatch.setattr(TorchClassifier, "fit", fit)
    quiet = Console(file=io.StringIO())
    cases = [
        ({"student": "huge"}, UnknownNameError, "unknown architecture 'huge'"),
        ({"prune": 1.0}, ValidationError, r"prune must be in \[0, 1\)"),
        ({"prune": "half"}, ValidationError, r"prune must be a number in \[0, 1\)"),
        ({"temperature": 0.0}, ValidationError, "temperature must be a positive finite number"),
        ({"alpha": 1.5}, ValidationError, r"alpha must be in \[0, 1\]"),
        ({"mixup": -5}, ValidationError, "--mixup must be a whole number of extra rows >= 0"),
        ({"epochs": 2.5}, ValidationError, "epochs must be a positive integer; got 2.5"),
        ({"suite": "mnist1d", "n_per_domain": True}, ValidationError, "n_per_domain must be a positive integer"),
        ({"student": "cnn1d:small", "n_per_domain": 200, "seed": "zero"}, ValidationError, "seed must be an integer"),
    ]
    for kwargs, error, match in cases:
        with pytest.raises(error, match=match):
            spawn_command(**{"n_per_domain": 200, **kwargs}, console=quiet)
