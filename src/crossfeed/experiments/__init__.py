"""Jobs: the demo, and (later) experiments from YAML configs."""

from crossfeed.experiments._demo import DemoResult, run_demo
from crossfeed.experiments._progress import Progress, SilentProgress

__all__ = ["DemoResult", "Progress", "SilentProgress", "run_demo"]
