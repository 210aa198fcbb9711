"""Domain adaptation benchmark (issue 11): DANN, Deep CORAL and MMD against source-only and KD.

For each suite and seed: v0, the large model, is trained on the general domain's labelled data
only (source-only). Then ``absorb`` runs, with the same epochs and learning rate:

- ``continued_training``: the source-only control (general data, plain batches);
- ``source-only, balanced batches (weight 0)``: the adaptation strategies' exact run with the
  alignment weight 0 (``coral`` with ``weight: 0``): general and field rows in every batch, no
  alignment term (batch norm still sees the field rows);
- ``multi_teacher_kd``: the experts (copies of v0 fine-tuned on each domain's labelled data)
  teach on the field data; it reads the experts, the adaptation strategies do not;
- ``dann``, ``coral``, ``mmd``: the general labelled rows plus every shifted domain's unlabelled
  field rows, with the alignment term (defaults; ``coral`` also with weight 10,000);
- ``... + teach``: the same plus the experts' KD on their domains' field rows (DA + KD).

Reported per strategy: per-domain test accuracy, absorption (v1 - v0) / (expert - v0),
forgetting on the general domain, wall seconds, and the mean CORAL distance between the general
domain's test features and each shifted domain's (``feature_coral``: what the alignment lowers);
medians with [min, max] over seeds. With skada installed (``pip install skada``; imported only
here), its shallow CORAL + logistic regression on v0's frozen features (source: general training
rows; target: the domain's field rows) is compared with logistic regression on the same
features without adaptation.

Suites: ``mnist1d`` (cnn1d small), ``fashion`` (cnn2d small; the Fashion-MNIST files), and
``amazon``: the Blitzer reviews as TF-IDF (1-2 grams, 5,000 features, fitted on the general
training texts and the field texts) with an MLP of one hidden layer of 50 units, Ganin et al.'s
shallow DANN setting on raw features (MiniLM embeddings are not available offline here). The
general domain is books; the published anchor (Ganin et al. 2016, JMLR, Table 2) is pairwise
books -> target, ours is multi-source (books labelled, all other domains' field data at once):
the protocols differ.

    python benchmarks/adapt.py                      # 3 seeds, every suite: results/adapt-<suite>.json
    python benchmarks/adapt.py --suites amazon      # one suite
    python benchmarks/adapt.py --quick              # 1 seed, small data, few epochs (adapt-<suite>-quick.json)
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import machine, summary, write
from sklearn.feature_extraction.text import TfidfVectorizer
from sklearn.linear_model import LogisticRegression

from crossfeed.data import Domain, DomainSuite, load_suite
from crossfeed.feedback import absorb, coral_loss, embed_features
from crossfeed.models import TorchClassifier
from crossfeed.spawn import finetune

AMAZON_DIR = Path(os.environ.get("CROSSFEED_AMAZON_DIR")
                  or Path(__file__).resolve().parents[2] / "shared" / "datasets" / "amazon")

#: label -> (strategy, parameters)
STRATEGIES: dict[str, tuple[str, dict[str, Any]]] = {
    "continued_training (source-only)": ("continued_training", {}),
    "source-only, balanced batches (weight 0)": ("coral", {"weight": 0.0}),
    "multi_teacher_kd": ("multi_teacher_kd", {}),
    "dann": ("dann", {}),
    "coral": ("coral", {}),
    "coral (weight 10000)": ("coral", {"weight": 1e4}),
    "mmd": ("mmd", {}),
    "dann + teach (DA + KD)": ("dann", {"teach": True}),
    "coral + teach (DA + KD)": ("coral", {"teach": True}),
    "mmd + teach (DA + KD)": ("mmd", {"teach": True}),
}

#: Ganin et al. (2016), JMLR 17(59), Table 2, books -> target accuracy of DANN: on the raw 5,000
#: unigram / bigram features (the closest to ours) and on 30,000-dim mSDA features.
GANIN_2016_BOOKS_TO = {
    "dann_raw_features": {"dvd": 0.784, "electronics": 0.733, "kitchen": 0.779},
    "dann_msda_features": {"dvd": 0.829, "electronics": 0.804, "kitchen": 0.843},
}

#: suite -> v0's architecture and learning rate, n_per_domain and feedback epochs of the full run
#: (fashion is smaller: a cnn2d epoch costs far more, and an adaptation epoch walks K + 1 groups).
MODELS: dict[str, dict[str, Any]] = {
    "mnist1d": {"module": "cnn1d", "module_kwargs": {"size": "small"}, "lr": 3e-3, "n_per_domain": 2000, "epochs": 15},
    "fashion": {"module": "cnn2d", "module_kwargs": {"size": "small"}, "lr": 3e-3, "n_per_domain": 1000, "epochs": 5},
    "amazon": {"module": "mlp", "module_kwargs": {"hidden": [50]}, "lr": 3e-3, "n_per_domain": 2000, "epochs": 15},
}


# -- data -------------------------------------------------------------------------------------
def amazon_tfidf(seed: int, n_per_domain: int) -> DomainSuite:
    """The amazon suite with every split as dense TF-IDF rows (1-2 grams, 5,000 features).

    The vectorizer is fitted on the general domain's training texts and every domain's field
    texts: what the adaptation step may read (no test text, no label of a shifted domain).
    """
    words = load_suite("amazon", seed=seed, n_per_domain=n_per_domain, directory=AMAZON_DIR)
    general = words.general_domain
    texts = {d.name: d.meta["texts"] for d in words}
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), max_features=5000, min_df=2, sublinear_tf=True)
    vectorizer.fit(list(texts[general]["train"]) + [t for d in texts.values() for t in d["field"]])

    def rows(name: str, split: str) -> np.ndarray:
        return vectorizer.transform(texts[name][split]).toarray().astype(np.float32)

    built = [Domain(name=d.name, X_train=rows(d.name, "train"), y_train=d.y_train, X_val=rows(d.name, "val"),
                    y_val=d.y_val, X_test=rows(d.name, "test"), y_test=d.y_test, X_field=rows(d.name, "field"),
                    y_field=d.y_field) for d in words]
    return DomainSuite.from_domains("amazon-tfidf", built,
                                    meta={"general_domain": general, "features": "tfidf-1-2gram-5000"})


def load(suite: str, seed: int, n_per_domain: int) -> DomainSuite:
    if suite == "amazon":
        return amazon_tfidf(seed, n_per_domain)
    return load_suite(suite, seed=seed, n_per_domain=n_per_domain)


# -- measures ---------------------------------------------------------------------------------
def feature_coral(model: Any, suite: DomainSuite, shifted: list[str]) -> float:
    """Mean over the shifted domains of ``coral_loss`` between the test features of the general domain and of it."""
    source = torch.as_tensor(embed_features(model, suite[suite.general_domain].X_test))
    return float(np.mean([float(coral_loss(source, torch.as_tensor(embed_features(model, suite[n].X_test))))
                          for n in shifted]))


def skada_coral(v0: Any, suite: DomainSuite, shifted: list[str], seed: int) -> dict[str, Any] | None:
    """skada's CORAL + logistic regression against logistic regression alone, on v0's frozen features."""
    try:
        import skada  # turns on sklearn's metadata routing globally: only ever imported here
    except ImportError:
        return None
    general = suite[suite.general_domain]
    Xs = embed_features(v0, general.X_train)
    out: dict[str, Any] = {"lr_source_only": {}, "skada_coral_lr": {}}
    for name in shifted:
        domain = suite[name]
        Xt, Xtest = embed_features(v0, domain.X_field), embed_features(v0, domain.X_test)
        plain = LogisticRegression(max_iter=2000, random_state=seed).fit(Xs, general.y_train)
        out["lr_source_only"][name] = float(np.mean(plain.predict(Xtest) == domain.y_test))
        pipe = skada.CORAL(LogisticRegression(max_iter=2000, random_state=seed))
        X = np.concatenate([Xs, Xt])
        y = np.concatenate([general.y_train, np.full(len(Xt), -1)])
        sample_domain = np.concatenate([np.ones(len(Xs), int), np.full(len(Xt), -2)])
        pipe.fit(X, y, sample_domain=sample_domain)
        pred = pipe.predict(Xtest, sample_domain=np.full(len(Xtest), -2))
        out["skada_coral_lr"][name] = float(np.mean(pred == domain.y_test))
    return out


def _row(report: Any, model: Any, suite: DomainSuite, shifted: list[str]) -> dict[str, Any]:
    return {
        "domains": {d: {"acc_v0": r.acc_v0, "acc_expert": r.acc_expert, "acc_v1": r.acc_v1, "absorption": r.absorption}
                    for d, r in report.domains.items()},
        "forgetting": report.forgetting, "seconds": report.wall_seconds,
        "feature_coral": feature_coral(model, suite, shifted),
    }


# -- one seed -----------------------------------------------------------------------------------
def run_seed(suite_name: str, seed: int, n_per_domain: int, epochs: int) -> dict[str, Any]:
    spec = MODELS[suite_name]
    suite = load(suite_name, seed, n_per_domain)
    general = suite[suite.general_domain]
    shifted = [n for n in suite.names if n != general.name]
    t0 = time.perf_counter()
    v0 = TorchClassifier(spec["module"], module_kwargs=spec["module_kwargs"], epochs=2 * epochs, lr=spec["lr"],
                         patience=5, random_state=seed)
    v0.fit(general.X_train, general.y_train, X_val=general.X_val, y_val=general.y_val)
    seconds = {"v0": time.perf_counter() - t0}
    t0 = time.perf_counter()
    experts = {n: finetune(v0, suite[n], epochs=epochs, random_state=seed + i) for i, n in enumerate(shifted)}
    seconds["experts"] = time.perf_counter() - t0
    out: dict[str, Any] = {
        "seed": seed, "general_domain": general.name, "setup_seconds": seconds, "strategies": {},
        "v0": {d.name: float(np.mean(v0.predict(d.X_test) == d.y_test)) for d in suite},
        "experts": {n: float(np.mean(m.predict(suite[n].X_test) == suite[n].y_test)) for n, m in experts.items()},
        "v0_feature_coral": feature_coral(v0, suite, shifted),
    }
    for label, (name, params) in STRATEGIES.items():
        new, report = absorb(v0, experts, suite, name, params=params, epochs=epochs, lr=1e-3, random_state=seed)
        out["strategies"][label] = _row(report, new, suite, shifted)
        mean = np.mean([out["strategies"][label]["domains"][d]["acc_v1"] for d in shifted])
        print(f"  {suite_name} seed {seed} {label}: mean shifted {mean:.4f}, "
              f"feature CORAL {out['strategies'][label]['feature_coral']:.5f}", flush=True)
    out["skada"] = skada_coral(v0, suite, shifted, seed)
    return out


# -- summary ------------------------------------------------------------------------------------
def summarise(runs: list[dict[str, Any]], general: str, shifted: list[str]) -> dict[str, Any]:
    table = {}
    for label in runs[0]["strategies"]:
        rows = [r["strategies"][label] for r in runs]
        domains = {}
        for d in [general, *shifted]:
            absorption = [a for a in (row["domains"][d]["absorption"] for row in rows) if a is not None]
            domains[d] = {"acc_v1": summary([row["domains"][d]["acc_v1"] for row in rows]),
                          "gain": summary([row["domains"][d]["acc_v1"] - row["domains"][d]["acc_v0"] for row in rows]),
                          "absorption": summary(absorption) if absorption else None}
        table[label] = {
            "domains": domains,
            "mean_shifted_accuracy": summary([np.mean([row["domains"][d]["acc_v1"] for d in shifted]) for row in rows]),
            "forgetting": summary([row["forgetting"] for row in rows]),
            "feature_coral": summary([row["feature_coral"] for row in rows]),
            "seconds": summary([row["seconds"] for row in rows]),
        }
    return table


def summarise_skada(runs: list[dict[str, Any]], shifted: list[str]) -> dict[str, Any] | None:
    if any(r["skada"] is None for r in runs):
        return None
    import skada

    return {"skada_version": skada.__version__, "features": "v0's frozen features (input of its head)",
            **{kind: {d: summary([r["skada"][kind][d] for r in runs]) for d in shifted}
               for kind in ("lr_source_only", "skada_coral_lr")}}


def run_suite(suite_name: str, seeds: list[int], n_per_domain: int, epochs: int, quick: bool) -> None:
    start = time.perf_counter()
    runs = []
    for seed in seeds:
        print(f"{suite_name} seed {seed}", flush=True)
        runs.append(run_seed(suite_name, seed, n_per_domain, epochs))
    general = runs[0]["general_domain"]
    shifted = [d for d in runs[0]["v0"] if d != general]
    payload: dict[str, Any] = {
        "benchmark": "adapt", "suite": suite_name, "seeds": seeds, "n_per_domain": n_per_domain, "epochs": epochs,
        "feedback_lr": 1e-3, "model": MODELS[suite_name], "machine": machine(),
        "seconds": round(time.perf_counter() - start, 1), "general_domain": general, "shifted_domains": shifted,
        "v0": {d: summary([r["v0"][d] for r in runs]) for d in runs[0]["v0"]},
        "experts": {d: summary([r["experts"][d] for r in runs]) for d in shifted},
        "v0_feature_coral": summary([r["v0_feature_coral"] for r in runs]),
        "table": summarise(runs, general, shifted), "skada": summarise_skada(runs, shifted), "runs": runs,
    }
    if suite_name == "amazon":
        payload["features"] = "TF-IDF 1-2 grams, 5000 features (MiniLM embeddings not available offline)"
        payload["published"] = {
            "source": "Ganin et al. 2016, JMLR 17(59), Table 2 (Amazon reviews), books -> target, DANN",
            "protocol_differs": "theirs: one source, one target, 2000 labelled source + 2000 unlabelled target "
                                "reviews; ours: books labelled, the field reviews of all other domains at once",
            **GANIN_2016_BOOKS_TO,
        }
    name = f"adapt-{suite_name}" + ("-quick" if quick else "")
    print(f"wrote {write(name, payload)} in {payload['seconds']} s", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", default=list(MODELS), choices=list(MODELS))
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--n-per-domain", type=int, default=None, help="samples per domain (default: per suite)")
    parser.add_argument("--epochs", type=int, default=None, help="feedback epochs (v0: twice); default: per suite")
    parser.add_argument("--quick", action="store_true", help="1 seed, 400 samples per domain, 2 epochs")
    parser.add_argument("--threads", type=int, default=1, help="torch threads (1: steadier timings)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    if args.quick:
        args.seeds, args.n_per_domain, args.epochs = [0], 400, 2
    for suite_name in args.suites:
        run_suite(suite_name, args.seeds, args.n_per_domain or MODELS[suite_name]["n_per_domain"],
                  args.epochs or MODELS[suite_name]["epochs"], args.quick)


if __name__ == "__main__":
    main()
