"""Metrics: accuracy, NLL, ECE, accuracy-versus-cost summaries (cost to match, normalised AUC, APGR),
and the per-domain figures of feedback (accuracy on every domain, absorption, forgetting)."""

from crossfeed.evaluate._cost_curves import CostToMatch, apgr, cost_to_match, normalized_auc
from crossfeed.evaluate._domains import (
    absorption,
    domain_accuracy,
    forgetting,
    prediction_accuracy,
)
from crossfeed.evaluate._metrics import accuracy, ece, label_indices, nll, score_all

__all__ = [
    "CostToMatch",
    "absorption",
    "accuracy",
    "apgr",
    "cost_to_match",
    "domain_accuracy",
    "ece",
    "forgetting",
    "label_indices",
    "nll",
    "normalized_auc",
    "prediction_accuracy",
    "score_all",
]
