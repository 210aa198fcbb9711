"""Generative augmentation: class-conditional generators per domain teach the large model through their samples."""

from __future__ import annotations

import doctest

import numpy as np
import pytest
import torch

from crossfeed.config import config_from_dict, config_to_dict
from crossfeed.distill import teacher_logits
from crossfeed.exceptions import EmptyDataError, LabelMismatchError, NotFittedError, ValidationError
from crossfeed.feedback import (
    GENERATORS,
    ConditionalGAN,
    ConditionalVAE,
    GenerativeAugment,
    _generative,
    absorb,
    c2st_accuracy,
    dcr_ratio,
    expert_agreement,
    generative_augment,
)
from crossfeed.feedback._generative import allocate

from .conftest import ABSORB, context, run_tiny_cycle
from .test_multi_teacher_kd import pooled_absorption

FAST = {"generator_steps": 300, "hidden": 64, "measure_quality": False}
TINY = {"generator_steps": 20, "hidden": 16, "measure_quality": False}  # where only shapes and budgets matter


@pytest.fixture(autouse=True)
def one_thread():
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def blobs(n_per_class: int = 40, n_features: int = 6, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Three well separated Gaussian classes with means -3, 0, +3 on every feature."""
    rng = np.random.default_rng(seed)
    y = np.repeat([0, 1, 2], n_per_class)
    return (rng.normal(size=(len(y), n_features)) * 0.5 + 3.0 * (y[:, None] - 1)).astype(np.float32), y


# -- the strategy does something ------------------------------------------------------------------
def test_generative_augment_absorbs_the_experts_beyond_continued_training(v0, experts, suite, control):
    _, report = absorb(v0, experts, suite, "generative_augment", params=FAST, **ABSORB)
    # measured (seed 0): pooled absorption 0.028 (control), 0.245; mean shifted accuracy 0.475
    # (control) -> 0.539; forgetting -0.010
    assert pooled_absorption(report) > pooled_absorption(control) + 0.12
    assert report.mean("acc_v1") > control.mean("acc_v1") + 0.04
    assert report.forgetting < 0.03
    assert report.info["field_rows_sent"] == {name: 0 for name in experts}  # no raw row left a domain
    # 1,000 general rows, 4 shifted domains, share 0.5: each domain's part is 250 rows (its 250 field rows)
    assert report.info["synthetic_rows"] == {name: 250 for name in experts}
    assert all(report.domains[n].absorption is not None and report.domains[n].absorption > 0 for n in experts)


def test_the_samples_are_class_conditional(v0, experts, suite):
    """The expert agrees with the condition on the generated rows, far above chance and above a
    generator fitted on shuffled pseudo-labels (same rows, no class information)."""
    name = "shifted"
    X = suite[name].X_field.reshape(len(suite[name].X_field), -1)
    pseudo = teacher_logits(experts[name], X).argmax(1)
    counts = np.bincount(pseudo, minlength=10)
    conditioned = np.repeat(np.arange(10), allocate(counts, 300))
    agreement = {}
    for label, y in {"pseudo": pseudo, "shuffled": np.random.default_rng(0).permutation(pseudo)}.items():
        gen = ConditionalVAE(hidden=64).fit(X, y, steps=400, seed=0)
        agreement[label] = expert_agreement(teacher_logits(experts[name], gen.sample(conditioned, seed=1)), conditioned)
    # measured (seed 0): 0.463 with the pseudo-labels, 0.090 shuffled; chance 0.10
    assert agreement["pseudo"] > 0.3
    assert agreement["pseudo"] > agreement["shuffled"] + 0.2


def test_quality_figures_are_reported_per_domain(v0, experts, suite):
    data = GenerativeAugment(**{**TINY, "measure_quality": True}).prepare(context(v0, experts, suite, seed=2))
    for key in ("expert_agreement", "c2st_accuracy", "dcr_ratio", "pseudo_label_counts"):
        assert set(data.info[key]) == set(experts), key
    for name in experts:
        assert 0.0 <= data.info["expert_agreement"][name] <= 1.0
        assert 0.0 <= data.info["c2st_accuracy"][name] <= 1.0
        assert data.info["dcr_ratio"][name] > 0
        assert sum(data.info["pseudo_label_counts"][name].values()) == len(suite[name].X_field)
    assert data.info["generator_seconds"] > 0 and data.info["quality_seconds"] > 0
    again = GenerativeAugment(**TINY).prepare(context(v0, experts, suite, seed=2))
    assert np.array_equal(data.X, again.X)  # the step's seed fixes the generators and their samples


def test_budget_matches_multi_teacher_kd_and_field_rows_come_first_when_included(v0, experts, suite):
    from .test_multi_teacher_kd import scarce

    few = scarce(suite, 20)
    n_gen = len(few["default"].X_train)
    ctx = context(v0, experts, few, seed=1)
    with_field = GenerativeAugment(**TINY, include_field_rows=True, generator="cgan").prepare(ctx)
    without = GenerativeAugment(**TINY).prepare(ctx)
    for data in (with_field, without):
        assert len(data.X) == n_gen + 4 * 250  # multi_teacher_kd's top-up budget: 250 rows per domain
        assert not data.labelled[n_gen:].any()
    assert with_field.info["field_rows_sent"] == {n: 20 for n in experts}
    assert with_field.info["synthetic_rows"] == {n: 230 for n in experts}
    first = next(iter(experts))
    assert np.array_equal(with_field.X[n_gen:n_gen + 20], few[first].X_field.reshape(20, -1))
    assert not any(np.array_equal(without.X[n_gen:n_gen + 20], few[n].X_field.reshape(20, -1)) for n in experts)
    # the synthetic rows are taught by their domain's expert
    rows = without.X[n_gen:n_gen + 250]
    assert np.allclose(without.teacher_logits[n_gen:n_gen + 250], experts[first].predict_logits(rows), atol=1e-5)


def test_balanced_sampling_splits_the_rows_between_the_classes_found(v0, experts, suite):
    data = GenerativeAugment(**TINY, sampling="balanced").prepare(context(v0, experts, suite))
    found = len(data.info["pseudo_label_counts"]["noisy"])
    assert data.info["synthetic_rows"]["noisy"] == 250 and found >= 2


# -- the generators --------------------------------------------------------------------------------
def test_the_vae_learns_the_class_means():
    X, y = blobs()
    gen = ConditionalVAE(hidden=32).fit(X, y, steps=400, seed=0)
    assert gen.classes_.tolist() == [0, 1, 2] and gen.class_counts_.tolist() == [40, 40, 40]
    out = gen.sample(np.repeat([0, 1, 2], 50), seed=0)
    assert out.shape == (150, 6) and out.dtype == np.float32
    means = out.reshape(3, 50, 6).mean(axis=(1, 2))
    assert np.allclose(means, [-3.0, 0.0, 3.0], atol=0.8), means


def test_the_gan_puts_each_class_on_its_own_side():
    X, y = blobs()
    means = ConditionalGAN(hidden=32).fit(X, y, steps=400, seed=0).sample(np.repeat([0, 1, 2], 50), seed=0)
    means = means.reshape(3, 50, 6).mean(axis=(1, 2))
    # a GAN on 120 rows overshoots (measured: -4.4, 0.1, 6.3 after 600 steps) but keeps the classes apart
    assert means[0] < -1.5 < means[1] < 1.5 < means[2], means


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_generators_are_reproducible(kind):
    X, y = blobs(10)
    a = GENERATORS[kind](hidden=16).fit(X, y, steps=20, seed=4)
    b = GENERATORS[kind](hidden=16).fit(X, y, steps=20, seed=4)
    classes = np.repeat([0, 1, 2], 5)
    assert np.allclose(a.sample(classes, seed=1), b.sample(classes, seed=1), atol=1e-5)
    assert np.array_equal(a.sample(classes, seed=1), a.sample(classes, seed=1))
    assert not np.allclose(a.sample(classes, seed=1), a.sample(classes, seed=2))


def test_generators_standardise_inside_so_any_scale_works():
    X, y = blobs()
    gen = ConditionalVAE(hidden=32).fit(1000.0 * X + 5000.0, y, steps=400, seed=0)
    means = gen.sample(np.repeat([0, 2], 50), seed=0).reshape(2, 50, 6).mean(axis=(1, 2))
    assert np.allclose(means, [2000.0, 8000.0], rtol=0.15), means
    const = np.concatenate([X, np.zeros((len(X), 2), np.float32)], axis=1)  # constant columns stay finite
    assert np.isfinite(ConditionalVAE(hidden=16).fit(const, y, steps=50, seed=0).sample([0, 1], seed=0)).all()


@pytest.mark.parametrize("kind", sorted(GENERATORS))
def test_unknown_class_is_a_clear_error(kind):
    X, y = blobs()
    gen = GENERATORS[kind](hidden=16).fit(X[y != 1], y[y != 1], steps=20, seed=0)
    with pytest.raises(LabelMismatchError, match=r"fitted on rows of classes \[0, 2\] only.*class\(es\) \[1, 7\]"):
        gen.sample([0, 1, 7, 1], seed=0)
    with pytest.raises(ValidationError, match="ask only for fitted classes"):
        gen.sample(["cat"], seed=0)
    assert gen.sample([], seed=0).shape == (0, 6)
    with pytest.raises(NotFittedError, match="call fit"):
        GENERATORS[kind]().sample([0], seed=0)


@pytest.mark.parametrize("make, fit_kwargs, match", [
    (lambda: ConditionalVAE(), {"steps": 0}, "steps"),
    (lambda: ConditionalVAE(latent_dim=0), {}, "latent_dim"),
    (lambda: ConditionalGAN(lr=-1.0), {}, "lr"),
    (lambda: ConditionalVAE(beta=0.0), {}, "beta"),
])
def test_bad_generator_settings_raise(make, fit_kwargs, match):
    X, y = blobs(5)
    with pytest.raises(ValidationError, match=match):
        make().fit(X, y, **{"steps": 5, **fit_kwargs})


def test_bad_generator_data_raises():
    X, y = blobs(5)
    with pytest.raises(ValidationError, match="flatten"):
        ConditionalVAE().fit(X[:, :, None], y, steps=5)
    with pytest.raises(ValidationError, match="rows but y has"):
        ConditionalVAE().fit(X, y[:-1], steps=5)
    with pytest.raises(EmptyDataError):
        ConditionalVAE().fit(X[:0], y[:0], steps=5)
    with pytest.raises(ValidationError, match="NaN"):
        ConditionalVAE().fit(np.where(X > 2, np.nan, X), y, steps=5)


# -- bad parameters and data of the strategy -----------------------------------------------------------
@pytest.mark.parametrize("params, match", [
    ({"generator": "diffusion"}, "generator"),
    ({"generator": "cvea"}, "did you mean 'cvae'"),
    ({"synthetic_share": 0.0}, "synthetic_share"),
    ({"synthetic_share": 1.0}, "synthetic_share"),
    ({"temperature": 0.0}, "temperature"),
    ({"alpha": 1.5}, "alpha"),
    ({"generator_steps": 0}, "generator_steps"),
    ({"latent_dim": 0}, "latent_dim"),
    ({"sampling": "uniform"}, "sampling"),
    ({"include_field_rows": "yes"}, "include_field_rows"),
])
def test_bad_parameters_fail_before_any_training(params, match, v0, experts, suite):
    with pytest.raises(ValidationError, match=match):
        absorb(v0, experts, suite, "generative_augment", params=params, epochs=1)
    with pytest.raises(ValidationError, match=match):
        absorb(v0, experts, suite, GenerativeAugment(**params), epochs=1)


def test_a_domain_without_field_data_is_refused(v0, experts, suite):
    from .test_multi_teacher_kd import scarce

    with pytest.raises(EmptyDataError, match="no field data.*generative_augment"):
        absorb(v0, experts, scarce(suite, 0), "generative_augment", params=FAST, epochs=1)


def test_usable_from_yaml_config():
    kwargs = {"generator": "cgan", "synthetic_share": 0.4, "include_field_rows": True, "generator_steps": 500}
    cfg = config_from_dict({"name": "g", "feedback": {"strategy": "generative_augment", "kwargs": kwargs}})
    assert cfg.feedback.strategy == "generative_augment" and cfg.feedback.kwargs == kwargs
    assert config_from_dict(config_to_dict(cfg)) == cfg
    with pytest.raises(ValidationError, match="generator_steps"):
        config_from_dict({"name": "g", "feedback": {"strategy": "generative_augment", "kwargs": {"generator_steps": -1}}})


def test_the_cycle_runs_it_from_a_config(tmp_path):
    data = run_tiny_cycle("generative_augment", {"generator_steps": 20, "hidden": 16}, tmp_path)
    assert set(data["summary"]["large_accuracy"]["gen-1"]) == {"default", "noisy"}


# -- the maths of the measures ------------------------------------------------------------------------
def test_allocate():
    assert allocate([6, 3, 0, 1], 20).tolist() == [12, 6, 0, 2]
    assert allocate([1, 1, 1], 4).tolist() == [2, 1, 1]  # ties: the first class first
    assert allocate([5, 0, 1], 7, "balanced").tolist() == [4, 0, 3]
    assert allocate([2, 2], 0).tolist() == [0, 0]
    for bad in ([0, 0], [-1, 2]):
        with pytest.raises(ValidationError):
            allocate(bad, 3)
    with pytest.raises(ValidationError, match="proportional"):
        allocate([1, 2], 3, "even")


def test_expert_agreement_maths():
    z = np.array([[0.0, 5.0, 1.0], [3.0, 1.0, 0.0], [0.0, 0.0, 2.0], [1.0, 0.0, 0.0]])
    assert expert_agreement(z, np.array([1, 0, 2, 2])) == 0.75
    assert expert_agreement(z, np.array([0, 1, 0, 1])) == 0.0
    with pytest.raises(ValidationError):
        expert_agreement(z, np.array([1, 0]))
    with pytest.raises(EmptyDataError):
        expert_agreement(np.zeros((0, 3)), np.zeros(0, int))


def test_c2st_is_half_for_one_distribution_and_one_for_separated_ones():
    rng = np.random.default_rng(1)
    real = rng.normal(size=(300, 4))
    assert abs(c2st_accuracy(real, rng.normal(size=(300, 4))) - 0.5) < 0.07
    assert c2st_accuracy(real, rng.normal(size=(300, 4)) + 4.0) > 0.99
    # the larger set is subsampled: chance stays 0.5, not the share of the larger set
    assert abs(c2st_accuracy(real[:60], rng.normal(size=(600, 4)), seed=3) - 0.5) < 0.15
    with pytest.raises(ValidationError, match="at least folds=5"):
        c2st_accuracy(real[:3], real)
    with pytest.raises(ValidationError, match="same n_features"):
        c2st_accuracy(real, real[:, :2])


def test_dcr_ratio_maths():
    train = np.array([[0.0, 0.0], [4.0, 0.0], [0.0, 4.0]])
    holdout = train + np.array([1.0, 0.0])  # each 1.0 from its nearest training row
    assert dcr_ratio(train, train, holdout) == 0.0  # exact copies
    assert dcr_ratio(train + np.array([0.0, 0.5]), train, holdout) == pytest.approx(0.5)
    assert dcr_ratio(train + np.array([0.0, 2.0]), train, holdout) == pytest.approx(2.0)
    # the median, not the mean: one far outlier does not move it
    gen = np.concatenate([train + 0.25 * np.array([1.0, 0.0]), [[100.0, 100.0]]])
    assert dcr_ratio(gen, train, holdout) == pytest.approx(0.25)
    assert dcr_ratio(train + 1.0, train, train) == np.inf
    with pytest.raises(EmptyDataError):
        dcr_ratio(train, train, holdout[:0])


@pytest.mark.parametrize("module", [_generative, generative_augment])
def test_docstring_examples_run(module):
    assert doctest.testmod(module, optionflags=doctest.ELLIPSIS).failed == 0
