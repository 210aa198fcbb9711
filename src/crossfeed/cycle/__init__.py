"""The cycle: generation after generation of spawn -> specialise -> collect -> feed back.

- :func:`run_cycle`: run the generations of one seed from an
  :class:`~crossfeed.experiments.ExperimentConfig`, checkpointing each; a killed run resumes
  from its last finished generation.
- :class:`CycleResult` / :class:`GenerationResult`: every model measured on every domain.
- :func:`field_batches`: the field data a generation has collected.
"""

from crossfeed.cycle._cycle import CycleResult, GenerationResult, field_batches, run_cycle

__all__ = ["CycleResult", "GenerationResult", "field_batches", "run_cycle"]
