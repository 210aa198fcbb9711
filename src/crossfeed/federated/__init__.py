"""Federated learning: clients that keep their rows, a server that sees only what they send.

- :func:`dirichlet_partition`, :func:`domain_partition`, :func:`class_counts`: client partitions
  (label-skewed Dirichlet splits, one domain per client).
- :class:`Client`, :func:`clients_from_parts`, :func:`simulate`: the in-process engine, which runs
  a federated strategy of :mod:`crossfeed.feedback` (``fedavg``, ``fedprox``, ``feddf``,
  ``fedmd``) over clients and returns a :class:`FederatedRun` (global model, per-round log,
  accuracy per round).
- :func:`run_flower`: the same strategies as Flower apps (a ServerApp and one ClientApp per
  client) in Flower's Simulation Runtime, same arguments and result as :func:`simulate`;
  :func:`write_flower_app`, :func:`write_flower_job`, :class:`FlowerJob`, :func:`read_flower_run`:
  the same apps on a deployment (``flower-superlink``, ``flower-supernode``, ``flwr run``).
  Needs ``crossfeed[federated]``.
- :func:`flower_rounds`: the cycle's feedback rounds on Flower (``feedback.engine: flower``).
- :func:`run_secure`, :class:`SecAggPlus`: FedAvg / FedProx with SecAgg+ secure aggregation
  (Flower's legacy workflow API): the server learns only the clients' mean update.
"""

from crossfeed.federated._flower import (
    FlowerJob,
    flower_rounds,
    read_flower_run,
    run_flower,
    write_flower_app,
    write_flower_job,
)
from crossfeed.federated._partition import class_counts, dirichlet_partition, domain_partition
from crossfeed.federated._secagg import SecAggPlus, run_secure
from crossfeed.federated._simulate import Client, FederatedRun, clients_from_parts, simulate

__all__ = ["Client", "FederatedRun", "FlowerJob", "SecAggPlus", "class_counts", "clients_from_parts", "dirichlet_partition",
           "domain_partition", "flower_rounds", "read_flower_run", "run_flower", "run_secure", "simulate", "write_flower_app", "write_flower_job"]
