"""The cycle: generation after generation of spawn -> specialise -> collect -> feed back.

- :func:`run_cycle`: run the generations of one seed from an
  :class:`~crossfeed.config.ExperimentConfig`, checkpointing each; a killed run resumes
  from its last finished generation.
- the gate (:func:`decide`): per domain, a paired non-inferiority test decides which model serves
  it (the one it had, the new large model, its expert) and whether the new large model goes on;
  :class:`DomainRouter` / :func:`load_served` answer each domain with its served model.
- :class:`CycleResult` / :class:`GenerationResult`: every model measured on every domain, the
  gate's decisions and the lineage of each generation; :class:`ExperimentResult`: every seed.
- field data that keeps arriving: :class:`FolderField`, :class:`IterableField`,
  :class:`SuiteField` (:func:`field_batches`: the suite's split as a generation sees it).
- :func:`reproduce_generation` reruns a generation from its lineage; :func:`weights_sha256`;
  :func:`load_cycle` reads a seed's finished generations back.
"""

from crossfeed.cycle._cycle import field_batches, load_cycle, reproduce_generation, run_cycle
from crossfeed.cycle._field import FieldBatch, FolderField, IterableField, SuiteField, data_sha256
from crossfeed.cycle._gate import Decision, GateOutcome, ServedRef, decide
from crossfeed.cycle._lineage import weights_sha256
from crossfeed.cycle._results import CycleResult, ExperimentResult, GenerationResult
from crossfeed.cycle._router import DomainRouter, load_served

__all__ = [
    "CycleResult",
    "Decision",
    "DomainRouter",
    "ExperimentResult",
    "FieldBatch",
    "FolderField",
    "GateOutcome",
    "GenerationResult",
    "IterableField",
    "ServedRef",
    "SuiteField",
    "data_sha256",
    "decide",
    "field_batches",
    "load_cycle",
    "load_served",
    "reproduce_generation",
    "run_cycle",
    "weights_sha256",
]
