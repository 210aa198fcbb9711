"""Print the README's markdown tables from the JSON files in benchmarks/results/.

    python benchmarks/tables.py combine overhead
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

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
            f"and run by crossfeed.serving.OnnxModel, int8 = its ONNX Runtime static QDQ quantization, both against "
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


def _pts(s: dict) -> str:
    return f"{100 * s['median']:+.2f} [{100 * s['min']:+.2f}, {100 * s['max']:+.2f}]"


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


def _cut(x: float, digits: int = 1) -> str:
    """A return cut toward minus infinity at ``digits`` decimals (never rounded up)."""
    f = 10**digits
    return f"{math.floor(f * x + 1e-9) / f:.{digits}f}"


def _span(s: dict, scale: float = 1.0, digits: int = 1) -> str:
    """``median [min, max]`` of a summary, each times ``scale``, cut (never rounded up) to ``digits``."""
    return f"{_cut(scale * s['median'], digits)} [{_cut(scale * s['min'], digits)}, {_cut(scale * s['max'], digits)}]"


def _ret(s: dict) -> str:
    return _span(s)


def _frac(s: dict) -> str:
    return f"{_cut(100 * s['median'])}% [{_cut(100 * s['min'])}, {_cut(100 * s['max'])}]"


def _met(goal: dict, key: str) -> str:
    cells = [ok for per_seed in goal[key].values() for ok in per_seed]
    return ("met" if goal["met"] else "NOT met") + f" ({sum(cells)} of {len(cells)} variant-seeds)"


def rl(suite: str = "cartpole") -> str:
    """RL benchmark: returns per variant, fraction of the expert, interactions to the target on held-out variants."""
    data = json.loads((RESULTS / f"rl-{suite}.json").read_text())
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
    lines = [f"`{data['command']}`: seeds {data['seeds']}, {data['seconds']:.0f} s on {m['cpu']}, one core. Pooled "
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
    return "\n".join(lines)


if __name__ == "__main__":
    for which in sys.argv[1:] or ["combine", "spawn", "overhead"]:
        print(globals()[which]())
        print()
