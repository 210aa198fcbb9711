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
