import doctest
import importlib
import re
from pathlib import Path

import pytest

PACKAGES = ["crossfeed", "crossfeed.data", "crossfeed.models", "crossfeed.training", "crossfeed.combine",
            "crossfeed.evaluate", "crossfeed.experiments", "crossfeed.report", "crossfeed.spawn", "crossfeed.feedback",
            "crossfeed.serving", "crossfeed.rl", "crossfeed.federated"]


@pytest.mark.parametrize("name", PACKAGES)
def test_all_is_sorted_and_importable(name):
    module = importlib.import_module(name)
    assert module.__all__ == sorted(module.__all__), f"{name}.__all__ must stay sorted"
    for item in module.__all__:
        assert hasattr(module, item), f"{name}.__all__ lists {item} which does not exist"


def test_exceptions_are_also_builtins():
    from crossfeed import exceptions as e

    assert issubclass(e.ValidationError, ValueError) and issubclass(e.ValidationError, e.CrossfeedError)
    assert issubclass(e.UnknownNameError, KeyError)
    assert issubclass(e.NonNumericInputError, TypeError)
    assert issubclass(e.MissingDependencyError, ImportError)
    assert "pip install 'crossfeed[onnx]'" in str(e.missing_dependency("onnxruntime", "onnx"))


@pytest.mark.parametrize("module", ["crossfeed._registry", "crossfeed.evaluate._cost_curves", "crossfeed.models._cost",
                                    "crossfeed.models._torch_classifier", "crossfeed.data._suites",
                                    "crossfeed.config._config", "crossfeed.feedback._merging",
                                    "crossfeed.feedback.merge", "crossfeed.feedback.transfer_init",
                                    "crossfeed.feedback.ensemble_distill", "crossfeed.feedback.multi_teacher_kd",
                                    "crossfeed.feedback.data_feedback", "crossfeed.feedback._base", "crossfeed.data._domain", "crossfeed.data._fashion",
                                    "crossfeed.models._cnn2d", "crossfeed.models._features", "crossfeed.models._recsys",
                                    "crossfeed.data._movielens", "crossfeed.rl._distill", "crossfeed.rl._meta",
                                    "crossfeed.training._distributed", "crossfeed.federated._partition",
                                    "crossfeed.feedback._adaptation", "crossfeed.feedback._contrastive",
                                    "crossfeed.feedback._taxonomy", "crossfeed.feedback._meta",
                                    "crossfeed.feedback._invariance", "crossfeed.data._colored",
                                    "crossfeed.feedback.hierarchical", "crossfeed.feedback.self_supervised",
                                    "crossfeed.feedback.feddf", "crossfeed.feedback.fedmd",
                                    "crossfeed.federated._simulate", "crossfeed.feedback.dp_fedavg",
                                    "crossfeed.training._loop", "crossfeed.config._rl", "crossfeed.feedback.fedavg",
                                    "crossfeed.models._forest"])
def test_docstring_examples_run(module):
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


def test_registry_rejects_duplicates_and_suggests():
    from crossfeed._registry import Registry
    from crossfeed.exceptions import DuplicateNameError, UnknownNameError

    reg: Registry[int] = Registry("widget")
    reg.add("alpha", 1)
    with pytest.raises(DuplicateNameError):
        reg.add("alpha", 2)
    with pytest.raises(UnknownNameError, match="did you mean 'alpha'"):
        reg.get("alpah")
    assert "alpha" in reg and list(reg) == ["alpha"] and len(reg) == 1
    assert reg.remove("alpha") == 1 and len(reg) == 0
    with pytest.raises(UnknownNameError):
        reg.remove("alpha")
    assert "known strategies" in Registry("strategy")._unknown_message("x")


def test_readme_quick_start_runs(capsys):
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    block = re.search(r"## Quick start\n\n```python\n(.*?)```", readme, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    out = capsys.readouterr().out
    assert "weights" in out and "cascade accuracy" in out


def test_readme_commands_match_ci():
    root = Path(__file__).parents[1]
    readme = (root / "README.md").read_text()
    ci = (root / ".ci" / "run").read_text()
    test_cmd = re.search(r"# 2\. set up and run the tests\n(.*)\n", readme).group(1)
    assert test_cmd in ci.splitlines()
