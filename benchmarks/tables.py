"""Print the README's markdown tables from the JSON files in benchmarks/results/.

    python benchmarks/tables.py combine overhead
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

import numpy as np
from _common import cut as _cut
from _common import span as _span

RESULTS = Path(__file__).parent / "results"


def _acc(s: dict) -> str:
    return f"{100 * s['median']:.2f} [{100 * s['min']:.2f}, {100 * s['max']:.2f}]"


def combine() -> str:
    data = json.loads((RESULTS / "combine.json").read_text())
    m = data["machine"]
    lines = [f"Pooled test accuracy on mnist1d (5 domains x 1,000 test samples), median [min, max] over seeds "
             f"{data['seeds']}; {m['cpu']}, {m['cpu_count']} cores, torch {m['torch']}, commit {m['commit']}.", "",
             "| model | kind | accuracy % | NLL | ECE | FLOPs / sample | combiner fit s |", "|---|---|---|---|---|---|---|"]
    for name, row in data["table"].items():
        flops = f"{row['flops_per_sample']['median']:,.0f}" if "flops_per_sample" in row else "same members"
        fit = f"{row['fit_seconds']['median']:.3f}" if row["kind"] != "member" else "—"
        lines.append(f"| {name} | {row['kind']} | {_acc(row['accuracy'])} | {row['nll']['median']:.3f} | "
                     f"{row['ece']['median']:.3f} | {flops} | {fit} |")
    g, c = data["ensemble_gain_points"], data["cascade"]
    ctm = c["cost_to_match_flops_fraction"]
    lines += ["", f"- ensemble gain (best combiner − best member): {g['median']:+.2f} points [{g['min']:+.2f}, {g['max']:+.2f}]",
              f"- cascade tiny CNN → large CNN, threshold calibrated on validation to the large model's validation accuracy: "
              f"{_acc(c['accuracy'])}% test accuracy ({c['gap_points']['median']:+.2f} points vs the large model), "
              f"{100 * c['escalation_rate']['median']:.1f}% escalated, {c['flops_fraction']['median']:.3f} of the large model's FLOPs",
              f"- cost to match (smallest FLOPs fraction within 0.1 point of the large model on the test curve, seeds where reached "
              f"{ctm['n']}/{len(data['seeds'])}): {ctm['median']:.3f} [{ctm['min']:.3f}, {ctm['max']:.3f}]; normalised accuracy-cost AUC "
              f"{c['normalized_auc']['median']:.3f}",
              f"- measured latency of the cascade / large model: batch 1 {c['latency_fraction_batch1']['median']:.2f}x, "
              f"batch 256 {c['latency_fraction_batch256']['median']:.2f}x"]
    return "\n".join(lines)


def overhead() -> str:
    path = RESULTS / "overhead-cpu.json"
    data = json.loads(path.read_text())
    t = data["training"]
    lines = [f"Training throughput, {data['model']}, {data['n_train']} samples x {data['epochs']} epochs, batch {data['batch_size']}, "
             f"{data['device']}: plain PyTorch loop {t['plain_samples_per_s']['median']:.0f} samples/s, crossfeed "
             f"{t['crossfeed_samples_per_s']['median']:.0f} samples/s, ratio **{t['ratio']:.3f}x** (goal >= 0.95x)."]
    for name, row in data["inference"].items():
        lines.append(f"- {name} inference, crossfeed / members called by hand: {row['ratio']:.3f}x")
    return "\n".join(lines)


def spawn() -> str:
    import argparse

    import spawn as spawn_bench  # benchmarks/spawn.py renders its own table

    data = json.loads((RESULTS / "spawn.json").read_text())
    m = data["machine"]
    args = argparse.Namespace(seeds=data["seeds"], n_per_domain=data["n_per_domain"], epochs=data["epochs"])
    head = (f"Teacher cnn1d large; students trained {data['epochs']} epochs, distilled at T={data['distillation']['temperature']}, "
            f"alpha={data['distillation']['alpha']} with the pooled field data as transfer set; pruning removes "
            f"{int(100 * data['prune_ratio'])}% of channels then recovers by distillation; int8 = torch.ao quantization. "
            f"Median [min, max] over seeds {data['seeds']}; speed-ups are teacher latency / student latency measured "
            f"interleaved in one run (API = predict_proba, module = bare forward, ONNX Runtime = the float model exported "
            f"and run by crossfeed.serving.OnnxModel, int8 = its ONNX Runtime static QDQ quantization with int8 weights and uint8 activations, both against "
            f"the float teacher on ONNX Runtime); {m['cpu']}, {m['cpu_count']} cores, "
            f"{m['torch_threads']} torch thread, torch {m['torch']}, commit {m['commit']}.")
    return head + "\n\n" + spawn_bench.markdown_table(data["table"], args)


def serving(name: str = "serving") -> str:
    import serving as serving_bench  # benchmarks/serving.py renders its own tables

    data = json.loads((RESULTS / f"{name}.json").read_text())
    m = data["machine"]
    head = (f"Median [min, max] over seeds {data['seeds']}; {m['cpu']}, {m['cpu_count']} cores, one thread, torch "
            f"{m['torch']}, commit {m['commit']}; certified cascades: delta = {data['delta']}; re-split study: "
            f"{data['resplits']} re-splits of validation + test per seed.")
    return head + "\n\n" + "\n\n".join(serving_bench.markdown(s, data["results"][s]["aggregate"])
                                         for s in data["suites"])


def _abs(s: dict | None, n_seeds: int) -> str:
    """Absorption over the seeds where the expert beats v0 (their count when not all)."""
    if s is None:
        return "–"
    seeds = "" if s["n"] == n_seeds else f" ({s['n']} of {n_seeds} seeds)"
    if s["n"] == 1:
        return f"{s['median']:.2f}{seeds}"
    return f"{s['median']:.2f} [{s['min']:.2f}, {s['max']:.2f}]{seeds}"


def feedback() -> str:
    data = json.loads((RESULTS / "feedback.json").read_text())
    m, shifted, general = data["machine"], data["shifted_domains"], data["general_domain"]
    head = (f"mnist1d, v0 = cnn1d large trained on the general domain ({general}) only; experts = tiny CNNs "
            f"distilled from v0 and fine-tuned on their domain (merge, transfer_init: fine-tuned copies of v0); every "
            f"feedback step {data['epochs']} epochs, lr 1e-3. Median [min, max] over seeds {data['seeds']}; "
            f"{m['cpu']}, {m['cpu_count']} cores, torch {m['torch']}, commit {m['commit']}.")
    v0 = " / ".join(f"{d} {100 * data['v0'][d]['median']:.1f}" for d in [general, *shifted])
    ex = " / ".join(f"{d} {100 * data['experts']['distilled'][d]['median']:.1f}" for d in shifted)
    ex2 = " / ".join(f"{d} {100 * data['experts']['same_arch'][d]['median']:.1f}" for d in shifted)
    lines = [head, "", f"v0 test accuracy %: {v0}. Distilled tiny experts: {ex}. Fine-tuned copies: {ex2}.", "",
             "Settings (a) and (b): absorption = (v1 − v0) / (expert − v0) per shifted domain, over the seeds where the "
             "expert beats v0 ('–': on none); forgetting = v0 − v1 on the general domain in points (negative: "
             "improved); 'raised' = on every shifted domain the median gain exceeds the seed spread (max − min) of v1 "
             "and every seed gains.", "",
             "| setting, strategy | mean shifted acc % | " + " | ".join(f"absorption {d}" for d in shifted)
             + " | forgetting (pts) | seconds | raised |",
             "|---|---|" + "---|" * len(shifted) + "---|---|---|"]
    for label, row in data["table"].items():
        if row["setting"] == "c":
            continue
        cells = [_abs(row["domains"][d]["absorption"], len(data["seeds"])) for d in shifted]
        lines.append(f"| {label} | {_acc(row['mean_shifted_accuracy'])} | " + " | ".join(cells)
                     + f" | {_pts(row['forgetting'])} | {row['seconds']['median']:.1f} | "
                     + ("yes" if row["raises_every_shifted_domain_beyond_spread"] else "no") + " |")
    lines += ["", "Setting (c), domains one after another (" + " → ".join(shifted) + "): forgetting of an absorbed "
              "domain = accuracy right after its step − at the end; general forgetting = v0 − final on the general domain.",
              "", "| strategy | final mean shifted acc % | mean forgetting (pts) | general forgetting (pts) | seconds |",
              "|---|---|---|---|---|"]
    for label, row in data["table"].items():
        if row["setting"] != "c":
            continue
        lines.append(f"| {label} | {_acc(row['final_mean_shifted_accuracy'])} | {_pts(row['mean_forgetting'])} | "
                     f"{_pts(row['general_forgetting'])} | {row['seconds']['median']:.1f} |")
    return "\n".join(lines)


def cycle(name: str = "merge") -> str:
    data = json.loads((RESULTS / f"cycle-{name}.json").read_text())
    c, m = data["config"], data["machine"]
    lines = [f"`{data['config_file'].removeprefix('../')}`: strategy {c['feedback']['strategy']} {c['feedback']['kwargs']}, experts "
             f"{c['experts']['method']} ({c['experts']['student'] if c['experts']['method'] == 'distill' else 'copies of the large model'}), "
             f"{c['generations']} generations, seeds {c['seeds']}, gate tolerance "
             f"{100 * (c['feedback'].get('tolerance') or c.get('gate', {}).get('margin', 0)):.0f} points; {data['seconds']} s on {m['cpu']}, {m['cpu_count']} cores, "
             f"commit {m['commit']}. Large model's test accuracy %, per seed and generation (kept: the gate refused the new model):", "",
             "| seed | generation | " + " | ".join(data["summary"]["domains"]) + " |",
             "|---|---|" + "---|" * len(data["summary"]["domains"])]
    for seed in data["seeds"]:
        for g in seed["generations"]:
            kept = "" if g["accepted"] else " (kept)"
            lines.append(f"| {seed['seed']} | {g['generation']}{kept} | "
                         + " | ".join(f"{100 * g['accuracy']['large'][d]:.1f}" for d in seed["domains"]) + " |")
    falls = data["falls"]
    lines += ["", f"Falls from one generation to the next: {len(falls)}"
              + ("" if not falls else " (" + "; ".join(f"seed {f['seed']} g{f['generation']} {f['domain']} {f['points']:+.1f}"
                                                     for f in falls) + ")")]
    return "\n".join(lines)


def cycle_served(names: tuple[str, ...] = ("merge", "fashion", "amazon", "movielens")) -> str:
    """The cycle's promise on every suite: falls of served per-domain accuracy, and what it gained."""
    def spread(rows: dict, g: int) -> str:  # accuracies cut (never rounded up) to 0.01 point
        v = sorted(math.floor(10000 * r[g] + 1e-6) / 100 for r in rows.values())
        return f"{v[len(v) // 2]:.2f} [{v[0]:.2f}, {v[-1]:.2f}]"

    lines = ["| config | suite | seeds x generations x domains | served falls > margin | served falls (any) | "
             "large-model falls (any) | mean shifted, served: g0 -> last | mean shifted, large model: g0 -> last | "
             "switches | large model went on | seconds |",
             "|---|---|---|---|---|---|---|---|---|---|---|"]
    notes = []
    for name in names:
        path = RESULTS / f"cycle-served-{name}.json"
        if not path.exists():
            continue
        data = json.loads(path.read_text())
        c, m = data["config"], data["machine"]
        n_dom = len(data["summary"]["domains"])
        steps = f"{len(c['seeds'])} x {c['generations']} x {n_dom}"
        last = c["generations"]
        went_on = sum(sum(v) for v in data["accepted"].values())
        total = sum(len(v) for v in data["accepted"].values())
        lines.append(
            f"| `{data['config_file'].removeprefix('../')}` | {c['suite']['name']} | {steps} | "
            f"{len(data['served_falls_beyond_margin'])} | {len(data['served_falls'])} | {len(data['falls'])} | "
            f"{spread(data['mean_shifted_served_accuracy'], 0)} -> {spread(data['mean_shifted_served_accuracy'], last)} | "
            f"{spread(data['mean_shifted_large_accuracy'], 0)} -> {spread(data['mean_shifted_large_accuracy'], last)} | "
            f"{len(data['switches'])} | {went_on} of {total} | {data['seconds']} |")
        notes.append(f"{name}: commit {m['commit']}")
    g = json.loads((RESULTS / f"cycle-served-{names[0]}.json").read_text())["config"]["gate"]
    head = (f"Gate: {g['test']} test, margin {100 * g['margin']:g} points, confidence {g['confidence']:g}, "
            f"{g['correction']} correction, holdout {g['holdout']:g} of each validation split, routing "
            f"{'on' if g['route'] else 'off'}, advance {g['advance']!r}. Medians [min, max] over seeds; "
            f"{m['cpu']}, one thread per run ({'; '.join(notes)}).")
    return head + "\n\n" + "\n".join(lines)


def _ret(s: dict) -> str:
    return _span(s)


def _frac(s: dict) -> str:
    return f"{_cut(100 * s['median'])}% [{_cut(100 * s['min'])}, {_cut(100 * s['max'])}]"


def _met(goal: dict, key: str) -> str:
    cells = [ok for per_seed in goal[key].values() for ok in per_seed]
    return ("met" if goal["met"] else "NOT met") + f" ({sum(cells)} of {len(cells)} variant-seeds)"


def rl(suite: str = "cartpole", protocol: str = "full") -> str:
    """RL benchmark: returns per variant, fraction of the expert, interactions to the target on held-out variants."""
    data = json.loads((RESULTS / (f"rl-{suite}.json" if protocol == "full" else f"rl-{suite}-{protocol}.json")).read_text())
    m, summ = data["machine"], data["summary"]
    train = [v["name"] for v in data["variants"]["train"]]
    held = [v["name"] for v in data["variants"]["held_out"]]
    params = {v["name"]: ", ".join(f"{k}={x:g}" for k, x in v["params"].items()) or "default physics"
              for v in data["variants"]["train"] + data["variants"]["held_out"]}
    lines = [f"Seeds {data['seeds']}, {data['generations']} generations, {data['seconds']:.0f} s on {m['cpu']} "
             f"({m['cpu_count']} cores, {data['jobs']} process(es), one torch thread each), commit {m['commit']}. "
             f"Mean deterministic return over {10} episodes, medians [min, max] over seeds; "
             "*fraction of expert* = (R - R_random) / (R_expert - R_random).", "",
             "| variant | physics | random | pooled PPO (g0) | expert | distilled general | general, fraction of expert "
             "| pooled, fraction of expert | meta-init (zero-shot) |",
             "|---|---|---|---|---|---|---|---|---|"]
    for v in train:
        r = summ["returns"][v]
        lines.append(f"| {v} | {params[v]} | {_ret(r['random'])} | {_ret(r['pooled'])} | {_ret(r['expert'])} | "
                     f"{_ret(r['general'])} | {_frac(r['general_fraction_of_expert'])} | "
                     f"{_frac(r['pooled_fraction_of_expert'])} | {_ret(r['meta_init'])} |")
    target = data["target_return"]
    b = data["budgets"]
    lines += ["", f"Held-out variants (never trained on), PPO from each start. *to threshold*: interactions until "
              f"the mean return first reaches {target:g}; *to scratch's best*: until it reaches the best return "
              f"scratch recorded in its budget (\"the same return\"); checked every {b['eval_every']} interactions, "
              f"per seed, `-` = not within the budget (scratch {b['scratch']}, the others {b['adapt']}); ratio = "
              "that count over scratch's (`<x`: scratch never got there, so the ratio is below count / scratch's "
              "budget). The 0-interaction point uses its own 10 evaluation episodes, so it can differ from the "
              "zero-shot column.", "",
              "| held-out variant | start | zero-shot return | to threshold | ratio | to scratch's best | ratio | "
              "return at the end |",
              "|---|---|---|---|---|---|---|---|"]

    def counts(xs: list) -> str:
        return ", ".join("-" if x is None else f"{x}" for x in xs)

    def ratios(xs: list, below: list | None = None) -> str:
        out = []
        for i, x in enumerate(xs):
            if x is not None:
                out.append(f"{math.floor(100 * x) / 100:.2f}")
            elif below and below[i] is not None:
                out.append(f"<{math.ceil(100 * below[i]) / 100:.2f}")
            else:
                out.append("-")
        return ", ".join(out)

    names = {"scratch": "scratch", "general": "distilled general", "general_warmup": "general + critic warm-up",
             "meta_init": "meta-init (Reptile)", "pooled": "pooled PPO (g0)"}
    for h in held:
        r, a = summ["returns"][h], summ["adaptation"][h]
        lines.append(f"| {h} ({params[h]}) | scratch | - | {counts(a['scratch_to_target'])} | 1 | "
                     f"{counts(a['scratch_to_matched'])} (best {', '.join(_cut(x) for x in a['matched_target'])}) | 1 | "
                     f"{_cut(a['scratch_final_return']['median'])} |")
        for m in ("general", "general_warmup", "meta_init", "pooled"):
            if f"{m}_to_target" not in a:
                continue
            zero = r[m if m != "general_warmup" else "general"]["median"]
            lines.append(f"| | {names[m]} | {_cut(zero)} | {counts(a[f'{m}_to_target'])} | "
                         f"{ratios(a[f'{m}_ratio'], a.get(f'{m}_ratio_below'))} | {counts(a[f'{m}_to_matched'])} | "
                         f"{ratios(a[f'{m}_matched_ratio'])} | {_cut(a[f'{m}_final_return']['median'])} |")
    goals = summ["goals"]
    lines += ["", "Goals: general policy >= 90% of each expert (normalised): "
              f"{'met' if goals['general_reaches_90pct_of_each_expert']['met'] else 'NOT met'}; "
              "adapts to every held-out variant in <= 25% of the interactions scratch needs to reach the same return, "
              "every seed: "
              f"{_met(goals['adapts_in_25pct_of_scratch_interactions_to_the_same_return'], 'per_seed')}; "
              f"... to the threshold {target:g}: {_met(goals['adapts_in_25pct_of_scratch_interactions'], 'within_per_seed')}."]
    return "\n".join(lines)


def _pc(s: dict) -> str:
    """An accuracy summary in % cut (never rounded up) to 0.01 point."""
    return _span(s, 100, 2)


def forest(name: str = "forest") -> str:
    """Meta decision forest: mean test accuracy over target domains, k shots per class."""
    data = json.loads((RESULTS / f"{name}.json").read_text())
    m = data["machine"]
    lines = [f"Seeds {data['seeds']}, {data['seconds']:.0f} s on {m['cpu']}, one core (shared with another benchmark), commit {m['commit']}. Test accuracy % "
             "on the target domain, mean over the 5 leave-one-out targets per seed, median [min, max] over seeds; "
             "*beats scratch*: target-seeds where the meta forest is more accurate than scratch.", "",
             "| suite | shots per class | source forest (not adapted) | leaf refit only | meta forest | scratch | meta forest beats scratch |",
             "|---|---|---|---|---|---|---|"]
    for suite, rows in data["summary"].items():
        for k, r in rows.items():
            lines.append(f"| {suite} | {k} | {_pc(r['source_forest'])} | {_pc(r['leaf_refit_only'])} | "
                         f"{_pc(r['meta_forest'])} | {_pc(r['scratch'])} | {r['meta_forest_beats_scratch']} |")
    return "\n".join(lines)


def _pts(s: dict) -> str:
    """A gap in points cut toward minus infinity to 0.1 point (never rounded up)."""
    return _span(s, 100)


def moe(suite: str = "mnist1d") -> str:
    """Mixture of experts: each method's gap to the experts / v0 per domain, FLOPs and latency vs v0."""
    data = json.loads((RESULTS / f"moe-{suite}.json").read_text())
    m, summ = data["machine"], data["summary"]
    domains = list(summ["v0"])
    lines = [f"`{data['command']}`: seeds {data['settings']['seeds']}, {data['wall_seconds']:.0f} s on {m['cpu']}, one core, "
             f"commit {data['commit']}. Gap (points, test split) to the domain's expert on each shifted domain and to "
             "v0 on the general one, median [min, max] over seeds, cut toward minus infinity; FLOPs per sample as "
             "routed and batch-1 `predict_proba` latency, both over v0's.", "",
             "| method | " + " | ".join(domains) + " | seeds within 1 point everywhere | FLOPs / v0 | latency b1 / v0 |",
             "|---|" + "---|" * (len(domains) + 3)]
    for name, r in summ["methods"].items():
        gaps = " | ".join(_pts(r["gap"][d]) for d in domains)
        lines.append(f"| {name} | {gaps} | {r['goal_met_seeds']} | {_cut(r['flops_fraction']['median'], 3)} | "
                     f"{_cut(r['latency_b1_ratio']['median'], 2)} |")
    acc = lambda row: ", ".join(f"{d} {_cut(100 * v['median'])}" for d, v in row.items())  # noqa: E731
    lines += ["", f"Accuracy % (median): v0 {acc(summ['v0'])}; distilled experts {acc(summ['experts']['distilled'])}; "
              f"fine-tuned copies {acc(summ['experts']['finetuned'])}."]
    return "\n".join(lines)


def _abs3(s: dict) -> str:
    return _span(s, digits=3)


def generative(suite: str = "mnist1d") -> str:
    """Generative augmentation: pooled absorption per strategy and field size, and sample quality."""
    data = json.loads((RESULTS / f"generative-{suite}.json").read_text())
    m, table = data["machine"], data["table"]
    sizes = list(table)
    where = "two seeds at a time in two processes on the two cores" if "--jobs 2" in data["command"] else "one core"
    lines = [f"`{data['command']}`: seeds {data['seeds']}, {data['seconds']:.0f} s on {m['cpu']}, {where}. Pooled "
             "absorption, median [min, max] over seeds, cut to 0.001; quality (VAE / GAN): expert agreement, C2ST "
             "accuracy, DCR ratio, medians over domains then seeds.", "",
             "| strategy | " + " | ".join(f"{n} field rows per domain" for n in sizes) + " |",
             "|---|" + "---|" * len(sizes)]
    for name in table[sizes[0]]:
        lines.append(f"| {name} | " + " | ".join(_abs3(table[n][name]["pooled_absorption"]) for n in sizes) + " |")
    for gen in ("cvae", "cgan"):
        cells = []
        for n in sizes:
            r = table[n][f"generative_augment ({gen})"]
            cells.append(" / ".join(_cut(r[q + "_over_domains"]["median"], 3)
                                    for q in ("expert_agreement", "c2st_accuracy", "dcr_ratio")))
        lines.append(f"| quality, {gen} | " + " | ".join(cells) + " |")
    inversion = "data_free_kd (DeepInversion, no field row)"
    if inversion in table[sizes[0]]:
        r = table[sizes[0]][inversion]
        cell = (f"{_cut(r['expert_agreement_over_domains']['median'], 3)} / "
                f"{_cut(r['bn_gap_ratio_over_domains']['median'], 3)}")
        lines.append("| quality, inversion (expert agreement / BatchNorm gap after over before) | "
                     + " | ".join(cell for _ in sizes) + " |")
    for pair in data.get("versus", {}).get(sizes[0], {}):
        cells = [f"{v['seeds_higher']} of {v['seeds']} seeds, by {_abs3(v['gap'])}"
                 for v in (data["versus"][n][pair] for n in sizes)]
        lines.append(f"| {pair}: higher on | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def _summ(values: list[float]) -> dict:
    """Median with [min, max] of per-seed values the JSON keeps but does not summarise."""
    v = sorted(values)
    return {"median": statistics.median(v), "min": v[0], "max": v[-1], "n": len(v)}


def _kw(kwargs: dict) -> str:
    return ", ".join(f"{k}={v}" for k, v in kwargs.items())


def _head(command: str, data: dict, seconds: float | None = None) -> str:
    """The header's start: command, seeds, seconds (when recorded), machine and commit stamp."""
    m = data["machine"]
    secs = "" if seconds is None else f", {_cut(seconds, 0)} s"
    return (f"`{command}`: seeds {data['seeds']}{secs} on {m['cpu']} ({m['cpu_count']} cores), "
            f"commit {m.get('commit')}.")


def adapt(suite: str = "mnist1d") -> str:
    """Domain adaptation (DANN, CORAL, MMD) against continued training and multi-teacher KD."""
    data = json.loads((RESULTS / f"adapt-{suite}.json").read_text())
    general, shifted, runs = data["general_domain"], data["shifted_domains"], data["runs"]
    lines = [_head(f"python benchmarks/adapt.py --suites {suite}", data, data["seconds"]) + " v0 trained on the "
             f"general domain ({general}) only, then each strategy {data['epochs']} epochs at lr "
             f"{data['feedback_lr']:g} with the labelled general rows and the unlabelled field rows of "
             f"{', '.join(shifted)}; test accuracy %, forgetting = v0 − v1 on {general} in points, feature "
             "CORAL = mean CORAL distance general vs shifted test features over v0's (per seed, median); "
             "median [min, max] over seeds, cut toward minus infinity.", "",
             f"| strategy | mean shifted acc % | {general} acc % | forgetting (pts) | feature CORAL / v0's | seconds |",
             "|---|---|---|---|---|---|"]
    for label, row in data["table"].items():
        coral = _summ([r["strategies"][label]["feature_coral"] / r["v0_feature_coral"] for r in runs])
        lines.append(f"| {label} | {_pc(row['mean_shifted_accuracy'])} | {_pc(row['domains'][general]['acc_v1'])} | "
                     f"{_pts(row['forgetting'])} | {_cut(coral['median'], 3)} | {_cut(row['seconds']['median'], 1)} |")
    v0 = _summ([sum(r["v0"][d] for d in shifted) / len(shifted) for r in runs])
    ex = _summ([sum(r["experts"][d] for d in shifted) / len(shifted) for r in runs])
    lines += ["", f"v0: mean shifted {_pc(v0)}, {general} {_pc(data['v0'][general])}; experts (v0 fine-tuned on "
              f"each domain's labels): mean shifted {_pc(ex)}."]
    if data.get("skada"):
        sk = data["skada"]
        cells = "; ".join(f"{d} {_cut(100 * sk['skada_coral_lr'][d]['median'], 2)} vs "
                          f"{_cut(100 * sk['lr_source_only'][d]['median'], 2)}" for d in shifted)
        lines.append(f"skada {sk['skada_version']} CORAL + logistic regression vs logistic regression alone on "
                     f"{sk['features']}, test accuracy % (median): {cells}.")
    if data.get("published"):
        pub = data["published"]
        cells = "; ".join(f"{kind.removeprefix('dann_').replace('_', ' ')}: "
                          + ", ".join(f"{d} {_cut(100 * a)}" for d, a in pub[kind].items())
                          for kind in ("dann_raw_features", "dann_msda_features"))
        lines.append(f"Published anchor ({pub['source']}), accuracy %: {cells}. Protocol differs: "
                     f"{pub['protocol_differs']}.")
    return "\n".join(lines)


def ssl(suite: str = "mnist1d") -> str:
    """Self-supervised pretraining (NT-Xent, masked) against none, per label fraction: fine-tune and linear probe."""
    data = json.loads((RESULTS / f"adapt-ssl-{suite}.json").read_text())
    summ, cfg, run0 = data["summary"], data["config"], data["runs"][0]
    fractions = [f for f in summ if f != "pretrain_seconds"]
    starts = [s for s in summ[fractions[0]] if " - " not in s]
    names = {"none": "none (random init)", "ntxent": "NT-Xent (SimCLR)", "masked": "masked-feature reconstruction"}
    lines = [_head(f"python benchmarks/ssl_pretrain.py --suites {suite}", data, data["wall_seconds"])
             + f" {cfg['module']} ({_kw(cfg['module_kwargs'])}), {cfg['pretrain_epochs']} pretraining epochs on "
             f"{run0['pretrain_rows']} unlabelled rows, fine-tuning ~{cfg['steps']} steps; mean test accuracy % over "
             "all domains, median [min, max] over seeds (gain rows: paired by seed, points). Anchor: "
             f"{data['anchor']}.", "",
             "| pretraining | " + " | ".join(f"{float(f):.0%} labels ({run0['fractions'][f]['labelled_rows']} rows), "
                                            f"{kind}" for f in fractions for kind in ("fine-tune", "probe"))
             + " | pretraining s |",
             "|---|" + "---|" * (2 * len(fractions) + 1)]
    for s in starts:
        secs = _cut(summ["pretrain_seconds"][s]["median"], 0) if s in summ["pretrain_seconds"] else "–"
        lines.append(f"| {names.get(s, s)} | " + " | ".join(_pc(summ[f][s][kind]["mean"]) for f in fractions
                                                             for kind in ("finetune", "probe")) + f" | {secs} |")
    for s in starts[1:]:
        lines.append(f"| {names.get(s, s)} − none (pts) | " + " | ".join(
            _pts(summ[f][f"{s} - none"][kind]) for f in fractions for kind in ("finetune", "probe")) + " | |")
    return "\n".join(lines)


def hierarchical(suite: str = "mnist1d") -> str:
    """Hierarchical heads over a given / learned taxonomy against flat multitask, joint training and a control."""
    data = json.loads((RESULTS / f"adapt-hierarchical-{suite}.json").read_text())
    table, runs, scarce, shifted = data["table"], data["runs"], data["scarce_domains"], data["shifted_domains"]
    lines = [_head(f"python benchmarks/hierarchical.py --suite {suite}", data, data["seconds"])
             + f" v0 {data['large'][0]} ({_kw(data['large'][1])}) trained on {data['general_domain']}, experts "
             f"{data['student']} distilled then fine-tuned, {data['epochs']} epochs at lr {data['lr']:g}; full = every "
             f"domain's field data, scarce = {', '.join(scarce)} keep {data['scarce_field_samples']} field samples. "
             "Test accuracy %, served = the returned model, routed = each domain through its own branch; "
             "median [min, max] over seeds.", "",
             "| strategy | full: served, mean shifted | full: routed, mean shifted | scarce: served, mean shifted | "
             f"scarce: served, {' + '.join(scarce)} | scarce: routed, {' + '.join(scarce)} | forgetting, full (pts) "
             "| seconds, full |",
             "|---|---|---|---|---|---|---|---|"]

    def on_scarce(label: str, kind: str) -> str:
        rows = [r["scarce"][label] for r in runs]
        if kind not in rows[0]:
            return "–"
        key = "acc_v1" if kind == "domains" else "acc"
        return _pc(_summ([sum(row[kind][d][key] for d in scarce) / len(scarce) for row in rows]))

    for label, row in table["full"].items():
        sc = table["scarce"][label]
        routed = _pc(row["routed_mean_accuracy"]) if "routed_mean_accuracy" in row else "–"
        lines.append(f"| {label} | {_pc(row['mean_shifted_accuracy'])} | {routed} | "
                     f"{_pc(sc['mean_shifted_accuracy'])} | {on_scarce(label, 'domains')} | "
                     f"{on_scarce(label, 'routed')} | {_pts(row['forgetting'])} | "
                     f"{_cut(row['seconds']['median'], 1)} |")
    learned = table["full"].get("hierarchical (learned taxonomy)", {}).get("taxonomy_per_seed", [])
    groups = "; ".join(f"seed {seed}: " + " | ".join(", ".join(g) for g in tax.values())
                       for seed, tax in zip(data["seeds"], learned))
    v0 = _summ([sum(r["v0"][d] for d in shifted) / len(shifted) for r in runs])
    ex = _summ([sum(r["experts"][d] for d in shifted) / len(shifted) for r in runs])
    lines += ["", f"v0 mean shifted {_pc(v0)}; experts mean shifted {_pc(ex)}. Given taxonomy: "
              + " | ".join(f"{g}: {', '.join(ds)}" for g, ds in data["given_taxonomy"].items())
              + f". Learned taxonomy (full setting): {groups}."]
    return "\n".join(lines)


def meta(suite: str = "mnist1d") -> str:
    """Meta-learning: leave one domain out, adapt in k shots per class; neural inits and the meta forest."""
    data = json.loads((RESULTS / f"meta-{suite}.json").read_text())
    summ, a, vf = data["summary"], data["adaptation"], data.get("vs_forest")
    shots = [str(k) for k in data["shots"]]
    names = {"pooled": "pooled", "v0": "v0 (general domain only; shifted targets only)", "reptile": "reptile",
             "fomaml": "fomaml (first-order MAML)", "maml": "maml (second order)", "scratch": "scratch"}
    lines = [_head(f"python benchmarks/meta.py --suites {suite}", data, data["seconds"])
             + f" Every domain the target once; {a['steps']} full-batch SGD steps at lr {a['lr']:g}, chosen from "
             f"{a['grid']} on the {a['split']} split of another draw (suite seed {a['suite_seed']}, held-out "
             f"{a['held_out']}, {a['k']} shots). Test accuracy % of the target, per seed the mean over targets, "
             "median [min, max] over seeds.", "",
             "| initialisation | " + " | ".join(f"{k} shot{'s' if k != '1' else ''} per class" for k in shots) + " |",
             "|---|" + "---|" * len(shots)]
    for m in summ[shots[0]]:
        if isinstance(summ[shots[0]][m], dict):
            lines.append(f"| {names.get(m, m)} | " + " | ".join(_pc(summ[k][m]) for k in shots) + " |")
    if vf:
        lines.append(f"| meta forest (results/forest.json, commit {vf['forest_commit']}, seeds {vf['forest_seeds']}) | "
                     + " | ".join(_pc(vf[k]["meta_forest"]) for k in shots) + " |")
    for m in summ[shots[0]]:
        if m.endswith("_beats_pooled"):
            lines.append(f"| {m.removesuffix('_beats_pooled')} > pooled (target-seeds) | "
                         + " | ".join(summ[k][m] for k in shots) + " |")
    return "\n".join(lines)


def invariance() -> str:
    """Colored Fashion-MNIST: ERM, IRM, V-REx, their penalty-0 controls and the attribution mask."""
    data = json.loads((RESULTS / "adapt-invariance.json").read_text())
    s, an = data["settings"], data["anchors"]
    lines = [_head("python benchmarks/invariance.py", data, data["wall_seconds_total"])
             + f" MLP {s['hidden']}, {s['steps_full_batch']} full-batch Adam steps at lr {_cut(1e4 * s['lr'], 2)}e-4 "
             f"(penalty annealed over {s['anneal_steps']}), {s['train_rows_per_environment']} training rows per "
             f"environment; IRM weight {_cut(s['irm_weight'], 2)}, V-REx weight {s['vrex_weight']:g}. Accuracy % on "
             "each environment's test split, median [min, max] over seeds; max abs Δp = largest difference of the "
             "test-environment probabilities to ERM's.", "",
             f"| method | test environment {s['test']} | training {s['general']} | training {s['shifted']} | "
             "max abs Δp to ERM | seconds |",
             "|---|---|---|---|---|---|"]
    for label, row in data["results"].items():
        diff = row.get("max_abs_proba_difference_to_erm")
        lines.append(f"| {label} | {_pc(row[s['test'] + '_accuracy'])} | {_pc(row[s['general'] + '_accuracy'])} | "
                     f"{_pc(row[s['shifted'] + '_accuracy'])} | {'–' if diff is None else _span(diff, digits=3)} | "
                     f"{_cut(row['wall_seconds']['median'], 1)} |")
    lines += ["", f"Published anchors ({an['source']}), test accuracy %: ERM {an['erm_test']}, IRM {an['irm_test']}, "
              f"optimal invariant {an['optimal_invariant_test']}; goal: {an['goal']}."]
    return "\n".join(lines)


def ddp() -> str:
    """Data-parallel training on CPU: 2 processes (torchrun, gloo) against 1, per global batch size."""
    data = json.loads((RESULTS / "ddp-cpu.json").read_text())
    m, st, summ = data["machine"], data["settings"], data["summary"]
    if "throughput_ratio" in summ:  # the layout before one summary per batch size
        summ = {f"batch_{st['batch_size']}": summ}
    lines = [f"`python benchmarks/ddp.py`: {data['model']}, seed 0, {st['epochs']} epochs after an untimed "
             f"warm-up epoch, {st['repeats']} repeats; 1 process pinned to one core vs `torchrun --nproc_per_node=2` "
             f"(one core each) on {m['cpu']} ({m['cpu_count']} cores), commit {m.get('commit')}. Wall seconds of fit, "
             "throughput ratio 2-process / 1-process, general-domain test accuracy %; median [min, max] over repeats.",
             "", "| global batch | 1 process s | 2 processes s | throughput ratio | 1 process acc % "
             "| 2 processes acc % |",
             "|---|---|---|---|---|---|"]
    for key, row in summ.items():
        lines.append(f"| {key.removeprefix('batch_')} | {_span(row['one_process_seconds'], digits=2)} | "
                     f"{_span(row['two_processes_seconds'], digits=2)} | {_span(row['throughput_ratio'], digits=2)} | "
                     f"{_pc(row['one_process_test_accuracy'])} | {_pc(row['two_processes_test_accuracy'])} |")
    return "\n".join(lines)


def federated(*names: str) -> str:
    """Federated benchmark: final test accuracy per method and setting, and the cost of a round.

    ``names``: JSON files (without ``.json``) whose runs are pooled, e.g. one per batch of seeds.
    """
    files = [json.loads((RESULTS / f"{n}.json").read_text()) for n in names]
    runs = [r for f in files for r in f["runs"]]
    settings = sorted({(r["suite"], r["alpha"], r["clients"]) for r in runs})
    methods = ("centralised", "local_only", "fedavg", "fedprox", "feddf", "fedmd")
    seeds = sorted({r["seed"] for r in runs})
    seconds = sum(f["seconds"] for f in files)
    m, st = files[0]["machine"], files[0]["settings"]
    commits = sorted({f["machine"].get("commit") for f in files})
    lines = [f"`{' ; '.join(f['command'] + ' ' + _args(f['settings']) for f in files)}`: seeds {seeds}, "
             f"{seconds:.0f} s on {m['cpu']}, one core each, commit {', '.join(map(str, commits))}. {st['rounds']} rounds "
             f"x {st['local_epochs']} local epochs, lr {st['lr']}, batch {st['batch_size']}; test accuracy %, median "
             "[min, max] over seeds.", "",
             "| method | " + " | ".join(f"{s} a={a} {n} clients" for s, a, n in settings) + " |",
             "|---|" + "---|" * len(settings)]
    def cell(s, a, n, fn):
        return [fn(r) for r in runs if (r["suite"], r["alpha"], r["clients"]) == (s, a, n)]
    for meth in methods:
        lines.append(f"| {meth} | " + " | ".join(_pc(_summ(cell(s, a, n, lambda r, meth=meth: r[meth]["accuracy"])))
                                                  for s, a, n in settings) + " |")
    lines.append("| feddf - fedavg (pts) | " + " | ".join(
        _pts(_summ(cell(s, a, n, lambda r: r["feddf"]["accuracy"] - r["fedavg"]["accuracy"])))
        for s, a, n in settings) + " |")
    for meth in methods[2:]:
        lines.append(f"| {meth}: rounds to 90% of centralised | " + " | ".join(
            "/".join("–" if x is None else str(x) for x in cell(s, a, n, lambda r, meth=meth: r[meth]["rounds_to_target"]))
            for s, a, n in settings) + " |")
    for meth in methods[2:]:
        lines.append(f"| {meth}: s / round, kB sent / round | " + " | ".join(
            f"{_cut(statistics.median(cell(s, a, n, lambda r, meth=meth: r[meth]['seconds_per_round'])), 2)}, "
            f"{_cut(statistics.median(cell(s, a, n, lambda r, meth=meth: r[meth]['bytes_per_round'])) / 1e3, 0)}"
            for s, a, n in settings) + " |")
    return "\n".join(lines)


def feddf_es(*names: str) -> str:
    """FedDF with the probability teacher and early stopping on the server's labelled rows, beside
    FedAvg and plain FedDF on the same runs (``benchmarks/federated.py --methods ...``)."""
    files = [json.loads((RESULTS / f"{n}.json").read_text()) for n in names]
    m = files[0]["machine"]
    lines = [f"`{f['command']}`: {f['seconds']:.0f} s, commit {f['machine'].get('commit')}" for f in files]
    lines = ["; ".join(lines) + f"; {m['cpu']}, one core. Test accuracy %, median [min, max] over seeds "
             f"{sorted({r['seed'] for f in files for r in f['runs']})}.", "",
             "| setting | fedavg | feddf | feddf_es | feddf - fedavg (pts) | feddf_es - fedavg (pts) |",
             "|---|---|---|---|---|---|"]
    for f in files:
        for key, cell in f["table"].items():
            seeds = sorted({r["seed"] for r in f["runs"]})
            lines.append(f"| {key}, seeds {seeds} | "
                         + " | ".join(_pc(cell[x]["accuracy"]) for x in ("fedavg", "feddf", "feddf_es"))
                         + f" | {_span(cell['feddf_minus_fedavg_points'], 1)} | "
                         f"{_span(cell['feddf_es_minus_fedavg_points'], 1)} |")
    return "\n".join(lines)


def feddf_es_pooled(*names: str) -> str:
    """One row over the runs of several files of the same setting (e.g. two batches of seeds)."""
    files = [json.loads((RESULTS / f"{n}.json").read_text()) for n in names]
    runs = [r for f in files for r in f["runs"]]
    seeds = sorted(r["seed"] for r in runs)
    cells = [_pc(_summ([r[m]["accuracy"] for r in runs])) for m in ("fedavg", "feddf", "feddf_es")]
    gaps = [_span(_summ([100 * (r[m]["accuracy"] - r["fedavg"]["accuracy"]) for r in runs]), 1)
            for m in ("feddf", "feddf_es")]
    wins = sum(r["feddf_es"]["accuracy"] - r["fedavg"]["accuracy"] >= 0.0271 for r in runs)
    return (f"| pooled, seeds {seeds} | " + " | ".join(cells + gaps) + " |\n\n"
            f"feddf_es beats fedavg by >= 2.71 points on {wins} of {len(runs)} seeds.")


def nas_tabular(suite: str = "mnist1d") -> str:
    """Architecture-search warm starts replayed on tables of every configuration (nas_tabular.py)."""
    data = json.loads((RESULTS / f"nas-tabular-{suite}.json").read_text())
    tables = [json.loads((RESULTS.parent / t).read_text()) for t in data["tables"]]
    build = sum(t["seconds"] for t in tables)
    m = data["machine"]
    n_pairs = data["table"][data["strategies"][0]]["per_domain"]["overall"]["pairs"]
    head = (f"`{data['command']}`: data seeds {data['seeds']} x {data['sampler_seeds_per_data_seed']} sampler seeds "
            f"= {n_pairs} (target, seed) pairs, {data['trials']} trials per search, {_cut(data['seconds'], 0)} s; "
            f"tables: {_cut(build, 0)} s of training in all ({len(tables)} x `build --seed`, one core each, commits "
            f"{', '.join(sorted({t['machine']['commit'] for t in tables}))}); {m['cpu']}, commit {m['commit']}; "
            "the replay of one real search "
            f"was checked trial for trial: {(data['verified'] or {}).get('same_trials_and_accuracies', 'not run')}. "
            "Ratio = trials the cold "
            "search needed to reach its best / trials the warm search needed to reach it (never: 0), median "
            "[min, max] over the pairs, cut to 0.01; \"x of n >= 2\": pairs meeting 2x; speed-up = budget / trials "
            "the mean warm best-so-far curve needs to reach the mean cold curve's final value.")
    strategies = data["strategies"]
    lines = [head, "", "| target | ties with best | rank alike others | " + " | ".join(
        f"{s}: ratio, x of n >= 2, never, speed-up" for s in strategies) + " |", "|---" * (3 + len(strategies)) + "|"]
    stats = data["table_stats"]
    for name in [*stats, "overall"]:
        cells = []
        for s in strategies:
            r = data["table"][s]["per_domain"][name]
            share = round(r["share_at_least_2"] * r["pairs"])
            cells.append(f"{_span(r['ratio'], 1, 2)}, {share} of {r['pairs']}, {r['never']}, "
                         f"{_cut(r['mean_curve_speedup'], 2)}")
        st = stats.get(name)
        ties = f"{st['tied_with_best']['median']:.0f}" if st else ""
        alike = _cut(st["mean_spearman_to_others"]["median"], 2) if st else ""
        lines.append(f"| {name} | {ties} | {alike} | " + " | ".join(cells) + " |")
    cold = np.array([p["cold_trials_to_best"] for p in data["pairs"]])
    found = np.mean([p["cold_best"] >= p["table_best"] for p in data["pairs"]])
    q1, q3 = np.percentile(cold, [25, 75])
    lines += ["", f"Cold searches: trials to their best, median {np.median(cold):g} [quartiles {q1:g}, {q3:g}] of "
              f"{data['trials']}; {_cut(100 * found, 1)}% of them find the best configuration of the whole table."]
    return "\n".join(lines)


def _args(settings: dict) -> str:
    return f"--suites {' '.join(settings['suites'])} --seeds {' '.join(map(str, settings['seeds']))}"


if __name__ == "__main__":
    for which in sys.argv[1:] or ["combine", "spawn", "overhead"]:
        print(globals()[which]())
        print()
