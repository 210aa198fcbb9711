"""Federated learning on label-skewed clients: FedAvg, FedProx, FedDF, FedMD, local-only, centralised.

Protocol (per suite, seed, Dirichlet alpha and number of clients): 10,000 labelled training rows
are dealt to the clients by ``dirichlet_partition(y, n_clients, alpha, min_samples=2)`` (Hsu et
al. 2019, as in FedDF); the server holds 2,000 further rows *unlabelled* (FedDF's transfer data,
FedMD's public rows: the first ``--public-rows`` = 500 of them, since every FedMD client trains on
them every round); the test set is 2,000 rows. Every method starts from the same network
(an MLP, trained on nothing but 20 rows for one epoch to fix its classes) and trains
``--rounds`` rounds of ``--local-epochs`` local epochs on every client, in process
(:func:`crossfeed.federated.simulate`).

- mnist1d: the pooled train / field / test rows of the mnist1d suite (its five domains);
- fashion: rows of the official Fashion-MNIST train split (training and server rows) and of its
  test split (Debian ``dataset-fashion-mnist``).

FedDF with early stopping (``feddf_es``): the mean of the clients' probabilities as teacher, and
each round keeps the server epoch (the clients' average included) most accurate on 500 further
*labelled* rows the server holds (``--val-rows``; the paper stops its distillation on a validation
set). No other method reads those rows.

Local-only: each client trains alone for all the rounds' epochs; reported is the mean test
accuracy of the client models. Centralised: the same network trained on all 10,000 rows for
``rounds x local_epochs`` epochs. Reported per method: final test accuracy, rounds to 90% of the
centralised accuracy, seconds per round, bytes the clients sent per round.

Speed goal (issue 10): FedAvg, 100 clients x 50 rounds of the small mnist1d model in <= 60 s on
2 cores, in process (``--speed``).

    python benchmarks/federated.py                       # both suites, seeds 0 1 2 -> results/federated.json
    python benchmarks/federated.py --speed               # the speed goal -> results/federated-speed.json
    python benchmarks/federated.py --flower              # in process vs Flower simulation -> results/federated-flower.json
    python benchmarks/federated.py --dp                  # DP-FedAvg accuracy vs epsilon -> results/federated-dp.json
    python benchmarks/federated.py --secure              # FedAvg with SecAgg+ vs in process -> results/federated-secagg.json
    python benchmarks/federated.py --cycle               # the cycle's feedback on engine local vs flower -> results/federated-cycle.json
    python benchmarks/federated.py --quick               # 1 seed, alpha 0.1, 10 clients, 3 rounds
"""

from __future__ import annotations

import argparse
import copy
import dataclasses
import sys
import time
from typing import Any

import numpy as np
from _common import machine, summary, write

from crossfeed.data import load_fashion_official, load_suite
from crossfeed.federated import clients_from_parts, dirichlet_partition, simulate
from crossfeed.feedback import FedAvg, FedDF, FedMD, FedProx, TrainSettings
from crossfeed.models import TorchClassifier, fitted_copy
from crossfeed.training import torch_threads, train

N_TRAIN, N_SERVER, N_TEST, N_VAL = 10_000, 2_000, 2_000, 500
METHODS = ("centralised", "local_only", "fedavg", "fedprox", "feddf", "fedmd", "feddf_es")
HIDDEN = {"mnist1d": (128,), "fashion": (128,)}
ANCHOR = {"paper": "Lin et al. 2020 (FedDF), NeurIPS, Table 2: CIFAR-10, ResNet-8, 20 clients",
          "alpha_0.1": {"feddf": 71.36, "best_baseline": 68.65},
          "alpha_1": {"feddf": 80.69, "best_baseline": 78.57},
          "goal": "FedDF beats FedAvg by at least 2.71 points at alpha 0.1"}


def rows(suite: str, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    if suite == "mnist1d":
        s = load_suite("mnist1d", seed=seed)
        X, y = s.pooled("train")
        X_field = np.concatenate([d.X_field for d in s])
        X_test, y_test = s.pooled("test")
        take = rng.permutation(len(y))[:N_TRAIN]
        X_val, y_val = s.pooled("val")
        return {"X": X[take], "y": y[take], "server": X_field[rng.permutation(len(X_field))[:N_SERVER]],
                "X_test": X_test[:N_TEST], "y_test": y_test[:N_TEST], "X_val": X_val[:N_VAL], "y_val": y_val[:N_VAL]}
    X, y, X_test, y_test = load_fashion_official()
    order = rng.permutation(len(y))
    test = rng.permutation(len(y_test))[:N_TEST]
    val = order[N_TRAIN + N_SERVER:N_TRAIN + N_SERVER + N_VAL]
    return {"X": X[order[:N_TRAIN]], "y": y[order[:N_TRAIN]], "server": X[order[N_TRAIN:N_TRAIN + N_SERVER]],
            "X_test": X_test[test], "y_test": y_test[test], "X_val": X[val], "y_val": y[val]}


def initial(suite: str, data: dict[str, np.ndarray], seed: int) -> TorchClassifier:
    model = TorchClassifier("mlp", module_kwargs={"hidden": HIDDEN[suite]}, epochs=1, random_state=seed, threads=1)
    # 20 rows covering every class, one epoch: a fresh network with the suite's classes
    first = np.concatenate([np.flatnonzero(data["y"] == c)[:2] for c in np.unique(data["y"])])
    return model.fit(data["X"][first], data["y"][first])


def one_run(suite: str, seed: int, alpha: float, n_clients: int, args: argparse.Namespace,
            data: dict[str, np.ndarray]) -> dict[str, Any]:
    parts = dirichlet_partition(data["y"], n_clients, alpha, seed=seed, min_samples=2)
    clients = clients_from_parts(data["X"], data["y"], parts)
    init = initial(suite, data, seed)
    settings = TrainSettings(epochs=args.local_epochs, lr=args.lr, batch_size=args.batch_size, seed=seed, threads=1)
    test = (data["X_test"], data["y_test"])
    out: dict[str, Any] = {}

    config = dataclasses.replace(settings.train_config(), epochs=args.rounds * args.local_epochs)

    def alone(X: np.ndarray, y: np.ndarray) -> float:
        """The initial network trained on (X, y) alone, through the same loop as a client."""
        module = copy.deepcopy(init.module_)
        train(module, X, np.searchsorted(init.classes_, y), config=config)
        return float(fitted_copy(init, module).score(*test))

    target = None
    if "centralised" in args.methods:
        t = time.perf_counter()
        out["centralised"] = {"accuracy": alone(data["X"], data["y"]), "seconds": time.perf_counter() - t}
        target = 0.9 * out["centralised"]["accuracy"]

    if "local_only" in args.methods:
        t = time.perf_counter()
        local = [alone(c.X, c.y) for c in clients]
        out["local_only"] = {"accuracy": float(np.mean(local)), "accuracy_best_client": float(np.max(local)),
                             "seconds": time.perf_counter() - t}

    f = args.fraction
    strategies = {"fedavg": FedAvg(rounds=args.rounds, fraction=f),
                  "fedprox": FedProx(rounds=args.rounds, mu=args.mu, fraction=f),
                  "feddf": FedDF(rounds=args.rounds, server_epochs=args.server_epochs, fraction=f),
                  "fedmd": FedMD(rounds=args.rounds, server_epochs=args.server_epochs),
                  "feddf_es": FedDF(rounds=args.rounds, server_epochs=args.server_epochs_es, teacher="probabilities",
                                    early_stopping=True, fraction=f)}
    for name, strategy in strategies.items():
        if name not in args.methods:
            continue
        # FedMD: every client trains on the public rows each round, so it gets a fixed subset of them
        server = data["server"][:args.public_rows] if name == "fedmd" else data["server"]
        val = (data["X_val"][:args.val_rows], data["y_val"][:args.val_rows]) if name == "feddf_es" else None
        run = simulate(strategy, init, clients, settings=settings, server_X=server, server_val=val, test=test)
        print(f"  {name}: {run.accuracy[-1]:.3f} in {run.seconds:.0f} s", flush=True)
        out[name] = {"accuracy": run.accuracy[-1], "curve": run.accuracy,
                     "rounds_to_target": None if target is None else run.rounds_to(target),
                     "seconds": run.seconds, "seconds_per_round": run.seconds / len(run.rounds),
                     "bytes_per_round": run.bytes_sent / len(run.rounds),
                     "failures": sum(len(r.failures) for r in run.rounds)}
    out["target_accuracy"] = target
    out["client_sizes"] = {"min": int(min(map(len, parts))), "median": float(np.median(list(map(len, parts)))),
                           "max": int(max(map(len, parts)))}
    return out


def speed(args: argparse.Namespace) -> None:
    data = rows("mnist1d", 0)
    parts = dirichlet_partition(data["y"], 100, 1.0, seed=0, min_samples=10)
    clients = clients_from_parts(data["X"], data["y"], parts)
    init = initial("mnist1d", data, 0)
    settings = TrainSettings(epochs=1, lr=args.lr, batch_size=args.batch_size, seed=0, threads=1)
    times = []
    for _ in range(args.repeats):
        run = simulate(FedAvg(rounds=50), init, clients, settings=settings, test=(data["X_test"], data["y_test"]))
        times.append(run.seconds)
        print(f"100 clients x 50 rounds: {run.seconds:.1f} s, final accuracy {run.accuracy[-1]:.3f}", flush=True)
    payload = {"benchmark": "federated-speed", "machine": machine(),
               "command": "python benchmarks/federated.py --speed",
               "setting": f"FedAvg, mnist1d, mlp {HIDDEN['mnist1d']}, 100 clients (Dirichlet alpha 1.0), 50 rounds, "
                          f"1 local epoch, batch {args.batch_size}, one torch thread, in process (evaluation of the "
                          "global model on 2,000 test rows after every round included)",
               "seconds": summary(times), "goal_seconds": 60, "met": bool(np.median(times) <= 60),
               "final_accuracy": run.accuracy[-1]}
    print(write("federated-speed", payload))


def in_process_fedavg(args: argparse.Namespace) -> tuple:
    """The engines' comparison run: FedAvg on mnist1d (alpha 1.0), in process; its clients, initial
    model, settings and test rows for the same run on another engine."""
    data = rows("mnist1d", 0)
    parts = dirichlet_partition(data["y"], args.flower_clients, 1.0, seed=0, min_samples=10)
    clients = clients_from_parts(data["X"], data["y"], parts)
    init = initial("mnist1d", data, 0)
    settings = TrainSettings(epochs=1, lr=args.lr, batch_size=args.batch_size, seed=0, threads=1)
    test = (data["X_test"], data["y_test"])
    local = simulate(FedAvg(rounds=args.flower_rounds), init, clients, settings=settings, test=test)
    return clients, init, settings, test, local


def max_weight_difference(a: Any, b: Any) -> float:
    """The largest absolute difference between two runs' final weights."""
    return max(float((x - y).abs().max()) for x, y in
               zip(a.model.module_.state_dict().values(), b.model.module_.state_dict().values()))


def flower(args: argparse.Namespace) -> None:
    """The same FedAvg run in process and in Flower's Simulation Runtime (Ray): seconds and weights."""
    from crossfeed.federated import run_flower

    clients, init, settings, test, local = in_process_fedavg(args)
    t = time.perf_counter()
    ray = run_flower(FedAvg(rounds=args.flower_rounds), init, clients, settings=settings, test=test)
    wall = time.perf_counter() - t
    diff = max_weight_difference(local, ray)
    in_rounds = sum(r.seconds for r in ray.rounds)
    payload = {"benchmark": "federated-flower", "machine": machine(), "command": "python benchmarks/federated.py --flower",
               "setting": f"FedAvg, mnist1d, mlp {HIDDEN['mnist1d']}, {args.flower_clients} clients (alpha 1.0), "
                          f"{args.flower_rounds} rounds, 1 local epoch, 1 CPU per Flower client",
               "simulate_seconds": local.seconds, "flower_seconds": wall, "flower_seconds_in_rounds": in_rounds,
               "ratio_total": wall / local.seconds, "ratio_rounds": in_rounds / sum(r.seconds for r in local.rounds),
               "max_abs_weight_difference": diff, "accuracy": {"simulate": local.accuracy[-1],
                                                               "flower": ray.accuracy[-1]}}
    print(f"simulate {local.seconds:.1f} s, flower {wall:.1f} s ({in_rounds:.1f} s in rounds), max |dw| {diff:.2e}")
    print(write("federated-flower", payload))


def secure(args: argparse.Namespace) -> None:
    """FedAvg with SecAgg+ (Flower's legacy workflow, Simulation Runtime) against FedAvg in process."""
    from crossfeed.federated import SecAggPlus, run_secure

    clients, init, settings, test, local = in_process_fedavg(args)
    protocol = SecAggPlus()
    t = time.perf_counter()
    run = run_secure(FedAvg(rounds=args.flower_rounds), init, clients, settings=settings, secure=protocol, test=test)
    wall = time.perf_counter() - t
    diff = max_weight_difference(local, run)
    payload = {"benchmark": "federated-secagg", "machine": machine(), "command": "python benchmarks/federated.py --secure",
               "setting": f"FedAvg, mnist1d, mlp {HIDDEN['mnist1d']}, {args.flower_clients} clients (alpha 1.0), "
                          f"{args.flower_rounds} rounds, 1 local epoch; SecAgg+ {protocol} through Flower's legacy "
                          "workflow in its Simulation Runtime (1 CPU per client)",
               "simulate_seconds": local.seconds, "secure_seconds": wall,
               "secure_seconds_in_rounds": sum(r.seconds for r in run.rounds),
               "bytes_per_round": {"simulate": local.bytes_sent / len(local.rounds),
                                   "secure": run.bytes_sent / len(run.rounds)},
               "max_abs_weight_difference": diff,
               "accuracy": {"simulate": local.accuracy[-1], "secure": run.accuracy[-1]},
               "dropped_client_rounds": sum(len(r.failures) for r in run.rounds)}
    print(f"simulate {local.seconds:.1f} s, secure {wall:.1f} s, max |dw| {diff:.2e}, bytes/round "
          f"{payload['bytes_per_round']}")
    print(write("federated-secagg", payload))


def cycle(args: argparse.Namespace) -> None:
    """The cycle's feedback step from YAML on both engines: ``examples/feddf-flower.yaml`` with
    ``engine: local`` and ``engine: flower``; per generation the large model's test accuracy per
    domain, the largest weight difference between the two, and the report's rounds figures."""
    import json
    import tempfile
    from pathlib import Path

    import yaml
    from safetensors.numpy import load_file

    from crossfeed.config import config_from_dict
    from crossfeed.experiments import run_experiment

    example = Path(__file__).parents[1] / "examples" / "feddf-flower.yaml"
    out: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for engine in ("local", "flower"):
            data = yaml.safe_load(example.read_text())
            data["feedback"]["engine"] = engine
            data["suite"]["kwargs"]["n_per_domain"] = args.cycle_rows
            t = time.perf_counter()
            result = run_experiment(config_from_dict(data), Path(tmp) / engine)
            seconds = time.perf_counter() - t
            cyc = result.cycles[0]
            gens = []
            for g in cyc.generations[1:]:
                rounds = g.feedback.rounds
                gens.append({"generation": g.generation, "large_accuracy": g.accuracy["large"],
                             "engine": g.feedback.info.get("engine"), "rounds": len(rounds),
                             "bytes_per_round": sum(r.bytes_sent for r in rounds) / len(rounds),
                             "seconds_per_round": sum(r.seconds for r in rounds) / len(rounds),
                             "feedback_seconds": g.feedback.wall_seconds,
                             "forgetting": g.feedback.forgetting})
            out[engine] = {"seconds": seconds, "generations": gens}
            print(engine, json.dumps(gens)[:400], flush=True)
        diffs = []
        for g in range(1, len(out["local"]["generations"]) + 1):
            a, b = (load_file(str(Path(tmp) / e / "seed-0" / f"gen-{g:03d}" / "large" / "model.safetensors"))
                    for e in ("local", "flower"))
            diffs.append(max(float(np.abs(a[k].astype(np.float64) - b[k].astype(np.float64)).max()) for k in a))
    payload = {"benchmark": "federated-cycle", "machine": machine(), "command": "python benchmarks/federated.py --cycle",
               "setting": f"examples/feddf-flower.yaml (mnist1d, n_per_domain {args.cycle_rows}, seed 0) run twice, "
                          "feedback.engine local and flower (Flower Simulation Runtime, 1 CPU per client)",
               "max_abs_weight_difference_per_generation": diffs, "runs": out}
    print(write("federated-cycle", payload))


def privacy(args: argparse.Namespace) -> None:
    """DP-FedAvg: accuracy against the privacy spent, fashion, alpha 1.0, 10 clients."""
    from crossfeed.feedback import DPFedAvg

    rows_out = []
    for seed in args.seeds:
        data = rows("fashion", seed)
        parts = dirichlet_partition(data["y"], 10, 1.0, seed=seed, min_samples=2)
        clients = clients_from_parts(data["X"], data["y"], parts)
        init = initial("fashion", data, seed)
        settings = TrainSettings(epochs=args.local_epochs, lr=args.lr, batch_size=args.batch_size, seed=seed,
                                 threads=1)
        for noise in args.noise:
            strategy = DPFedAvg(rounds=args.rounds, clip_norm=args.clip, noise_multiplier=noise, delta=1e-5)
            run = simulate(strategy, init, clients, settings=settings, test=(data["X_test"], data["y_test"]))
            rows_out.append({"seed": seed, "noise_multiplier": noise, "accuracy": run.accuracy[-1],
                             "epsilon": run.epsilon, "clipped_per_round": strategy.clipped_})
            print(f"seed {seed} noise {noise}: accuracy {run.accuracy[-1]:.3f}, epsilon {run.epsilon:.2f}", flush=True)
    payload = {"benchmark": "federated-dp", "machine": machine(), "command": "python benchmarks/federated.py --dp",
               "setting": f"DP-FedAvg, fashion, mlp {HIDDEN['fashion']}, 10 clients (alpha 1.0), {args.rounds} rounds x "
                          f"{args.local_epochs} local epochs, clip norm {args.clip}, delta 1e-5, every client every round",
               "seeds": args.seeds, "rows": rows_out,
               "summary": {str(n): {"accuracy": summary([r["accuracy"] for r in rows_out if r["noise_multiplier"] == n]),
                                    "epsilon": next(r["epsilon"] for r in rows_out if r["noise_multiplier"] == n)}
                           for n in args.noise}}
    print(write("federated-dp", payload))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suites", nargs="+", default=["mnist1d", "fashion"], choices=["mnist1d", "fashion"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--alphas", nargs="+", type=float, default=[0.1, 1.0])
    parser.add_argument("--clients", nargs="+", type=int, default=[10, 100])
    parser.add_argument("--rounds", type=int, default=20)
    parser.add_argument("--local-epochs", type=int, default=2)
    parser.add_argument("--server-epochs", type=int, default=2)
    parser.add_argument("--lr", type=float, default=3e-3)
    parser.add_argument("--mu", type=float, default=0.01)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--public-rows", type=int, default=500, help="FedMD's public rows (of the server's)")
    parser.add_argument("--val-rows", type=int, default=N_VAL, help="feddf_es: the server's labelled rows")
    parser.add_argument("--server-epochs-es", type=int, default=5, help="feddf_es: most server epochs per round")
    parser.add_argument("--methods", nargs="+", default=list(METHODS), choices=METHODS,
                        help="methods to run (without centralised there is no target accuracy)")
    parser.add_argument("--fraction", type=float, default=1.0,
                        help="share of the clients sampled each round by fedavg, fedprox and feddf (FedMD: all)")
    parser.add_argument("--speed", action="store_true", help="only the speed goal")
    parser.add_argument("--flower", action="store_true", help="only in-process vs Flower simulation")
    parser.add_argument("--dp", action="store_true", help="only DP-FedAvg: accuracy against epsilon")
    parser.add_argument("--secure", action="store_true", help="only FedAvg with SecAgg+ vs in process")
    parser.add_argument("--cycle", action="store_true", help="only the cycle's feedback step on both engines")
    parser.add_argument("--cycle-rows", type=int, default=1000, help="--cycle: rows per mnist1d domain")
    parser.add_argument("--noise", nargs="+", type=float, default=[0.0, 0.3, 1.0, 3.0])
    parser.add_argument("--clip", type=float, default=1.0)
    parser.add_argument("--flower-clients", type=int, default=10)
    parser.add_argument("--flower-rounds", type=int, default=5)
    parser.add_argument("--repeats", type=int, default=3, help="repeats of the speed run")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--name", default="federated")
    args = parser.parse_args()
    with torch_threads(1):
        if args.speed:
            speed(args)
            return
        if args.flower:
            flower(args)
            return
        if args.dp:
            privacy(args)
            return
        if args.secure:
            secure(args)
            return
        if args.cycle:
            cycle(args)
            return
        if args.quick:
            args.seeds, args.alphas, args.clients, args.rounds, args.name = [0], [0.1], [10], 3, args.name + "-quick"
        t0 = time.perf_counter()
        runs = []
        for suite in args.suites:
            for seed in args.seeds:
                data = rows(suite, seed)
                for alpha in args.alphas:
                    for n in args.clients:
                        result = one_run(suite, seed, alpha, n, args, data)
                        runs.append({"suite": suite, "seed": seed, "alpha": alpha, "clients": n, **result})
                        print(f"{suite} seed {seed} alpha {alpha} clients {n}: " + ", ".join(
                            f"{m} {result[m]['accuracy']:.3f}" for m in METHODS if m in result), flush=True)
        methods = [m for m in METHODS if m in runs[0]]
        table = {}
        for suite in args.suites:
            for alpha in args.alphas:
                for n in args.clients:
                    mine = [r for r in runs if (r["suite"], r["alpha"], r["clients"]) == (suite, alpha, n)]
                    cell = {m: {"accuracy": summary([r[m]["accuracy"] for r in mine])} for m in methods}
                    for m in [m for m in methods if m not in ("centralised", "local_only")]:
                        reached = [r[m]["rounds_to_target"] for r in mine]
                        cell[m] |= {"rounds_to_target": reached,
                                    "seconds_per_round": summary([r[m]["seconds_per_round"] for r in mine]),
                                    "bytes_per_round": summary([r[m]["bytes_per_round"] for r in mine])}
                    for m in ("feddf", "feddf_es"):
                        if m in methods and "fedavg" in methods:
                            gap = [100 * (r[m]["accuracy"] - r["fedavg"]["accuracy"]) for r in mine]
                            cell[f"{m}_minus_fedavg_points"] = summary(gap)
                    table[f"{suite}/alpha={alpha}/clients={n}"] = cell
        payload = {"benchmark": "federated", "machine": machine(),
                   "command": " ".join(["python benchmarks/federated.py", *sys.argv[1:]]), "settings": vars(args),
                   "anchor": ANCHOR,
                   "protocol": __doc__.split("\n\n")[1], "seconds": time.perf_counter() - t0,
                   "table": table, "runs": runs}
        print(write(args.name, payload))


if __name__ == "__main__":
    main()
