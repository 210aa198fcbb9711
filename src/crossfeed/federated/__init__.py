"""Federated learning across domains: client partitions (the strategies are ``fedavg``, ``fedprox``
and ``ensemble_distill`` (FedDF) in :mod:`crossfeed.feedback`, on its rounds driver)."""

from crossfeed.federated._partition import class_counts, dirichlet_partition, domain_partition

__all__ = ["class_counts", "dirichlet_partition", "domain_partition"]
