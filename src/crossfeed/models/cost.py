"""Public path of the cost functions (``crossfeed.models.cost.flops_per_sample``)."""

from crossfeed.models._cost import (
    Cost,
    count_params,
    flops_per_sample,
    measure_cost,
    measure_latency,
)

__all__ = ["Cost", "count_params", "flops_per_sample", "measure_cost", "measure_latency"]
