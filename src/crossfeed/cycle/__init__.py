"""The cycle: generation after generation of spawn -> specialise -> collect -> feed back.

- :func:`run_cycle`: run the generations of one seed from an
  :class:`~crossfeed.config.ExperimentConfig`, checkpointing each; a killed run resumes
  from its last finished generation.
- :class:`CycleResult` / :class:`GenerationResult`: every model measured on every domain;
  :class:`ExperimentResult`: every seed of a config.
- :func:`field_batches`: the field data a generation has collected.
"""

from crossfeed.cycle._cycle import field_batches, run_cycle
from crossfeed.cycle._results import CycleResult, ExperimentResult, GenerationResult

__all__ = ["CycleResult", "ExperimentResult", "GenerationResult", "field_batches", "run_cycle"]
