"""Metrics: accuracy, NLL, ECE, accuracy-versus-cost summaries (cost to match, normalised AUC, APGR),
the per-domain figures of feedback (accuracy on every domain, absorption, forgetting), and paired
non-inferiority tests of one model against another on the same samples (with Holm's correction)."""

from crossfeed.evaluate._cost_curves import CostToMatch, apgr, cost_to_match, normalized_auc
from crossfeed.evaluate._domains import (
    absorption,
    domain_accuracy,
    forgetting,
    prediction_accuracy,
)
from crossfeed.evaluate._metrics import accuracy, ece, label_indices, nll, score_all, spread
from crossfeed.evaluate._paired import (
    PAIRED_TESTS,
    PairedTest,
    holm,
    noninferiority,
    paired_bootstrap,
    wsr_p_value,
)

__all__ = [
    "CostToMatch",
    "PAIRED_TESTS",
    "PairedTest",
    "absorption",
    "accuracy",
    "apgr",
    "cost_to_match",
    "domain_accuracy",
    "ece",
    "forgetting",
    "holm",
    "label_indices",
    "nll",
    "noninferiority",
    "normalized_auc",
    "paired_bootstrap",
    "prediction_accuracy",
    "score_all",
    "spread",
    "wsr_p_value",
]
