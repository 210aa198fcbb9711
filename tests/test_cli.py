from typer.testing import CliRunner

from crossfeed.cli import app


def test_spawn_command_prints_the_teacher_student_table(tmp_path):
    res = CliRunner().invoke(app, ["spawn", "--student", "tiny", "--n-per-domain", "200", "--epochs", "1",
                                   "--teacher-epochs", "1", "--prune", "0.5", "--export", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert "teacher" in res.output and "distilled" in res.output
    assert list(tmp_path.glob("*.onnx")), "the float students are exported"


def test_spawn_rejects_a_bad_ratio():
    res = CliRunner().invoke(app, ["spawn", "--student", "tiny", "--n-per-domain", "200", "--epochs", "1",
                                   "--teacher-epochs", "1", "--prune", "1.5"])
    assert res.exit_code != 0
    assert "[0, 1)" in str(res.exception) + res.output


# ----------------------------------------------------------------- hostile options: error + exit 2, before training
import pytest  # noqa: E402
import torch  # noqa: E402


@pytest.fixture
def no_training(monkeypatch):
    """Any training would fail this test: every option must be checked before the first fit."""
    from crossfeed.models import TorchClassifier

    def fit(*args, **kwargs):
        raise AssertionError("training started before the options were checked")

    monkeypatch.setattr(TorchClassifier, "fit", fit)


def _refused(args: list[str]) -> str:
    res = CliRunner().invoke(app, args)
    text = " ".join(res.output.split())  # rich wraps long lines
    assert res.exit_code == 2, (res.exit_code, res.output, res.exception)
    assert "error:" in text and "Traceback" not in text
    return text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--student", "huge"], "unknown architecture 'huge'"),
        (["--student", "cnn1d:huge"], "unknown cnn1d size in student 'cnn1d:huge'; choose one of tiny, small"),
        (["--student", "mlp:small"], "the student 'mlp:small' does not fit suite 'mnist1d'"),
        (["--prune", "1.5"], "prune must be in [0, 1)"),
        (["--prune", "-0.1"], "prune must be in [0, 1)"),
        (["--prune", "nan"], "prune must be in [0, 1)"),
        (["--suite", "mnist1e"], "unknown suite 'mnist1e'; known suites: amazon, colored_fashion, fashion, mnist1d, movielens; did you mean 'mnist1d'?"),
        (["--suite", "movielens"], "suite 'movielens' has no option 'n_per_domain'. Its loader load_movielens takes: directory"),
        (["--n-per-domain", "0"], "n_per_domain must be a positive integer; got 0"),
        (["--n-per-domain", "10"], "n_per_domain must be at least 80"),
        (["--epochs", "0"], "epochs must be a positive integer; got 0"),
        (["--teacher-epochs", "-3"], "teacher_epochs must be a positive integer; got -3"),
        (["--device", "tpu"], "device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got 'tpu'"),
    ],
)
def test_spawn_checks_its_options_before_training(no_training, args, message):
    assert message in _refused(["spawn", "--n-per-domain", "200", *args])


def test_spawn_refuses_an_export_path_that_is_a_file(no_training, tmp_path):
    target = tmp_path / "onnx"
    target.write_text("a file")
    assert f"export must be a folder for the ONNX files; {target} exists and is a file" in _refused(
        ["spawn", "--n-per-domain", "200", "--export", str(target)])


@pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here")
def test_spawn_and_demo_refuse_cuda_where_there_is_none(no_training):
    assert "CUDA is not available here" in _refused(["spawn", "--n-per-domain", "200", "--device", "cuda"])
    assert "CUDA is not available here" in _refused(["demo", "--n-per-domain", "200", "--device", "cuda"])


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs must be a positive integer; got 0"),
        (["--n-per-domain", "0"], "--n-per-domain must be a positive integer; got 0"),
        (["--n-per-domain", "50"], "n_per_domain must be at least 80"),
        (["--device", "tpu"], "device must be 'cpu', 'cuda', 'cuda:N' or 'auto'; got 'tpu'"),
    ],
)
def test_demo_checks_its_options_before_training(no_training, tmp_path, args, message):
    assert message in _refused(["demo", "--out", str(tmp_path / "out"), "--n-per-domain", "200", *args])


def test_demo_refuses_an_out_path_that_is_a_file(no_training, tmp_path):
    target = tmp_path / "report"
    target.write_text("a file")
    assert f"--out must be a folder; {target} exists and is a file" in _refused(["demo", "--out", str(target)])


def test_rl_command_runs_the_cycle_and_writes_its_report(tmp_path):
    pytest.importorskip("gymnasium")
    pytest.importorskip("stable_baselines3")
    res = CliRunner().invoke(app, ["rl", "cartpole", "--generations", "1", "--general-timesteps", "1024",
                                   "--expert-timesteps", "1024", "--out", str(tmp_path)])
    assert res.exit_code == 0, res.output
    assert {"rl-cycle.json", "rl-report.md", "rl-heatmap.png", "generation-0", "generation-1"} <= {
        p.name for p in tmp_path.iterdir()}
    assert "long-pole" in (tmp_path / "rl-report.md").read_text()


@pytest.mark.parametrize("args, fragment", [
    (["rl", "cartpol"], "did you mean 'cartpole'"),
    (["rl", "cartpole", "--generations", "-1"], "--generations must be >= 0"),
    (["rl", "cartpole", "--expert-timesteps", "0"], "--expert-timesteps must be a positive integer"),
])
def test_rl_command_rejects_bad_options_before_training(args, fragment):
    pytest.importorskip("gymnasium")
    res = CliRunner().invoke(app, args)
    assert res.exit_code == 2, res.output
    assert fragment in " ".join(res.output.split())
