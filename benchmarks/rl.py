"""RL benchmark: environment variants as industries, policy distillation, meta-RL.

Per seed, on one suite (``crossfeed.rl.load_rl_suite``):

1. the RL cycle (``run_rl_cycle``): generation 0 is PPO on the pooled train variants; each later
   generation spawns one expert per train variant from the general policy (PPO fine-tuning) and
   distils them back into it (Rusu et al. 2016, DAgger-style). Every policy measured on every
   variant;
2. Reptile over the train variants from a fresh policy (meta-init);
3. on every held-out variant: PPO from scratch and PPO fine-tuning from the distilled general
   policy (also with a critic warm-up of one evaluation interval: ``general_warmup``), the
   meta-init and the pooled policy, with the return recorded every ``eval_every`` interactions;
   interactions to reach the suite's target return, and to reach the best return scratch reached
   ("the same return").

Returns are also normalised as (R - R_random) / (R_expert - R_random), R_random being a uniform
random policy's return, so "90% of the expert" means the same for positive and negative rewards.

Two protocols, both at the suite's own interaction budgets: ``brief`` (the default; seeds 0 and 1,
one generation, held-out starts scratch / distilled general / meta-init: a few minutes on two
cores for cartpole) and ``full`` (the published tables: seeds 0 1 2, two generations, every start).

    python benchmarks/rl.py                                  # cartpole, brief -> benchmarks/results/rl-cartpole-brief.json
    python benchmarks/rl.py --suite acrobot --protocol full  # -> rl-acrobot.json
    python benchmarks/rl.py --quick --seeds 0                # a smoke run at a few thousand interactions
"""

from __future__ import annotations

import argparse
import json
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import numpy as np
import torch
from _common import RESULTS, machine, summary, write

from crossfeed._cache import atomic_write_bytes
from crossfeed.report import rl_curves_png, rl_heatmap_png
from crossfeed.rl import (
    DistillSettings,
    EnvVariant,
    Policy,
    PPOSettings,
    ReptileSettings,
    RLCycle,
    episode_returns,
    interactions_to_reach,
    load_rl_suite,
    make_env,
    mean_return,
    reptile,
    run_rl_cycle,
    train_ppo,
)

STARTS = ("general", "general_warmup", "meta_init", "pooled")
#: What each protocol runs unless --seeds / --generations say otherwise.
PROTOCOLS: dict[str, dict[str, Any]] = {
    "brief": {"seeds": [0, 1], "generations": 1, "starts": ("general", "meta_init")},
    "full": {"seeds": [0, 1, 2], "generations": 2, "starts": STARTS},
}
QUICK = {"general": 4096, "expert": 2048, "scratch": 4096, "adapt": 2048, "meta_inner": 1024,
         "meta_iterations": 2, "eval_every": 1024}


def random_return(variant: EnvVariant, episodes: int, seed: int) -> float:
    """Mean return of the uniform random policy (all-zero logits, sampled)."""
    env = make_env(variant)
    obs_dim, n = int(np.prod(env.observation_space.shape)), int(env.action_space.n)
    env.close()
    probe = Policy(obs_dim, n)
    with torch.no_grad():
        for p in probe.action_net.parameters():
            p.zero_()
    return float(episode_returns(probe, variant, episodes=episodes, seed=30_000 + seed, deterministic=False).mean())


def one_seed(suite_name: str, seed: int, quick: bool, generations: int,
             starts_run: tuple[str, ...] = STARTS) -> dict[str, Any]:
    torch.set_num_threads(1)
    suite = load_rl_suite(suite_name, seed=seed)
    budgets = {**suite.budgets, **(QUICK if quick else {})}
    suite = replace(suite, budgets=budgets)
    ppo = PPOSettings.of(suite.ppo)
    episodes = suite.eval_episodes
    eval_every = int(budgets["eval_every"])
    distill = DistillSettings(iterations=2, steps_per_variant=256) if quick else DistillSettings()
    out: dict[str, Any] = {"seed": seed, "seconds": {}}

    t = time.perf_counter()
    cycle = run_rl_cycle(suite, generations=generations, seed=seed, ppo=ppo, distill=distill)
    out["seconds"]["cycle"] = time.perf_counter() - t
    out["cycle"] = cycle.to_dict()
    general = cycle.policies["general"]
    last = cycle.generations[-1].returns
    pooled = cycle.generations[0].returns["general"]

    t = time.perf_counter()
    meta = reptile(list(suite.train), settings=ReptileSettings(
        meta_iterations=int(budgets["meta_iterations"]), inner_timesteps=int(budgets["meta_inner"])), ppo=ppo, seed=seed)
    out["seconds"]["reptile"] = time.perf_counter() - t
    out["reptile_interactions"] = meta.interactions

    def zero_shot(policy: Policy) -> dict[str, float]:
        return {v.name: mean_return(policy, v, episodes=episodes, seed=20_000 + seed) for v in suite.variants}

    out["random"] = {v.name: random_return(v, episodes, seed) for v in suite.variants}
    out["returns"] = {"pooled": pooled, "general": last["general"], "meta_init": zero_shot(meta.policy)}
    if generations:
        out["returns"]["expert"] = {v.name: last[f"expert:{v.name}"][v.name] for v in suite.train}

    t = time.perf_counter()
    target = suite.target_return
    held: dict[str, Any] = {}
    # (start policy, interactions in which only the critic learns); general_warmup: the critic of the
    # distilled policy is refitted on the new variant for one evaluation interval before the actor moves
    starts = {"general": (general, 0), "general_warmup": (general, eval_every), "meta_init": (meta.policy, 0),
              "pooled": (cycle.policies["general@0"], 0)}
    starts = {name: starts[name] for name in starts_run}
    for k, h in enumerate(suite.held_out):
        s = train_ppo(h, int(budgets["scratch"]), settings=ppo, seed=seed * 7919 + k, eval_every=eval_every,
                      eval_episodes=episodes)
        entry = {"scratch": {"curve": s.curve, "to_target": interactions_to_reach(s.curve, target)}}
        for name, (policy, warmup) in starts.items():
            r = train_ppo(h, int(budgets["adapt"]), start=policy, settings=ppo, seed=seed * 7919 + k,
                          eval_every=eval_every, eval_episodes=episodes, critic_warmup=warmup)
            entry[name] = {"curve": r.curve, "to_target": interactions_to_reach(r.curve, target)}
        held[h.name] = entry
    out["seconds"]["held_out"] = time.perf_counter() - t
    out["held_out"] = held
    return out


def _normalised(r: float, random: float, expert: float) -> float:
    return (r - random) / (expert - random) if expert != random else float("nan")


def summarise(suite_name: str, runs: list[dict[str, Any]], budgets: dict[str, Any]) -> dict[str, Any]:
    suite = load_rl_suite(suite_name)
    train, held = [v.name for v in suite.train], [v.name for v in suite.held_out]
    table: dict[str, Any] = {}
    for v in train + held:
        row = {m: summary([run["returns"][m][v] for run in runs]) for m in ("pooled", "general", "meta_init")}
        row["random"] = summary([run["random"][v] for run in runs])
        if v in train and "expert" in runs[0]["returns"]:
            row["expert"] = summary([run["returns"]["expert"][v] for run in runs])
            row["general_fraction_of_expert"] = summary([
                _normalised(run["returns"]["general"][v], run["random"][v], run["returns"]["expert"][v]) for run in runs])
            row["pooled_fraction_of_expert"] = summary([
                _normalised(run["returns"]["pooled"][v], run["random"][v], run["returns"]["expert"][v]) for run in runs])
        table[v] = row
    adapt: dict[str, Any] = {}
    starts = [m for m in STARTS if held and m in runs[0]["held_out"][held[0]]]
    for h in held:
        row: dict[str, Any] = {}
        scratch = [run["held_out"][h]["scratch"]["to_target"] for run in runs]
        row["scratch_to_target"] = scratch
        for m in starts:
            mine = [run["held_out"][h][m]["to_target"] for run in runs]
            ratios = [a / b if a is not None and b else None for a, b in zip(mine, scratch)]
            # scratch never reached the target within its budget: the ratio is below mine / budget
            bounds = [a / budgets["scratch"] if a is not None and b is None else None for a, b in zip(mine, scratch)]
            row[f"{m}_to_target"] = mine
            row[f"{m}_ratio"] = ratios
            row[f"{m}_ratio_below"] = bounds
            row[f"{m}_final_return"] = summary([run["held_out"][h][m]["curve"][-1][1] for run in runs])
        row["scratch_final_return"] = summary([run["held_out"][h]["scratch"]["curve"][-1][1] for run in runs])
        # "the same return": the best return scratch recorded within its budget, and when it got there
        best = [max(v for _, v in run["held_out"][h]["scratch"]["curve"]) for run in runs]
        first = [interactions_to_reach(run["held_out"][h]["scratch"]["curve"], b) for run, b in zip(runs, best)]
        row["matched_target"] = best
        row["scratch_to_matched"] = first
        for m in starts:
            mine = [interactions_to_reach(run["held_out"][h][m]["curve"], b) for run, b in zip(runs, best)]
            row[f"{m}_to_matched"] = mine
            row[f"{m}_matched_ratio"] = [a / f if a is not None and f else None for a, f in zip(mine, first)]
        adapt[h] = row
    fractions = [table[v]["general_fraction_of_expert"]["median"] for v in train if "general_fraction_of_expert" in table[v]]

    def within(h: str) -> list[bool]:  # per seed: general needs <= 25% of scratch's interactions to the threshold
        return [(r is not None and r <= 0.25) or (b is not None and b <= 0.25)
                for r, b in zip(adapt[h]["general_ratio"], adapt[h]["general_ratio_below"])]

    def within_matched(h: str) -> list[bool]:  # ... to the best return scratch reached
        a = adapt[h]
        return [n is not None and (n == 0 or (f and n / f <= 0.25))
                for n, f in zip(a["general_to_matched"], a["scratch_to_matched"])]

    return {
        "returns": table,
        "adaptation": adapt,
        "goals": {
            "general_reaches_90pct_of_each_expert": {
                "per_variant_median": {v: table[v].get("general_fraction_of_expert", {}).get("median") for v in train},
                "met": bool(fractions) and min(fractions) >= 0.9,
            },
            "adapts_in_25pct_of_scratch_interactions_to_the_same_return": {
                "per_seed": {h: within_matched(h) for h in held},
                "met": bool(held) and all(all(within_matched(h)) for h in held),
            },
            "adapts_in_25pct_of_scratch_interactions": {
                "ratios_general": {h: adapt[h]["general_ratio"] for h in held},
                "within_per_seed": {h: within(h) for h in held},
                "met": bool(held) and all(all(within(h)) for h in held),
            },
        },
    }


def _plots(path: Path, name: str, payload: dict[str, Any]) -> None:
    runs = payload["runs"]
    atomic_write_bytes(path.with_name(f"{name}-heatmap.png"), rl_heatmap_png(RLCycle.from_dict(runs[0]["cycle"])))
    curves = {h: {m: [run["held_out"][h][m]["curve"] for run in runs] for m in runs[0]["held_out"][h]}
              for h in payload["summary"]["adaptation"]}
    atomic_write_bytes(path.with_name(f"{name}-curves.png"), rl_curves_png(curves, target=payload["target_return"]))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--suite", default="cartpole")
    parser.add_argument("--protocol", default="brief", choices=sorted(PROTOCOLS),
                        help="brief (default, a few minutes) or full (the README's tables); see the module's doc")
    parser.add_argument("--seeds", type=int, nargs="+", default=None, help="default: the protocol's")
    parser.add_argument("--generations", type=int, default=None, help="default: the protocol's")
    parser.add_argument("--jobs", type=int, default=2, help="seeds run in this many processes (one thread each)")
    parser.add_argument("--quick", action="store_true", help="tiny budgets: checks the script, measures nothing")
    parser.add_argument("--name", default=None, help="JSON name (default rl-<suite> for full, rl-<suite>-brief for brief; -quick appended with --quick)")
    parser.add_argument("--summarise-only", action="store_true",
                        help="recompute the summary and plots of an existing JSON from its runs (no training)")
    args = parser.parse_args()
    protocol = PROTOCOLS[args.protocol]
    args.seeds = args.seeds if args.seeds is not None else protocol["seeds"]
    args.generations = args.generations if args.generations is not None else protocol["generations"]
    starts = tuple(protocol["starts"])
    default_name = f"rl-{args.suite}" + ("" if args.protocol == "full" else f"-{args.protocol}")
    name = args.name or (f"{default_name}-quick" if args.quick else default_name)
    if args.summarise_only:
        path = RESULTS / f"{name}.json"
        payload = json.loads(path.read_text())
        payload["summary"] = summarise(args.suite, payload["runs"], payload["budgets"])
        atomic_write_bytes(path, json.dumps(payload, indent=2).encode())
        _plots(path, name, payload)
        return
    start = time.perf_counter()
    if args.jobs > 1 and len(args.seeds) > 1:
        with ProcessPoolExecutor(max_workers=args.jobs, mp_context=get_context("spawn")) as pool:
            runs = list(pool.map(one_seed, *zip(*[(args.suite, s, args.quick, args.generations, starts)
                                                  for s in args.seeds])))
    else:
        runs = [one_seed(args.suite, s, args.quick, args.generations, starts) for s in args.seeds]
    suite = load_rl_suite(args.suite)
    payload = {
        "benchmark": "rl", "suite": args.suite, "protocol": args.protocol, "starts": list(starts),
        "machine": machine(), "seeds": args.seeds, "quick": args.quick,
        "generations": args.generations, "jobs": args.jobs, "target_return": suite.target_return,
        "variants": {"train": [v.to_dict() for v in suite.train], "held_out": [v.to_dict() for v in suite.held_out]},
        "budgets": {**suite.budgets, **(QUICK if args.quick else {})}, "ppo": suite.ppo,
        "runs": runs, "seconds": time.perf_counter() - start,
    }
    payload["summary"] = summarise(args.suite, runs, payload["budgets"])
    path = write(name, payload)
    _plots(path, name, payload)
    goals = payload["summary"]["goals"]
    print(f"wrote {path} in {payload['seconds']:.0f} s; goals: "
          + ", ".join(f"{k}: {'met' if g['met'] else 'NOT met'}" for k, g in goals.items()))


if __name__ == "__main__":
    main()
