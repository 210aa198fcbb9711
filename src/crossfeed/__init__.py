"""crossfeed: make large and small models better together.

Three verbs and a loop: **combine** large and small models at prediction time, **spawn** small
models from a large one, **feed back** what the small models learned into the large one, and the
**cycle** that repeats them.
"""

from crossfeed.combine import (
    Cascade,
    MeanEnsemble,
    StackingEnsemble,
    TemperatureScaler,
    WeightedEnsemble,
)
from crossfeed.data import Domain, DomainSuite, load_suite
from crossfeed.exceptions import CrossfeedError
from crossfeed.models import TorchClassifier, load_model, measure_cost, save_model

__version__ = "0.1.0"

__all__ = [
    "Cascade",
    "CrossfeedError",
    "Domain",
    "DomainSuite",
    "MeanEnsemble",
    "StackingEnsemble",
    "TemperatureScaler",
    "TorchClassifier",
    "WeightedEnsemble",
    "__version__",
    "load_model",
    "load_suite",
    "measure_cost",
    "save_model",
]
