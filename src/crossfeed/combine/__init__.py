"""Combine several classifiers: averages, learned weights, stacking, cost-aware cascades.

Every combiner is a scikit-learn classifier taking ``members`` as a list of
``(name, estimator)`` pairs; ``prefit=True`` uses already-trained members as they are.
``X`` is always 2-D, of shape (n_samples, n_features): every combiner refuses 1-D input and
input with more than two dimensions (flatten images with ``X.reshape(len(X), -1)``), and
refuses members whose probabilities hold NaN or infinite values.

- :class:`MeanEnsemble`: plain average of probabilities.
- :class:`WeightedEnsemble`: simplex weights fitted to validation log-loss (SLSQP, or Caruana
  et al. 2004 ensemble selection).
- :class:`StackingEnsemble`: a meta-model on out-of-fold probabilities (Wolpert 1992).
- :class:`Cascade`: cheapest member first, escalate when unsure (arXiv 2012.01988); thresholds
  calibrated to a target or a budget, or certified by Learn then Test ("accuracy loss <= epsilon
  with probability >= 1 - delta", arXiv 2110.01052) with :func:`wsr_p_value` /
  :func:`binomial_p_value` and :func:`fixed_sequence`; ``stages="auto"`` picks the ladder.
- :class:`Router`: a learned router (RouteLLM style, arXiv 2406.18665): per member, a small model
  predicts whether it will be right; each sample goes to one member, trading accuracy for cost.
- :func:`compose_experts`: the large model and the experts behind a learned gate, one servable
  mixture-of-experts model (top-k routing, load balancing); :func:`weight_ensemble`: fine-tuned
  copies merged into a weight-ensembling MoE (WEMoE, arXiv 2402.00433); :func:`routing_shares`,
  :func:`mixture_flops_per_sample` measure the routing.
- :class:`TemperatureScaler` / :func:`fit_temperature`: temperature scaling (arXiv 1706.04599).
"""

from crossfeed.combine._calibration import TemperatureScaler, fit_temperature
from crossfeed.combine._cascade import Cascade
from crossfeed.combine._cascade_search import candidate_thresholds, cascade_outcomes
from crossfeed.combine._confidence import (
    CONFIDENCE_RULES,
    entropy_confidence,
    margin_confidence,
    max_prob_confidence,
)
from crossfeed.combine._math import (
    caruana_selection,
    mean_log_loss,
    optimize_simplex_weights,
)
from crossfeed.combine._mean import MeanEnsemble
from crossfeed.combine._moe import compose_experts, mixture_flops_per_sample, routing_shares, weight_ensemble
from crossfeed.combine._risk import (
    RiskCertificate,
    accuracy_loss,
    binomial_p_value,
    fixed_sequence,
    wsr_p_value,
)
from crossfeed.combine._router import Router
from crossfeed.combine._stacking import StackingEnsemble
from crossfeed.combine._weighted import WeightedEnsemble

__all__ = [
    "CONFIDENCE_RULES",
    "Cascade",
    "MeanEnsemble",
    "RiskCertificate",
    "Router",
    "StackingEnsemble",
    "TemperatureScaler",
    "WeightedEnsemble",
    "accuracy_loss",
    "binomial_p_value",
    "candidate_thresholds",
    "caruana_selection",
    "cascade_outcomes",
    "compose_experts",
    "entropy_confidence",
    "fit_temperature",
    "fixed_sequence",
    "margin_confidence",
    "max_prob_confidence",
    "mean_log_loss",
    "mixture_flops_per_sample",
    "optimize_simplex_weights",
    "routing_shares",
    "weight_ensemble",
    "wsr_p_value",
]
