"""Domains, suites and their loaders."""

from crossfeed.data._amazon import AMAZON_DOMAINS, load_amazon
from crossfeed.data._colored import COLORED_ENVIRONMENTS, POSITIVE_CLASSES, color_environment, colored_fashion
from crossfeed.data._domain import Domain, DomainSuite
from crossfeed.data._fashion import (
    FASHION_CLASSES,
    FASHION_DOMAINS,
    load_fashion,
    load_fashion_official,
)
from crossfeed.data._mnist1d import MNIST1D_DOMAINS, load_mnist1d
from crossfeed.data._movielens import find_movielens, load_movielens, pooled_ratings
from crossfeed.data._suites import SUITES, check_suite_kwargs, load_suite

__all__ = [
    "AMAZON_DOMAINS",
    "COLORED_ENVIRONMENTS",
    "Domain",
    "DomainSuite",
    "FASHION_CLASSES",
    "FASHION_DOMAINS",
    "MNIST1D_DOMAINS",
    "POSITIVE_CLASSES",
    "SUITES",
    "check_suite_kwargs",
    "color_environment",
    "colored_fashion",
    "find_movielens",
    "load_amazon",
    "load_fashion",
    "load_fashion_official",
    "load_mnist1d",
    "load_movielens",
    "load_suite",
    "pooled_ratings",
]
