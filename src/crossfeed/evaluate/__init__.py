"""Metrics: accuracy, NLL, ECE, and accuracy-versus-cost summaries."""

from crossfeed.evaluate._cost_curves import CostToMatch, cost_to_match, normalized_auc
from crossfeed.evaluate._metrics import accuracy, ece, label_indices, nll, score_all

__all__ = ["CostToMatch", "accuracy", "cost_to_match", "ece", "label_indices", "nll", "normalized_auc", "score_all"]
