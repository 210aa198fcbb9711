"""Federated learning: clients that keep their rows, a server that sees only what they send.

- :func:`dirichlet_partition`, :func:`domain_partition`, :func:`class_counts`: client partitions
  (label-skewed Dirichlet splits, one domain per client).
- :class:`Client`, :func:`clients_from_parts`, :func:`simulate`: the in-process engine, which runs
  a federated strategy of :mod:`crossfeed.feedback` (``fedavg``, ``fedprox``, ``feddf``,
  ``fedmd``) over clients and returns a :class:`FederatedRun` (global model, per-round log,
  accuracy per round).
"""

from crossfeed.federated._partition import class_counts, dirichlet_partition, domain_partition
from crossfeed.federated._simulate import Client, FederatedRun, clients_from_parts, simulate

__all__ = ["Client", "FederatedRun", "class_counts", "clients_from_parts", "dirichlet_partition", "domain_partition",
           "simulate"]
