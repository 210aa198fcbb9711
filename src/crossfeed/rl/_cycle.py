"""The cycle on RL suites: spawn experts from the general policy, specialise, distil back, repeat.

Generation 0 is a general policy trained with PPO on every train variant pooled. Each later
generation spawns one expert per train variant from the current general policy (PPO fine-tuning on
that variant alone), then distils the experts back into the general policy
(:func:`distill_policies`, the student starting from the current general policy), and measures
every policy on every variant, train and held-out. Policies are written per generation as
safetensors + JSON, with ``rl-cycle.json`` rewritten atomically after each generation.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from crossfeed._cache import atomic_write_bytes
from crossfeed.exceptions import ValidationError
from crossfeed.rl._distill import DistillSettings, distill_policies
from crossfeed.rl._envs import VariantSuite
from crossfeed.rl._evaluate import mean_return
from crossfeed.rl._policy import Policy, save_policy
from crossfeed.rl._ppo import PPOSettings, train_ppo

__all__ = ["RLCycle", "RLGeneration", "run_rl_cycle"]


@dataclass
class RLGeneration:
    """One generation: mean return of every policy (``"general"``, ``"expert:<variant>"``) on
    every variant, interactions each policy consumed, seconds."""

    generation: int
    returns: dict[str, dict[str, float]]
    interactions: dict[str, int]
    seconds: float


@dataclass
class RLCycle:
    """Every generation of one seed of the RL cycle."""

    suite: str
    seed: int
    train: list[str]
    held_out: list[str]
    generations: list[RLGeneration] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    #: the last generation's policies by label, and generation 0's general policy as ``general@0``
    policies: dict[str, Policy] = field(default_factory=dict, repr=False)

    @property
    def variants(self) -> list[str]:
        return self.train + self.held_out

    def general_returns(self) -> np.ndarray:
        """(generations, variants) mean returns of the general policy."""
        return np.array([[g.returns["general"][v] for v in self.variants] for g in self.generations])

    def to_dict(self) -> dict[str, Any]:
        return {"suite": self.suite, "seed": self.seed, "train": self.train, "held_out": self.held_out,
                "generations": [asdict(g) for g in self.generations], "settings": self.settings}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> RLCycle:
        gens = [RLGeneration(**g) for g in data.get("generations", [])]
        return cls(data["suite"], data["seed"], list(data["train"]), list(data["held_out"]), gens,
                   dict(data.get("settings", {})))


def run_rl_cycle(
    suite: VariantSuite,
    *,
    generations: int = 2,
    seed: int = 0,
    general_timesteps: int | None = None,
    expert_timesteps: int | None = None,
    ppo: PPOSettings | None = None,
    distill: DistillSettings | None = None,
    episodes: int | None = None,
    expert_hidden: tuple[int, ...] | None = None,
    out_dir: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> RLCycle:
    """Run ``generations`` generations of spawn -> specialise -> distil on ``suite``.

    Parameters
    ----------
    suite : the variants (train ones spawn experts; held-out ones are only measured).
    generations : generations after generation 0 (>= 0).
    general_timesteps, expert_timesteps : PPO budgets (default: the suite's ``budgets``).
    ppo, distill : settings (default: the suite's PPO settings; :class:`DistillSettings`).
    episodes : evaluation episodes per policy and variant (default: the suite's).
    expert_hidden : hidden widths of the experts. None: an expert starts as a copy of the general
        policy. Other widths: a small expert is first distilled from the general policy on its
        variant, then specialised with PPO.
    out_dir : where the policies and ``rl-cycle.json`` go (None: nothing is written).
    progress : called with a line per stage.
    """
    if isinstance(generations, bool) or not isinstance(generations, int) or generations < 0:
        raise ValidationError(f"generations must be an int >= 0, got {generations!r}")
    ppo = ppo or PPOSettings.of(suite.ppo)
    distill = distill or DistillSettings()
    general_timesteps = general_timesteps or suite.budget("general", 100_000)
    expert_timesteps = expert_timesteps or suite.budget("expert", 40_000)
    episodes = episodes or suite.eval_episodes
    say = progress or (lambda _line: None)
    out = Path(out_dir) if out_dir is not None else None
    cycle = RLCycle(
        suite.name, int(seed), [v.name for v in suite.train], [v.name for v in suite.held_out],
        settings={"generations": generations, "general_timesteps": general_timesteps,
                  "expert_timesteps": expert_timesteps, "ppo": asdict(ppo), "distill": asdict(distill),
                  "episodes": episodes, "expert_hidden": list(expert_hidden) if expert_hidden else None,
                  "variants": [v.to_dict() for v in suite.variants]},
    )

    def measure(policy: Policy) -> dict[str, float]:
        return {v.name: mean_return(policy, v, episodes=episodes, seed=20_000 + int(seed)) for v in suite.variants}

    def keep(g: int, policies: Mapping[str, Policy], record: RLGeneration) -> None:
        cycle.generations.append(record)
        cycle.policies = {"general@0": cycle.policies.get("general@0", policies["general"]), **policies}
        if out is None:
            return
        for label, policy in policies.items():
            path = out / f"generation-{g}" / (label.replace("expert:", "expert-") + ".safetensors")
            save_policy(policy, path, meta={"suite": suite.name, "seed": int(seed), "generation": g, "model": label})
        atomic_write_bytes(out / "rl-cycle.json", json.dumps(cycle.to_dict(), indent=2).encode())

    t0 = time.perf_counter()
    say(f"generation 0: PPO on {len(suite.train)} pooled variants, {general_timesteps} interactions")
    trained = train_ppo(list(suite.train), general_timesteps, settings=ppo, seed=int(seed) * 1009)
    general = trained.policy
    keep(0, {"general": general},
         RLGeneration(0, {"general": measure(general)}, {"general": trained.interactions}, time.perf_counter() - t0))
    for g in range(1, generations + 1):
        t0 = time.perf_counter()
        experts: dict[str, Policy] = {}
        returns: dict[str, dict[str, float]] = {}
        interactions: dict[str, int] = {}
        for j, v in enumerate(suite.train):
            say(f"generation {g}: spawn and specialise the expert of {v.name}")
            step_seed = int(seed) * 1009 + 17 * g + j + 1
            start, spent = general, 0
            if expert_hidden is not None and tuple(expert_hidden) != general.hidden:
                small = Policy(general.obs_dim, general.n_actions, expert_hidden)
                shrunk = distill_policies({v.name: general}, [v], student=small, settings=distill, seed=step_seed)
                start, spent = shrunk.policy, shrunk.interactions
            r = train_ppo(v, expert_timesteps, start=start, settings=ppo, seed=step_seed)
            experts[v.name] = r.policy
            returns[f"expert:{v.name}"] = measure(r.policy)
            interactions[f"expert:{v.name}"] = r.interactions + spent
        say(f"generation {g}: distil {len(experts)} experts into the general policy")
        d = distill_policies(experts, list(suite.train), student=general, settings=distill, seed=int(seed) * 1009 + g)
        general = d.policy
        returns["general"] = measure(general)
        interactions["general"] = d.interactions
        keep(g, {"general": general, **{f"expert:{k}": p for k, p in experts.items()}},
             RLGeneration(g, returns, interactions, time.perf_counter() - t0))
    return cycle
