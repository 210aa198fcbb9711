"""Domains, suites and their loaders."""

from crossfeed.data._domain import Domain, DomainSuite
from crossfeed.data._mnist1d import MNIST1D_DOMAINS, load_mnist1d
from crossfeed.data._suites import SUITES, load_suite

__all__ = ["MNIST1D_DOMAINS", "SUITES", "Domain", "DomainSuite", "load_mnist1d", "load_suite"]
