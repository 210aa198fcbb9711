"""The README's "Writing a feedback strategy" example is real code: run it, then absorb with it."""

from __future__ import annotations

import re
from pathlib import Path

from crossfeed.feedback import STRATEGIES, TrainSettings, absorb

README = Path(__file__).parents[2] / "README.md"


def _example() -> str:
    text = README.read_text()
    section = text[text.index("## Writing a feedback strategy"):]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def test_the_readme_strategy_registers_and_absorbs_the_experts(v0, experts, suite, control):
    namespace: dict = {}
    exec(compile(_example(), "README.md", "exec"), namespace)
    try:
        assert "field_kd" in STRATEGIES
        _, report = absorb(v0, experts, suite, "field_kd", TrainSettings(epochs=20, lr=1e-3), params={"temperature": 4.0})
        assert report.params == {"temperature": 4.0}
        gained = [report.domains[d].acc_v1 - control.domains[d].acc_v1 for d in experts]
        assert sum(gained) / len(gained) > 0.03, gained  # against continued training on the same budget
    finally:
        STRATEGIES.remove("field_kd")
