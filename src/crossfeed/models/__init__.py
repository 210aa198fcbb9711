"""Models: TorchClassifier, architectures (mixtures of experts included), cost, and safetensors I/O."""

# Importing a module registers its architectures (cnn2d; lstm, sentence_encoder; mf).
from crossfeed.models._architectures import (
    ARCHITECTURES,
    CNN1D,
    CNN1D_SIZES,
    MLP,
    Linear,
    build_module,
)
from crossfeed.models._cnn2d import CNN2D, CNN2D_SIZES
from crossfeed.models._cost import (
    Cost,
    count_params,
    flops_per_sample,
    measure_cost,
    measure_latency,
)
from crossfeed.models._features import TorchEmbedding, feature_head
from crossfeed.models._forest import ArrayForest, MetaForest, sample_shots
from crossfeed.models._io import load_model, save_model
from crossfeed.models._moe import (
    GatedMixture,
    RoutedLinear,
    WeightEnsemblingMoE,
    load_balancing_loss,
    mixture_log_proba,
    top_k_weights,
)
from crossfeed.models._recsys import (
    FeatureNaiveBayes,
    MatrixFactorization,
    MatrixFactorizationNet,
)
from crossfeed.models._sentence_encoder import (
    SentenceEncoderHead,
    sentence_encoder_classifier,
)
from crossfeed.models._text import LSTM_SIZES, LSTMClassifier, Vocabulary, tokenize
from crossfeed.models._tfidf import TfidfClassifier
from crossfeed.models._torch_classifier import TorchClassifier
from crossfeed.models._warmstart import check_torch_model, fitted_copy, warm_fit

__all__ = [
    "ARCHITECTURES",
    "ArrayForest",
    "CNN1D",
    "CNN1D_SIZES",
    "CNN2D",
    "CNN2D_SIZES",
    "Cost",
    "FeatureNaiveBayes",
    "GatedMixture",
    "LSTMClassifier",
    "LSTM_SIZES",
    "Linear",
    "MLP",
    "MatrixFactorization",
    "MatrixFactorizationNet",
    "MetaForest",
    "RoutedLinear",
    "SentenceEncoderHead",
    "TfidfClassifier",
    "TorchClassifier",
    "TorchEmbedding",
    "Vocabulary",
    "WeightEnsemblingMoE",
    "build_module",
    "check_torch_model",
    "count_params",
    "feature_head",
    "fitted_copy",
    "flops_per_sample",
    "load_balancing_loss",
    "load_model",
    "measure_cost",
    "measure_latency",
    "mixture_log_proba",
    "sample_shots",
    "save_model",
    "sentence_encoder_classifier",
    "tokenize",
    "top_k_weights",
    "warm_fit",
]
